"""Train-step time from a `keras_mtl.data.mix` pipeline vs in-memory batches.

One process, one model: the MultiMNIST LeNet of the demo (two tasks,
batch 64), trained on two per-task sources of very different sizes (the
left digit labelled on 4096 images, the right one on 512 others), mixed
with square-root rates. The baseline trains the same model on batches
taken from the mixture beforehand and held in memory as one
`tf.data.Dataset.from_tensor_slices` of whole batches: the difference is
the cost of drawing, filling and batching on the fly. A second model on the
in-memory batches ("control") shows how much two identical runs differ on
the machine at hand.

Each pipeline trains a warm-up epoch (tracing), then `--rounds` timed
epochs of `--steps` steps, interleaved (in reversed order every other
round) so that load on the machine hits both alike. A step's time is the
time between consecutive `on_train_batch_end` calls; the script prints the
median over all steps, the median of the per-epoch medians and the 10th
percentile (which load on a shared machine disturbs least), and the ratio
mixture / in-memory for each. It also prints how fast the mixture
alone yields batches, without a model.

    python benchmarks/data_sampling.py [--steps 40] [--rounds 10]
        [--layout mixed|homogeneous]
"""

import argparse
import os
import sys
import time

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from _timing import StepTimer  # noqa: E402

sys.path.insert(
    0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "recipes")
)
import multi_mnist  # noqa: E402

import keras_mtl  # noqa: E402

TASKS = ("left", "right")


def build():
    """The demo's MultiMNIST LeNet, one softmax head per digit, each task
    marking a missing label with -1 (what the mixture fills in)."""
    return multi_mnist.build_model(missing_label=-1)


def make_mixture(batch_size, layout, seed=0):
    rng = np.random.default_rng(seed)
    sources = []
    for name, size in (("left", 4096), ("right", 512)):
        x = rng.random((size, 28, 28, 1), dtype="float32")
        y = rng.integers(0, 10, size).astype("int32")
        dataset = tf.data.Dataset.from_tensor_slices((x, y))
        sources.append(keras_mtl.data.Source(dataset, tasks=name))
    return keras_mtl.data.mix(
        sources,
        build().tasks,
        batch_size,
        rates="sqrt",
        layout=layout,
        seed=seed,
    )


def in_memory(mixture, num_batches):
    """The mixture's first `num_batches` batches, as one in-memory dataset."""
    batches = list(mixture.dataset.take(num_batches).as_numpy_iterator())
    x = np.stack([b[0] for b in batches])
    y = {name: np.stack([b[1][name] for b in batches]) for name in TASKS}
    return tf.data.Dataset.from_tensor_slices((x, y))


def epoch_steps(model, dataset, steps):
    timer = StepTimer()
    model.fit(
        dataset, steps_per_epoch=steps, epochs=1, verbose=0, callbacks=[timer]
    )
    return timer.steps


def pipeline_rate(mixture, num_batches):
    iterator = iter(mixture.dataset)
    next(iterator)
    start = time.perf_counter()
    for _ in range(num_batches):
        next(iterator)
    return num_batches / (time.perf_counter() - start)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--layout", default="mixed")
    args = parser.parse_args(argv)

    keras.utils.set_random_seed(0)
    mixture = make_mixture(args.batch_size, args.layout)
    # The in-memory dataset holds the batches of the mixture's first pass;
    # later passes draw anew (same shapes, same mix).
    memory = in_memory(mixture, args.steps).repeat().prefetch(2)
    # A second model on the in-memory batches measures the noise floor.
    datasets = {
        "mixture": mixture.dataset,
        "in-memory": memory,
        "control": memory,
    }
    models = {name: build() for name in datasets}
    for name in datasets:
        epoch_steps(models[name], datasets[name], args.steps)  # warm-up
    steps = {name: [] for name in datasets}
    for round_index in range(args.rounds):
        names = list(datasets)[:: -1 if round_index % 2 else 1]
        for name in names:
            steps[name].append(
                epoch_steps(models[name], datasets[name], args.steps)
            )

    median = {name: np.median(np.concatenate(v)) for name, v in steps.items()}
    fast = {
        name: np.percentile(np.concatenate(v), 10) for name, v in steps.items()
    }
    per_epoch = {
        name: np.median([np.median(epoch) for epoch in v])
        for name, v in steps.items()
    }
    print(
        f"Train-step time, MultiMNIST LeNet, batch {args.batch_size}, "
        f"{args.layout} layout, sources of 4096 and 512 examples, "
        f"{args.rounds} rounds x {args.steps} steps"
    )
    print(
        f"{'data':<10} {'median ms':>10} {'epoch-median ms':>16} {'p10 ms':>7}"
    )
    for name in datasets:
        print(
            f"{name:<10} {1000 * median[name]:10.2f} "
            f"{1000 * per_epoch[name]:16.2f} {1000 * fast[name]:7.2f}"
        )
    ratio = median["mixture"] / median["in-memory"]
    epoch_ratio = per_epoch["mixture"] / per_epoch["in-memory"]
    fast_ratio = fast["mixture"] / fast["in-memory"]
    print(
        f"ratio mixture / in-memory: {ratio:.3f} (median step), "
        f"{epoch_ratio:.3f} (median of epoch medians), {fast_ratio:.3f} (p10)"
    )
    print(
        "ratio control / in-memory (noise floor): "
        f"{median['control'] / median['in-memory']:.3f} (median step), "
        f"{per_epoch['control'] / per_epoch['in-memory']:.3f} (median of "
        f"epoch medians), {fast['control'] / fast['in-memory']:.3f} (p10)"
    )
    rate = pipeline_rate(mixture, 200)
    print(f"mixture alone: {rate:.0f} batches/s ({1000 / rate:.2f} ms/batch)")
    return {"ratio": ratio, "epoch_ratio": epoch_ratio, "p10": fast_ratio}


if __name__ == "__main__":
    main()
