"""Did sharing help? Single-task baselines, Delta_m and task relatedness.

Results are plain dicts `{task: {metric: value}}`, as `evaluate_tasks`
returns them; `{task: value}` (one unnamed metric per task) is accepted too.
"""

import math

import keras
import numpy as np
import tensorflow as tf

from keras_mtl import sharing as sharing_module
from keras_mtl import weighting as weighting_module
from keras_mtl.builder import build_mtl_model
from keras_mtl.model import MTLModel
from keras_mtl.model import check_tasks
from keras_mtl.tasks import Task

__all__ = [
    "AVERAGES",
    "delta_m",
    "evaluate_tasks",
    "gradient_cosine_similarity",
    "metric_higher_is_better",
    "relative_changes",
    "results_table",
    "task_results_from_logs",
    "train_single_task_baselines",
]

AVERAGES = ("metrics", "tasks")

# Substrings of metric names, checked in this order; the first hit decides.
_LOWER_IS_BETTER = (
    "loss",
    "error",
    "crossentropy",
    "mae",
    "mse",
    "mape",
    "msle",
    "hinge",
    "log_cosh",
    "logcosh",
    "poisson",
    "kl_divergence",
    "kld",
)
_HIGHER_IS_BETTER = (
    "acc",
    "auc",
    "precision",
    "recall",
    "f1",
    "fbeta",
    "iou",
    "io_u",
    "r2",
    "cosine_similarity",
    "true_positives",
    "true_negatives",
)


def metric_higher_is_better(metric):
    """Says whether a larger value of a Keras metric means a better model.

    Decided from the name: accuracies, AUC, precision, recall, F-scores,
    IoU and R2 are better when higher; losses, errors, crossentropies and
    MAE/MSE-like metrics when lower.

    Args:
        metric: str. The metric's name, e.g. `"accuracy"` or `"mae"`.

    Returns:
        bool.

    Raises:
        ValueError: if the name says neither; pass `higher_is_better`
            explicitly to the function that asked.

    Example:

    ```python
    keras_mtl.evaluation.metric_higher_is_better("sparse_categorical_accuracy")
    # True
    ```
    """
    name = str(metric).lower()
    if "false_" in name:
        return False
    for pattern in _LOWER_IS_BETTER:
        if pattern in name:
            return False
    for pattern in _HIGHER_IS_BETTER:
        if pattern in name:
            return True
    raise ValueError(
        f"Cannot tell whether higher or lower is better for metric "
        f"{metric!r}. Pass `higher_is_better` explicitly (a bool, a "
        "{task: bool} dict or a {task: {metric: bool}} dict)."
    )


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


def _direction(higher_is_better, task, metric):
    if higher_is_better is None:
        if metric == "value":
            raise ValueError(
                f"Task '{task}' has an unnamed metric: pass "
                "`higher_is_better` (a bool or a {task: bool} dict)."
            )
        return metric_higher_is_better(metric)
    if isinstance(higher_is_better, bool):
        return higher_is_better
    if isinstance(higher_is_better, dict):
        if task not in higher_is_better:
            if metric == "value":
                raise ValueError(
                    f"`higher_is_better` has no entry for task '{task}'."
                )
            return metric_higher_is_better(metric)
        entry = higher_is_better[task]
        if isinstance(entry, dict):
            if metric in entry:
                return bool(entry[metric])
            return metric_higher_is_better(metric)
        return bool(entry)
    raise TypeError(
        "`higher_is_better` must be None, a bool, a {task: bool} dict or a "
        f"{{task: {{metric: bool}}}} dict. Received: {higher_is_better!r}"
    )


def _check_average(average):
    if average not in AVERAGES:
        raise ValueError(
            f"`average` must be one of {AVERAGES}. "
            f"Received: average={average!r}"
        )


def _select_metrics(base, metrics):
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
                f"`metrics` names tasks {unknown} that `baseline_results` "
                f"lacks. Expected tasks among {sorted(base)}."
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


