import importlib.util
import pathlib

import pytest

RECIPES = pathlib.Path(__file__).resolve().parent.parent / "recipes"


def load_recipe(name):
    spec = importlib.util.spec_from_file_location(name, RECIPES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


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
    # The single-task baselines and the Delta_m table follow.
    table = out[out.index("Multi-task vs single-task") :].splitlines()
    delta_m = [line for line in table if line.startswith("Delta_m%")]
    assert len(delta_m) == 1
    assert -100 < float(delta_m[0].split()[-1]) < 100
    assert "Task relatedness" in out
    assert (tmp_path / "multi_mnist.keras").exists()
    assert (tmp_path / "multi_mnist_curves.png").stat().st_size > 10000
    # Ten classes: chance is 10%.
    assert logs["left_accuracy"] > 0.3 and logs["right_accuracy"] > 0.3


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
            "--directory",
            str(tmp_path),
        ]
    )
    out = capsys.readouterr().out
    assert "2 trials (random)" in out and "Delta_m%" in out
    assert len(trials) == 2 and trials[0].score >= trials[1].score
    assert sorted(results) == ["equal", "tuned"]
    for label in ("equal", "tuned"):
        assert 0.1 < results[label]["left"]["accuracy"] <= 1.0
    assert sorted(baselines) == ["left", "right"]
