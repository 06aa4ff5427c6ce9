import importlib.util
import pathlib

import numpy as np
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
        # The baseline, same trunk and budget: measured 0.5675 (left) and
        # 0.4875 (right), at least 0.4875 over seeds 0-2.
        assert single > 0.35, rows[task]
    delta_m = float(rows["Delta_m%"][-1])
    assert delta_m == pytest.approx(np.mean(changes), abs=0.015)
    # Measured -0.70; -23.9 and -26.8 with seeds 1 and 2.
    assert -35 < delta_m < 25, delta_m
    assert "Task relatedness" in out
    assert (tmp_path / "multi_mnist.keras").exists()
    assert (tmp_path / "multi_mnist_curves.png").stat().st_size > 10000
    # Ten classes: chance is 10%. Measured 0.5625 (left) and 0.485
    # (right), at least 0.3675 over seeds 0-2.
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
