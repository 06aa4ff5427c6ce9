"""The weighting comparison recipe, small (default) and full (slow)."""

import importlib.util
import pathlib

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
            "256",
            "--num-test",
            "64",
            "--warm-up",
            "0",
        ]
    )
    out = capsys.readouterr().out
    assert list(results) == ["equal", "famo"]
    for method in results:
        assert method in out
    assert "time vs equal" in out and "left acc %" in out
    famo = results["famo"]
    assert famo["weights"] != [1.0, 1.0]
    assert 0.0 <= famo["logs"]["left_accuracy"] <= 1.0


@pytest.mark.slow
def test_weighting_comparison_all_methods():
    recipe = load_recipe()
    results = recipe.main(["--epochs", "3", "--num-train", "6000"])
    assert sorted(results) == sorted(recipe.METHODS)
    for method, result in results.items():
        logs = result["logs"]
        assert logs["left_accuracy"] > 0.6, (method, logs)
        assert logs["right_accuracy"] > 0.6, (method, logs)
