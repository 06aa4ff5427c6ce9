"""What a multi-task model logs: the trackers of its step, as one metric."""

import warnings

import keras
import numpy as np
from keras import ops

from keras_mtl import compat
from keras_mtl import distribute
from keras_mtl.weighting.base import EpochEnd


class TaskMeans(keras.metrics.Metric):
    """Per-task weighted means in two `(T,)` variables (one update per
    step, not T); its result is `{<task>_<suffix>: mean}`, 0 for a task
    whose weights summed to 0 (as `keras.metrics.Mean`), and with
    `count_suffix` also `{<task>_<count_suffix>: sum of weights}`."""

    def __init__(self, names, suffix, count_suffix=None, **kwargs):
        super().__init__(name=f"task_{suffix}", **kwargs)
        self.keys = [f"{n}_{suffix}" for n in names]
        self.count_keys = (
            [f"{n}_{count_suffix}" for n in names] if count_suffix else []
        )
        self.totals = self.add_variable(
            shape=(len(names),), initializer="zeros", name="totals"
        )
        self.counts = self.add_variable(
            shape=(len(names),), initializer="zeros", name="counts"
        )

    def update_state(self, values, sample_weight):
        sample_weight = ops.cast(sample_weight, self.dtype)
        self.totals.assign_add(ops.cast(values, self.dtype) * sample_weight)
        self.counts.assign_add(sample_weight)

    def means(self):
        """The `(T,)` means (0 where the weights summed to 0)."""
        return ops.divide_no_nan(self.totals, self.counts)

    def result(self):
        num_tasks = len(self.keys)
        results = dict(zip(self.keys, ops.unstack(self.means(), num_tasks)))
        if self.count_keys:
            counts = ops.unstack(self.counts, num_tasks)
            results.update(zip(self.count_keys, counts))
        return results

    def reset_state(self):
        for variable in (self.totals, self.counts):
            variable.assign(ops.zeros_like(variable))


class TaskLogs(keras.metrics.Metric):
    """The model's own logs, updated once a step.

    - `loss`: `sum_i s_i L_i + R`, with `L_i` the task's `<task>_loss`,
      `s_i` its static loss weight and `R` the mean of the model's
      regularisers over the steps. It does not depend on the weighting
      method's weights of the moment, nor on how the data is batched:
      comparable across epochs, methods, and between `loss` and `val_loss`
      (Keras's default monitor). A task with no label in the epoch adds
      nothing.
    - `weighted_loss`, in training only: the objective the step minimises,
      `sum_i w_i s_i L_i` with the method's weights plus its own term and
      `R`, as Keras's `loss` would average it (over the steps, by batch
      size).
    - `<task>_loss`, `<task>_examples` (training only) and, with
      `log_weights`, `<task>_weight` (training only).
    - `skipped_steps` (training only, with `count_skipped`): the steps of
      the epoch that `skip_non_finite` skipped; they count for nothing in
      the others.

    One `(T,)` tracker per quantity, not T `Mean`s: their per-step updates
    are a cost that grows with T. The labelled counts that weight each
    task's loss are its `<task>_examples`, and say which tasks had no label
    yet in the epoch (see `collect`).
    """

    def __init__(self, names, log_weights, **kwargs):
        super().__init__(name="task_logs", **kwargs)
        self.names = list(names)
        self.loss_weights = [1.0] * len(self.names)  # set by `compile`
        self.objective = keras.metrics.Mean(name="weighted_loss")
        self.regularization = keras.metrics.Mean(name="regularization")
        self.task_losses = TaskMeans(names, "loss", count_suffix="examples")
        self.task_weights = TaskMeans(names, "weight") if log_weights else None
        self.count_skipped = True  # set by `compile`
        self.skipped = keras.metrics.Sum(name="skipped_steps")

    @property
    def training_only(self):
        """Keys left out of evaluation logs: the weights do not change in
        evaluation, and the examples are those of training."""
        weights = self.task_weights.keys if self.task_weights else []
        counts = self.task_losses.count_keys
        return {"weighted_loss", "skipped_steps", *counts, *weights}

    def update_state(self, step, total, weights, batch_size, finite=None):
        """Adds a step: its loss terms (see `labels.loss_terms`), this
        replica's `total`, the `(T,)` weights and this replica's batch size;
        with `finite` false (a skipped step), only to `skipped_steps`."""
        replicas = distribute.num_replicas()
        keep = 1.0
        if finite is not None:
            keep = ops.cast(finite, self.dtype)
            self.skipped.update_state((1.0 - keep) / replicas)

        def kept(value):  # a skipped step's NaN times 0 would be NaN
            value = ops.cast(value, self.dtype)
            if finite is None:
                return value
            return ops.where(finite, value, ops.zeros_like(value))

        batch_size = ops.cast(batch_size, self.dtype) * keep
        self.objective.update_state(
            kept(total) * replicas, sample_weight=batch_size
        )
        if not isinstance(step["regularization"], float):
            self.regularization.update_state(
                kept(step["regularization"]) * replicas,
                sample_weight=batch_size,
            )
        # Each task's loss is the mean over its labelled examples: weighted
        # by the labelled count (this replica's part of it).
        self.task_losses.update_state(
            kept(step["unweighted"]),
            sample_weight=step["counts"] * keep / replicas,
        )
        if self.task_weights is not None:
            present = ops.cast(step["present"], "float32")
            self.task_weights.update_state(
                kept(weights), sample_weight=present * keep / replicas
            )

    def result(self):
        static = ops.convert_to_tensor(self.loss_weights, self.dtype)
        results = {
            "loss": ops.sum(self.task_losses.means() * static)
            + self.regularization.result(),
            "weighted_loss": self.objective.result(),
            **self.task_losses.result(),
        }
        if self.task_weights is not None:
            results.update(self.task_weights.result())
        if self.count_skipped:
            results["skipped_steps"] = self.skipped.result()
        return results

    def reset_state(self):
        metrics = (self.objective, self.regularization, self.skipped)
        for metric in (*metrics, self.task_losses, self.task_weights):
            if metric is not None:
                metric.reset_state()

    def collect(self, metrics):
        """The logs of `metrics` (this one among them) as one dict.

        `<task>_<metric>` for every task count (Keras drops the output name
        when there is one output), and NaN, not the 0 of an empty mean, for
        the loss, weight and metrics of a task with no label yet in the
        epoch.
        """
        prefix = f"{self.names[0]}_" if len(self.names) == 1 else ""
        results = {}
        for metric in metrics:
            result = metric.result()
            if metric is self:  # keys name the tasks
                results.update(result)
            elif isinstance(result, dict):
                results.update({prefix + k: v for k, v in result.items()})
            else:
                results[metric.name] = result
        counts = ops.unstack(self.task_losses.counts, len(self.names))
        index = {name: i for i, name in enumerate(self.names)}
        longest_first = sorted(index, key=len, reverse=True)
        for key, value in results.items():
            task = next(
                (n for n in longest_first if key.startswith(f"{n}_")), None
            )
            if task is None or key in self.task_losses.count_keys:
                continue
            results[key] = ops.where(
                counts[index[task]] > 0, value, ops.full_like(value, np.nan)
            )
        return results


