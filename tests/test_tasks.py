import keras
import numpy as np
import pytest

import keras_mtl
from keras_mtl import testing
from keras_mtl.tasks import FunctionLoss
from keras_mtl.tasks import resolve_loss


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
        ({"name": "a", "loss_weight": float("nan")}, ValueError, "finite"),
        ({"name": "a", "loss_weight": float("inf")}, ValueError, "finite"),
        ({"name": "a", "loss_weight": True}, TypeError, "loss_weight"),
        ({"name": "val"}, ValueError, "'val'"),
        ({"name": "val_score"}, ValueError, "'val_'"),
        ({"name": "a", "metrics": ["acuracy"]}, ValueError, "Task 'a'.*metric"),
        ({"name": "a", "metrics": [3]}, TypeError, "Task 'a'.*metric"),
        ({"name": "a", "activation": "sigmod"}, ValueError, "Task 'a'.*activ"),
        ({"name": "a", "missing_label": "-1"}, TypeError, "Task 'a'.*missing"),
        ({"name": "a", "missing_label": True}, TypeError, "Task 'a'.*missing"),
        ({"name": "a", "missing_label": float("nan")}, TypeError, "NaN"),
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
    assert task.metrics[:3] == ["acc", "auc", "AUC"]
    assert isinstance(task.metrics[3], keras.metrics.MeanSquaredError)
    assert task.metrics[4] is len
    assert task.activation is keras.activations.relu


def test_a_loss_function_becomes_a_serializable_loss():
    loss = resolve_loss(keras.losses.mean_absolute_error, "price")
    assert isinstance(loss, FunctionLoss)
    assert loss.name == "mean_absolute_error"
    y_true = np.array([[1.0], [2.0], [4.0]], "float32")
    y_pred = np.array([0.5, 2.0, 1.0], "float32")
    # Per-example values; the labels' trailing axis is dropped as in Keras.
    testing.assert_allclose(loss.call(y_true, y_pred), [0.5, 0.0, 3.0])
    testing.assert_allclose(loss(y_true, y_pred), 3.5 / 3)
    revived = testing.run_serialization_test(loss)
    assert revived.fn is keras.losses.mean_absolute_error
    assert revived.name == "mean_absolute_error"


def test_a_loss_instance_is_kept_and_a_name_keeps_its_name():
    mse = keras.losses.MeanSquaredError()
    assert resolve_loss(mse, "a") is mse
    # Masking reads the name to tell class-id labels ("sparse...") apart.
    loss = resolve_loss("sparse_categorical_crossentropy", "a")
    assert loss.name == "sparse_categorical_crossentropy"


@pytest.mark.parametrize(
    "value, error, match",
    [
        (-1, ValueError, r"`loss_weights\['reg'\]` must be a finite"),
        (float("nan"), ValueError, r"loss_weights\['reg'\].*finite"),
        ("x", TypeError, r"loss_weights\['reg'\]` must be a number"),
    ],
)
def test_compile_loss_weights_are_checked_like_the_tasks(value, error, match):
    model = testing.tiny_model()
    with pytest.raises(error, match=match):
        model.compile(optimizer="sgd", loss_weights={"reg": value})


@pytest.mark.parametrize(
    "make, error, match",
    [
        (
            lambda: keras_mtl.weighting.FixedWeighting({"a": float("nan")}),
            ValueError,
            "task 'a'.*finite",
        ),
        (
            lambda: keras_mtl.weighting.FixedWeighting({"a": "1"}),
            TypeError,
            "task 'a'.*number",
        ),
        (
            lambda: keras_mtl.weighting.UncertaintyWeighting(float("nan")),
            ValueError,
            "initial_log_variance.*finite",
        ),
    ],
)
def test_non_finite_method_arguments_are_refused(make, error, match):
    with pytest.raises(error, match=match):
        make()
