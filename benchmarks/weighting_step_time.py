"""Train-step time of each weighting method, relative to plain Keras.

One process, one model architecture: the MultiMNIST LeNet of the demo (two
tasks, batch 64). The baseline is a plain `keras.Model` with the same
layers, compiled with `compile(loss=..., loss_weights=...)`. Each
`MTLModel` gets one weighting method. Every model trains for a warm-up
epoch (tracing), then for `--rounds` timed epochs, interleaved between
models so that load on the machine hits all alike; a round's step time is
the median time between consecutive `on_train_batch_end` calls, and each
method's time is its best round (the one least disturbed by other load).

    python benchmarks/weighting_step_time.py [--steps 100] [--rounds 5]
"""

import argparse
import os
import time

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import keras_mtl  # noqa: E402

TASKS = ("left", "right")
METHODS = ("equal", "uncertainty", "dwa", "rlw", "gradnorm", "famo")
LOSS = "sparse_categorical_crossentropy"


class StepTimer(keras.callbacks.Callback):
    """Median seconds between consecutive training batches of one epoch."""

    def on_epoch_begin(self, epoch, logs=None):
        self.times = [time.perf_counter()]

    def on_train_batch_end(self, batch, logs=None):
        self.times.append(time.perf_counter())

    @property
    def median(self):
        return float(np.median(np.diff(self.times[1:])))


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
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=5)
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
    timer = StepTimer()
    fit = dict(batch_size=args.batch_size, shuffle=False, verbose=0)
    for model in models.values():
        model.fit(x, y, epochs=1, **fit)  # warm-up: tracing
    times = {name: [] for name in models}
    for _ in range(args.rounds):
        for name, model in models.items():
            model.fit(x, y, epochs=1, callbacks=[timer], **fit)
            times[name].append(timer.median)

    best = {name: min(values) for name, values in times.items()}
    baseline = best["plain Keras"]
    print(
        f"Train-step time, MultiMNIST LeNet, batch {args.batch_size}, "
        f"best of {args.rounds} rounds x {args.steps} steps"
    )
    print(f"{'method':<12} {'ms/step':>8} {'vs plain Keras':>15}")
    for name, step in best.items():
        print(f"{name:<12} {1000 * step:8.2f} {step / baseline:15.3f}")
    return {name: step / baseline for name, step in best.items()}


if __name__ == "__main__":
    main()
