"""Train-step time of this checkout against another git revision, paired.

Finds step-time regressions that a comparison across processes cannot: on
a shared or virtual machine the speed of the whole machine drifts by 20 % or
more within minutes, far more than a change costs. Both versions run here
in one process: the revision's `keras_mtl` package is exported with
`git archive` and imported under another name (`keras_mtl_rev`), and each
method is built with both, on the model of `gradient_methods.py` (trunk
64-256-256, one linear head per task, batch 128, Adam). The two models of a
method are timed in blocks of `--steps` steps (`train_function` called
directly, no callbacks), `--rounds` times, all models in a new random order
every round; the script prints, per method, the median and quartiles of
the per-round ratio this checkout / revision, and each model's 20th
percentile block time against plain Keras of the same round.

With the default `--revision HEAD` and no uncommitted change, both sides
are the same code: the ratios show the noise of the machine (on the 2-core
development machine, medians from 0.95 to 1.12 over six methods: a
method built twice from the same code can time 10 % apart).

    python benchmarks/step_vs_revision.py [--revision c02aa49] [--tasks 10]
        [--methods equal uncertainty pcgrad:rep] [--rounds 30] [--steps 5]

A method is a name of `keras_mtl.weighting.get`, with `:param` or `:rep`
for the `mode` of a gradient-level one.
"""

import argparse
import os
import re
import subprocess
import sys
import tarfile
import tempfile
import time

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
from gradient_methods import BATCH  # noqa: E402
from gradient_methods import _data  # noqa: E402
from gradient_methods import _mtl  # noqa: E402
from gradient_methods import _plain_keras  # noqa: E402

METHODS = [
    "equal",
    "uncertainty",
    "pcgrad:rep",
    "pcgrad:param",
    "mgda:rep",
    "nash_mtl:rep",
]


def _export(revision, root, directory):
    """Writes the revision's package as `keras_mtl_rev` under `directory`."""
    archive = os.path.join(directory, "rev.tar")
    subprocess.run(
        ["git", "archive", "-o", archive, revision, "keras_mtl"],
        cwd=root,
        check=True,
    )
    with tarfile.open(archive) as tar:
        tar.extractall(directory, filter="data")
    source = os.path.join(directory, "keras_mtl")
    target = os.path.join(directory, "keras_mtl_rev")
    os.rename(source, target)
    word = re.compile(r"\bkeras_mtl\b")
    for folder, _, files in os.walk(target):
        for name in files:
            if name.endswith(".py"):
                path = os.path.join(folder, name)
                with open(path) as f:
                    text = f.read()
                with open(path, "w") as f:
                    f.write(word.sub("keras_mtl_rev", text))


def _model(package, method, num_tasks):
    if package is None:
        return _plain_keras(num_tasks)
    name, _, mode = method.partition(":")
    weighting = name
    if mode:
        weighting = type(package.weighting.get(name))(mode=mode)
    return _mtl(num_tasks, weighting, package)


def _block(model, iterator, steps):
    function = model.train_function
    start = time.perf_counter()
    for _ in range(steps):
        logs = function(iterator)
    float(logs["loss"])  # waits for the last step
    return (time.perf_counter() - start) / steps


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--revision", default="HEAD")
    parser.add_argument("--tasks", type=int, default=10)
    parser.add_argument("--methods", nargs="+", default=METHODS)
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--steps", type=int, default=5)
    args = parser.parse_args()
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    directory = tempfile.mkdtemp()
    _export(args.revision, root, directory)
    sys.path.insert(0, directory)
    sys.path.insert(0, root)

    import keras
    import tensorflow as tf

    import keras_mtl

    keras_mtl_rev = __import__("keras_mtl_rev")  # written above

    keras.utils.set_random_seed(0)
    x, y = _data(args.tasks, 8)
    data = tf.data.Dataset.from_tensor_slices((x, y)).batch(BATCH).repeat()
    keys = [("keras", None)] + [
        (method, package)
        for method in args.methods
        for package in (keras_mtl, keras_mtl_rev)
    ]
    models, iterators = {}, {}
    for method, package in keys:
        model = _model(package, method, args.tasks)
        model.fit(data, steps_per_epoch=2, verbose=0)  # traces
        models[method, package] = model
        iterators[method, package] = iter(data)
        _block(model, iterators[method, package], args.steps)
    times = {key: [] for key in keys}
    order = np.random.default_rng(0)
    for _ in range(args.rounds):
        # A fresh random order each round: what ran just before a model
        # changes its time (caches), by 10 % on the development machine.
        for index in order.permutation(len(keys)):
            key = keys[index]
            times[key].append(_block(models[key], iterators[key], args.steps))
    print(
        f"T={args.tasks}, this checkout vs {args.revision}: {args.rounds} "
        f"rounds of {args.steps}-step blocks"
    )
    print(
        f"{'method':<16} {'ratio':>6} {'quartiles':>13} {'this':>7} "
        f"{'rev':>7}  (block time p20 / plain Keras)"
    )
    base = np.percentile(times["keras", None], 20)
    for method in args.methods:
        ours = np.array(times[method, keras_mtl])
        theirs = np.array(times[method, keras_mtl_rev])
        ratio = ours / theirs
        low, mid, high = np.percentile(ratio, [25, 50, 75])
        print(
            f"{method:<16} {mid:>6.3f} {low:>6.3f}-{high:<6.3f} "
            f"{np.percentile(ours, 20) / base:>6.2f}x "
            f"{np.percentile(theirs, 20) / base:>6.2f}x",
            flush=True,
        )
    print(f"plain Keras block time p20: {base * 1e3:.2f} ms")


if __name__ == "__main__":
    main()
