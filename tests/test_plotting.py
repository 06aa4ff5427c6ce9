"""keras_mtl.plotting: what each figure draws, checked on the figure."""

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from keras_mtl import plotting  # noqa: E402

HISTORY = {
    "loss": [3.0, 2.0, 1.5],
    "a_loss": [1.0, 0.8, 0.7],
    "b_loss": [2.0, 1.2, 0.8],
    "val_a_loss": [1.1, 0.9, 0.85],
    "val_b_loss": [2.1, 1.3, 0.9],
    "a_mae": [0.9, 0.7, 0.6],
    "b_mae": [1.2, 1.0, 0.7],
    "a_weight": [1.0, 0.9, 0.8],
    "b_weight": [1.0, 1.1, 1.2],
}


def _lines(ax):
    return {
        line.get_label(): (
            list(line.get_xdata()),
            list(line.get_ydata()),
            line.get_linestyle(),
            line.get_color(),
        )
        for line in ax.get_lines()
    }


def test_training_curves_colour_per_task_validation_dashed():
    fig = plotting.training_curves(HISTORY, ["loss", "mae"])
    loss_ax, mae_ax = fig.axes
    lines = _lines(loss_ax)
    assert lines["a (train)"] == ([1, 2, 3], [1.0, 0.8, 0.7], "-", "C0")
    assert lines["a (validation)"] == ([1, 2, 3], [1.1, 0.9, 0.85], "--", "C0")
    assert lines["b (train)"][2:] == ("-", "C1")
    assert lines["b (validation)"][2:] == ("--", "C1")
    assert sorted(_lines(mae_ax)) == ["a (train)", "b (train)"]
    assert [t for t in loss_ax.get_xticks() if 0.5 <= t <= 3.5] == [1, 2, 3]
    assert loss_ax.get_title() == "loss" and mae_ax.get_title() == "mae"


def test_task_weights_and_tasks_found_from_the_logs():
    fig = plotting.task_weights(HISTORY)
    lines = _lines(fig.axes[0])
    assert lines["a"][:2] == ([1, 2, 3], [1.0, 0.9, 0.8])
    assert lines["b"][:2] == ([1, 2, 3], [1.0, 1.1, 1.2])
    with pytest.raises(ValueError, match="no `<task>_weight` log"):
        plotting.task_weights({"loss": [1.0]})
    with pytest.raises(TypeError, match="`history` must be"):
        plotting.training_curves([1.0, 2.0])


def test_heatmap_annotates_every_cell_symmetric_scale():
    matrix = np.array([[1.0, -0.25], [-0.25, 1.0]])
    fig = plotting.heatmap(matrix, ["a", "b"], title="cosine")
    ax = fig.axes[0]
    texts = [t.get_text() for t in ax.texts]
    assert texts == ["1.00", "-0.25", "-0.25", "1.00"]
    assert ax.images[0].get_clim() == (-1.0, 1.0)
    assert [t.get_text() for t in ax.get_yticklabels()] == ["a", "b"]
    assert ax.get_title() == "cosine"
    with pytest.raises(ValueError, match="must be square"):
        plotting.heatmap(np.ones((2, 3)), ["a", "b"])
    with pytest.raises(ValueError, match="one name per row: 2"):
        plotting.heatmap(matrix, ["a"])


def test_tradeoff_places_each_run():
    runs = {
        "equal": {"a": {"acc": 0.9}, "b": {"acc": 0.8}},
        "dwa": {"a": {"acc": 0.85}, "b": {"acc": 0.88}},
    }
    fig = plotting.tradeoff(runs, ("a", "b"), "acc")
    ax = fig.axes[0]
    points = [tuple(c.get_offsets()[0]) for c in ax.collections]
    np.testing.assert_allclose(points, [(0.9, 0.8), (0.85, 0.88)])
    assert ax.get_xlabel() == "a acc" and ax.get_ylabel() == "b acc"
    with pytest.raises(ValueError, match="Run 'dwa' has no"):
        plotting.tradeoff({"dwa": {"a": {}}}, ("a", "b"), "acc")
    with pytest.raises(ValueError, match="must name two tasks"):
        plotting.tradeoff(runs, ("a",), "acc")
