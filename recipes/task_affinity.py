"""Task affinity (TAG) on MMoE's synthetic tasks: which tasks to train together.

Four regression tasks in two pairs, from the generator of
`recipes/mmoe_synthetic.py` (Ma et al., KDD 2018) with c = 1.0: tasks a
and b are one pair, at correlation `--correlation`; c and d another, drawn
by an independent generator (its own directions and sine coefficients).
The input is the two draws' 50 features side by side: every task sees all
100, and one pair's directions are orthogonal to the other's, so across
pairs the correlation is 0.

1. One hard-sharing model trains on all four tasks. During its first
   `--affinity-steps` training steps, every `--affinity-every` steps,
   `keras_mtl.evaluation.task_affinity` takes its lookahead steps on a
   fixed probe of 1,024 training rows (one batch): TAG measures during
   training, on the training batch at every step; a fixed, larger probe
   is less noisy and still cheap. The mean of the measurements is the 4x4
   matrix Z; `group_tasks(Z, num_groups=2)` chooses two groups (expected:
   (a, b) and (c, d)).
2. One model per chosen group and, as a control, one per mismatched pair
   ((a, c) and (b, d)) train with the same epochs and batch size; each task
   is read from its group's model. The four-task model of step 1 (trained
   on for all `--epochs`), these and one single-task model per task are
   scored on the test rows: MSE and MAE per task, and Delta_m% against the
   single-task models. Nothing is selected on the test rows (no early
   stopping).
3. Two tasks at correlations 0.0, 0.5 and 1.0, three two-task models at
   each (seeds `--seed` to `--seed + 2`, one with `--quick`), measured the
   same way: the mean off-diagonal affinity should rise with p.

Affinities are printed x 1e3: a step of Adam's learning rate (0.01) moves
a loss by a fraction of a percent. The heatmap of Z is saved under
`--output-dir`.

    python recipes/task_affinity.py [--epochs 20] [--seed 0]
        [--output-dir /tmp/task_affinity] [--quick]

The full run takes about 70 s on 2 CPU cores; its numbers, for seeds 0-2,
are in docs/evaluation_and_tuning.md ("Measured: task affinity").
"""

import argparse
import math
import os
import sys
import time

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import keras  # noqa: E402
import numpy as np  # noqa: E402
from mmoe_synthetic import make_data  # noqa: E402
from multi_mnist import format_table  # noqa: E402

import keras_mtl  # noqa: E402

TASKS = ("a", "b", "c", "d")
MISMATCHED = (("a", "c"), ("b", "d"))
SWEEP = (0.0, 0.5, 1.0)
TRUNK = [32]
TOWER = [8]
BATCH_SIZE = 256
PROBE_ROWS = 1024
# c of the generator: at mmoe_synthetic's 0.3 the sines are nearly linear,
# every model fits its tasks within an epoch and the affinities are noise.
SCALE = 1.0
SHOWN_SCALE = 1e3


