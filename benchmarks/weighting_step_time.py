"""Train-step time of each weighting method, relative to plain Keras.

One process, one model architecture: the MultiMNIST LeNet of the demo (two
tasks, batch 64). The baseline is a plain `keras.Model` with the same
layers, compiled with `compile(loss=..., loss_weights=...)`. Each
`MTLModel` gets one weighting method. Every model trains for a warm-up
epoch (tracing), then for `--rounds` timed epochs, interleaved between
models (in reversed order every other round) so that load on the machine
hits all alike. A step's time is the time between consecutive
`on_train_batch_end` calls; each method's time is the 10th percentile of
its steps over all rounds, which shared-machine load disturbs least (the
median is printed too).

    python benchmarks/weighting_step_time.py [--steps 20] [--rounds 25]
"""

import argparse
import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
from _timing import step_times  # noqa: E402

import keras_mtl  # noqa: E402

TASKS = ("left", "right")
METHODS = ("equal", "uncertainty", "dwa", "rlw", "gradnorm", "famo")
LOSS = "sparse_categorical_crossentropy"


def build(weighting):
    """The demo's MultiMNIST model; `weighting=None` gives plain Keras."""
    inputs = keras.Input((28, 28, 1), name="image")
    trunk = keras.Sequential(
        [
            keras.layers.Conv2D(10, 5, activation="relu"),
            keras.layers.MaxPooling2D(),
            keras.layers.Conv2D(20, 5, activation="relu"),
            keras.layers.MaxPooling2D(),
            keras.layers.Flatten(),
            keras.layers.Dense(50, activation="relu"),
        ],
        name="lenet",
    )
    tasks = [
        keras_mtl.Task(
            name,
            loss=LOSS,
            metrics=["accuracy"],
            units=10,
            activation="softmax",
            head=[50],
        )
        for name in TASKS
    ]
    model = keras_mtl.build_mtl_model(
        inputs, tasks, trunk=trunk, weighting=weighting or "equal"
    )
    if weighting is None:
        model = keras.Model(model.inputs, model.outputs, name="plain_keras")
        model.compile(
            optimizer=keras.optimizers.Adam(1e-3),
            loss={name: LOSS for name in TASKS},
            loss_weights={name: 1.0 for name in TASKS},
            metrics={name: ["accuracy"] for name in TASKS},
        )
    else:
        model.compile(optimizer=keras.optimizers.Adam(1e-3))
    return model


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=25)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--methods", default=",".join(METHODS))
    args = parser.parse_args(argv)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]

    rng = np.random.default_rng(0)
    n = args.steps * args.batch_size
    x = rng.random((n, 28, 28, 1), dtype="float32")
    y = {name: rng.integers(0, 10, n).astype("int32") for name in TASKS}

    keras.utils.set_random_seed(0)
    models = {"plain Keras": build(None)}
    for method in methods:
        models[method] = build(keras_mtl.weighting.get(method))
    for model in models.values():
        step_times(model, x, y, args.batch_size)  # warm-up: tracing
    times = {name: [] for name in models}
    for round_index in range(args.rounds):
        names = list(models)[:: -1 if round_index % 2 else 1]
        for name in names:
            times[name] += step_times(models[name], x, y, args.batch_size)

    fast = {name: np.percentile(v, 10) for name, v in times.items()}
    median = {name: np.median(v) for name, v in times.items()}
    print(
        f"Train-step time, MultiMNIST LeNet, batch {args.batch_size}, "
        f"{args.rounds} rounds x {args.steps} steps per method"
    )
    print(
        f"{'method':<12} {'p10 ms':>7} {'vs plain Keras':>15} "
        f"{'median ms':>10} {'vs plain Keras':>15}"
    )
    for name in models:
        print(
            f"{name:<12} {1000 * fast[name]:7.2f} "
            f"{fast[name] / fast['plain Keras']:15.3f} "
            f"{1000 * median[name]:10.2f} "
            f"{median[name] / median['plain Keras']:15.3f}"
        )
    return {name: fast[name] / fast["plain Keras"] for name in models}


if __name__ == "__main__":
    main()
