"""The multi-task score that `MTLHyperModel`'s tuner maximises."""

import keras
import keras_tuner

from keras_mtl import evaluation
from keras_mtl.structure import check_tasks


def _select_baselines(baselines, metrics, higher_is_better, average):
    """`{task: {metric: float}}`: the baselines of the scored metrics."""
    if not isinstance(baselines, dict) or not all(
        isinstance(v, dict) for v in baselines.values()
    ):
        raise TypeError(
            "`baselines` must be a dict {task: {metric: value}}. "
            f"Received: baselines={baselines!r}"
        )
    for task, names in metrics.items():
        for metric in names:
            if metric not in baselines.get(task, {}):
                raise ValueError(
                    f"`baselines` has no value for task '{task}', metric "
                    f"'{metric}'. It has: "
                    f"{ {t: sorted(m) for t, m in baselines.items()} }"
                )
    selected = {
        task: {m: baselines[task][m] for m in names}
        for task, names in metrics.items()
    }
    # Checks now that each is a finite, non-zero number.
    evaluation.delta_m(
        selected, selected, higher_is_better, average, metrics="all"
    )
    return {
        task: {m: float(v) for m, v in values.items()}
        for task, values in selected.items()
    }


@keras.saving.register_keras_serializable(package="keras_mtl")
class MultiTaskObjective(keras.callbacks.Callback):
    """Writes one multi-task score per epoch into the logs, for a tuner.

    With `baselines`, the score is Delta_m% against them
    (`keras_mtl.evaluation.delta_m`): positive when the multi-task model
    beats the single-task models. Without, it is the mean log-metric
    (`keras_mtl.evaluation.mean_log_metric`)
    `(100 / K) sum_k (-1)^{l_k} ln M_k` (`l_k = 1` where lower is better),
    for which no task's scale dominates: multiplying a task's metric by a
    constant shifts every model's score equally, and the difference of two
    models' scores is, to first order, the Delta_m% of one against the
    other. Both are to be maximised, unlike the raw sum of losses that
    keras-tuner's own multi-objective minimises.

    It reads the per-task entries of the epoch's logs (`<task>_<metric>`,
    and `val_<task>_<metric>` when there is validation data) and adds
    `<name>` and `val_<name>`. Baselines are normally measured on the
    validation data, so `val_<name>` is the objective; `<name>` compares
    the training metrics with the same baselines, for the curious.
    Callbacks run in order and share the logs, so put it first:
    `MTLHyperModel.fit` does, so that keras-tuner's own callbacks,
    `History`, `EarlyStopping` and the rest all see the score.

    Args:
        metrics: dict `{task: metric}` or `{task: [metrics]}`: the log names
            of the metrics to score (`"accuracy"`, `"mae"`, `"loss"`, ...).
        baselines: `{task: {metric: value}}` single-task results, e.g. from
            `keras_mtl.evaluation.train_single_task_baselines`. Defaults to
            `None` (the mean log-metric).
        higher_is_better: None, bool, `{task: bool}` or
            `{task: {metric: bool}}`. Defaults to `None`: from the names.
        average: `"metrics"` or `"tasks"`: how several metrics per task are
            averaged (see `keras_mtl.evaluation.delta_m`). Defaults to
            `"metrics"`.
        name: str. Log name of the score. Defaults to `"delta_m"` with
            baselines, else `"mean_log_metric"`.

    Example:

    ```python
    objective = keras_mtl.tuner.MultiTaskObjective(
        {"left": "accuracy", "right": "accuracy"}, baselines=baselines)
    tuner = keras_tuner.RandomSearch(
        hypermodel, objective=objective.objective, max_trials=10)
    ```

    References:
        - [Vandenhende et al., 2021](https://arxiv.org/abs/2004.13379), for
          Delta_m as the multi-task figure of merit.
    """

    def __init__(
        self,
        metrics,
        baselines=None,
        higher_is_better=None,
        average="metrics",
        name=None,
    ):
        super().__init__()
        if not isinstance(metrics, dict) or not metrics:
            raise TypeError(
                "`metrics` must be a non-empty dict {task: metric name or list "
                f"of names}}. Received: metrics={metrics!r}"
            )
        if average not in evaluation.AVERAGES:
            raise ValueError(
                f"`average` must be one of {evaluation.AVERAGES}. "
                f"Received: average={average!r}"
            )
        self.metrics = {
            task: [m] if isinstance(m, str) else list(m)
            for task, m in metrics.items()
        }
        for task, names in self.metrics.items():
            if not names or not all(isinstance(m, str) for m in names):
                raise TypeError(
                    f"`metrics` of task '{task}' must be metric names. "
                    f"Received: {metrics[task]!r}"
                )
        # Scoring ones checks every metric's direction now, not at the end
        # of the first epoch.
        evaluation.mean_log_metric(
            {t: dict.fromkeys(names, 1.0) for t, names in self.metrics.items()},
            higher_is_better,
            average,
            metrics=self.metrics,
        )
        if baselines is not None:
            baselines = _select_baselines(
                baselines, self.metrics, higher_is_better, average
            )
        self.baselines = baselines
        self.higher_is_better = higher_is_better
        self.average = average
        self.name = name or (
            "delta_m" if baselines is not None else "mean_log_metric"
        )

    @property
    def objective(self):
        """The `keras_tuner.Objective` to maximise: `val_<name>`."""
        return keras_tuner.Objective(f"val_{self.name}", direction="max")

    def score(self, results):
        """The score of `{task: {metric: value}}` results."""
        if self.baselines is not None:
            return evaluation.delta_m(
                results,
                self.baselines,
                self.higher_is_better,
                self.average,
                metrics="all",
            )
        return evaluation.mean_log_metric(
            results, self.higher_is_better, self.average, metrics=self.metrics
        )

    def on_epoch_end(self, epoch, logs=None):
        if logs is None:
            return
        tasks = list(self.metrics)
        for prefix in ("", "val_"):
            if prefix and not any(k.startswith(prefix) for k in logs):
                continue  # No validation this epoch.
            found = evaluation.task_results_from_logs(logs, tasks, prefix)
            missing = [
                f"{prefix}{task}_{metric}"
                for task, names in self.metrics.items()
                for metric in names
                if metric not in found[task]
            ]
            if missing:
                raise ValueError(
                    f"MultiTaskObjective: the logs lack {missing}, so "
                    f"`{prefix}{self.name}` cannot be computed. Logs hold: "
                    f"{sorted(logs)}. Check the task names and `metrics`."
                )
            logs[f"{prefix}{self.name}"] = self.score(found)

    def get_config(self):
        return {
            "metrics": self.metrics,
            "baselines": self.baselines,
            "higher_is_better": self.higher_is_better,
            "average": self.average,
            "name": self.name,
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)


def default_objective_metrics(tasks):
    """`{task: metric}`: each task's first metric, or its loss if none.

    The metrics `MTLHyperModel` scores by default.

    Args:
        tasks: list of `keras_mtl.Task`.

    Returns:
        dict `{task_name: metric_name}`.

    Example:

    ```python
    keras_mtl.tuner.default_objective_metrics(
        [keras_mtl.Task("a", metrics=["mae"]), keras_mtl.Task("b")])
    # {"a": "mae", "b": "loss"}
    ```
    """
    metrics = {}
    for task in check_tasks(tasks):
        metric = task.metrics[0] if task.metrics else "loss"
        if not isinstance(metric, str):
            metric = getattr(metric, "name", None) or getattr(
                metric, "__name__", None
            )
        metrics[task.name] = metric
    return metrics
