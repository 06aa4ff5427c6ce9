"""Time to the first training step with many tasks, against plain Keras.

`T` tiny regression tasks (one `Dense(1)` head each on a shared
`Dense(16)` trunk). The first `fit` step traces the training function;
its time, and the process's peak RSS, grow with `T`. The plain-Keras
model has the same layers, compiled with one `"mse"` loss per output.
Every model runs in a fresh subprocess (a trace cache or a collected
graph must not carry over); the first-step time is `fit` of one batch,
the second step's time is printed beside it.

    python benchmarks/many_tasks.py [--tasks 50 100 200] [--methods equal]
"""

import argparse
import json
import os
import subprocess
import sys

CHILD = r"""
import json, os, resource, sys, time
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import keras
import numpy as np
import keras_mtl

kind, num_tasks = sys.argv[1], int(sys.argv[2])
names = [f"t{i}" for i in range(num_tasks)]
x = np.random.default_rng(0).normal(size=(64, 8)).astype("float32")
y = {n: x[:, :1] * (i % 7) for i, n in enumerate(names)}
start = time.perf_counter()
if kind == "keras":
    inputs = keras.Input((8,))
    features = keras.layers.Dense(16, activation="relu")(inputs)
    outputs = {n: keras.layers.Dense(1, name=n)(features) for n in names}
    model = keras.Model(inputs, outputs)
    model.compile(optimizer="adam", loss={n: "mse" for n in names})
else:
    tasks = [keras_mtl.Task(n) for n in names]
    model = keras_mtl.build_mtl_model(
        keras.Input((8,)), tasks, trunk=[16], weighting=kind)
    model.compile(optimizer="adam")
built = time.perf_counter()
model.fit(x[:32], {n: v[:32] for n, v in y.items()}, batch_size=32,
          epochs=1, verbose=0)
first = time.perf_counter()
model.fit(x[32:], {n: v[32:] for n, v in y.items()}, batch_size=32,
          epochs=1, verbose=0)
second = time.perf_counter()
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps(dict(build=built - start, first=first - built,
                      second=second - first, rss_mb=rss)))
"""


def run(kind, num_tasks):
    result = subprocess.run(
        [sys.executable, "-c", CHILD, kind, str(num_tasks)],
        capture_output=True,
        text=True,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"),
    )
    if result.returncode:
        raise RuntimeError(result.stderr[-3000:])
    return json.loads(result.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--tasks",
        type=int,
        nargs="+",
        default=[50, 100, 200],
        help="numbers of tasks to time",
    )
    parser.add_argument(
        "--methods",
        nargs="+",
        default=["equal"],
        help="weighting methods (registry names) to time beside plain Keras",
    )
    args = parser.parse_args()
    print(
        f"{'T':>4} {'model':>12} {'build s':>8} {'first step s':>13} "
        f"{'ratio':>6} {'2nd fit s':>9} {'peak RSS MB':>11}"
    )
    for num_tasks in args.tasks:
        plain = run("keras", num_tasks)
        rows = [("keras", plain)] + [
            (m, run(m, num_tasks)) for m in args.methods
        ]
        for kind, r in rows:
            print(
                f"{num_tasks:>4} {kind:>12} {r['build']:>8.1f} "
                f"{r['first']:>13.1f} {r['first'] / plain['first']:>6.2f} "
                f"{r['second']:>9.2f} {r['rss_mb']:>11.0f}"
            )


if __name__ == "__main__":
    main()
