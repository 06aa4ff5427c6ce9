"""MMoE's synthetic experiment: sharing schemes as task correlation falls.

Two regression tasks whose correlation is set by construction (Ma et al.,
KDD 2018, section 4; settings of the public reproductions: d = 100, m = 5,
c = 0.3, noise sd 0.1, 10k/1k/1k train/validation/test rows):
orthonormal u1, u2;
w1 = c u1, w2 = c (p u1 + sqrt(1 - p^2) u2); x ~ N(0, I);
y_k = w_k . x + sum_i sin(a_i w_k . x + b_i) + noise.

For each correlation p, shared-bottom (hard sharing), cross-stitch and MMoE
models of about the same parameter count are trained over several seeds;
each trains with Adam for up to `--epochs` epochs, stopping early on the
validation loss (best weights kept). The script prints the mean and spread
(standard deviation over seeds) of the test loss (MSE averaged over the two
tasks; the label noise alone gives 0.01) and saves a plot. The paper's
finding: shared-bottom gets worse as p falls, MMoE much less so.

    python recipes/mmoe_synthetic.py [--epochs 30] [--seeds 0 1 2]
        [--correlations 1.0 0.9 0.5] [--output-dir /tmp/mmoe_synthetic]

Measured with the defaults (3 seeds, about 4 minutes on 2 shared CPU
cores), test MSE mean ± sd over seeds:

    model          params   p=1.0            p=0.9            p=0.5
    shared_bottom   14659   0.0220 ± 0.0087  0.0226 ± 0.0096  0.0246 ± 0.0114
    cross_stitch    14644   0.0182 ± 0.0027  0.0182 ± 0.0022  0.0193 ± 0.0039
    mmoe            14818   0.0192 ± 0.0039  0.0219 ± 0.0066  0.0187 ± 0.0021

Relative to p = 1.0 on the same seed, shared-bottom loses 9% at p = 0.5 and
MMoE nothing (0.99), the paper's direction; but the seed-to-seed spread is
larger than the effect, and with three more seeds (3, 4, 5; six in all) the
ratios at p = 0.5 are shared-bottom 0.98, cross-stitch 1.10, MMoE 1.03: the
trend does not hold here. MMoE has the lowest mean loss at every p (six
seeds: 0.0223, 0.0244, 0.0233 against shared-bottom's 0.0293, 0.0285,
0.0276). At c = 0.3 the sines are nearly linear, so two directions in the
shared layer serve both tasks and they hardly compete; `--scale 1.0` (3
seeds) was no clearer.
"""

import argparse
import os
import time

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import keras_mtl  # noqa: E402

TASKS = ("task_1", "task_2")
# Sizes chosen so that the three models have about 14.6k parameters each.
MODELS = {
    "shared_bottom": ("hard", [125]),
    "cross_stitch": ("cross_stitch", [67]),
    "mmoe": (keras_mtl.sharing.MMoESharing(num_experts=8), [16]),
}
TOWER = [8]


def make_data(correlation, n, d=100, m=5, c=0.3, noise=0.1, seed=0):
    """Inputs `(n, d)` and labels `{task: (n, 1)}` at the given correlation."""
    rng = np.random.default_rng(seed)
    u, _ = np.linalg.qr(rng.normal(size=(d, 2)))
    u1, u2 = u[:, 0], u[:, 1]
    w1 = c * u1
    w2 = c * (correlation * u1 + np.sqrt(1.0 - correlation**2) * u2)
    alpha, beta = rng.normal(size=m), rng.normal(size=m)
    x = rng.normal(size=(n, d))
    labels = {}
    for task, w in zip(TASKS, (w1, w2)):
        z = x @ w
        y = z + np.sin(np.outer(z, alpha) + beta).sum(axis=1)
        y += noise * rng.normal(size=n)
        labels[task] = y[:, None].astype("float32")
    return x.astype("float32"), labels


def build_model(kind, learning_rate=1e-2, dim=100):
    sharing, trunk = MODELS[kind]
    tasks = [keras_mtl.Task(name, loss="mse", head=TOWER) for name in TASKS]
    model = keras_mtl.build_mtl_model(
        keras.Input((dim,), name="features"),
        tasks,
        trunk=trunk,
        sharing=sharing,
        name=kind,
    )
    model.compile(optimizer=keras.optimizers.Adam(learning_rate))
    return model


