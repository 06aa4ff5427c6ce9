import math
import numbers
import re

import keras
from keras import ops

_VALID_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_.\-]*$")
# Names that `compile` resolves from the loss, not from `keras.metrics`.
_LOSS_DEPENDENT_METRICS = ("accuracy", "acc", "crossentropy", "ce")


def _is_metric_name(name):
    if name in _LOSS_DEPENDENT_METRICS:
        return True
    try:
        keras.metrics.get(name)
    except ValueError:
        return False
    except TypeError:
        # A known metric class whose constructor needs arguments (`MeanIoU`).
        return True
    return True


def _check_metric(metric, task_name):
    if isinstance(metric, str):
        if _is_metric_name(metric):
            return
        raise ValueError(
            f"Task '{task_name}': unknown metric {metric!r}. Expected the name "
            "of a Keras metric (e.g. 'accuracy', 'auc', 'mae'), a "
            "`keras.metrics.Metric` instance or a callable."
        )
    if not (callable(metric) or isinstance(metric, dict)):
        raise TypeError(
            f"Task '{task_name}': each metric must be a name, a "
            f"`keras.metrics.Metric` or a callable. Received: {metric!r}"
        )


def _same_rank(x1, x2):
    """Drops or adds a trailing axis of size 1 so both ranks agree (Keras)."""
    rank_1, rank_2 = len(x1.shape), len(x2.shape)
    if rank_1 == rank_2 + 1 and x1.shape[-1] == 1:
        if rank_2 == 1:
            return x1, ops.expand_dims(x2, -1)
        return ops.squeeze(x1, -1), x2
    if rank_2 == rank_1 + 1 and x2.shape[-1] == 1:
        if rank_1 == 1:
            return ops.expand_dims(x1, -1), x2
        return x1, ops.squeeze(x2, -1)
    return x1, x2


@keras.saving.register_keras_serializable(package="keras_mtl")
class FunctionLoss(keras.losses.Loss):
    """A `keras.losses.Loss` around a loss function `fn(y_true, y_pred)`.

    `call` gives the function's per-example values, after matching the ranks
    of the labels and the predictions as Keras's own losses do (a trailing
    axis of size 1 is added or dropped).

    Args:
        fn: callable. `fn(y_true, y_pred)` returns the per-example loss.
        name: str. The loss's name. Defaults to `None`: `fn.__name__`.
        reduction: str. How `__call__` reduces the values. Defaults to
            `"sum_over_batch_size"`.

    Example:

    ```python
    loss = keras_mtl.tasks.FunctionLoss(keras.losses.huber)
    loss.name  # "huber"
    ```
    """

    def __init__(self, fn, name=None, reduction="sum_over_batch_size"):
        if not callable(fn):
            raise TypeError(f"`fn` must be callable. Received: fn={fn!r}")
        super().__init__(
            name=name or getattr(fn, "__name__", None), reduction=reduction
        )
        self.fn = fn

    def call(self, y_true, y_pred):
        y_true, y_pred = _same_rank(y_true, y_pred)
        return self.fn(y_true, y_pred)

    def get_config(self):
        config = super().get_config()
        config["fn"] = keras.saving.serialize_keras_object(self.fn)
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["fn"] = keras.saving.deserialize_keras_object(config["fn"])
        return cls(**config)


def resolve_loss(loss, task_name):
    """Returns `loss` as a `keras.losses.Loss` instance, or raises."""
    if isinstance(loss, keras.losses.Loss):
        return loss
    try:
        resolved = keras.losses.get(loss)
    except (ValueError, TypeError) as e:
        raise ValueError(
            f"Task '{task_name}': unknown loss {loss!r}. Expected the name "
            "of a Keras loss (e.g. 'mse', 'binary_crossentropy'), a "
            f"`keras.losses.Loss` instance or a callable. ({e})"
        ) from None
    if resolved is None:
        raise ValueError(f"Task '{task_name}': `loss` is required.")
    if isinstance(resolved, keras.losses.Loss):
        return resolved
    if callable(resolved):
        return FunctionLoss(resolved)
    raise TypeError(
        f"Task '{task_name}': `loss` must be a string, a Loss or a callable. "
        f"Received: loss={loss!r}"
    )


def check_weight(value, what):
    """`value` as a float, finite and >= 0, or a clear error naming `what`
    (a static loss weight or a fixed task weight)."""
    if isinstance(value, (bool, str, bytes)):
        raise TypeError(f"{what} must be a number. Received: {value!r}")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise TypeError(
            f"{what} must be a number. Received: {value!r}"
        ) from None
    if not math.isfinite(number) or number < 0:
        raise ValueError(
            f"{what} must be a finite number >= 0. Received: {value!r}"
        )
    return number


