"""Train-step time of each sharing mode relative to hard sharing.

Every model has the same trunk width (`--trunk`, default two ReLU layers of
128 units) and three regression tasks: hard sharing runs one trunk; the
cross-stitch and soft modes one copy per task (plus mixing units or the L2
penalty); MMoE `--experts` experts of that trunk; PLE two CGC levels of
one task expert and one shared expert each. A plain `keras.Model` with the
hard-sharing architecture and Keras's own multi-output loss is timed too.
All models run in this one process, interleaved over `--repeats` rounds.
A step's time is the time between consecutive training batches; the 10th
percentile of each model's steps is reported, the statistic least disturbed
by other work on a shared machine, with the median beside it.

    python benchmarks/sharing_step_time.py [--batch-size 256] [--steps 50]
"""

import argparse
import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
from _timing import step_times  # noqa: E402

import keras_mtl  # noqa: E402

TASKS = ("a", "b", "c")


def plain_keras_model(dim, trunk):
    inputs = keras.Input((dim,))
    x = inputs
    for units in trunk:
        x = keras.layers.Dense(units, activation="relu")(x)
    outputs = {t: keras.layers.Dense(1, name=t)(x) for t in TASKS}
    model = keras.Model(inputs, outputs)
    model.compile(optimizer="adam", loss={t: "mse" for t in TASKS})
    return model


def mtl_model(sharing, dim, trunk):
    model = keras_mtl.build_mtl_model(
        keras.Input((dim,)),
        [keras_mtl.Task(t, loss="mse") for t in TASKS],
        trunk=list(trunk),
        sharing=sharing,
    )
    model.compile(optimizer="adam")
    return model


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--trunk", type=int, nargs="+", default=[128, 128])
    parser.add_argument("--experts", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    n = args.batch_size * args.steps
    x = rng.normal(size=(n, args.dim)).astype("float32")
    y = {t: rng.normal(size=(n, 1)).astype("float32") for t in TASKS}
    models = {
        "plain keras": plain_keras_model(args.dim, args.trunk),
        "hard": mtl_model("hard", args.dim, args.trunk),
        "cross_stitch": mtl_model("cross_stitch", args.dim, args.trunk),
        "soft": mtl_model("soft", args.dim, args.trunk),
        f"mmoe ({args.experts} experts)": mtl_model(
            keras_mtl.sharing.MMoESharing(num_experts=args.experts),
            args.dim,
            args.trunk,
        ),
        "ple (2 levels, 1+1 experts)": mtl_model("ple", args.dim, args.trunk),
    }
    for model in models.values():  # trace and build before timing
        model.fit(
            x[: args.batch_size],
            {t: v[: args.batch_size] for t, v in y.items()},
            verbose=0,
        )
    times = {name: [] for name in models}
    for _ in range(args.repeats):
        for name, model in models.items():
            times[name] += step_times(model, x, y, args.batch_size)
    fast = {name: float(np.percentile(v, 10)) for name, v in times.items()}
    median = {name: float(np.median(v)) for name, v in times.items()}
    print(
        f"train step, batch {args.batch_size}, trunk {args.trunk}, "
        f"{len(TASKS)} tasks; p10 and median of {args.repeats} rounds of "
        f"{args.steps} steps"
    )
    print(
        f"{'mode':30s} {'params':>8s} {'p10 ms':>8s} {'vs hard':>8s} "
        f"{'median ms':>10s} {'vs hard':>8s}"
    )
    for name, model in models.items():
        print(
            f"{name:30s} {model.count_params():8d} "
            f"{1000 * fast[name]:8.2f} {fast[name] / fast['hard']:8.2f} "
            f"{1000 * median[name]:10.2f} "
            f"{median[name] / median['hard']:8.2f}"
        )


if __name__ == "__main__":
    main()
