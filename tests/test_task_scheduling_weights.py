"""Task scheduling through the loss: loss-balanced task weighting (Liu et
al., 2019) and Dynamic Task Prioritization (Guo et al., 2018)."""

import keras
import numpy as np
import pytest
from keras import ops

import keras_mtl
from keras_mtl import testing
from keras_mtl.weighting import DynamicTaskPrioritization
from keras_mtl.weighting import LossBalanced

TASKS = ["reg", "binary", "multi"]


def _bound(method, tasks=("a", "b", "c")):
    method.set_tasks(list(tasks))
    return method


def _step(method, losses, present=(True, True, True), training=True):
    losses = ops.convert_to_tensor(losses, "float32")
    present = ops.convert_to_tensor(np.array(present))
    return method(losses, present, training=training)[1]


class PerStepLogs(keras.callbacks.Callback):
    """Per-step task losses and weights, from the running epoch means that
    `on_train_batch_end` gets (equal batches, every task labelled)."""

    def on_train_begin(self, logs=None):
        self.losses, self.weights = [], []

    def on_epoch_begin(self, epoch, logs=None):
        self.means = []

    def on_train_batch_end(self, batch, logs=None):
        keys = [f"{t}_loss" for t in TASKS] + [f"{t}_weight" for t in TASKS]
        self.means.append(np.array([float(logs[k]) for k in keys], "float64"))
        k = len(self.means)
        step = k * self.means[-1]
        if k > 1:
            step = step - (k - 1) * self.means[-2]
        self.losses.append(step[:3])
        self.weights.append(step[3:])


# --- LossBalanced -----------------------------------------------------------


def test_loss_balanced_weights_by_hand():
    method = _bound(LossBalanced(alpha=0.5))
    # Epoch 1. First batch: L(0) = the losses, equal weights.
    testing.assert_allclose(_step(method, [2.0, 1.0, 4.0]), [1.0, 1.0, 1.0])
    testing.assert_allclose(method.initial_losses, [2.0, 1.0, 4.0])
    # Ratios 0.5, 0.81, 0.25: 3 * sqrt(r) / sum(sqrt(r)).
    testing.assert_allclose(
        _step(method, [1.0, 0.81, 1.0]),
        [1.006746, 1.281378, 0.711877],
        atol=1e-5,
    )
    # "b" absent: weight 0; ratios 0.25 and 1 share T = 3 as 1 : 2.
    weights = _step(method, [0.5, 0.0, 4.0], [True, False, True])
    testing.assert_allclose(weights, [1.0, 0.0, 2.0], atol=1e-6)
    testing.assert_allclose(method.initial_losses, [2.0, 1.0, 4.0])
    # Evaluation uses L(0) and records nothing.
    weights = _step(method, [2.0, 0.25, 1.0], training=False)
    testing.assert_allclose(weights, [1.5, 0.75, 0.75], atol=1e-6)
    testing.assert_allclose(method.epoch_steps, [3.0, 2.0, 3.0])

    method.on_epoch_end({})
    testing.assert_allclose(method.epoch_steps, [0.0, 0.0, 0.0])
    # Epoch 2, "b" absent from the first batch: L(0) of "a" and "c" reset,
    # that of "b" not moved.
    weights = _step(method, [0.4, 0.0, 2.0], [True, False, True])
    testing.assert_allclose(weights, [1.5, 0.0, 1.5], atol=1e-6)
    testing.assert_allclose(method.initial_losses, [0.4, 1.0, 2.0])
    # "b" is recorded at its first present batch: ratios 0.25, 1, 1.
    weights = _step(method, [0.1, 0.25, 2.0])
    testing.assert_allclose(weights, [0.6, 1.2, 1.2], atol=1e-6)
    testing.assert_allclose(method.initial_losses, [0.4, 0.25, 2.0])


def test_loss_balanced_edge_cases_and_config():
    method = _bound(LossBalanced(alpha=0.0))
    _step(method, [3.0, 2.0, 1.0])
    testing.assert_allclose(_step(method, [0.3, 5.0, 0.1]), [1.0, 1.0, 1.0])
    # Zero losses: equal weights, never NaN.
    zero = _bound(LossBalanced())
    testing.assert_allclose(_step(zero, [0.0, 0.0, 0.0]), [1.0, 1.0, 1.0])
    testing.assert_allclose(_step(zero, [0.0, 0.0, 1.0]), [1.0, 1.0, 1.0])
    with pytest.raises(ValueError, match="alpha"):
        LossBalanced(alpha=-1.0)
    revived = testing.run_serialization_test(LossBalanced(alpha=0.25))
    assert revived.alpha == 0.25
    for name in ("loss_balanced", "lbtw", "LossBalanced"):
        assert type(keras_mtl.weighting.get(name)) is LossBalanced