def evaluate_tasks(model, x=None, y=None, **kwargs):
    """Evaluates an `MTLModel` and groups its logs by task.

    Args:
        model: a compiled `keras_mtl.MTLModel`.
        x: inputs, or a `tf.data.Dataset` of `(x, y)`.
        y: labels `{task: y}`, or `None` with a dataset.
        **kwargs: passed to `model.evaluate` (`batch_size`, `steps`, ...).

    Returns:
        dict `{task: {metric: value}}`, with `"loss"` (the task's unweighted
        loss) and every compiled metric of the task.

    Example:

    ```python
    results = keras_mtl.evaluation.evaluate_tasks(model, x_test, y_test)
    results["left"]["accuracy"]
    ```
    """
    if not isinstance(model, MTLModel):
        raise TypeError(
            f"`model` must be a keras_mtl.MTLModel. Received: {type(model)}"
        )
    kwargs.setdefault("verbose", 0)
    logs = model.evaluate(x, y, return_dict=True, **kwargs)
    return task_results_from_logs(logs, model.task_names)


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


def _fresh_inputs(inputs):
    """New `keras.Input`s with the specs of the given ones."""

    def fresh(tensor):
        if not isinstance(tensor, keras.KerasTensor):
            raise TypeError(
                "`inputs` must be a `keras.Input` or a dict/list of them. "
                f"Received: {tensor!r}"
            )
        return keras.Input(
            batch_shape=tensor.shape,
            dtype=tensor.dtype,
            sparse=tensor.sparse,
            name=tensor._keras_history.operation.name,
        )

    return keras.tree.map_structure(fresh, inputs)


def _fresh_trunk(trunk):
    """A trunk spec with new weights: layers and models are cloned."""
    if isinstance(trunk, keras.Model):
        return keras.models.clone_model(trunk)
    if isinstance(trunk, keras.layers.Layer):
        return trunk.__class__.from_config(trunk.get_config())
    return list(trunk) if isinstance(trunk, tuple) else trunk


def _copy_task(task, loss_weight=None):
    copy = Task.from_config(task.get_config())
    if loss_weight is not None:
        copy.loss_weight = float(loss_weight)
    return copy


def _fresh_weighting(weighting):
    if isinstance(weighting, weighting_module.Weighting):
        return weighting_module.deserialize(
            weighting_module.serialize(weighting)
        )
    return weighting


def _fresh_optimizer(optimizer):
    if isinstance(optimizer, keras.optimizers.Optimizer):
        return keras.optimizers.deserialize(
            keras.optimizers.serialize(optimizer)
        )
    return keras.optimizers.get(optimizer)


def _spec_builder(inputs, trunk, sharing, weighting):
    """A `build_fn(tasks)` that builds fresh models from one spec."""

    def build_fn(tasks):
        return build_mtl_model(
            _fresh_inputs(inputs),
            tasks,
            trunk=_fresh_trunk(trunk),
            sharing=sharing_module.get(sharing),
            weighting=_fresh_weighting(weighting),
        )

    return build_fn


def _select_labels(data, name):
    """The labels (and sample weights) of one task from `x, y[, sw]`."""

    def pick(value):
        return {name: value[name]} if isinstance(value, dict) else value

    if isinstance(data, tf.data.Dataset):
        return data.map(lambda x, *rest: (x, *[pick(v) for v in rest]))
    data = tuple(data)
    return (data[0],) + tuple(pick(v) for v in data[1:])