def run(
    correlations=(1.0, 0.9, 0.5),
    seeds=(0, 1, 2),
    epochs=30,
    n_train=10000,
    n_test=1000,
    batch_size=256,
    learning_rate=1e-2,
    scale=0.3,
    models=tuple(MODELS),
    verbose=True,
):
    """Trains every model at every correlation and seed.

    Each run draws its own data (`seed`), with the same directions and sine
    coefficients for every correlation at a given seed; validation and test
    sets have `n_test` rows each.

    Returns:
        `{(model, correlation): [test loss per seed]}`, the test loss being
        the MSE averaged over the two tasks, and `{model: parameter count}`.
    """
    results, params = {}, {}
    for correlation in correlations:
        for seed in seeds:
            x, y = make_data(
                correlation, n_train + 2 * n_test, c=scale, seed=seed
            )
            cuts = (slice(0, n_train), slice(n_train, n_train + n_test))
            cuts += (slice(n_train + n_test, None),)
            train, val, test = (
                (x[cut], {k: v[cut] for k, v in y.items()}) for cut in cuts
            )
            for kind in models:
                keras.utils.set_random_seed(seed)
                model = build_model(kind, learning_rate=learning_rate)
                params[kind] = model.count_params()
                stop = keras.callbacks.EarlyStopping(
                    patience=3, restore_best_weights=True
                )
                history = model.fit(
                    *train,
                    validation_data=val,
                    batch_size=batch_size,
                    epochs=epochs,
                    callbacks=[stop],
                    verbose=0,
                )
                logs = model.evaluate(
                    *test, batch_size=1000, return_dict=True, verbose=0
                )
                loss = float(np.mean([logs[f"{t}_loss"] for t in TASKS]))
                results.setdefault((kind, correlation), []).append(loss)
                if verbose:
                    print(
                        f"p={correlation:.2f} seed={seed} {kind:13s} "
                        f"test mse {loss:.4f} "
                        f"({len(history.history['loss'])} epochs)",
                        flush=True,
                    )
    return results, params


def table(results, params):
    models = sorted({k for k, _ in results}, key=list(MODELS).index)
    correlations = sorted({p for _, p in results}, reverse=True)
    lines = [
        f"{'model':14s} {'params':>7s} "
        + " ".join(f"{'p=' + format(p, '.1f'):>16s}" for p in correlations)
    ]
    for kind in models:
        cells = []
        for p in correlations:
            losses = np.asarray(results[(kind, p)])
            cells.append(f"{losses.mean():.4f} ± {losses.std():.4f}")
        lines.append(
            f"{kind:14s} {params[kind]:7d} "
            + " ".join(f"{c:>16s}" for c in cells)
        )
    top = correlations[0]
    lines.append(f"\ntest loss relative to p={top:.1f}, same seed (mean):")
    for kind in models:
        base = np.asarray(results[(kind, top)])
        cells = [
            f"{np.mean(np.asarray(results[(kind, p)]) / base):.3f}"
            for p in correlations
        ]
        lines.append(
            f"{kind:14s} {'':7s} " + " ".join(f"{c:>16s}" for c in cells)
        )
    return "\n".join(lines)


def plot(results, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.5))
    for kind in MODELS:
        points = sorted((p, v) for (k, p), v in results.items() if k == kind)
        if not points:
            continue
        ps = [p for p, _ in points]
        ax.errorbar(
            ps,
            [np.mean(v) for _, v in points],
            yerr=[np.std(v) for _, v in points],
            marker="o",
            capsize=3,
            label=kind,
        )
    ax.set_xlabel("task correlation p")
    ax.set_ylabel("test MSE (mean of 2 tasks)")
    ax.invert_xaxis()
    ax.legend()
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
        default=30,
        help="most epochs per model; training stops early on validation",
    )
    parser.add_argument(
        "--learning-rate", type=float, default=1e-2, help="Adam's step size"
    )
    parser.add_argument(
        "--seeds",
        type=int,
        nargs="+",
        default=[0, 1, 2],
        help="one run per seed: its data and initial weights",
    )
    parser.add_argument(
        "--correlations",
        type=float,
        nargs="+",
        default=[1.0, 0.9, 0.5],
        help="task correlations p to train at, each in [0, 1]",
    )
    parser.add_argument(
        "--n-train", type=int, default=10000, help="training rows per run"
    )
    parser.add_argument(
        "--output-dir",
        default="/tmp/mmoe_synthetic",
        help="where the plot is saved",
    )
    parser.add_argument(
        "--n-test",
        type=int,
        default=1000,
        help="rows of the validation set and, as many, of the test set",
    )
    parser.add_argument(
        "--scale",
        type=float,
        default=0.3,
        help="c, the norm of w_k: larger makes the sines less linear",
    )
    return parser


def main(argv=None):
    """Runs the experiment; returns `(results, params)` as `run` does."""
    args = build_parser().parse_args(argv)
    os.makedirs(args.output_dir, exist_ok=True)
    start = time.time()
    results, params = run(
        correlations=args.correlations,
        seeds=args.seeds,
        epochs=args.epochs,
        n_train=args.n_train,
        n_test=args.n_test,
        scale=args.scale,
        learning_rate=args.learning_rate,
    )
    print()
    print(table(results, params))
    path = os.path.join(args.output_dir, "mmoe_synthetic.png")
    plot(results, path)
    print(f"\nplot: {path}; {time.time() - start:.0f} s")
    return results, params


if __name__ == "__main__":
    main()
