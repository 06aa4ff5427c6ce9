"""Train-step time with `GradientConflict` logging, against without.

One process, one model: the MultiMNIST LeNet of the demo (two tasks, batch
64), trained on random data. Rounds of one `--steps`-step epoch alternate
between `fit` with a `GradientConflict(every=--every)` on a probe batch of
the batch size and `fit` without it (which goes first alternates too), on
the same model, after one warm-up epoch of each (tracing). A step's time
is the time between consecutive `on_train_batch_end` calls; the callback
runs before the timer, so a measurement falls inside the step it follows.
With `--steps` a multiple of `--every`, the epoch-end measurement is the
last step's, and every measurement is timed. The ratio is of the mean
step times: the measurements are rare, slow steps, which a percentile or
median would leave out. The cost of one measurement is printed too.

    python benchmarks/conflict_overhead.py [--steps 100] [--every 50]
        [--rounds 10]
"""

import argparse
import os
import time

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
from _timing import StepTimer  # noqa: E402

import keras_mtl  # noqa: E402

TASKS = ("left", "right")
LOSS = "sparse_categorical_crossentropy"


def build():
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
        keras_mtl.Task(name, loss=LOSS, units=10, activation="softmax")
        for name in TASKS
    ]
    model = keras_mtl.build_mtl_model(inputs, tasks, trunk=trunk)
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    return model


def epoch_steps(model, x, y, batch_size, conflict=None):
    timer = StepTimer()
    callbacks = [timer] if conflict is None else [conflict, timer]
    model.fit(
        x,
        y,
        batch_size=batch_size,
        epochs=1,
        shuffle=False,
        verbose=0,
        callbacks=callbacks,
    )
    return timer.steps


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--every", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args(argv)

    rng = np.random.default_rng(0)
    n = args.steps * args.batch_size
    x = rng.random((n, 28, 28, 1), dtype="float32")
    y = {name: rng.integers(0, 10, n).astype("int32") for name in TASKS}
    probe = slice(0, args.batch_size)

    keras.utils.set_random_seed(0)
    model = build()
    conflict = keras_mtl.evaluation.GradientConflict(
        x[probe], {k: v[probe] for k, v in y.items()}, every=args.every
    )
    for callback in (None, conflict):  # warm-up: tracing
        epoch_steps(model, x, y, args.batch_size, callback)
    times = {"without": [], "with": []}
    for round_index in range(args.rounds):
        order = ["without", "with"][:: -1 if round_index % 2 else 1]
        for name in order:
            callback = conflict if name == "with" else None
            times[name] += epoch_steps(model, x, y, args.batch_size, callback)

    start = time.perf_counter()
    for _ in range(args.rounds):
        conflict._measure()
    measurement = (time.perf_counter() - start) / args.rounds
    mean = {name: np.mean(v) for name, v in times.items()}
    ratio = mean["with"] / mean["without"]
    print(
        f"MultiMNIST LeNet, 2 tasks, batch {args.batch_size}, "
        f"{args.rounds} rounds x {args.steps} steps, every={args.every}"
    )
    print(f"mean step without: {1000 * mean['without']:.2f} ms")
    print(f"mean step with:    {1000 * mean['with']:.2f} ms")
    print(f"step-time ratio (with / without): {ratio:.3f}")
    print(
        f"one measurement: {1000 * measurement:.2f} ms "
        f"= {measurement / mean['without']:.2f} training steps"
    )
    return ratio


if __name__ == "__main__":
    main()
