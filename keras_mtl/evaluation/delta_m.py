"""Results arithmetic: Delta_m%, relative changes, the mean log-metric.

Results are plain dicts `{task: {metric: value}}`, as
`keras_mtl.evaluation.evaluate_tasks` returns them; `{task: value}` (one
unnamed metric per task) is accepted too.
"""

import math

import numpy as np

from keras_mtl.evaluation.directions import _direction

__all__ = [
    "AVERAGES",
    "delta_m",
    "mean_log_metric",
    "relative_changes",
]

AVERAGES = ("metrics", "tasks")


def _as_results(results, what):
    """Returns `{task: {metric: float}}` from either accepted layout."""
    if not isinstance(results, dict) or not results:
        raise TypeError(
            f"`{what}` must be a non-empty dict {{task: {{metric: value}}}} "
            f"or {{task: value}}. Received: {results!r}"
        )
    out = {}
    for task, value in results.items():
        if isinstance(value, dict):
            if not value:
                raise ValueError(f"`{what}`: task '{task}' has no metrics.")
            out[task] = {
                k: _as_float(v, what, task, k) for k, v in value.items()
            }
        else:
            out[task] = {"value": _as_float(value, what, task, "value")}
    return out


def _as_float(value, what, task, metric):
    try:
        return float(np.asarray(value))
    except (TypeError, ValueError):
        raise TypeError(
            f"`{what}`: task '{task}', metric '{metric}' must be a number. "
            f"Received: {value!r}"
        ) from None


def _check_average(average):
    if average not in AVERAGES:
        raise ValueError(
            f"`average` must be one of {AVERAGES}. "
            f"Received: average={average!r}"
        )


def _select_metrics(base, metrics, what="baseline_results"):
    """`{task: [metric]}` to compare, from the `metrics` argument."""
    if metrics is None:
        # Delta_m compares task metrics; a loss counts only for a task that
        # has nothing else.
        return {
            task: [m for m in values if m != "loss"] or list(values)
            for task, values in base.items()
        }
    if metrics == "all":
        return {task: list(values) for task, values in base.items()}
    if isinstance(metrics, str):
        return {task: [metrics] for task in base}
    if isinstance(metrics, dict):
        unknown = sorted(set(metrics) - set(base))
        if unknown:
            raise ValueError(
                f"`metrics` names tasks {unknown} that `{what}` lacks. "
                f"Expected tasks among {sorted(base)}."
            )
        return {
            task: [m] if isinstance(m, str) else list(m)
            for task, m in metrics.items()
        }
    raise TypeError(
        "`metrics` must be None, 'all', a metric name or a {task: metric(s)} "
        f"dict. Received: metrics={metrics!r}"
    )


def relative_changes(
    mtl_results, baseline_results, higher_is_better=None, metrics=None
):
    """Per-metric signed relative changes against the baselines, in %.

    Each entry is `100 * (-1)^l (M_mtl - M_stl) / M_stl`, `l = 1` where
    lower is better: positive means the multi-task model is better on that
    metric.

    Args:
        mtl_results: dict `{task: {metric: value}}` (or `{task: value}`).
        baseline_results: the single-task results, same layout.
        higher_is_better: None, bool, `{task: bool}` or
            `{task: {metric: bool}}`. Defaults to `None`: decided from each
            metric's name by `metric_higher_is_better`.
        metrics: which metrics of `baseline_results` to compare: `None`,
            `"all"`, one metric name for every task, or `{task: metric or
            [metrics]}`. Defaults to `None`: every metric except `"loss"`,
            which counts only for a task that has no other metric.

    Returns:
        A list of dicts with keys `task`, `metric`, `higher_is_better`,
        `baseline`, `mtl` and `change`, in the order of `baseline_results`.

    Example:

    ```python
    keras_mtl.evaluation.relative_changes(
        {"left": {"accuracy": 0.96}}, {"left": {"accuracy": 0.97}})
    ```

    References:
        - [Vandenhende et al., 2021](https://arxiv.org/abs/2004.13379),
          single-task baselines and Delta_m.
    """
    mtl = _as_results(mtl_results, "mtl_results")
    base = _as_results(baseline_results, "baseline_results")
    rows = []
    for task, names in _select_metrics(base, metrics).items():
        if task not in mtl:
            raise ValueError(
                f"`mtl_results` has no task '{task}'. Expected the tasks of "
                f"`baseline_results`: {sorted(base)}."
            )
        for metric in names:
            if metric not in base[task]:
                raise ValueError(
                    f"`baseline_results` has no metric '{metric}' for task "
                    f"'{task}'. It has: {sorted(base[task])}."
                )
            baseline = base[task][metric]
            if metric not in mtl[task]:
                raise ValueError(
                    f"`mtl_results` has no metric '{metric}' for task "
                    f"'{task}'. It has: {sorted(mtl[task])}."
                )
            if baseline == 0 or not math.isfinite(baseline):
                raise ValueError(
                    f"Baseline of task '{task}', metric '{metric}' is "
                    f"{baseline}: Delta_m divides by it, so it must be "
                    "finite and non-zero."
                )
            higher = _direction(higher_is_better, task, metric)
            value = mtl[task][metric]
            sign = 1.0 if higher else -1.0
            rows.append(
                {
                    "task": task,
                    "metric": metric,
                    "higher_is_better": higher,
                    "baseline": baseline,
                    "mtl": value,
                    "change": 100.0 * sign * (value - baseline) / baseline,
                }
            )
    return rows


