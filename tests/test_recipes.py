import argparse
import importlib.util
import pathlib

import numpy as np
import pytest

RECIPES = pathlib.Path(__file__).resolve().parent.parent / "recipes"
RECIPE_NAMES = sorted(path.stem for path in RECIPES.glob("[!_]*.py"))


def load_recipe(name):
    spec = importlib.util.spec_from_file_location(name, RECIPES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def option_help(parser, action):
    """The help block `--help` prints for one option."""
    formatter = parser.formatter_class(prog=parser.prog)
    formatter.add_argument(action)
    return formatter.format_help()


@pytest.mark.parametrize("name", RECIPE_NAMES)
def test_recipe_help_explains_every_option(name, capsys):
    recipe = load_recipe(name)
    parser = recipe.build_parser()
    assert parser.formatter_class is argparse.ArgumentDefaultsHelpFormatter
    assert parser.description == recipe.__doc__.splitlines()[0]
    assert parser.description.strip()
    # `main` parses with this parser: `--help` prints its text and exits.
    with pytest.raises(SystemExit) as exit_info:
        recipe.main(["--help"])
    assert exit_info.value.code == 0
    shown = capsys.readouterr().out
    assert shown == parser.format_help()
    assert parser.description in " ".join(shown.split())
    options = [a for a in parser._actions if a.dest != "help"]
    assert options, name
    for action in options:
        assert action.help and action.help.strip(), action.option_strings
        block = option_help(parser, action)
        assert block.lstrip().startswith(action.option_strings[0]), block
        # argparse may wrap a long default mid-word: compare without spaces.
        default = "".join(f"(default: {action.default})".split())
        assert default in "".join(block.split()), block


def multi_mnist_history(epochs, tasks=("left", "right")):
    """A `History.history` dict of the multi_mnist recipe's keys."""
    rng = np.random.default_rng(0)
    history = {"loss": list(rng.random(epochs))}
    for prefix in ("", "val_"):
        for task in tasks:
            for metric in ("loss", "accuracy"):
                key = f"{prefix}{task}_{metric}"
                history[key] = list(rng.random(epochs))
    return history


def visible_xticks(ax):
    low, high = ax.get_xlim()
    return [tick for tick in ax.get_xticks() if low <= tick <= high]


def test_multi_mnist_curves_colour_per_task_validation_dashed():
    import matplotlib
    import matplotlib.colors
    import matplotlib.pyplot as plt

    matplotlib.use("Agg")
    demo = load_recipe("multi_mnist")
    history = multi_mnist_history(4)
    fig = demo.history_figure(history)
    try:
        assert [ax.get_title() for ax in fig.axes] == ["loss", "accuracy"]
        colours = {}
        for ax, metric in zip(fig.axes, ("loss", "accuracy")):
            lines = {line.get_label(): line for line in ax.get_lines()}
            assert sorted(lines) == [
                "left (train)",
                "left (validation)",
                "right (train)",
                "right (validation)",
            ]
            legend = [text.get_text() for text in ax.get_legend().get_texts()]
            assert sorted(legend) == sorted(lines)
            for task in ("left", "right"):
                train = lines[f"{task} (train)"]
                val = lines[f"{task} (validation)"]
                colour = matplotlib.colors.to_rgba(train.get_color())
                assert matplotlib.colors.to_rgba(val.get_color()) == colour
                colours.setdefault(task, colour)
                assert colours[task] == colour  # the same in both panels
                assert train.get_linestyle() == "-"
                assert val.get_linestyle() == "--"
                for line, prefix in ((train, ""), (val, "val_")):
                    np.testing.assert_array_equal(
                        line.get_xdata(), [1, 2, 3, 4]
                    )
                    np.testing.assert_allclose(
                        line.get_ydata(), history[f"{prefix}{task}_{metric}"]
                    )
            assert ax.get_xlabel() == "epoch"
            assert visible_xticks(ax) == [1, 2, 3, 4]
        assert colours["left"] != colours["right"]
    finally:
        plt.close(fig)


@pytest.mark.parametrize("epochs", [1, 2, 8, 13, 100])
def test_multi_mnist_curves_tick_whole_epochs(epochs):
    import matplotlib.pyplot as plt

    demo = load_recipe("multi_mnist")
    fig = demo.history_figure(multi_mnist_history(epochs))
    try:
        for ax in fig.axes:
            ticks = visible_xticks(ax)
            assert ticks and all(float(t).is_integer() for t in ticks), ticks
            assert 1 <= min(ticks) and max(ticks) <= epochs, ticks
            if epochs <= 8:
                assert ticks == list(range(1, epochs + 1))
    finally:
        plt.close(fig)


def test_multi_mnist_validation_is_split_off_the_training_pairs():
    demo = load_recipe("multi_mnist")
    x = np.arange(20).reshape(20, 1)
    y = {"left": np.arange(20) + 100, "right": np.arange(20) + 200}
    (x_train, y_train), (x_val, y_val) = demo.split_validation(x, y, 0.1)
    np.testing.assert_array_equal(x_train[:, 0], np.arange(18))
    np.testing.assert_array_equal(x_val[:, 0], [18, 19])
    for task, offset in (("left", 100), ("right", 200)):
        np.testing.assert_array_equal(y_train[task], np.arange(18) + offset)
        np.testing.assert_array_equal(y_val[task], np.array([18, 19]) + offset)
    for fraction in (0.0, 0.01, 1.0):
        with pytest.raises(ValueError, match="leaves no"):
            demo.split_validation(x, y, fraction)


def test_multi_mnist_demo_small(tmp_path, capsys):
    demo = load_recipe("multi_mnist")
    model, logs = demo.main(
        [
            "--epochs",
            "2",
            "--num-train",
            "2000",
            "--num-test",
            "400",
            "--output-dir",
            str(tmp_path),
            "--verbose",
            "0",
        ]
    )
    out = capsys.readouterr().out
    assert "left" in out and "right" in out and "test accuracy %" in out
    # 10% of the training pairs validate; the test pairs are kept apart.
    assert "(1800 train / 200 validation / 400 test pairs" in out
    # The single-task baselines and the Delta_m table follow.
    table = out[out.index("Multi-task vs single-task") :].splitlines()
    rows = {line.split()[0]: line.split() for line in table if line.strip()}
    changes = []
    for task in ("left", "right"):
        _, metric, _, single, multi, change = rows[task]
        single, multi = float(single), float(multi)
        assert metric == "accuracy"
        assert multi == pytest.approx(logs[f"{task}_accuracy"], abs=6e-5)
        # Rounded to 4 decimals, then the relative change in %.
        expected = 100 * (multi - single) / single
        assert float(change) == pytest.approx(expected, abs=0.03), rows[task]
        changes.append(float(change))
        # The baseline, same trunk, data and budget: measured 0.5475 (left)
        # and 0.44 (right), at least 0.44 over seeds 0-2.
        assert single > 0.35, rows[task]
    delta_m = float(rows["Delta_m%"][-1])
    assert delta_m == pytest.approx(np.mean(changes), abs=0.015)
    # Measured +4.09; -8.52 and -27.79 with seeds 1 and 2.
    assert -35 < delta_m < 25, delta_m
    assert "Task relatedness" in out
    assert (tmp_path / "multi_mnist.keras").exists()
    assert (tmp_path / "multi_mnist_curves.png").stat().st_size > 10000
    # Ten classes: chance is 10%. Measured 0.555 (left) and 0.47 (right),
    # at least 0.3725 over seeds 0-2.
    assert logs["left_accuracy"] > 0.35 and logs["right_accuracy"] > 0.35


@pytest.mark.slow
def test_multi_mnist_demo_full(tmp_path):
    demo = load_recipe("multi_mnist")
    _, logs = demo.main(["--output-dir", str(tmp_path), "--verbose", "0"])
    assert logs["left_accuracy"] > 0.9 and logs["right_accuracy"] > 0.88


@pytest.mark.slow
def test_tune_task_weights_small(tmp_path, capsys):
    recipe = load_recipe("tune_task_weights")
    results, baselines, trials = recipe.main(
        [
            "--tuner",
            "random",
            "--max-trials",
            "2",
            "--epochs",
            "1",
            "--num-train",
            "1000",
            "--num-test",
            "200",
            "--batch-size",
            "16",
            "--directory",
            str(tmp_path),
        ]
    )
    out = capsys.readouterr().out
    assert "2 trials (random)" in out and "Delta_m%" in out
    assert len(trials) == 2 and trials[0].score >= trials[1].score
    # Each trial's line shows its score.
    for trial in trials:
        assert f"Delta_m {trial.score:+.2f}" in out
    best = trials[0].hyperparameters.values
    assert f"right {best['loss_weight_right']:.3f})" in out
    assert sorted(results) == ["equal", "tuned"]
    assert sorted(baselines) == ["left", "right"]
    # The test table's Delta_m% row, worked out from the returned numbers.
    row = next(line for line in out.splitlines() if line.startswith("Delta_m"))
    shown = [float(v) for v in row.split()[-2:]]
    for label, value in zip(("equal", "tuned"), shown):
        changes = [
            (results[label][t]["accuracy"] - baselines[t]["accuracy"])
            / baselines[t]["accuracy"]
            for t in ("left", "right")
        ]
        assert value == pytest.approx(100 * np.mean(changes), abs=0.006)
    # 50 steps of batch 16: measured mean accuracy 0.315 (equal) and
    # 0.3675 (tuned), at least 0.1675 over seeds 0-2 (chance: 0.1); mean
    # test loss 2.10 and 2.06, at most 2.20 (guessing: ln(10) = 2.30).
    for label in ("equal", "tuned"):
        tasks = results[label].values()
        assert np.mean([r["accuracy"] for r in tasks]) > 0.15, results
        assert np.mean([r["loss"] for r in tasks]) < 2.25, results
