"""Missing labels: which examples of a task are labelled, and masked losses."""

import tensorflow as tf
from keras import ops

# Keras losses that take labels of the prediction's shape (one-hot for the
# categorical ones), by the names their functions and classes log under.
_DENSE_LABEL_LOSSES = (
    "mean_squared_error",
    "mean_absolute_error",
    "mean_absolute_percentage_error",
    "mean_squared_logarithmic_error",
    "huber",
    "huber_loss",
    "log_cosh",
    "kl_divergence",
    "poisson",
    "hinge",
    "squared_hinge",
    "categorical_hinge",
    "binary_crossentropy",
    "binary_focal_crossentropy",
    "categorical_crossentropy",
    "categorical_focal_crossentropy",
    "cosine_similarity",
)


def _loss_name(loss_fn):
    return str(getattr(loss_fn, "name", "") or "").lower()


def takes_class_ids(loss_fn):
    """Whether `loss_fn` is a sparse loss: labels are class ids."""
    return "sparse" in _loss_name(loss_fn)


def label_dtype_error(task_name, dtype):
    return TypeError(
        f"Labels of task '{task_name}' have dtype {dtype}; expected numbers "
        "(floats, or ints for class ids) or booleans. Map string labels to "
        "class ids first (e.g. with `keras.layers.StringLookup`)."
    )


def _shape_error(task, y_true, y_pred):
    return ValueError(
        f"Labels of task '{task.name}' have shape {tuple(y_true.shape)}, which "
        f"cannot match its predictions of shape {tuple(y_pred.shape)}. "
        "Expected the prediction's shape, the same without its last axis "
        "(class ids, or a trailing 1 dropped), or with a last axis of 1 "
        "(class ids)."
    )


def _dims_match(a, b):
    return len(a) == len(b) and all(
        x is None or y is None or x == y for x, y in zip(a, b)
    )


def _check_layout_fits_loss(task, y_true, y_pred, layout, loss_fn):
    """Raises where the labels' layout is not what a known loss takes."""
    name = _loss_name(loss_fn)
    ids = layout in ("sparse", "sparse_keepdims")
    if takes_class_ids(loss_fn) and not ids and y_pred.shape[-1] != 1:
        raise ValueError(
            f"Task '{task.name}': its loss '{name}' takes class ids, of shape "
            f"{tuple(y_pred.shape[:-1])} or {tuple(y_pred.shape[:-1])} + (1,); "
            f"received labels of shape {tuple(y_true.shape)}, the shape of "
            "its predictions (one-hot?). Pass class ids, or use the loss's "
            "non-sparse form (e.g. 'categorical_crossentropy') for one-hot "
            "labels."
        )
    if ids and name in _DENSE_LABEL_LOSSES:
        raise ValueError(
            f"Task '{task.name}': its loss '{name}' takes labels of the "
            f"predictions' shape {tuple(y_pred.shape)}; received labels of "
            f"shape {tuple(y_true.shape)}, which look like class ids. Use "
            "'sparse_categorical_crossentropy' for class ids, or one-hot "
            "labels."
        )


def label_layout(task, y_true, y_pred, loss_fn=None):
    """Says how `y_true` lines up with `y_pred`, or raises a clear error.

    Args:
        task: the `Task`, for error messages.
        y_true: the task's labels.
        y_pred: the task's predictions.
        loss_fn: the task's loss. Keras losses known to take class ids
            (sparse ones) or prediction-shaped labels are checked against
            the layout. Defaults to `None` (no check).

    Returns:
        One of `"dense"` (same shape), `"expand"` (labels lack the trailing
        axis of size 1), `"sparse"` (class ids without a class axis) or
        `"sparse_keepdims"` (class ids with a trailing axis of 1).
    """
    if len(y_true.shape) == 0:
        raise _shape_error(task, y_true, y_pred)
    layout = _layout(task, y_true, y_pred)
    if loss_fn is not None:
        _check_layout_fits_loss(task, y_true, y_pred, layout, loss_fn)
    return layout


def _layout(task, y_true, y_pred):
    true_dims = tuple(y_true.shape[1:])
    pred_dims = tuple(y_pred.shape[1:])
    if _dims_match(true_dims, pred_dims):
        if pred_dims and pred_dims[-1] != 1 and true_dims[-1] == 1:
            return "sparse_keepdims"
        return "dense"
    if _dims_match(true_dims, pred_dims[:-1]):
        return "expand" if pred_dims[-1] == 1 else "sparse"
    if (
        true_dims
        and true_dims[-1] == 1
        and _dims_match(true_dims[:-1], pred_dims[:-1])
    ):
        return "sparse_keepdims"
    raise _shape_error(task, y_true, y_pred)