def _average(rows, average):
    if average == "metrics":
        return float(np.mean([r["change"] for r in rows]))
    by_task = {}
    for row in rows:
        by_task.setdefault(row["task"], []).append(row["change"])
    return float(np.mean([np.mean(v) for v in by_task.values()]))


def delta_m(
    mtl_results,
    baseline_results,
    higher_is_better=None,
    average="metrics",
    metrics=None,
):
    """Delta_m%: the mean relative gain of a multi-task model over baselines.

    `Delta_m = (100 / K) sum_k (-1)^{l_k} (M_mtl,k - M_stl,k) / M_stl,k`
    over the K metrics compared, `l_k = 1` where lower is better. Positive
    means the multi-task model beats the single-task baselines.

    With several metrics per task the convention matters:
    `average="metrics"` (the default, the formula above, as in Nash-MTL)
    averages all K metrics at once; `average="tasks"` (LibMTL) averages
    within each task first, then over tasks. With one metric per task the
    two agree.

    Args:
        mtl_results: dict `{task: {metric: value}}` (or `{task: value}`) of
            the multi-task model.
        baseline_results: the single-task baselines, same layout (for
            example from `train_single_task_baselines`). Its tasks are the
            ones compared.
        higher_is_better: None, bool, `{task: bool}` or
            `{task: {metric: bool}}`. Defaults to `None`: decided from each
            metric's name (`metric_higher_is_better`).
        average: `"metrics"` or `"tasks"`. Defaults to `"metrics"`.
        metrics: which metrics to compare, see `relative_changes`. Defaults
            to `None`: all but the losses of tasks that have other metrics.

    Returns:
        float, in percent.

    Example:

    ```python
    keras_mtl.evaluation.delta_m(
        {"left": 0.9646, "right": 0.9499},
        {"left": 0.9723, "right": 0.9590},
        higher_is_better=True)  # -0.87
    ```

    References:
        - [Maninis et al., 2019](https://arxiv.org/abs/1904.08918)
        - [Vandenhende et al., 2021](https://arxiv.org/abs/2004.13379)
    """
    _check_average(average)
    rows = relative_changes(
        mtl_results, baseline_results, higher_is_better, metrics
    )
    return _average(rows, average)


def mean_log_metric(
    results, higher_is_better=None, average="metrics", metrics=None
):
    """The mean signed log-metric of one model: a score without baselines.

    `(100 / K) sum_k (-1)^{l_k} ln M_k` over the K metrics scored, `l_k = 1`
    where lower is better; larger is better. No task's scale dominates:
    multiplying a task's metric by a constant shifts every model's score
    equally, and the difference of two models' scores is, to first order,
    the Delta_m% of one against the other. Values below `1e-12` count as
    `1e-12`, so that a zero accuracy gives a finite score.

    Args:
        results: dict `{task: {metric: value}}` (or `{task: value}`).
        higher_is_better: None, bool, `{task: bool}` or
            `{task: {metric: bool}}`. Defaults to `None`: decided from each
            metric's name (`metric_higher_is_better`).
        average: `"metrics"` or `"tasks"`, see `delta_m`. Defaults to
            `"metrics"`.
        metrics: which metrics to score, see `relative_changes`. Defaults
            to `None`: all but the losses of tasks that have other metrics.

    Returns:
        float.

    Example:

    ```python
    keras_mtl.evaluation.mean_log_metric(
        {"a": {"accuracy": 0.5}, "b": {"mae": 2.0}})
    # 50 * (ln 0.5 - ln 2.0) = -69.31
    ```
    """
    _check_average(average)
    values = _as_results(results, "results")
    rows = []
    for task, names in _select_metrics(values, metrics, "results").items():
        for metric in names:
            if metric not in values[task]:
                raise ValueError(
                    f"`results` has no metric '{metric}' for task '{task}'. "
                    f"It has: {sorted(values[task])}."
                )
            higher = _direction(higher_is_better, task, metric)
            value = max(values[task][metric], 1e-12)
            sign = 1.0 if higher else -1.0
            rows.append({"task": task, "change": 100 * sign * math.log(value)})
    return _average(rows, average)
