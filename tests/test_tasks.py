import keras
import pytest

import keras_mtl
from keras_mtl import testing


def test_task_config_round_trip():
    task = keras_mtl.Task(
        "segment",
        loss=keras.losses.SparseCategoricalCrossentropy(),
        metrics=["accuracy", keras.metrics.AUC(name="auc")],
        units=5,
        activation="softmax",
        head=[16, 8],
        loss_weight=0.5,
        missing_label=-1,
    )
    revived = testing.run_serialization_test(task)
    assert revived.get_config() == task.get_config()
    assert revived.units == 5 and revived.loss_weight == 0.5
    assert revived.missing_label == -1
    assert isinstance(revived.loss, keras.losses.SparseCategoricalCrossentropy)


def test_task_with_layer_head_round_trip():
    task = keras_mtl.Task("a", head=keras.layers.Dense(3, name="a_head"))
    revived = keras_mtl.Task.from_config(task.get_config())
    assert isinstance(revived.head, keras.layers.Dense)
    assert revived.head.units == 3


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"name": "a/b"}, ValueError, "name"),
        ({"name": ""}, ValueError, "name"),
        ({"name": 3}, ValueError, "name"),
        ({"name": "a", "loss": "not_a_loss"}, ValueError, "Task 'a'.*loss"),
        ({"name": "a", "units": 0}, ValueError, "Task 'a'.*units"),
        ({"name": "a", "head": "big"}, TypeError, "Task 'a'.*head"),
        ({"name": "a", "head": [0]}, ValueError, "Task 'a'.*head"),
        ({"name": "a", "loss_weight": -1}, ValueError, "loss_weight"),
        ({"name": "a", "loss_weight": "x"}, TypeError, "loss_weight"),
        ({"name": "val"}, ValueError, "'val'"),
        ({"name": "val_score"}, ValueError, "'val_'"),
        ({"name": "a", "metrics": ["acuracy"]}, ValueError, "Task 'a'.*metric"),
        ({"name": "a", "metrics": [3]}, TypeError, "Task 'a'.*metric"),
        ({"name": "a", "activation": "sigmod"}, ValueError, "Task 'a'.*activ"),
    ],
)
def test_task_rejects_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        keras_mtl.Task(**kwargs)


def test_task_accepts_every_kind_of_metric_and_activation():
    task = keras_mtl.Task(
        "valence",
        metrics=["acc", "auc", "AUC", keras.metrics.MeanSquaredError(), len],
        activation=keras.activations.relu,
    )
    assert len(task.metrics) == 5
