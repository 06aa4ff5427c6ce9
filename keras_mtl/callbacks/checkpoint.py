"""One score per epoch from the per-task logs, to checkpoint and stop on.

`ModelCheckpoint` and `EarlyStopping` monitor one log. These callbacks
write a multi-task score into the epoch's logs, the dict that Keras then
hands to every callback after them, so that those can monitor it.
"""

import math
import numbers
import warnings

import keras
import numpy as np

from keras_mtl.evaluation.delta_m import AVERAGES
from keras_mtl.evaluation.delta_m import delta_m
from keras_mtl.evaluation.delta_m import relative_changes
from keras_mtl.evaluation.directions import metric_higher_is_better
from keras_mtl.evaluation.report import task_results_from_logs
from keras_mtl.logs import monitor_modes

__all__ = ["CombinedMetric", "DeltaMLog"]

PREFIXES = ("val_", "")
MODES = ("min", "max")


def _explicit_direction(higher_is_better, task, metric):
    """The direction `higher_is_better` gives `(task, metric)`, or `None`
    where it says nothing."""
    if isinstance(higher_is_better, bool):
        return higher_is_better
    if isinstance(higher_is_better, dict) and task in higher_is_better:
        entry = higher_is_better[task]
        if isinstance(entry, dict):
            return None if metric not in entry else bool(entry[metric])
        return bool(entry)
    return None


def _check_higher_is_better(higher_is_better):
    if higher_is_better is None or isinstance(higher_is_better, (bool, dict)):
        return
    raise TypeError(
        "`higher_is_better` must be None, a bool, a {task: bool} dict or a "
        f"{{task: {{metric: bool}}}} dict. Received: {higher_is_better!r}"
    )


class _LogScore(keras.callbacks.Callback):
    """Writes `score(results)` into the logs as `<prefix><name>`, with
    `results` the `{task: {metric: value}}` of the `<prefix>` logs."""

    mode = None

    def __init__(self, name, prefix):
        super().__init__()
        if not isinstance(name, str) or not name or name.startswith("val_"):
            raise ValueError(
                "`name` must be a non-empty str without the `val_` prefix "
                f"(`prefix` adds it). Received: name={name!r}"
            )
        if prefix not in PREFIXES:
            raise ValueError(
                f"`prefix` must be one of {PREFIXES}: the validation or the "
                f"training logs. Received: prefix={prefix!r}"
            )
        self.name = name
        self.prefix = prefix
        self._checked = False
        self._written = False

    @property
    def monitor(self):
        """The log key written: `prefix + name`, to pass as `monitor=`."""
        return self.prefix + self.name

    def _tasks(self):
        """The tasks read, or `None`: every task of the model."""
        return None

    def _check(self, modes):
        """Fixes the metrics' directions, at the first epoch end with logs
        to read; `modes`: the model's own, `{log: "min" | "max"}` (logs
        without `val_`)."""

    def _score(self, results, logs):
        raise NotImplementedError

    def on_train_begin(self, logs=None):
        names = getattr(self.model, "task_names", None)
        if names is None:
            raise TypeError(
                f"{type(self).__name__} reads per-task logs: it needs a "
                "keras_mtl.MTLModel. "
                f"Received: {type(self.model).__name__}"
            )
        unknown = [t for t in self._tasks() or [] if t not in names]
        if unknown:
            raise ValueError(
                f"{type(self).__name__} names tasks {unknown} that the model "
                f"lacks. The model's tasks: {list(names)}."
            )
        self._checked = False  # directions: this model's, once built
        self._written = False

    def on_epoch_end(self, epoch, logs=None):
        if logs is None:
            return
        if self.prefix and not any(k.startswith(self.prefix) for k in logs):
            return  # No validation this epoch.
        if self.monitor in logs:
            raise ValueError(
                f"{type(self).__name__} would overwrite the log "
                f"`{self.monitor}`, which the model or an earlier callback "
                "wrote: pass another `name`."
            )
        tasks = self._tasks() or list(self.model.task_names)
        results = task_results_from_logs(logs, tasks, self.prefix)
        if not self._checked:
            self._check(monitor_modes(self.model))
            self._checked = True
        logs[self.monitor] = float(self._score(results, logs))
        self._written = True

    def on_train_end(self, logs=None):
        if not self._written:
            warnings.warn(
                f"{type(self).__name__} wrote no `{self.monitor}`: no epoch "
                f"had `{self.prefix}` logs. Pass `validation_data` to `fit` "
                "(or `prefix=''` to score the training logs).",
                stacklevel=2,
            )

    def _missing(self, logs, wanted):
        """Raises, naming the `{task: [metrics]}` of `wanted` that the logs
        lack and listing those they have."""
        missing = [
            f"{self.prefix}{task}_{metric}"
            for task, metrics in wanted.items()
            for metric in metrics
            if f"{self.prefix}{task}_{metric}" not in logs
        ]
        if missing:
            tasks = self._tasks() or list(self.model.task_names)
            found = task_results_from_logs(logs, tasks, self.prefix)
            raise ValueError(
                f"{type(self).__name__}: the logs lack {missing}, so "
                f"`{self.monitor}` cannot be computed. The per-task logs hold "
                f"{ {t: sorted(m) for t, m in found.items()} } (with prefix "
                f"{self.prefix!r}). Check the task and metric names: a "
                "metric's log name is the one Keras gives it (`mae`, "
                "`accuracy`, `auc`, ...)."
            )