def test_loss_balanced_fit_matches_numpy_and_saves(tmp_path):
    model = testing.tiny_model(weighting=LossBalanced(alpha=0.5))
    x, y = testing.tiny_data(n=48)
    log = PerStepLogs()
    model.fit(
        x, y, batch_size=16, epochs=2, shuffle=False, verbose=0, callbacks=[log]
    )
    losses, weights = np.array(log.losses), np.array(log.weights)
    assert losses.shape == (6, 3)
    for epoch in range(2):
        steps = slice(3 * epoch, 3 * epoch + 3)
        ratios = np.sqrt(losses[steps] / losses[3 * epoch])
        expected = 3 * ratios / ratios.sum(axis=1, keepdims=True)
        testing.assert_allclose(weights[steps], expected, atol=1e-4, rtol=1e-4)
    # L(0) is the first batch of the last epoch, not of training.
    state = model.weighting.initial_losses.numpy()
    testing.assert_allclose(state, losses[3], rtol=1e-4)
    assert np.abs(losses[0] - losses[3]).max() > 1e-3
    assert np.abs(weights[4:] - 1.0).max() > 1e-3
    loaded = testing.run_model_saving_test(model, x, tmp_path / "lb.keras")
    testing.assert_allclose(loaded.weighting.initial_losses, state)


# --- DynamicTaskPrioritization ----------------------------------------------


def _epoch(method, logs, present=(True, True, True)):
    """One training step with `present`, then the epoch end with `logs`."""
    _step(method, [1.0, 1.0, 1.0], present)
    method.on_epoch_end(logs)
    return _step(method, [1.0, 1.0, 1.0], training=False)


def test_dtp_focal_priorities_by_hand():
    method = _bound(DynamicTaskPrioritization(kpi="{task}_acc", gamma=2.0))
    # No KPI yet: weights of 1.
    testing.assert_allclose(_step(method, [0.3, 2.0, 1.0]), [1.0, 1.0, 1.0])
    # -(1 - k)^2 log(k) at k = 0.5, 0.9, 0.2.
    weights = _epoch(method, {"a_acc": 0.5, "b_acc": 0.9, "c_acc": 0.2})
    testing.assert_allclose(weights, [0.173287, 0.00105361, 1.030040], 1e-5)
    # Clipped to [1e-3, 1 - 1e-3]: a mastered task keeps a tiny weight and
    # a hopeless one a finite weight.
    clipped = _bound(DynamicTaskPrioritization(kpi="{task}_acc", gamma=2.0))
    weights = _epoch(clipped, {"a_acc": 1.0, "b_acc": 0.0, "c_acc": 0.5})
    testing.assert_allclose(weights, [1.0005e-9, 6.893947, 0.173287], 1e-5)
    # Per-task gamma: gamma 0 is -log(k); tasks left out get 2.
    per_task = _bound(
        DynamicTaskPrioritization(kpi="{task}_acc", gamma={"a": 0, "b": 1})
    )
    weights = _epoch(per_task, {"a_acc": 0.5, "b_acc": 0.3, "c_acc": 0.5})
    testing.assert_allclose(weights, [0.693147, 0.842781, 0.173287], 1e-5)
    # Absent tasks get 0 in a step.
    weights = _step(per_task, [1.0, 1.0, 1.0], [False, True, True])
    testing.assert_allclose(weights, [0.0, 0.842781, 0.173287], 1e-5)