def four_tasks(correlation, n, dim=100, seed=0):
    """Inputs `(n, dim)` and labels `{a, b, c, d}`: two correlated pairs.

    Each pair is one `make_data` draw on `dim // 2` features; the inputs
    are the two draws side by side.
    """
    x_ab, y_ab = make_data(correlation, n, d=dim // 2, c=SCALE, seed=seed)
    x_cd, y_cd = make_data(
        correlation, n, d=dim - dim // 2, c=SCALE, seed=seed + 10_000
    )
    labels = list(y_ab.values()) + list(y_cd.values())
    return np.concatenate([x_ab, x_cd], axis=1), dict(zip(TASKS, labels))


def split(x, y, n_train):
    """`(train, test)`: the first `n_train` rows, and the rest."""
    train = (x[:n_train], {t: v[:n_train] for t, v in y.items()})
    test = (x[n_train:], {t: v[n_train:] for t, v in y.items()})
    return train, test


def build_model(tasks, learning_rate=1e-2, dim=100):
    """A hard-sharing regression model of the named tasks, with Adam."""
    model = keras_mtl.build_mtl_model(
        keras.Input((dim,), name="features"),
        [
            keras_mtl.Task(name, loss="mse", metrics=["mse", "mae"], head=TOWER)
            for name in tasks
        ],
        trunk=TRUNK,
        sharing="hard",
        name="tasks_" + "".join(tasks),
    )
    model.compile(optimizer=keras.optimizers.Adam(learning_rate))
    return model


class AffinityDuringTraining(keras.callbacks.Callback):
    """`task_affinity` on the first `PROBE_ROWS` training rows, every
    `every` training steps up to step `until`; `affinities` keeps each
    `(T, T)` measurement."""

    def __init__(self, x, y, every, until):
        super().__init__()
        self.x = x[:PROBE_ROWS]
        self.y = {task: labels[:PROBE_ROWS] for task, labels in y.items()}
        self.every = every
        self.until = until
        self.affinities = []
        self.steps_seen = 0

    def on_train_batch_end(self, batch, logs=None):
        self.steps_seen += 1
        step = self.steps_seen
        if step <= self.until and step % self.every == 0:
            self.affinities.append(
                keras_mtl.evaluation.task_affinity(
                    self.model, self.x, self.y, batch_size=PROBE_ROWS, steps=1
                )
            )


def train(tasks, train_data, epochs, seed, callbacks=()):
    """A fresh model of `tasks`, seeded, fit on `train_data`."""
    keras.utils.set_random_seed(seed)
    x, y = train_data
    model = build_model(tasks, dim=x.shape[1])
    model.fit(
        x,
        {t: y[t] for t in tasks},
        epochs=epochs,
        batch_size=BATCH_SIZE,
        callbacks=list(callbacks),
        verbose=0,
    )
    return model


def train_with_affinity(tasks, train_data, epochs, every, until, seed):
    """Trains on `tasks`; returns the model and the mean affinity `Z`."""
    probe = AffinityDuringTraining(*train_data, every, until)
    model = train(tasks, train_data, epochs, seed, [probe])
    if not probe.affinities:
        raise ValueError(
            f"No affinity measured: {epochs} epochs of "
            f"{math.ceil(len(train_data[0]) / BATCH_SIZE)} steps, one "
            f"measurement every {every} steps up to step {until}."
        )
    return model, np.mean(probe.affinities, axis=0)


def grouped_results(groups, train_data, test, epochs, seed, serving=None):
    """One model per group; each task's test results from the model of its
    serving group (`group_tasks`'s `"serving"`; by default the one group
    that holds it)."""
    if serving is None:
        serving = {task: tuple(g) for g in groups for task in g}
    x_test, y_test = test
    by_group = {}
    for group in groups:
        model = train(group, train_data, epochs, seed)
        by_group[tuple(group)] = keras_mtl.evaluation.evaluate_tasks(
            model, x_test, {t: y_test[t] for t in group}
        )
    return {task: by_group[group][task] for task, group in serving.items()}


def affinity_sweep(correlations, seeds, n_train, every, until):
    """`{p: [off-diagonal affinity per seed]}` of two-task models.

    Each model trains only as long as its affinity is measured.
    """
    steps_per_epoch = math.ceil(n_train / BATCH_SIZE)
    epochs = math.ceil(until / steps_per_epoch)
    sweep = {}
    for correlation in correlations:
        for seed in seeds:
            x, y = make_data(correlation, n_train, c=SCALE, seed=seed)
            _, affinity = train_with_affinity(
                list(y), (x, y), epochs, every, until, seed
            )
            sweep.setdefault(correlation, []).append(
                float(affinity[0, 1] + affinity[1, 0]) / 2
            )
    return sweep


def save_heatmap(affinity, path):
    """Saves Z x 1e3 as a PNG; the colours span the off-diagonal entries
    (the self-affinities, several times larger, show as the darkest)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = SHOWN_SCALE * np.asarray(affinity)
    off_diagonal = shown[~np.eye(len(shown), dtype=bool)]
    limit = float(np.abs(off_diagonal).max())
    fig = keras_mtl.plotting.heatmap(
        shown,
        list(TASKS),
        title="affinity x 1e3: relative drop of the column\n"
        "task's loss after a step on the row task",
        vmin=-limit,
        vmax=limit,
    )
    fig.axes[0].set_ylabel("step on task")
    fig.axes[0].set_xlabel("loss of task")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def build_parser():
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--epochs",
        type=int,
        default=None,
        help="epochs of the four-task, group and single-task models; "
        "None: 20, or 5 with --quick",
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=0,
        help="seed of the data, the initial weights and the batch order",
    )
    parser.add_argument(
        "--correlation",
        type=float,
        default=0.9,
        help="correlation p within each pair, (a, b) and (c, d), in [0, 1]",
    )
    parser.add_argument(
        "--affinity-steps",
        type=int,
        default=80,
        help="affinity is measured during this many first training steps "
        "(two epochs of the full data)",
    )
    parser.add_argument(
        "--affinity-every",
        type=int,
        default=2,
        help="training steps between two affinity measurements",
    )
    parser.add_argument(
        "--output-dir",
        default="/tmp/task_affinity",
        help="where the affinity heatmap is saved",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="4,000 training rows, 5 epochs, one sweep model per p: a "
        "check, not the numbers",
    )
    return parser


def print_affinity(affinity):
    rows = [
        [task] + [f"{SHOWN_SCALE * v:+.3f}" for v in row]
        for task, row in zip(TASKS, affinity)
    ]
    print("\nAffinity Z[i, j] x 1e3, step on task i (row), loss of task j:")
    print(format_table(rows, ["step on"] + list(TASKS)))


def main(argv=None):
    """Runs the recipe; returns a dict of the numbers it printed."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not 0.0 <= args.correlation <= 1.0:
        parser.error(
            f"--correlation must be in [0, 1]. Received: {args.correlation}"
        )
    for name in ("epochs", "affinity_steps", "affinity_every"):
        value = getattr(args, name)
        if value is not None and value < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1.")
    epochs = args.epochs or (5 if args.quick else 20)
    n_train, n_test = (4000, 1000) if args.quick else (10000, 2000)
    seeds = [args.seed] if args.quick else [args.seed + k for k in range(3)]
    evaluation = keras_mtl.evaluation
    os.makedirs(args.output_dir, exist_ok=True)
    start = time.time()

    x, y = four_tasks(args.correlation, n_train + n_test, seed=args.seed)
    train_data, test = split(x, y, n_train)
    print(
        f"Four tasks, pairs (a, b) and (c, d) at p={args.correlation}: "
        f"{n_train} train / {n_test} test rows, {epochs} epochs; affinity "
        f"every {args.affinity_every} of the first {args.affinity_steps} "
        f"steps, on {PROBE_ROWS} training rows"
    )
    model, affinity = train_with_affinity(
        TASKS,
        train_data,
        epochs,
        args.affinity_every,
        args.affinity_steps,
        args.seed,
    )
    print_affinity(affinity)
    grouping = evaluation.group_tasks(
        affinity, num_groups=2, task_names=list(TASKS)
    )
    print(f"group_tasks(Z, num_groups=2): {grouping['groups']}")

    baselines = evaluation.train_single_task_baselines(
        model.tasks,
        *train_data,
        build_fn=lambda tasks: build_model([t.name for t in tasks]),
        validation_data=test,
        epochs=epochs,
        batch_size=BATCH_SIZE,
    )
    results = {"all four": evaluation.evaluate_tasks(model, *test)}
    results["TAG groups"] = grouped_results(
        grouping["groups"],
        train_data,
        test,
        epochs,
        args.seed,
        serving=grouping["serving"],
    )
    results["mismatched"] = grouped_results(
        MISMATCHED, train_data, test, epochs, args.seed
    )
    print(
        f"\nTest rows; every model trained {epochs} epochs. TAG groups: "
        f"{grouping['groups']}; mismatched: {list(MISMATCHED)}"
    )
    print(evaluation.results_table(results, baselines))
    deltas = {
        label: evaluation.delta_m(r, baselines) for label, r in results.items()
    }

    sweep = affinity_sweep(
        SWEEP, seeds, n_train, args.affinity_every, args.affinity_steps
    )
    print(
        "\nTwo tasks at correlation p: off-diagonal affinity x 1e3, "
        "(Z[1, 2] + Z[2, 1]) / 2, per seed and mean"
    )
    for p, values in sweep.items():
        shown = " ".join(f"{SHOWN_SCALE * v:+.3f}" for v in values)
        print(f"p={p:.1f}: {shown}  mean {SHOWN_SCALE * np.mean(values):+.3f}")

    path = os.path.join(args.output_dir, "task_affinity.png")
    save_heatmap(affinity, path)
    print(f"\nheatmap: {path}; {time.time() - start:.0f} s")
    return {
        "affinity": affinity,
        "grouping": grouping,
        "results": results,
        "baselines": baselines,
        "delta_m": deltas,
        "sweep": {p: float(np.mean(v)) for p, v in sweep.items()},
        "heatmap": path,
    }


if __name__ == "__main__":
    main()