def train_single_task_baselines(
    tasks,
    x,
    y=None,
    *,
    build_fn=None,
    inputs=None,
    trunk=None,
    sharing="hard",
    optimizer="adam",
    compile_kwargs=None,
    validation_data=None,
    epochs=1,
    batch_size=None,
    sample_weight=None,
    verbose=0,
    return_models=False,
    **fit_kwargs,
):
    """Trains one model per task, with the same trunk and budget.

    Each baseline is the multi-task architecture cut down to one task: the
    same `build_fn` (or the same `inputs`, `trunk` and `sharing`), a fresh
    optimizer of the same config, the same epochs, batch size and data, but
    only its task's head and loss. It is evaluated on `validation_data` if
    given, else on the training data.

    Args:
        tasks: list of `keras_mtl.Task`.
        x: inputs, or a `tf.data.Dataset` of `(x, {task: y})` pairs.
        y: labels `{task: y}`, or `None` with a dataset.
        build_fn: callable `build_fn(tasks) -> MTLModel`, compiled or not.
            Use the one that builds the multi-task model. Defaults to `None`:
            `build_mtl_model(inputs, tasks, trunk, sharing)`.
        inputs: `keras.Input` or a dict/list of them, when no `build_fn`.
            Fresh inputs of the same spec are made for each model.
        trunk: the trunk spec of `build_mtl_model`, when no `build_fn`; a
            layer or model trunk is cloned, so baselines share no weights.
            Defaults to `None`.
        sharing: str or `keras_mtl.sharing.Sharing`. Defaults to `"hard"`.
        optimizer: str, config or `keras.optimizers.Optimizer` for models
            `build_fn` leaves uncompiled; a fresh copy per model. Defaults to
            `"adam"`.
        compile_kwargs: dict of more `compile` arguments for models
            `build_fn` leaves uncompiled. Defaults to `None`.
        validation_data: `(x, y)` or a dataset, to validate on and evaluate
            the baselines on. Defaults to `None`.
        epochs: int. Defaults to `1`.
        batch_size: int. Defaults to `None`.
        sample_weight: array or `{task: array}`. Defaults to `None`.
        verbose: int. Defaults to `0`.
        return_models: bool. Also return the trained models. Defaults to
            `False`.
        **fit_kwargs: more `fit` arguments, the same for every model.

    Returns:
        dict `{task: {metric: value}}` (as from `evaluate_tasks`), and with
        `return_models=True` a tuple `(results, {task: model})`.

    Example:

    ```python
    baselines = keras_mtl.evaluation.train_single_task_baselines(
        tasks, x_train, y_train, inputs=inputs, trunk=[64, 64],
        validation_data=(x_val, y_val), epochs=5, batch_size=64)
    mtl = keras_mtl.evaluation.evaluate_tasks(model, x_val, y_val)
    print(keras_mtl.evaluation.results_table(mtl, baselines))
    ```

    References:
        - [Vandenhende et al., 2021](https://arxiv.org/abs/2004.13379),
          single-task baselines and Delta_m.
    """
    tasks = check_tasks(tasks)
    if build_fn is None:
        if inputs is None:
            raise ValueError(
                "Pass either `build_fn` or `inputs` (and `trunk`)."
            )
        build_fn = _spec_builder(inputs, trunk, sharing, "equal")
    elif not callable(build_fn):
        raise TypeError(f"`build_fn` must be callable. Received: {build_fn!r}")
    if isinstance(x, tf.data.Dataset) and y is not None:
        raise ValueError("Pass `y=None` when `x` is a tf.data.Dataset.")
    results, models = {}, {}
    for task in tasks:
        model = build_fn([_copy_task(task)])
        if not isinstance(model, MTLModel) or model.task_names != [task.name]:
            raise TypeError(
                "`build_fn([task])` must return a keras_mtl.MTLModel with that "
                f"one task. Received: {type(model).__name__} for task "
                f"'{task.name}'."
            )
        if not model.compiled:
            model.compile(
                optimizer=_fresh_optimizer(optimizer), **(compile_kwargs or {})
            )
        if isinstance(x, tf.data.Dataset):
            train = _select_labels(x, task.name)
            fit_args = (train,)
        else:
            xs, ys, sw = _select_labels((x, y, sample_weight), task.name)
            fit_args = (xs, ys)
            fit_kwargs["sample_weight"] = sw
        val = None
        if validation_data is not None:
            val = _select_labels(validation_data, task.name)
        model.fit(
            *fit_args,
            validation_data=val,
            epochs=epochs,
            batch_size=batch_size,
            verbose=verbose,
            **fit_kwargs,
        )
        data = val if val is not None else fit_args
        if isinstance(data, tf.data.Dataset):
            data = (data,)
        evaluated = evaluate_tasks(
            model,
            *data[:2],
            sample_weight=data[2] if len(data) > 2 else None,
            batch_size=None
            if isinstance(data[0], tf.data.Dataset)
            else batch_size,
        )
        results[task.name] = evaluated[task.name]
        models[task.name] = model
    return (results, models) if return_models else results


