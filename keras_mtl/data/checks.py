"""What `MTLModel.fit` and `evaluate` receive, checked before Keras traces.

Each check names the task or argument and says what was expected; the
per-step checks that need the data itself (class ids of a `tf.data`
pipeline) are in the step (`masking.prepare_labels`).
"""

import numpy as np
import tensorflow as tf

from keras_mtl import labels
from keras_mtl import masking
from keras_mtl.data import mixture


def fit_arguments(model, loss_fns, x, y, sample_weight, kwargs, steps):
    """`x` and `sample_weight` for `MTLModel.fit` (`steps` is
    `"steps_per_epoch"`) or `evaluate` (`"steps"`), checked, with a
    `Mixture` unpacked; `kwargs["validation_data"]` likewise, in place."""
    x = mixture.unpack(x, y, kwargs, steps, model)
    sample_weight = check(model, loss_fns, x, y, sample_weight, "x")
    if kwargs.get("validation_data") is not None:
        validation = mixture.unpack(
            kwargs["validation_data"], None, kwargs, "validation_steps", model
        )
        check_validation(model, loss_fns, validation)
        kwargs["validation_data"] = validation
    return x, sample_weight


def check(model, loss_fns, x, y, sample_weight, argument):
    """Checks `x`/`y` of `fit` or `evaluate` (or `validation_data`).

    `loss_fns` are the model's compiled task losses (`None` before
    `compile`). Returns the `sample_weight` to pass on (see
    `labels.check_array_labels`).
    """
    if isinstance(x, tf.data.Dataset):
        _check_dataset(model, x, argument)
        return sample_weight
    if _num_rows(x) == 0:
        raise ValueError(
            f"`{argument}` holds no examples (0 rows): there is nothing to "
            "train or evaluate on."
        )
    if isinstance(y, dict) and loss_fns is not None:
        _check_class_ids(model, loss_fns, y)
    return labels.check_array_labels(y, sample_weight, model.task_names)


def check_validation(model, loss_fns, validation_data):
    """Checks `fit`'s `validation_data`, a dataset or `(x, y[, w])`."""
    if isinstance(validation_data, tf.data.Dataset):
        _check_dataset(model, validation_data, "validation_data")
    elif isinstance(validation_data, (list, tuple)) and validation_data:
        x, y = validation_data[0], (list(validation_data) + [None])[1]
        weights = (list(validation_data) + [None, None])[2]
        check(model, loss_fns, x, y, weights, "validation_data")


def _num_rows(x):
    first = next(iter(x.values())) if isinstance(x, dict) and x else x
    if isinstance(first, (list, tuple)) and first:
        first = first[0]
    shape = getattr(first, "shape", None)
    return shape[0] if shape else None


def _check_dataset(model, dataset, argument):
    if dataset.cardinality() == 0:
        raise ValueError(
            f"`{argument}` is an empty dataset (cardinality 0): there is "
            "nothing to train or evaluate on. Check its filters, `take` and "
            "`batch(drop_remainder=True)` against its size."
        )
    spec = dataset.element_spec
    if not isinstance(spec, tuple) or len(spec) < 2:
        return
    _check_batched_inputs(model, spec[0], argument)
    if isinstance(spec[1], dict):
        for name, label in spec[1].items():
            rank = getattr(getattr(label, "shape", None), "rank", None)
            if rank == 0:
                raise ValueError(
                    f"`{argument}` yields one scalar label per element for "
                    f"task '{name}': the dataset is not batched. Batch it, "
                    "e.g. `dataset.batch(32)`."
                )


def _check_batched_inputs(model, spec, argument):
    inputs = model.inputs
    if isinstance(spec, dict):
        pairs = [(spec.get(t.name.split(":")[0]), t) for t in inputs]
    else:
        specs = tf.nest.flatten(spec)
        if len(specs) != len(inputs):
            return
        pairs = list(zip(specs, inputs))
    for element, tensor in pairs:
        rank = getattr(getattr(element, "shape", None), "rank", None)
        if rank is not None and rank == len(tensor.shape) - 1:
            raise ValueError(
                f"`{argument}` yields inputs of shape {tuple(element.shape)} "
                f"for the model input '{tensor.name}' of shape (batch, "
                f"{', '.join(str(d) for d in tensor.shape[1:])}): the "
                "dataset is not batched. Batch it, e.g. `dataset.batch(32)`."
            )


def _check_class_ids(model, loss_fns, y):
    """Class ids outside `[0, classes)` in array labels, by task."""
    for task, loss_fn in zip(model.tasks, loss_fns):
        value = y.get(task.name)
        if not masking.takes_class_ids(loss_fn) or not hasattr(value, "dtype"):
            continue
        ids = np.asarray(value)
        if ids.dtype.kind not in "iuf":
            continue
        labelled = ~np.isnan(ids) if ids.dtype.kind == "f" else True
        if task.missing_label is not None:
            labelled = labelled & (ids != task.missing_label)
        ids = ids[labelled]
        classes = model.output[task.name].shape[-1]
        if ids.size and (ids.min() < 0 or ids.max() >= classes):
            raise ValueError(
                f"Task '{task.name}': class ids must be in [0, {classes}) "
                f"(its output has {classes} units), or NaN / its "
                "`missing_label` where the label is missing. Received ids "
                f"from {ids.min()} to {ids.max()}."
            )