@keras.saving.register_keras_serializable(package="keras_mtl")
class DeltaMLog(_LogScore):
    """Writes Delta_m% against single-task baselines into the epoch's logs.

    At each epoch end (with validation: each epoch that ran it), reads the
    `val_<task>_<metric>` logs of the tasks and metrics of
    `baseline_results` and writes
    `keras_mtl.evaluation.delta_m(results, baseline_results, ...)` as
    `val_delta_m`: the mean signed relative change over the metrics, in %,
    positive when the multi-task model beats the baselines, so **higher
    is better** (`mode="max"`, as `keras_mtl.tuner` maximises it). Keras
    runs callbacks in order on one logs dict: put this one before
    `keras.callbacks.ModelCheckpoint` and `EarlyStopping` (and `CSVLogger`,
    `MTLTensorBoard`), and they can `monitor="val_delta_m"`. Pass
    `mode="max"` to them (`mode=delta.mode`): with `mode="auto"`, Keras
    cannot tell the direction of a log that is not a compiled metric and
    raises.

    Each metric's direction is, in order: what `higher_is_better` says,
    the compiled metric's own (AUC and accuracy up, MAE down; `<task>_loss`
    down), the metric's name (`keras_mtl.evaluation.metric_higher_is_better`).
    They are fixed at the first epoch end, once the metrics are built; an
    unknown task raises at the start of training, a metric missing from
    the logs at the first epoch end.

    Args:
        baseline_results: dict `{task: {metric: value}}` of the single-task
            models on the validation data, e.g. from
            `keras_mtl.evaluation.train_single_task_baselines`. Its tasks
            are the ones compared.
        metrics: which metrics of `baseline_results` to compare: `None`,
            `"all"`, one metric name for every task, or `{task: metric or
            [metrics]}`. Defaults to `None`: every metric except `"loss"`,
            which counts only for a task that has no other metric.
        higher_is_better: None, bool, `{task: bool}` or
            `{task: {metric: bool}}`. Defaults to `None`: the compiled
            metrics' directions, else the names'.
        average: `"metrics"` or `"tasks"`: how several metrics per task are
            averaged (see `keras_mtl.evaluation.delta_m`). Defaults to
            `"metrics"`.
        prefix: `"val_"` (the validation logs) or `""` (the training logs).
            Defaults to `"val_"`.
        name: str. The log key, after `prefix`. Defaults to `"delta_m"`.

    Example:

    ```python
    baselines = keras_mtl.evaluation.train_single_task_baselines(
        tasks, x, y, validation_data=(x_val, y_val), epochs=10)
    delta = keras_mtl.callbacks.DeltaMLog(baselines)
    checkpoint = keras.callbacks.ModelCheckpoint(
        "best.weights.h5", monitor=delta.monitor, mode=delta.mode,
        save_best_only=True, save_weights_only=True)
    model.fit(x, y, validation_data=(x_val, y_val), epochs=10,
              callbacks=[delta, checkpoint])
    ```

    References:
        - [Maninis et al., 2019](https://arxiv.org/abs/1904.08918), Delta_m.
        - [Vandenhende et al., 2021](https://arxiv.org/abs/2004.13379),
          single-task baselines and Delta_m.
    """

    mode = "max"

    def __init__(
        self,
        baseline_results,
        metrics=None,
        higher_is_better=None,
        average="metrics",
        prefix="val_",
        name="delta_m",
    ):
        super().__init__(name, prefix)
        if average not in AVERAGES:
            raise ValueError(
                f"`average` must be one of {AVERAGES}. "
                f"Received: average={average!r}"
            )
        _check_higher_is_better(higher_is_better)
        unnamed = (
            [t for t, v in baseline_results.items() if not isinstance(v, dict)]
            if isinstance(baseline_results, dict)
            else []
        )
        if unnamed:
            raise ValueError(
                "DeltaMLog reads each metric from the logs by its name: "
                "`baseline_results` must be {task: {metric: value}}. Tasks "
                f"{unnamed} have a bare value."
            )
        # The baselines against themselves: checks the layout, the metric
        # selection and the baselines (finite, non-zero) now.
        rows = relative_changes(
            baseline_results, baseline_results, True, metrics
        )
        self.baseline_results = baseline_results
        self.metrics = metrics
        self.higher_is_better = higher_is_better
        self.average = average
        self._compared = {}
        for row in rows:
            self._compared.setdefault(row["task"], []).append(row["metric"])
        self._directions = None

    def _tasks(self):
        return list(self._compared)

    def _check(self, modes):
        directions = {}
        for task, metrics in self._compared.items():
            for metric in metrics:
                higher = _explicit_direction(
                    self.higher_is_better, task, metric
                )
                if higher is None and f"{task}_{metric}" in modes:
                    higher = modes[f"{task}_{metric}"] == "max"
                if higher is None:
                    try:
                        higher = metric_higher_is_better(metric)
                    except ValueError as error:
                        raise ValueError(
                            f"DeltaMLog: task '{task}': {error}"
                        ) from None
                directions.setdefault(task, {})[metric] = higher
        self._directions = directions

    def _score(self, results, logs):
        self._missing(logs, self._compared)
        return delta_m(
            results,
            self.baseline_results,
            self._directions,
            self.average,
            self._compared,
        )

    def get_config(self):
        return {
            "baseline_results": self.baseline_results,
            "metrics": self.metrics,
            "higher_is_better": self.higher_is_better,
            "average": self.average,
            "prefix": self.prefix,
            "name": self.name,
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)