def _batches(x, y, sample_weight, batch_size):
    if isinstance(x, tf.data.Dataset):
        for batch in x:
            batch = tuple(batch) + (None,) * (3 - len(batch))
            yield batch
        return
    n = len(keras.tree.flatten(x)[0])
    for start in range(0, n, batch_size):
        piece = slice(start, start + batch_size)
        yield keras.tree.map_structure(
            lambda a: None if a is None else a[piece], (x, y, sample_weight)
        )


def gradient_cosine_similarity(
    model, x, y=None, sample_weight=None, batch_size=32, steps=None
):
    """Task relatedness: cosine similarity of the tasks' shared gradients.

    For each batch, g_i is the gradient of task i's (unweighted) loss with
    respect to `model.shared_variables`, flattened into one vector; the
    result is the mean over batches of `cos(g_i, g_j)`. Negative entries
    are conflicting gradients (Yu et al., 2020): a step for one task hurts
    the other. A task whose gradient is zero on a batch scores 0 there.

    Args:
        model: a compiled `keras_mtl.MTLModel` with shared variables.
        x: inputs, or a `tf.data.Dataset` of `(x, y[, sample_weight])`
            batches.
        y: labels `{task: y}`, or `None` with a dataset.
        sample_weight: array or `{task: array}`. Defaults to `None`.
        batch_size: int. Batch size for arrays. Defaults to `32`.
        steps: int. Use at most this many batches. Defaults to `None` (all).

    Returns:
        A `(T, T)` numpy array, rows and columns in `model.task_names` order,
        ones on the diagonal (for tasks with a gradient).

    Example:

    ```python
    similarity = keras_mtl.evaluation.gradient_cosine_similarity(
        model, x_val, y_val, steps=10)
    ```

    References:
        - [Yu et al., 2020](https://arxiv.org/abs/2001.06782), "Gradient
          surgery for multi-task learning" (PCGrad).
    """
    if not isinstance(model, MTLModel):
        raise TypeError(
            f"`model` must be a keras_mtl.MTLModel. Received: {type(model)}"
        )
    shared = model.shared_variables
    if not shared:
        raise ValueError(
            "The model has no shared variables: no two tasks' outputs depend "
            "on the same trainable weights, so there is nothing to compare."
        )
    num_tasks = len(model.task_names)
    total, count = np.zeros((num_tasks, num_tasks)), 0
    for x_batch, y_batch, sw_batch in _batches(x, y, sample_weight, batch_size):
        if steps is not None and count >= steps:
            break
        with tf.GradientTape(persistent=True) as tape:
            y_pred = model(x_batch, training=False)
            per_task = model.compute_task_loss_list(y_batch, y_pred, sw_batch)
        rows = []
        for loss in per_task:
            grads = tape.gradient(loss, shared)
            rows.append(
                np.concatenate(
                    [
                        np.zeros(int(np.prod(v.shape)))
                        if g is None
                        else keras.ops.convert_to_numpy(g).ravel()
                        for v, g in zip(shared, grads)
                    ]
                ).astype("float64")
            )
        del tape
        grads = np.stack(rows)
        norms = np.linalg.norm(grads, axis=1)
        gram = grads @ grads.T
        scale = np.outer(norms, norms)
        total += np.divide(
            gram, scale, out=np.zeros_like(gram), where=scale > 0
        )
        count += 1
    if count == 0:
        raise ValueError("No batch to compute gradients on: the data is empty.")
    return total / count
