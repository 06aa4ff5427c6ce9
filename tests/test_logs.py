import keras
import numpy as np
import pytest

import keras_mtl
from keras_mtl import testing


def _model(tasks=None):
    tasks = tasks or testing.tiny_tasks()
    model = keras_mtl.build_mtl_model(keras.Input((8,)), tasks, trunk=[8])
    model.compile(optimizer="adam")
    return model


def _tasks_with_auc():
    tasks = testing.tiny_tasks()
    tasks[1].metrics = ["accuracy", "auc"]
    return tasks


def test_per_task_monitors_take_the_metric_direction(tmp_path):
    model = _model(_tasks_with_auc())
    x, y = testing.tiny_data(n=64)
    stop = keras.callbacks.EarlyStopping(monitor="val_binary_auc", patience=9)
    best = keras.callbacks.ModelCheckpoint(
        str(tmp_path / "best.keras"), monitor="val_reg_mae", save_best_only=True
    )
    plateau = keras.callbacks.ReduceLROnPlateau(monitor="multi_loss")
    fixed = keras.callbacks.EarlyStopping(
        monitor="val_binary_auc", mode="min", patience=9
    )
    history = model.fit(
        x,
        y,
        validation_data=(x, y),
        epochs=3,
        batch_size=16,
        verbose=0,
        callbacks=[stop, best, plateau, fixed],
    ).history
    assert (stop.mode, best.mode, plateau.mode) == ("max", "min", "min")
    assert fixed.mode == "min"  # an explicit mode is the user's
    assert stop.best == pytest.approx(max(history["val_binary_auc"]))
    assert fixed.best == pytest.approx(min(history["val_binary_auc"]))
    assert best.best == pytest.approx(min(history["val_reg_mae"]))


def test_monitor_modes_for_one_task_and_a_callback_list():
    model = _model([testing.tiny_tasks()[0]])
    x, y = testing.tiny_data(n=32)
    y = {"reg": y["reg"]}
    stop = keras.callbacks.EarlyStopping(monitor="reg_mae", patience=9)
    callbacks = keras.callbacks.CallbackList(
        [stop], add_history=True, model=model
    )
    history = model.fit(x, y, epochs=2, verbose=0, callbacks=callbacks).history
    assert stop.mode == "min"
    assert stop.best == pytest.approx(min(history["reg_mae"]))


def test_a_log_without_a_direction_is_left_to_keras():
    model = _model()
    x, y = testing.tiny_data(n=32)
    stop = keras.callbacks.EarlyStopping(monitor="reg_examples")
    with pytest.raises(ValueError, match="maximized or minimized"):
        model.fit(x, y, epochs=1, verbose=0, callbacks=[stop])
    assert np.isfinite(model.evaluate(x, y, verbose=0)[0])