@keras.saving.register_keras_serializable(package="keras_mtl")
class Task:
    """One task of a multi-task model: its head, loss and metrics.

    A `Task` is pure configuration. `keras_mtl.build_mtl_model` turns each
    task into an output head named after the task, and `MTLModel.compile`
    takes each task's loss, metrics and loss weight from it.

    Labels may be missing for some examples: a float label that is NaN, or
    a label equal to `missing_label`, counts for nothing in that task's loss
    and metrics. The task loss is the mean over the labelled examples
    (`sum(sample_weight * loss) / number_of_labelled_examples`, the Keras
    `"sum_over_batch_size"` convention restricted to labelled examples); a
    batch without any label for the task contributes zero.

    Args:
        name: str. The task's name: the key of its labels and predictions, the
            name of its output layer and the prefix of its logs. Starts with a
            letter; letters, digits, `_`, `.` and `-` only; not `"val"` or
            `"val_..."`, Keras's prefix of validation logs.
        loss: str, `keras.losses.Loss` or callable. The task's loss. Defaults
            to `"mse"`.
        metrics: list of metric names or `keras.metrics.Metric` instances.
            Logged as `<name>_<metric>`. Defaults to `None` (none).
        units: int. Output units of the head. Defaults to `1`.
        activation: str or callable. Activation of the output layer. Defaults
            to `None` (linear).
        head: list of int, or a `keras.layers.Layer`. Task-specific layers
            between the shared representation and the output layer: hidden
            sizes of ReLU `Dense` layers, or a layer applied as is. Defaults to
            `None` (the output layer sits directly on the shared features).
        loss_weight: float. Static weight of this task's loss; a weighting
            method's dynamic weight multiplies it. Defaults to `1.0`.
        missing_label: float or int. Label value that marks a missing label,
            e.g. `-1` for class ids. NaN always marks a missing float label.
            Defaults to `None`.

    Example:

    ```python
    tasks = [
        keras_mtl.Task("price", loss="mse", metrics=["mae"]),
        keras_mtl.Task("segment", loss="sparse_categorical_crossentropy",
                       metrics=["accuracy"], units=5, activation="softmax",
                       missing_label=-1),
    ]
    ```

    References:
        - [Caruana, 1997](https://doi.org/10.1023/A:1007379606734),
          Multitask Learning.
    """

    def __init__(
        self,
        name,
        loss="mse",
        metrics=None,
        units=1,
        activation=None,
        head=None,
        loss_weight=1.0,
        missing_label=None,
    ):
        if not isinstance(name, str) or not _VALID_NAME.match(name):
            raise ValueError(
                "Task `name` must be a string that starts with a letter and "
                "holds only letters, digits, '_', '.' and '-' (it names a "
                f"layer and its logs). Received: name={name!r}"
            )
        if name == "val" or name.startswith("val_"):
            raise ValueError(
                "Task `name` must not be 'val' or start with 'val_': Keras "
                "marks validation logs with that prefix, so its logs would "
                f"read as another task's validation logs. Received: "
                f"name={name!r}"
            )
        resolve_loss(loss, name)
        if metrics is not None and not isinstance(metrics, (list, tuple)):
            metrics = [metrics]
        for metric in metrics or []:
            _check_metric(metric, name)
        try:
            keras.activations.get(activation)
        except ValueError:
            raise ValueError(
                f"Task '{name}': unknown activation {activation!r}. Expected "
                "the name of a Keras activation (e.g. 'sigmoid', 'softmax'), "
                "a callable or None (linear)."
            ) from None
        if not isinstance(units, int) or isinstance(units, bool) or units < 1:
            raise ValueError(
                f"Task '{name}': `units` must be an int >= 1. "
                f"Received: units={units!r}"
            )
        if head is not None and not isinstance(
            head, (list, tuple, keras.layers.Layer)
        ):
            raise TypeError(
                f"Task '{name}': `head` must be a list of hidden sizes or a "
                f"keras Layer. Received: head={head!r}"
            )
        if isinstance(head, (list, tuple)) and not all(
            isinstance(u, int) and u >= 1 for u in head
        ):
            raise ValueError(
                f"Task '{name}': `head` sizes must be ints >= 1. "
                f"Received: head={head!r}"
            )
        loss_weight = check_weight(loss_weight, f"Task '{name}': `loss_weight`")
        if missing_label is not None and (
            isinstance(missing_label, bool)
            or not isinstance(missing_label, numbers.Real)
            or math.isnan(missing_label)
        ):
            raise TypeError(
                f"Task '{name}': `missing_label` must be a number (the label "
                "value that marks a missing label, e.g. -1) or None; NaN "
                "float labels count as missing without it. Received: "
                f"missing_label={missing_label!r}"
            )
        self.name = name
        self.loss = loss
        self.metrics = list(metrics) if metrics else []
        self.units = units
        self.activation = activation
        self.head = list(head) if isinstance(head, tuple) else head
        self.loss_weight = loss_weight
        self.missing_label = missing_label

    def get_config(self):
        ser = keras.saving.serialize_keras_object
        return {
            "name": self.name,
            "loss": ser(self.loss),
            "metrics": [ser(m) for m in self.metrics],
            "units": self.units,
            "activation": ser(self.activation),
            "head": ser(self.head)
            if isinstance(self.head, keras.layers.Layer)
            else self.head,
            "loss_weight": self.loss_weight,
            "missing_label": self.missing_label,
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        des = keras.saving.deserialize_keras_object
        for key in ("loss", "activation"):
            if isinstance(config.get(key), dict):
                config[key] = des(config[key])
        config["metrics"] = [
            des(m) if isinstance(m, dict) else m
            for m in config.get("metrics") or []
        ]
        if isinstance(config.get("head"), dict):
            config["head"] = des(config["head"])
        return cls(**config)

    def __repr__(self):
        return (
            f"Task(name={self.name!r}, loss={self.loss!r}, "
            f"units={self.units}, loss_weight={self.loss_weight})"
        )
