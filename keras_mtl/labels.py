"""Labels of a multi-task batch: their structure, and per-task losses."""

import numpy as np
from keras import ops

from keras_mtl import distribute
from keras_mtl import masking


def check_labels(y, names):
    """Returns `y` as a `{task: labels}` dict, or raises a clear error.

    A list or tuple of one entry per task, or (with one task) the labels
    alone, are accepted too.
    """
    if isinstance(y, (list, tuple)) and len(y) == len(names):
        y = dict(zip(names, y))
    if not isinstance(y, dict):
        if len(names) == 1 and y is not None:
            return {names[0]: y}
        raise ValueError(
            f"Labels must be a dict keyed by task name {names}. "
            f"Received: {type(y).__name__}"
        )
    missing = [n for n in names if n not in y or y[n] is None]
    unknown = sorted(k for k in y if k not in names)
    if missing or unknown:
        raise ValueError(
            f"Labels must have one entry per task {names}. "
            f"Missing: {missing}; unknown keys: {unknown}. Mark missing "
            "labels with NaN or the task's `missing_label` instead."
        )
    return y


def task_sample_weight(sample_weight, names, name):
    """The sample weights of task `name`: one for all tasks, or a dict."""
    if isinstance(sample_weight, dict):
        unknown = sorted(k for k in sample_weight if k not in names)
        if unknown:
            raise ValueError(
                f"`sample_weight` names unknown tasks {unknown}. "
                f"Expected keys among {names}."
            )
        return sample_weight.get(name)
    return sample_weight


def check_array_labels(y, sample_weight, names):
    """Checks array labels before Keras converts them.

    Returns the `sample_weight` to pass on: a `{task: weights}` dict that
    names only some tasks is completed with ones (Keras wants one array
    per output).
    """
    if not isinstance(y, dict):
        return sample_weight
    for name, value in y.items():
        dtype = getattr(value, "dtype", None)
        if isinstance(dtype, np.dtype) and dtype.kind in "USO":
            raise masking.label_dtype_error(name, dtype)
    if not isinstance(sample_weight, dict):
        return sample_weight
    task_sample_weight(sample_weight, names, None)  # unknown keys raise
    return {
        name: sample_weight[name]
        if sample_weight.get(name) is not None
        else np.ones(np.shape(value)[:1], "float32")
        for name, value in y.items()
    }


def prepare_labels(tasks, loss_fns, y, y_pred, sample_weight=None):
    """Masks missing labels: returns dicts `(y, mask, weight)` by task."""
    names = [t.name for t in tasks]
    y = check_labels(y, names)
    prepared = {
        task.name: masking.prepare_labels(
            task,
            y[task.name],
            y_pred[task.name],
            task_sample_weight(sample_weight, names, task.name),
            loss_fn=loss_fn,
        )
        for task, loss_fn in zip(tasks, loss_fns)
    }
    return tuple(
        {name: parts[i] for name, parts in prepared.items()} for i in range(3)
    )


def task_losses(tasks, loss_fns, y, y_pred, sample_weight=None):
    """Each task's loss share and labelled count on this replica's batch.

    Returns:
        `(losses, counts)`: a list of T scalars, this replica's share of
        each task's mean loss over the labelled examples of the global
        batch (the shares of all replicas add up to it; static loss weights
        not applied), and the `(T,)` counts of labelled loss elements in
        the global batch. A task is present in the batch where its count
        is positive.
    """
    labels, masks, weights = prepare_labels(
        tasks, loss_fns, y, y_pred, sample_weight
    )
    local = ops.stack([ops.sum(masks[t.name]) for t in tasks])
    counts = distribute.all_reduce_sum(local)
    # One unstack instead of T slices: fewer ops in the step.
    losses = [
        masking.masked_task_loss(
            loss_fn, labels[t.name], y_pred[t.name], weights[t.name], count
        )
        for t, loss_fn, count in zip(
            tasks, loss_fns, ops.unstack(counts, len(tasks))
        )
    ]
    return losses, counts


def loss_terms(
    tasks, loss_fns, static_weights, y, y_pred, sample_weight, training=None
):
    """The task-loss terms of a step.

    Args:
        training: `None`, or the `(T,)` Python bools of the tasks that
            train: the others keep their measured `unweighted` and
            `task_losses` (for the logs) but have no share and are not
            `present` (see `MTLModel.set_training_tasks`).

    Returns:
        dict: `shares` (list of T scalars: this replica's shares, see
        `task_losses`), `weighted` (`(T,)` shares times the static loss
        weights), `unweighted` (the shares' sum over replicas: each task's
        loss, gradient stopped), `task_losses` (`unweighted` times the
        static weights), `counts` (labelled counts of the global batch) and
        `present` (count > 0).
    """
    shares, counts = task_losses(tasks, loss_fns, y, y_pred, sample_weight)
    static = ops.convert_to_tensor(static_weights, "float32")
    stacked = ops.stack(shares)
    unweighted = distribute.all_reduce_sum(stacked)
    present = ops.greater(counts, 0.0)
    if training is not None and not all(training):
        shares = [
            s if t else ops.zeros_like(s) for s, t in zip(shares, training)
        ]
        stacked = ops.stack(shares)
        present = ops.logical_and(present, ops.convert_to_tensor(training))
    return dict(
        shares=shares,
        weighted=stacked * static,
        unweighted=unweighted,
        task_losses=unweighted * static,
        counts=counts,
        present=present,
    )


def extra_terms(step, method, regularisers):
    """`step` (from `loss_terms`) with `regularization` (the sum of the
    model's `regularisers`) and `extra` (that plus the method's
    `regularization_loss`), this replica's shares of them."""
    replicas = distribute.num_replicas()
    own = method.regularization_loss(step["task_losses"], step["present"])
    extra = 0.0 if own is None else ops.cast(own, "float32") / replicas
    step["regularization"] = 0.0
    if regularisers:
        regularisers = [ops.cast(v, "float32") for v in regularisers]
        step["regularization"] = ops.sum(regularisers) / replicas
        extra = extra + step["regularization"]
    step["extra"] = extra
    return step


def task_terms(step, static_weights, scale):
    """Each task's share times its static weight and the loss `scale`
    (mixed precision), from the task's own scalar: the gradient of a slice
    of the stacked losses would go back through every task's loss."""
    return [
        share * weight * scale
        for share, weight in zip(step["shares"], static_weights)
    ]
