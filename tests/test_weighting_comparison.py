"""The weighting comparison recipe, small (default) and full (slow)."""

import importlib.util
import pathlib

import numpy as np
import pytest

RECIPE = (
    pathlib.Path(__file__).resolve().parent.parent
    / "recipes"
    / "weighting_comparison.py"
)


def load_recipe():
    spec = importlib.util.spec_from_file_location(
        "weighting_comparison", RECIPE
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_weighting_comparison_small(capsys):
    recipe = load_recipe()
    results = recipe.main(
        [
            "--methods",
            "famo",
            "--epochs",
            "1",
            "--num-train",
            "2048",
            "--num-test",
            "256",
            "--batch-size",
            "32",
            "--warm-up",
            "0",
        ]
    )
    out = capsys.readouterr().out
    assert list(results) == ["equal", "famo"]
    assert "time vs equal" in out and "left acc %" in out
    rows = {line.split()[0]: line.split() for line in out.splitlines() if line}
    for method, result in results.items():
        logs, weights = result["logs"], result["weights"]
        accuracies = [logs["left_accuracy"], logs["right_accuracy"]]
        # The table shows the returned numbers: accuracies, mean, weights.
        row = rows[method]
        shown = [float(v) for v in row[1:4]]
        expected = [100 * a for a in accuracies] + [50 * sum(accuracies)]
        assert shown == pytest.approx(expected, abs=0.006), row
        assert [float(row[4]), float(row[6])] == pytest.approx(
            weights, abs=6e-4
        )
        # 64 steps from the seed-0 initial weights: measured mean accuracy
        # 0.48 (equal) and 0.47 (famo), at least 0.29 over seeds 0-2; a
        # mean test loss of 1.54 and 1.55, at most 1.90. Chance is 10% and
        # ln(10) = 2.30.
        assert np.mean(accuracies) > 0.28, (method, logs)
        assert (logs["left_loss"] + logs["right_loss"]) / 2 < 2.0, logs
    assert results["equal"]["weights"] == [1.0, 1.0]
    # FAMO's weights are a softmax, and move off 1/2 (measured 0.528 /
    # 0.472; |w - 0.5| at least 0.028 over seeds 0-2).
    famo = results["famo"]["weights"]
    assert sum(famo) == pytest.approx(1.0, abs=1e-5)
    assert abs(famo[0] - 0.5) > 0.01, famo


@pytest.mark.slow
def test_weighting_comparison_all_methods():
    recipe = load_recipe()
    results = recipe.main(["--epochs", "3", "--num-train", "6000"])
    assert sorted(results) == sorted(recipe.METHODS)
    for method, result in results.items():
        logs = result["logs"]
        assert logs["left_accuracy"] > 0.6, (method, logs)
        assert logs["right_accuracy"] > 0.6, (method, logs)
