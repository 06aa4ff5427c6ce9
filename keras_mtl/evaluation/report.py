"""Presenting results: the results table, and Keras logs grouped by task."""

from keras_mtl.evaluation.delta_m import _as_results
from keras_mtl.evaluation.delta_m import _average
from keras_mtl.evaluation.delta_m import _check_average
from keras_mtl.evaluation.delta_m import relative_changes

__all__ = ["results_table", "task_results_from_logs"]


def _is_results(value, tasks):
    return isinstance(value, dict) and set(tasks) <= set(value)


def results_table(
    mtl_results,
    baseline_results,
    higher_is_better=None,
    average="metrics",
    metrics=None,
    as_dataframe=False,
    precision=4,
):
    """One table of per-task metrics, baselines, relative changes and Delta_m.

    One row per metric of `baseline_results` and a last `Delta_m%` row; one
    value column and one `change %` column per multi-task model.

    Args:
        mtl_results: the multi-task results `{task: {metric: value}}`, or a
            dict `{label: results}` to compare several models side by side
            (e.g. `{"equal": ..., "tuned": ...}`).
        baseline_results: the single-task results, same layout.
        higher_is_better: see `delta_m`. Defaults to `None`.
        average: `"metrics"` or `"tasks"`, see `delta_m`. Defaults to
            `"metrics"`.
        metrics: which metrics to compare, see `relative_changes`. Defaults
            to `None`: all but the losses of tasks that have other metrics.
        as_dataframe: bool. Return a `pandas.DataFrame` instead of text.
            Defaults to `False`.
        precision: int. Decimals of the text table. Defaults to `4`.

    Returns:
        str, or a `pandas.DataFrame` with `as_dataframe=True`.

    Example:

    ```python
    print(keras_mtl.evaluation.results_table(mtl_results, baselines))
    ```

    References:
        - [Vandenhende et al., 2021](https://arxiv.org/abs/2004.13379),
          single-task baselines and Delta_m.
    """
    _check_average(average)
    base = _as_results(baseline_results, "baseline_results")
    if _is_results(mtl_results, base):
        models = {"multi-task": mtl_results}
    elif isinstance(mtl_results, dict) and all(
        _is_results(v, base) for v in mtl_results.values()
    ):
        models = dict(mtl_results)
    else:
        raise ValueError(
            "`mtl_results` must hold every task of `baseline_results` "
            f"{sorted(base)}, or be a {{label: results}} dict of such results."
        )
    header = ["task", "metric", "better", "single-task"]
    rows = None
    deltas = {}
    for label, results in models.items():
        changes = relative_changes(results, base, higher_is_better, metrics)
        deltas[label] = _average(changes, average)
        if rows is None:
            rows = [
                [
                    c["task"],
                    c["metric"],
                    "higher" if c["higher_is_better"] else "lower",
                    c["baseline"],
                ]
                for c in changes
            ]
        for row, change in zip(rows, changes):
            row += [change["mtl"], change["change"]]
        header += [label, f"{label} change %"]
    last = ["Delta_m%", f"mean of {average}", "", None]
    for value in deltas.values():
        last += [None, value]
    rows.append(last)
    if as_dataframe:
        try:
            import pandas
        except ImportError:
            raise ImportError(
                "`as_dataframe=True` needs pandas: `pip install pandas`."
            ) from None
        return pandas.DataFrame(rows, columns=header)
    return _format_table(header, rows, precision)


def _format_table(header, rows, precision):
    def cell(value, column):
        if value is None:
            return ""
        if isinstance(value, float):
            if header[column].endswith("%"):
                return f"{value:+.2f}"
            return f"{value:.{precision}f}"
        return str(value)

    cells = [header] + [[cell(v, i) for i, v in enumerate(r)] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = []
    for index, row in enumerate(cells):
        parts = [
            row[i].ljust(widths[i]) if i < 3 else row[i].rjust(widths[i])
            for i in range(len(row))
        ]
        lines.append("  ".join(parts).rstrip())
        if index == 0:
            lines.append("-" * len(lines[0]))
    return "\n".join(lines)


def task_results_from_logs(logs, task_names, prefix=""):
    """Groups Keras logs such as `{"left_accuracy": ..}` by task.

    Args:
        logs: dict of logs, from `evaluate(return_dict=True)` or a callback.
        task_names: list of str.
        prefix: str. Only keys that start with it are read, e.g. `"val_"`.
            Defaults to `""`.

    Returns:
        dict `{task: {metric: value}}`. `<task>_weight` entries are left out.

    Example:

    ```python
    keras_mtl.evaluation.task_results_from_logs(
        history.history, ["left", "right"], prefix="val_")
    ```
    """
    results = {name: {} for name in task_names}
    # The longest name first, so that task "a_b" wins over task "a".
    names = sorted(task_names, key=len, reverse=True)
    for key, value in logs.items():
        if not key.startswith(prefix):
            continue
        key = key[len(prefix) :]
        if prefix == "" and key.startswith("val_"):
            continue
        for name in names:
            if key.startswith(f"{name}_"):
                metric = key[len(name) + 1 :]
                if metric != "weight":
                    results[name][metric] = value
                break
    return results