def labelled_mask(task, y_true, layout):
    """Returns a float mask of shape `y_pred.shape[:-1]`: 1 where labelled."""
    present = ops.ones_like(y_true, dtype="bool")
    if "float" in str(y_true.dtype):
        present = ops.logical_not(ops.isnan(y_true))
    if task.missing_label is not None:
        missing = ops.cast(task.missing_label, y_true.dtype)
        present = ops.logical_and(present, ops.not_equal(y_true, missing))
    if layout == "dense":
        present = ops.all(present, axis=-1)
    elif layout == "sparse_keepdims":
        present = present[..., 0]
    return ops.cast(present, "float32")


def prepare_labels(task, y_true, y_pred, sample_weight=None, loss_fn=None):
    """Fills missing labels; returns `(y_true, mask, weight)`.

    `y_true` keeps its dtype, with missing entries replaced by 0 so that no
    NaN reaches a loss or metric; `mask` has the shape of the per-example
    loss (`y_pred.shape[:-1]`), 1 where labelled; `weight` is `mask` times
    `sample_weight`.
    """
    y_true = ops.convert_to_tensor(y_true)
    if not (y_true.dtype.is_floating or y_true.dtype.is_integer) and (
        y_true.dtype != tf.bool
    ):
        raise label_dtype_error(task.name, y_true.dtype.name)
    if y_true.shape.rank is None:
        # tf.function can relax shapes to unknown rank after retracing: then
        # the labels take the prediction's layout (class ids for sparse
        # losses), checked at run time by the reshape.
        sparse = takes_class_ids(loss_fn)
        target = ops.shape(y_pred)[:-1] if sparse else ops.shape(y_pred)
        y_true = tf.reshape(y_true, target)
    layout = label_layout(task, y_true, y_pred, loss_fn)
    if layout == "expand":
        y_true = ops.expand_dims(y_true, -1)
        layout = "dense"
    mask = labelled_mask(task, y_true, layout)
    fill = mask if layout == "sparse" else ops.expand_dims(mask, -1)
    y_true = ops.where(ops.cast(fill, "bool"), y_true, ops.zeros_like(y_true))
    if layout in ("sparse", "sparse_keepdims"):
        y_true = _checked_class_ids(task, y_true, y_pred.shape[-1])
    weight = mask
    if sample_weight is not None:
        sample_weight = ops.cast(sample_weight, "float32")
        while len(sample_weight.shape) > len(mask.shape):
            if sample_weight.shape[-1] != 1:
                raise ValueError(
                    f"Sample weights of task '{task.name}' have shape "
                    f"{tuple(sample_weight.shape)}; expected at most the "
                    f"shape of its per-example loss {tuple(mask.shape)}."
                )
            sample_weight = ops.squeeze(sample_weight, -1)
        while len(sample_weight.shape) < len(mask.shape):
            sample_weight = ops.expand_dims(sample_weight, -1)
        weight = mask * sample_weight
    return y_true, mask, weight


def _checked_class_ids(task, ids, classes):
    """`ids`, once they are known to lie in `[0, classes)`.

    Out-of-range ids fail the step with the task's name (TensorFlow's own
    error does not name it, and on GPU the loss is silently NaN instead).
    """
    if classes is None:
        return ids
    valid = ops.all(
        ops.logical_and(ops.greater_equal(ids, 0), ops.less(ids, classes))
    )
    check = tf.debugging.Assert(
        valid,
        [
            f"Task `{task.name}`: class ids must be in [0, {classes}) (its "
            "output has that many units), or NaN / its `missing_label` where "
            "the label is missing. Smallest and largest ids of the batch:",
            ops.min(ids),
            ops.max(ids),
        ],
    )
    with tf.control_dependencies([check]):
        return tf.identity(ids)


def masked_task_loss(loss_fn, y_true, y_pred, weight, count):
    """This replica's share of a task's mean loss over labelled examples.

    `sum(weight * loss) / count`, where `count` is the number of labelled
    loss elements in the *global* batch (summed over replicas), so that the
    shares of all replicas add up to the exact global-batch loss. Zero when
    nothing is labelled.
    """
    values = ops.cast(loss_fn.call(y_true, y_pred), "float32")
    while len(values.shape) < len(weight.shape):
        values = ops.expand_dims(values, -1)
    return ops.divide_no_nan(ops.sum(values * weight), count)
