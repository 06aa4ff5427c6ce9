"""Train-step time and peak memory of the gradient-level methods.

For T = 2, 10 and 40 regression tasks on one model (a shared trunk of two
ReLU layers, one linear head per task), prints each method's train-step
time and peak step memory relative to plain Keras equal weighting
(`keras.Model.compile(loss={task: "mse"})`) on the same architecture, in
`param` and `rep` mode, all in one process.

Peak memory is the TensorFlow CPU allocator's peak during the timed steps
above what was allocated before them (`TF_CPU_ALLOCATOR_USE_BFC=true`, set
here before TensorFlow starts).

A step's time is the time between consecutive training batches; each
model's is the 10th percentile (least disturbed by other work on a shared
machine) and the median over `--repeats` rounds of one `--steps`-step epoch
per model, the models interleaved (in reversed order every other round) so
that load on the machine hits all alike.
`equal` is keras-mtl's own loss-level path.

Run: `PYTHONPATH=. python benchmarks/gradient_methods.py [--tasks 2 10 40]
[--steps 20] [--repeats 5]`
"""

import argparse
import os

os.environ["TF_CPU_ALLOCATOR_USE_BFC"] = "true"
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from _timing import step_times  # noqa: E402

import keras_mtl  # noqa: E402

# Krum is left out: it needs `n_byzantine` and at least 3 tasks.
METHODS = ["mgda", "pcgrad", "cagrad", "imtl_g", "nash_mtl", "aligned_mtl"]
METHODS += ["upgrad", "dual_proj", "con_fig"]
INPUT_DIM, WIDTH, BATCH = 64, 256, 128


def _data(num_tasks, steps):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(BATCH * steps, INPUT_DIM)).astype("float32")
    mixing = rng.normal(size=(INPUT_DIM, num_tasks)).astype("float32")
    targets = np.tanh(x @ mixing)
    return x, {f"t{i}": targets[:, i : i + 1] for i in range(num_tasks)}


def _plain_keras(num_tasks):
    inputs = keras.Input((INPUT_DIM,))
    hidden = inputs
    for i in range(2):
        hidden = keras.layers.Dense(WIDTH, activation="relu")(hidden)
    outputs = {
        f"t{i}": keras.layers.Dense(1, name=f"t{i}")(hidden)
        for i in range(num_tasks)
    }
    model = keras.Model(inputs, outputs)
    model.compile(optimizer="adam", loss={name: "mse" for name in outputs})
    return model


def _mtl(num_tasks, weighting, package=keras_mtl):
    """The same model from keras-mtl (or from `package`, a copy of it)."""
    tasks = [package.Task(f"t{i}", loss="mse") for i in range(num_tasks)]
    model = package.build_mtl_model(
        keras.Input((INPUT_DIM,)),
        tasks,
        trunk=[WIDTH, WIDTH],
        weighting=weighting,
    )
    model.compile(optimizer="adam")
    return model


def _timed_epoch(model, x, y):
    """Step times (seconds) of one epoch and its peak memory (bytes) above
    what was allocated before it."""
    before = tf.config.experimental.get_memory_info("CPU:0")["current"]
    tf.config.experimental.reset_memory_stats("CPU:0")
    times = step_times(model, x, y, BATCH)
    peak = tf.config.experimental.get_memory_info("CPU:0")["peak"]
    return times, max(peak - before, 1)


def _models(num_tasks):
    models = {("keras", "-"): _plain_keras(num_tasks)}
    models[("equal", "-")] = _mtl(num_tasks, "equal")
    for name in METHODS:
        for mode in ("param", "rep"):
            method = type(keras_mtl.weighting.get(name))(mode=mode)
            models[(name, mode)] = _mtl(num_tasks, method)
    return models


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, nargs="+", default=[2, 10, 40])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    print(
        f"trunk {INPUT_DIM}-{WIDTH}-{WIDTH}, batch {BATCH}, Adam, "
        f"{args.repeats} interleaved rounds x {args.steps} steps; step time "
        "(p10, median) and peak memory as ratios to plain Keras equal "
        "weighting"
    )
    print(
        f"{'T':>3} {'method':<12} {'mode':<6} {'p10':>7} {'median':>7} "
        f"{'memory':>7}"
    )
    for num_tasks in args.tasks:
        keras.backend.clear_session()
        keras.utils.set_random_seed(0)
        x, y = _data(num_tasks, args.steps)
        models = _models(num_tasks)
        for model in models.values():  # warm-up: tracing
            step_times(
                model,
                x[: 2 * BATCH],
                {k: v[: 2 * BATCH] for k, v in y.items()},
                BATCH,
            )
        times = {key: [] for key in models}
        memory = {key: 0 for key in models}
        for round_index in range(args.repeats):
            keys = list(models)[:: -1 if round_index % 2 else 1]
            for key in keys:
                steps, peak = _timed_epoch(models[key], x, y)
                times[key] += steps
                memory[key] = max(memory[key], peak)
        fast = {key: np.percentile(v, 10) for key, v in times.items()}
        median = {key: np.median(v) for key, v in times.items()}
        base = ("keras", "-")
        print(
            f"{num_tasks:>3} {'keras':<12} {'-':<6} "
            f"{fast[base] * 1e3:>5.1f}ms {median[base] * 1e3:>5.1f}ms "
            f"{memory[base] / 2**20:>5.1f}MB"
        )
        for key in list(models)[1:]:
            print(
                f"{num_tasks:>3} {key[0]:<12} {key[1]:<6} "
                f"{fast[key] / fast[base]:>6.2f}x "
                f"{median[key] / median[base]:>6.2f}x "
                f"{memory[key] / memory[base]:>6.2f}x",
                flush=True,
            )


if __name__ == "__main__":
    main()