@keras.saving.register_keras_serializable(package="keras_mtl")
class CombinedMetric(_LogScore):
    """Writes a combination of per-task metrics into the epoch's logs.

    With `weights={task: {metric: w}}`, the score is
    `sum w * <prefix><task>_<metric>` over the entries; with `fn`, it is
    `fn(results)`, `results` the `{task: {metric: value}}` of the epoch's
    logs (as `keras_mtl.evaluation.task_results_from_logs` groups them).
    It goes into the logs as `<prefix><name>` (`val_combined_metric` by
    default). Keras runs callbacks in order on one logs dict: put this one
    before `keras.callbacks.ModelCheckpoint` and `EarlyStopping`, which can
    then `monitor=combined.monitor, mode=combined.mode`.

    The direction `mode` of a weighted sum is found from its terms: a
    term with a positive weight goes the way of its metric (accuracy up,
    MAE down, by `higher_is_better` or the metric's name), a negative
    weight turns it around, so `{"a": {"accuracy": 1.0}, "b": {"mae":
    -1.0}}` is to be maximised. Terms that disagree are an error (a sum of
    an accuracy and an MAE has no direction): flip a weight's sign. At the
    first epoch end, the compiled metrics' own directions are checked
    against the ones used. With `fn`, pass `mode`.

    For Delta_m against single-task baselines, use `DeltaMLog`.

    Args:
        weights: dict `{task: {metric: weight}}`, non-zero finite weights.
            Defaults to `None` (then `fn`).
        fn: callable `results -> float`, `results` a dict
            `{task: {metric: value}}` of every task. A registered function
            (`keras.saving.register_keras_serializable`) survives
            `get_config`. Defaults to `None`.
        mode: `"min"` or `"max"`: which way is better. Required with `fn`;
            with `weights`, found from the terms when `None`. Defaults to
            `None`.
        name: str. The log key, after `prefix`. Defaults to
            `"combined_metric"`.
        prefix: `"val_"` (the validation logs) or `""` (the training logs).
            Defaults to `"val_"`.
        higher_is_better: None, bool, `{task: bool}` or
            `{task: {metric: bool}}`: the metrics' directions, for `mode`.
            Defaults to `None`: from the metrics' names.

    Example:

    ```python
    combined = keras_mtl.callbacks.CombinedMetric(
        {"price": {"mae": 1.0}, "demand": {"mae": 0.5}})  # mode "min"
    stop = keras.callbacks.EarlyStopping(
        monitor=combined.monitor, mode=combined.mode, patience=3,
        restore_best_weights=True)
    model.fit(x, y, validation_data=(x_val, y_val), epochs=50,
              callbacks=[combined, stop])
    ```
    """

    def __init__(
        self,
        weights=None,
        fn=None,
        mode=None,
        name="combined_metric",
        prefix="val_",
        higher_is_better=None,
    ):
        super().__init__(name, prefix)
        if (weights is None) == (fn is None):
            raise ValueError(
                "Pass exactly one of `weights` ({task: {metric: weight}}) "
                f"and `fn`. Received: weights={weights!r}, fn={fn!r}"
            )
        if mode is not None and mode not in MODES:
            raise ValueError(
                f"`mode` must be one of {MODES} or None. "
                f"Received: mode={mode!r}"
            )
        _check_higher_is_better(higher_is_better)
        if fn is not None:
            if not callable(fn):
                raise TypeError(f"`fn` must be callable. Received: fn={fn!r}")
            if mode is None:
                raise ValueError(
                    "With `fn`, pass `mode` ('min' or 'max'): which way of "
                    "the score is better."
                )
        else:
            weights = self._check_weights(weights)
        self.weights = weights
        self.fn = fn
        self.higher_is_better = higher_is_better
        self._derived = mode is None
        self._terms = {}
        if weights is not None:
            self._terms = self._directions(weights, higher_is_better)
        self.mode = mode if mode is not None else self._mode(self._terms)

    @staticmethod
    def _check_weights(weights):
        if not isinstance(weights, dict) or not weights:
            raise TypeError(
                "`weights` must be a non-empty dict {task: {metric: weight}}. "
                f"Received: weights={weights!r}"
            )
        checked = {}
        for task, entries in weights.items():
            if not isinstance(entries, dict) or not entries:
                raise TypeError(
                    f"`weights` of task '{task}' must be a non-empty dict "
                    f"{{metric: weight}}. Received: {entries!r}"
                )
            for metric, weight in entries.items():
                if (
                    isinstance(weight, bool)
                    or not isinstance(weight, numbers.Real)
                    or not math.isfinite(weight)
                    or weight == 0
                ):
                    raise ValueError(
                        f"`weights` of task '{task}', metric '{metric}' must "
                        f"be a finite non-zero number. Received: {weight!r}"
                    )
            checked[task] = {m: float(w) for m, w in entries.items()}
        return checked

    @staticmethod
    def _directions(weights, higher_is_better):
        """`{(task, metric): (higher_is_better, explicit)}` of the terms."""
        terms = {}
        for task, entries in weights.items():
            for metric in entries:
                higher = _explicit_direction(higher_is_better, task, metric)
                explicit = higher is not None
                if higher is None:
                    try:
                        higher = metric_higher_is_better(metric)
                    except ValueError as error:
                        raise ValueError(
                            f"CombinedMetric: task '{task}': {error} Or pass "
                            "`mode`."
                        ) from None
                terms[task, metric] = (higher, explicit)
        return terms

    def _mode(self, terms):
        ways = {}
        for (task, metric), (higher, _) in terms.items():
            up = higher == (self.weights[task][metric] > 0)
            ways.setdefault("max" if up else "min", []).append(
                f"{task}_{metric}"
            )
        if len(ways) > 1:
            raise ValueError(
                "CombinedMetric: the weighted terms go different ways, so "
                f"their sum has no direction: {ways['max']} are better "
                f"higher, {ways['min']} lower (a metric's direction times "
                "its weight's sign). Flip the sign of some weights, or pass "
                "`mode`."
            )
        return next(iter(ways))

    def _tasks(self):
        return None if self.weights is None else list(self.weights)

    def _check(self, modes):
        if not self._derived:
            return
        for (task, metric), (higher, explicit) in self._terms.items():
            known = modes.get(f"{task}_{metric}")
            if explicit or known is None or (known == "max") == higher:
                continue
            raise ValueError(
                f"CombinedMetric: the compiled metric `{task}_{metric}` is "
                f"better {'higher' if known == 'max' else 'lower'}, but its "
                f"name says {'higher' if higher else 'lower'}, and `mode` "
                f"'{self.mode}' was found from the name. Pass "
                "`higher_is_better` (or `mode`)."
            )

    def _score(self, results, logs):
        if self.fn is None:
            self._missing(logs, {t: list(e) for t, e in self.weights.items()})
            return sum(
                weight * results[task][metric]
                for task, entries in self.weights.items()
                for metric, weight in entries.items()
            )
        try:
            value = self.fn(results)
        except KeyError as error:
            raise ValueError(
                f"CombinedMetric: `fn` asked for {error}, which the results "
                f"lack. They hold "
                f"{ {t: sorted(m) for t, m in results.items()} } (from the "
                f"logs with prefix {self.prefix!r})."
            ) from error
        value = np.asarray(value)
        if value.shape != () or not np.issubdtype(value.dtype, np.number):
            raise TypeError(
                "CombinedMetric: `fn` must return a number. "
                f"Received: {value!r}"
            )
        return value

    def get_config(self):
        return {
            "weights": self.weights,
            "fn": None
            if self.fn is None
            else keras.saving.serialize_keras_object(self.fn),
            "mode": None if self._derived else self.mode,
            "name": self.name,
            "prefix": self.prefix,
            "higher_is_better": self.higher_is_better,
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        if config.get("fn") is not None:
            config["fn"] = keras.saving.deserialize_keras_object(config["fn"])
        return cls(**config)
