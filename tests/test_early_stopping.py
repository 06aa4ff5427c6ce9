"""Per-task early stopping: tasks leave training one by one."""

import keras
import numpy as np
import pytest

from keras_mtl import testing
from keras_mtl.callbacks.early_stopping import PerTaskEarlyStopping


def _values(variables):
    return [np.array(v) for v in variables]


def _equal(a, b):
    return all(np.array_equal(x, y) for x, y in zip(a, b))


@pytest.mark.parametrize("weighting", ["uncertainty", "pcgrad"])
def test_a_task_sitting_out_trains_as_if_unlabelled(weighting):
    x, y = testing.tiny_data(n=64)
    unlabelled = dict(y, binary=np.full_like(y["binary"], np.nan))
    trained = {}
    for case in ("sitting_out", "unlabelled"):
        keras.utils.set_random_seed(3)
        model = testing.tiny_model(weighting)
        head = _values(model.task_variables["binary"])
        state = _values(model.weighting.variables)
        if case == "sitting_out":
            model.set_training_tasks(["reg", "multi"])
            assert model.training_tasks == ["reg", "multi"]
        history = model.fit(
            x,
            y if case == "sitting_out" else unlabelled,
            batch_size=16,
            epochs=2,
            shuffle=False,
            verbose=0,
        ).history
        trained[case] = _values(model.shared_variables) + [
            v
            for name in ("reg", "multi")
            for v in _values(model.task_variables[name])
        ]
        if case == "sitting_out":
            # Its head is not updated at all (no momentum drift), and the
            # weighting's state for it does not move.
            assert _equal(head, _values(model.task_variables["binary"]))
            after = _values(model.weighting.variables)
            if weighting == "uncertainty":
                # One log-variance per task; the sitting-out one is index 1.
                np.testing.assert_array_equal(after[0][1], state[0][1])
            assert history["binary_weight"] == [0.0, 0.0]
            # Still measured, and part of the comparable `loss`.
            assert np.isfinite(history["binary_loss"]).all()
            assert history["binary_loss"][0] > 0.1
    # The others train exactly as with the task's labels all missing.
    for a, b in zip(trained["sitting_out"], trained["unlabelled"]):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


def test_set_training_tasks_errors_and_retrace():
    model = testing.tiny_model()
    with pytest.raises(ValueError, match="among the model's tasks"):
        model.set_training_tasks(["reg", "price"])
    x, y = testing.tiny_data(n=32)
    model.fit(x, y, batch_size=16, epochs=1, verbose=0)
    first = model.train_function
    model.set_training_tasks(["reg"])
    assert model.train_function is not first
    again = model.train_function
    model.set_training_tasks(["reg"])  # no change: no re-trace
    assert model.train_function is again
    model.set_training_tasks()
    assert model.training_tasks == ["reg", "binary", "multi"]


class _Scripted(keras.callbacks.Callback):
    """Writes scripted validation scores into the logs, and keeps the
    heads' variables of every epoch."""

    def __init__(self, scores):
        super().__init__()
        self.scores = scores
        self.heads = []

    def on_epoch_end(self, epoch, logs=None):
        for task, values in self.scores.items():
            logs[f"val_{task}_score"] = values[epoch]
        self.heads.append(
            {n: _values(v) for n, v in self.model.task_variables.items()}
        )


def test_tasks_stop_one_by_one_and_get_their_best_heads_back():
    x, y = testing.tiny_data(n=32)
    model = testing.tiny_model("uncertainty")
    nan = float("nan")
    scripted = _Scripted(
        {
            # Best at epoch 1, then no improvement: stops at epoch 3.
            "binary": [0.5, 0.7, 0.6, 0.69, 0.9, 0.9],
            # A NaN epoch neither improves nor counts; stops at epoch 4.
            "multi": [0.1, 0.2, 0.3, nan, 0.3, 0.2],
            # Improves to the end.
            "reg": [0.1, 0.2, 0.3, 0.4, 0.5, 0.6],
        }
    )
    stopping = PerTaskEarlyStopping(
        monitor="val_{task}_score", patience=2, mode="max", min_delta=0.001
    )
    history = model.fit(
        x,
        y,
        batch_size=16,
        epochs=6,
        verbose=0,
        callbacks=[scripted, stopping],
    ).history
    assert stopping.stopped_epochs == {"binary": 3, "multi": 5}
    assert stopping.best_epochs == {"binary": 1, "multi": 2, "reg": 5}
    assert stopping.best == pytest.approx(
        {"binary": 0.7, "multi": 0.3, "reg": 0.6}
    )
    # Weight 0 once a task has left (the epoch after it stopped).
    assert history["binary_weight"][4:] == [0.0, 0.0]
    assert history["binary_weight"][3] > 0.1
    assert history["multi_weight"][5] > 0.1
    # Each head is back at its best epoch; every task trains again.
    for task, epoch in stopping.best_epochs.items():
        best = scripted.heads[epoch][task]
        assert _equal(best, _values(model.task_variables[task]))
    assert model.training_tasks == ["reg", "binary", "multi"]


def test_training_ends_when_every_task_has_stopped():
    x, y = testing.tiny_data(n=32)
    model = testing.tiny_model()
    scripted = _Scripted(
        {name: [1.0, 1.0, 1.0, 1.0, 1.0] for name in ("reg", "binary", "multi")}
    )
    stopping = PerTaskEarlyStopping(
        monitor="val_{task}_score", patience=1, mode="min"
    )
    history = model.fit(
        x, y, batch_size=16, epochs=5, verbose=0, callbacks=[scripted, stopping]
    ).history
    assert len(history["loss"]) == 2
    assert stopping.stopped_epochs == {"reg": 1, "binary": 1, "multi": 1}


def test_auto_mode_comes_from_the_model_and_a_dict_monitor():
    x, y = testing.tiny_data(n=32)
    model = testing.tiny_model()
    stopping = PerTaskEarlyStopping(
        monitor={"reg": "val_reg_mae", "binary": "val_binary_accuracy"}
    )
    model.fit(
        x,
        y,
        batch_size=16,
        epochs=1,
        verbose=0,
        validation_data=(x, y),
        callbacks=[stopping],
    )
    assert stopping._modes == {"reg": "min", "binary": "max"}


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(monitor="val_loss"), ValueError, "template with `{task}`"),
        (dict(monitor=["val_a_loss"]), TypeError, "dict"),
        (dict(patience=-1), ValueError, "patience"),
        (dict(patience=1.5), TypeError, "patience"),
        (dict(min_delta=-0.1), ValueError, "min_delta"),
        (dict(mode="up"), ValueError, "mode"),
    ],
)
def test_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        PerTaskEarlyStopping(**kwargs)


def test_unknown_tasks_and_logs_are_named():
    x, y = testing.tiny_data(n=32)
    model = testing.tiny_model()
    with pytest.raises(ValueError, match="unknown tasks \\['price'\\]"):
        model.fit(
            x,
            y,
            epochs=1,
            verbose=0,
            callbacks=[PerTaskEarlyStopping(monitor={"price": "val_loss"})],
        )
    with pytest.raises(ValueError, match="val_reg_loss.*Available"):
        model.fit(x, y, epochs=1, verbose=0, callbacks=[PerTaskEarlyStopping()])


def test_config_round_trip():
    stopping = PerTaskEarlyStopping(monitor="val_{task}_auc", patience=3)
    again = PerTaskEarlyStopping(**stopping.get_config())
    assert again.get_config() == stopping.get_config()