def monitor_modes(model):
    """`{log: "min" | "max"}` for the training logs (without `val_`) whose
    direction the model knows: `weighted_loss`, `<task>_loss`, and each
    compiled metric's `<task>_<metric>` by the metric's own direction."""
    names = model.task_names
    modes = {"weighted_loss": "min"}
    modes.update({f"{name}_loss": "min" for name in names})
    for (output, metric), direction in compat.metric_directions(model).items():
        key = f"{output or names[0]}_{metric}"
        modes[key] = "max" if direction == "up" else "min"
    return modes


class MonitorModes(keras.callbacks.Callback):
    """Gives `callbacks` that monitor a log with `mode="auto"` (Keras's
    `EarlyStopping`, `ModelCheckpoint`, `ReduceLROnPlateau`) the direction
    the model knows and Keras cannot find: `min` for `weighted_loss` and
    `<task>_loss`, the compiled metric's own for `<task>_<metric>` (AUC and
    accuracy up, MAE down), with or without `val_`. Set at the end of the
    first epoch, once the metrics are built and before those callbacks
    look; other monitors are left to Keras."""

    def __init__(self, callbacks):
        super().__init__()
        self.callbacks = callbacks

    def on_epoch_end(self, epoch, logs=None):
        pending = [
            c
            for c in self.callbacks
            if getattr(c, "mode", None) == "auto"
            and isinstance(getattr(c, "monitor", None), str)
        ]
        if not pending:  # every mode is set: nothing to read
            return
        modes = monitor_modes(self.model)
        for callback in pending:
            mode = modes.get(callback.monitor.removeprefix("val_"))
            if mode is not None:
                callback.mode = mode


def fit_callbacks(callbacks, model):
    """`callbacks` for `model.fit` (a list or a
    `keras.callbacks.CallbackList`), with the model's own first: the
    weighting's `EpochEnd` and `MonitorModes`."""
    listed = (
        callbacks.callbacks
        if isinstance(callbacks, keras.callbacks.CallbackList)
        else keras.tree.flatten(callbacks)
        if callbacks
        else []
    )
    for callback in listed:
        if isinstance(callback, keras.callbacks.BackupAndRestore) and (
            callback.save_freq != "epoch"
        ):
            warnings.warn(
                f"BackupAndRestore(save_freq={callback.save_freq!r}) restores "
                "the weights, optimizer and weighting state of its last save, "
                "but Keras restarts the interrupted epoch at batch 0: the "
                "batches of that epoch trained before the save run twice "
                "(and count twice in its logs and epoch statistics). "
                "save_freq='epoch' resumes exactly.",
                stacklevel=3,
            )
    if isinstance(callbacks, keras.callbacks.CallbackList):
        hooks = [EpochEnd(model.weighting), MonitorModes(callbacks.callbacks)]
        for hook in hooks:
            hook.set_model(model)
        callbacks.callbacks[:0] = hooks
        return callbacks
    callbacks = keras.tree.flatten(callbacks) if callbacks else []
    return [EpochEnd(model.weighting), MonitorModes(callbacks), *callbacks]