def test_dtp_smoothing_across_epochs_and_absent_tasks():
    method = _bound(
        DynamicTaskPrioritization(
            kpi={"a": "val_a_acc", "c": "val_c_acc"}, smoothing=0.9
        )
    )
    weights = _epoch(method, {"val_a_acc": 0.5, "val_c_acc": 0.4})
    testing.assert_allclose(method.kpis, [0.5, 0.0, 0.4], atol=1e-7)
    testing.assert_allclose(weights, [0.173287, 1.0, 0.329865], 1e-5)
    # Epoch 2, "c" never labelled: its KPI is that of no example, not read.
    weights = _epoch(
        method, {"val_a_acc": 0.7, "val_c_acc": 0.0}, (True, True, False)
    )
    # 0.9 * 0.7 + 0.1 * 0.5 = 0.68; FL = 0.32^2 * -log(0.68).
    testing.assert_allclose(method.kpis, [0.68, 0.0, 0.4], atol=1e-6)
    testing.assert_allclose(weights, [0.0394918, 1.0, 0.329865], 1e-5)
    testing.assert_allclose(method.kpis_known, [1.0, 0.0, 1.0])
    # Epoch 3, "a" trained but unlabelled in validation: its KPI is NaN (the
    # model's log of a task with no label) and keeps its last value.
    _epoch(method, {"val_a_acc": float("nan"), "val_c_acc": 0.4})
    testing.assert_allclose(method.kpis, [0.68, 0.0, 0.4], atol=1e-6)


def test_dtp_errors_name_the_task_and_key():
    method = _bound(DynamicTaskPrioritization(kpi="val_{task}_accuracy"))
    _step(method, [1.0, 1.0, 1.0])
    with pytest.raises(ValueError, match="task 'a'.*'val_a_accuracy'") as e:
        method.on_epoch_end({"a_accuracy": 0.5, "loss": 1.0})
    assert "['a_accuracy', 'loss']" in str(e.value)
    logs = {f"val_{t}_accuracy": 0.5 for t in "abc"}
    logs["val_b_accuracy"] = 1.7
    with pytest.raises(ValueError, match=r"'b'.*\[0, 1\]"):
        method.on_epoch_end(logs)
    with pytest.raises(ValueError, match="unknown tasks \\['d'\\]"):
        _bound(DynamicTaskPrioritization(kpi={"a": "x", "d": "y"}))
    with pytest.raises(ValueError, match="\\{task\\}"):
        DynamicTaskPrioritization(kpi="val_accuracy")
    with pytest.raises(ValueError, match="smoothing"):
        DynamicTaskPrioritization(smoothing=0.0)
    with pytest.raises(TypeError, match="kpi"):
        DynamicTaskPrioritization(kpi=["a_accuracy"])


def test_dtp_config_round_trip():
    method = DynamicTaskPrioritization(
        kpi={"binary": "val_binary_accuracy"},
        gamma={"binary": 1.5},
        smoothing=0.5,
        epsilon=1e-2,
        log_weights=False,
    )
    revived = testing.run_serialization_test(method)
    assert revived.get_config() == method.get_config()
    assert revived.kpi == {"binary": "val_binary_accuracy"}
    assert revived.gamma == {"binary": 1.5} and revived.smoothing == 0.5
    for name in ("dynamic_task_prioritization", "dtp"):
        method = keras_mtl.weighting.get(name)
        assert type(method) is DynamicTaskPrioritization


def test_dtp_fit_reads_validation_kpis_and_saves(tmp_path):
    method = DynamicTaskPrioritization(
        kpi={"binary": "val_binary_accuracy", "multi": "val_multi_accuracy"},
        gamma=2.0,
        smoothing=0.5,
    )
    model = testing.tiny_model(weighting=method)
    x, y = testing.tiny_data(n=32)
    history = model.fit(
        x, y, batch_size=16, epochs=2, validation_data=(x, y), verbose=0
    ).history
    kpis = np.array([history[f"val_{t}_accuracy"] for t in TASKS[1:]]).T
    smoothed = 0.5 * kpis[1] + 0.5 * kpis[0]
    testing.assert_allclose(method.kpis.numpy()[1:], smoothed, atol=1e-6)
    weights = np.array([history[f"{t}_weight"] for t in TASKS]).T
    testing.assert_allclose(weights[0], [1.0, 1.0, 1.0])
    # Epoch 2 trains with the priorities of epoch 1's KPIs; "reg" has none.
    k = np.clip(kpis[0], 1e-3, 1 - 1e-3)
    testing.assert_allclose(weights[1, 1:], -((1 - k) ** 2) * np.log(k), 1e-5)
    assert weights[1, 0] == 1.0
    loaded = testing.run_model_saving_test(model, x, tmp_path / "dtp.keras")
    testing.assert_allclose(loaded.weighting.kpis, method.kpis)
    testing.assert_allclose(loaded.weighting.kpis_known, [0.0, 1.0, 1.0])
