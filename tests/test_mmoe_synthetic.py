import numpy as np
import pytest
from test_recipes import load_recipe


def test_synthetic_data_has_the_asked_structure():
    recipe = load_recipe("mmoe_synthetic")
    x, y = recipe.make_data(1.0, 2000, seed=0)
    assert x.shape == (2000, 100)
    # p = 1: both tasks share w, so labels differ by the noise alone.
    diff = y["task_1"] - y["task_2"]
    assert np.std(diff) == pytest.approx(0.1 * np.sqrt(2), rel=0.1)
    _, y_half = recipe.make_data(0.5, 2000, seed=0)
    np.testing.assert_allclose(y_half["task_1"], y["task_1"])
    corr = np.corrcoef(y_half["task_1"][:, 0], y_half["task_2"][:, 0])[0, 1]
    assert corr < 0.9


@pytest.mark.slow
def test_mmoe_synthetic_reduced(tmp_path, capsys):
    recipe = load_recipe("mmoe_synthetic")
    results, params = recipe.main(
        [
            "--correlations",
            "1.0",
            "0.5",
            "--seeds",
            "0",
            "--epochs",
            "12",
            "--n-train",
            "10000",
            "--n-test",
            "500",
            "--output-dir",
            str(tmp_path),
        ]
    )
    out = capsys.readouterr().out
    assert "shared_bottom" in out and "mmoe" in out and "p=0.5" in out
    assert (tmp_path / "mmoe_synthetic.png").stat().st_size > 10000
    counts = np.array(list(params.values()))
    assert counts.max() / counts.min() < 1.02
    for p in (1.0, 0.5):
        _, y = recipe.make_data(p, 11000, seed=0)
        mean_predictor = np.mean([np.var(v[10500:]) for v in y.values()])
        for kind in recipe.MODELS:
            assert results[(kind, p)][0] < 0.8 * mean_predictor, (kind, p)
