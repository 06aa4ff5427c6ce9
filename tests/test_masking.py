"""Missing labels and masked task losses, against numbers worked by hand."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_mtl
from keras_mtl import labels
from keras_mtl import masking
from keras_mtl import testing
from keras_mtl.tasks import resolve_loss

NAN = np.nan


def _task(name="t", loss="mse", missing_label=None, units=1):
    return keras_mtl.Task(
        name, loss=loss, units=units, missing_label=missing_label
    )


def _masked_loss(task, y_true, y_pred, sample_weight=None, count=None):
    """`(loss, y_true, mask, weight)` as a training step computes them."""
    loss_fn = resolve_loss(task.loss, task.name)
    y_pred = tf.constant(y_pred, "float32")
    y_true, mask, weight = masking.prepare_labels(
        task, y_true, y_pred, sample_weight, loss_fn=loss_fn
    )
    count = tf.reduce_sum(mask) if count is None else count
    loss = masking.masked_task_loss(loss_fn, y_true, y_pred, weight, count)
    return loss.numpy(), y_true.numpy(), mask.numpy(), weight.numpy()


@pytest.mark.parametrize(
    "true_shape, pred_shape, layout",
    [
        ((4, 1), (4, 1), "dense"),
        ((4, 3), (4, 3), "dense"),
        ((4,), (4, 1), "expand"),
        ((4,), (4, 3), "sparse"),
        ((4, 1), (4, 3), "sparse_keepdims"),
        ((4, 5), (4, 5, 3), "sparse"),
        ((4, 5, 1), (4, 5, 3), "sparse_keepdims"),
        ((None, 1), (None, 3), "sparse_keepdims"),
    ],
)
def test_label_layout(true_shape, pred_shape, layout):
    y_true = keras.KerasTensor(true_shape)
    y_pred = keras.KerasTensor(pred_shape)
    assert masking.label_layout(_task(), y_true, y_pred) == layout


@pytest.mark.parametrize(
    "true_shape, pred_shape, loss, match",
    [
        ((4, 2), (4, 3), None, "task 't'.*shape \\(4, 2\\)"),
        ((), (4, 1), None, "task 't'.*shape \\(\\)"),
        ((4, 3), (4, 3), "sparse_categorical_crossentropy", "class ids"),
        ((4,), (4, 3), "categorical_crossentropy", "look like class ids"),
    ],
)
def test_label_layout_errors(true_shape, pred_shape, loss, match):
    y_true = keras.KerasTensor(true_shape)
    y_pred = keras.KerasTensor(pred_shape)
    loss_fn = None if loss is None else resolve_loss(loss, "t")
    with pytest.raises(ValueError, match=match):
        masking.label_layout(_task(), y_true, y_pred, loss_fn)


def test_nan_labels_are_masked_and_filled():
    # Squared errors 1, (masked), 4, 0.25: mean over 3 labelled = 1.75.
    y_true = np.float32([[1.0], [NAN], [3.0], [0.0]])
    y_pred = np.float32([[2.0], [5.0], [1.0], [0.5]])
    loss, filled, mask, weight = _masked_loss(_task(), y_true, y_pred)
    assert loss == pytest.approx(1.75, rel=1e-6)
    testing.assert_allclose(filled, [[1.0], [0.0], [3.0], [0.0]], atol=0)
    testing.assert_allclose(mask, [1.0, 0.0, 1.0, 1.0], atol=0)
    testing.assert_allclose(weight, mask, atol=0)
    # Labels without their trailing axis: the same numbers.
    loss, filled, mask, _ = _masked_loss(_task(), y_true[:, 0], y_pred)
    assert loss == pytest.approx(1.75, rel=1e-6)
    assert filled.shape == (4, 1)
    testing.assert_allclose(mask, [1.0, 0.0, 1.0, 1.0], atol=0)


def test_sample_weights_multiply_the_mask_not_the_count():
    y_true = np.float32([[1.0], [NAN], [3.0], [0.0]])
    y_pred = np.float32([[2.0], [5.0], [1.0], [0.5]])
    # (1 * 1 + 0.5 * 4 + 2 * 0.25) / 3 labelled, as Keras divides by the
    # batch size, not by the sum of the weights.
    for sample_weight in ([1.0, 7.0, 0.5, 2.0], [[1.0], [7.0], [0.5], [2.0]]):
        loss, _, mask, weight = _masked_loss(
            _task(), y_true, y_pred, np.float32(sample_weight)
        )
        assert loss == pytest.approx(3.5 / 3, rel=1e-6)
        testing.assert_allclose(weight, [1.0, 0.0, 0.5, 2.0], atol=0)
        testing.assert_allclose(mask, [1.0, 0.0, 1.0, 1.0], atol=0)
    with pytest.raises(ValueError, match="task 't'.*shape \\(4, 2\\)"):
        _masked_loss(_task(), y_true, y_pred, np.ones((4, 2), "float32"))


def test_missing_label_sentinel_for_class_ids():
    task = _task(
        loss="sparse_categorical_crossentropy", missing_label=-1, units=3
    )
    probabilities = np.float32([[0.5, 0.25, 0.25], [0.2, 0.6, 0.2]] * 2)
    y_true = np.int32([0, -1, -1, 1])
    # -log 0.5 and -log 0.6, over 2 labelled.
    expected = (np.log(2.0) - np.log(0.6)) / 2
    loss, filled, mask, _ = _masked_loss(task, y_true, probabilities)
    assert loss == pytest.approx(expected, rel=1e-5)
    testing.assert_allclose(mask, [1.0, 0.0, 0.0, 1.0], atol=0)
    # The sentinel is replaced by a valid class id, 0.
    testing.assert_allclose(filled, [0, 0, 0, 1], atol=0)
    assert filled.dtype == np.int32
    # Class ids with a trailing axis of 1: the same.
    loss, _, mask, _ = _masked_loss(task, y_true[:, None], probabilities)
    assert loss == pytest.approx(expected, rel=1e-5)
    assert mask.shape == (4,)


def test_a_float_sentinel_and_nan_both_mark_missing():
    task = _task(missing_label=-1)
    y_true = np.float32([[2.0], [-1.0], [NAN], [4.0]])
    y_pred = np.float32([[0.0], [0.0], [0.0], [1.0]])
    # Squared errors 4 and 9 of the two labelled.
    loss, _, mask, _ = _masked_loss(task, y_true, y_pred)
    testing.assert_allclose(mask, [1.0, 0.0, 0.0, 1.0], atol=0)
    assert loss == pytest.approx(6.5, rel=1e-6)


def test_a_one_hot_row_with_any_nan_is_missing():
    task = _task(loss="categorical_crossentropy", units=3)
    y_true = np.float32([[1, 0, 0], [0, NAN, 1], [0, 0, 1]])
    probabilities = np.float32([[0.5, 0.3, 0.2]] * 2 + [[0.1, 0.1, 0.8]])
    expected = (np.log(2.0) - np.log(0.8)) / 2
    loss, filled, mask, _ = _masked_loss(task, y_true, probabilities)
    testing.assert_allclose(mask, [1.0, 0.0, 1.0], atol=0)
    testing.assert_allclose(filled[1], [0.0, 0.0, 0.0], atol=0)
    assert loss == pytest.approx(expected, rel=1e-5)


def test_sequence_labels_count_elements():
    task = _task(
        loss="sparse_categorical_crossentropy", missing_label=-1, units=2
    )
    # Two sequences of three steps; three steps labelled.
    y_true = np.int32([[0, -1, 1], [-1, -1, 1]])
    probabilities = np.float32(
        [[[0.8, 0.2], [0.5, 0.5], [0.4, 0.6]], [[0.5, 0.5]] * 2 + [[0.1, 0.9]]]
    )
    expected = -(np.log(0.8) + np.log(0.6) + np.log(0.9)) / 3
    loss, _, mask, _ = _masked_loss(task, y_true, probabilities)
    testing.assert_allclose(mask, [[1, 0, 1], [0, 0, 1]], atol=0)
    assert loss == pytest.approx(expected, rel=1e-5)
    # One weight per sequence spreads over its steps: 2 * second row.
    loss, _, _, weight = _masked_loss(
        task, y_true, probabilities, np.float32([1.0, 2.0])
    )
    testing.assert_allclose(weight, [[1, 0, 1], [0, 0, 2]], atol=0)
    expected = -(np.log(0.8) + np.log(0.6) + 2 * np.log(0.9)) / 3
    assert loss == pytest.approx(expected, rel=1e-5)


def test_the_count_is_that_of_the_global_batch():
    # On one of two replicas: this half's sum over all 5 labelled.
    y_true = np.float32([[1.0], [NAN], [3.0]])
    y_pred = np.float32([[2.0], [5.0], [1.0]])
    loss, *_ = _masked_loss(_task(), y_true, y_pred, count=tf.constant(5.0))
    assert loss == pytest.approx(5.0 / 5, rel=1e-6)


def test_all_missing_gives_zero_loss_and_gradient_not_nan():
    y_true = np.full((3, 1), NAN, "float32")
    y_pred = tf.Variable(np.float32([[1.0], [2.0], [3.0]]))
    loss_fn = resolve_loss("mse", "t")
    with tf.GradientTape() as tape:
        filled, mask, weight = masking.prepare_labels(
            _task(), y_true, y_pred, loss_fn=loss_fn
        )
        loss = masking.masked_task_loss(
            loss_fn, filled, y_pred, weight, tf.reduce_sum(mask)
        )
    assert float(loss) == 0.0 and float(tf.reduce_sum(mask)) == 0.0
    testing.assert_allclose(tape.gradient(loss, y_pred), np.zeros((3, 1)))


def test_nan_labels_give_no_gradient_to_their_examples():
    y_true = np.float32([[1.0], [NAN], [3.0]])
    y_pred = tf.Variable(np.float32([[2.0], [5.0], [1.0]]))
    loss_fn = resolve_loss("mse", "t")
    with tf.GradientTape() as tape:
        filled, mask, weight = masking.prepare_labels(
            _task(), y_true, y_pred, loss_fn=loss_fn
        )
        loss = masking.masked_task_loss(
            loss_fn, filled, y_pred, weight, tf.reduce_sum(mask)
        )
    # d/dp of ((p - y)^2 summed over the labelled) / 2 = (p - y).
    testing.assert_allclose(tape.gradient(loss, y_pred), [[1.0], [0.0], [-2.0]])


def test_labels_of_other_dtypes():
    y_pred = tf.constant([[0.7], [0.2]])
    loss_fn = resolve_loss("binary_crossentropy", "t")
    task = _task(loss="binary_crossentropy")
    y_true, mask, _ = masking.prepare_labels(
        task, np.array([[True], [False]]), y_pred, loss_fn=loss_fn
    )
    testing.assert_allclose(mask, [1.0, 1.0], atol=0)
    assert y_true.dtype == tf.bool
    with pytest.raises(TypeError, match="task 't'.*dtype.*StringLookup"):
        masking.prepare_labels(task, np.array([["a"], ["b"]]), y_pred)


def test_takes_class_ids():
    assert masking.takes_class_ids(
        resolve_loss("sparse_categorical_crossentropy", "t")
    )
    assert masking.takes_class_ids(keras.losses.SparseCategoricalCrossentropy())
    assert not masking.takes_class_ids(resolve_loss("mse", "t"))
    assert not masking.takes_class_ids(keras.losses.CategoricalCrossentropy())


def test_check_labels():
    names = ["a", "b"]
    one, two = np.zeros(2), np.ones(2)
    assert labels.check_labels([one, two], names) == {"a": one, "b": two}
    assert labels.check_labels({"b": two, "a": one}, names)["b"] is two
    assert labels.check_labels(one, ["a"]) == {"a": one}
    with pytest.raises(ValueError, match="Missing: \\['b'\\]; unknown.*\\[\\]"):
        labels.check_labels({"a": one, "b": None}, names)
    with pytest.raises(ValueError, match="Missing: \\[\\]; unknown.*\\['c'\\]"):
        labels.check_labels({"a": one, "b": two, "c": one}, names)
    with pytest.raises(ValueError, match="dict keyed by task name.*ndarray"):
        labels.check_labels(one, names)


def test_task_sample_weight_and_array_sample_weights():
    names = ["a", "b"]
    shared = np.arange(3.0)
    assert labels.task_sample_weight(shared, names, "b") is shared
    assert labels.task_sample_weight({"a": shared}, names, "b") is None
    with pytest.raises(ValueError, match="unknown tasks \\['c'\\]"):
        labels.task_sample_weight({"c": shared}, names, "a")
    y = {"a": np.zeros((3, 1)), "b": np.zeros(3, "int32")}
    completed = labels.check_array_labels(y, {"a": shared}, names)
    assert completed["a"] is shared
    testing.assert_allclose(completed["b"], np.ones(3), atol=0)
    assert completed["b"].dtype == np.float32
    assert labels.check_array_labels(y, shared, names) is shared
    with pytest.raises(TypeError, match="task 'b'.*dtype"):
        labels.check_array_labels({**y, "b": np.array(["x"] * 3)}, None, names)


def test_task_losses_with_a_task_missing_from_the_batch():
    tasks = [
        _task("reg", missing_label=None),
        _task(
            "cls",
            loss="sparse_categorical_crossentropy",
            missing_label=-1,
            units=2,
        ),
        _task("gone"),
    ]
    loss_fns = [resolve_loss(t.loss, t.name) for t in tasks]
    y_pred = {
        "reg": tf.constant([[2.0], [5.0], [1.0]]),
        "cls": tf.constant([[0.5, 0.5], [0.2, 0.8], [0.9, 0.1]]),
        "gone": tf.constant([[1.0], [2.0], [3.0]]),
    }
    y = {
        "reg": np.float32([[1.0], [NAN], [3.0]]),
        "cls": np.int32([1, -1, -1]),
        "gone": np.full((3, 1), NAN, "float32"),
    }
    sample_weight = {"reg": np.float32([2.0, 1.0, 1.0])}
    losses, counts = labels.task_losses(
        tasks, loss_fns, y, y_pred, sample_weight
    )
    testing.assert_allclose(counts, [2.0, 1.0, 0.0], atol=0)
    # reg: (2 * 1 + 1 * 4) / 2; cls: -log 0.5; gone: 0, not NaN.
    testing.assert_allclose(
        [float(v) for v in losses], [3.0, np.log(2.0), 0.0], rtol=1e-5
    )
    assert float(losses[2]) == 0.0
