"""Plots of multi-task training: per-task curves, weights, matrices.

Needs matplotlib (`pip install 'keras-mtl[plot]'`); `import keras_mtl`
alone does not import it. Every function returns a
`matplotlib.figure.Figure`; save it with `fig.savefig("name.png")`.
"""

import numpy as np

__all__ = ["heatmap", "task_weights", "tradeoff", "training_curves"]


def _pyplot():
    try:
        import matplotlib.pyplot as plt
    except ImportError:  # pragma: no cover - matplotlib is in the test extra
        raise ImportError(
            "keras_mtl.plotting needs matplotlib: "
            "pip install 'keras-mtl[plot]'."
        ) from None
    return plt


def _history(history):
    history = getattr(history, "history", history)
    if not isinstance(history, dict):
        raise TypeError(
            "`history` must be a `keras.callbacks.History` or its "
            f"`.history` dict. Received: {type(history).__name__}"
        )
    return history


def _tasks(history, tasks, suffix):
    if tasks is not None:
        return list(tasks)
    names = [
        key[: -len(suffix)]
        for key in history
        if key.endswith(suffix) and not key.startswith("val_")
    ]
    if not names:
        raise ValueError(
            f"`history` has no `<task>{suffix}` log. Pass `tasks=` or a "
            f"history with them. Keys: {sorted(history)}"
        )
    return names


def _epoch_axis(ax, epochs):
    from matplotlib.ticker import MaxNLocator

    ax.set_xlim(0.5, epochs + 0.5)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
    ax.set_xlabel("epoch")


def training_curves(history, metrics=("loss",), tasks=None):
    """Per-task curves over the epochs: one panel per metric.

    One colour per task; training solid, validation (`val_` logs) dashed;
    epochs numbered from 1, whole epochs on the axis.

    Args:
        history: `keras.callbacks.History` (what `fit` returns) or its
            `history` dict.
        metrics: list of str. Metric names of the `<task>_<metric>` logs,
            e.g. `["loss", "accuracy"]`. Defaults to `("loss",)`.
        tasks: list of task names, or `None`: every task with a
            `<task>_<first metric>` training log.

    Returns:
        A `matplotlib.figure.Figure`.

    Example:

    ```python
    history = model.fit(x, y, validation_data=(x_val, y_val), epochs=5)
    fig = keras_mtl.plotting.training_curves(history, ["loss", "mae"])
    fig.savefig("curves.png")
    ```
    """
    history = _history(history)
    metrics = [metrics] if isinstance(metrics, str) else list(metrics)
    tasks = _tasks(history, tasks, f"_{metrics[0]}")
    plt = _pyplot()
    fig, axes = plt.subplots(
        1, len(metrics), figsize=(5 * len(metrics), 4), squeeze=False
    )
    epochs = 1
    for ax, metric in zip(axes[0], metrics):
        for index, task in enumerate(tasks):
            for prefix, split, style in (
                ("", "train", "-"),
                ("val_", "validation", "--"),
            ):
                values = history.get(f"{prefix}{task}_{metric}")
                if values is None:
                    continue
                epochs = max(epochs, len(values))
                ax.plot(
                    range(1, len(values) + 1),
                    values,
                    linestyle=style,
                    color=f"C{index}",
                    label=f"{task} ({split})",
                )
        ax.set_title(metric)
        ax.legend()
    for ax in axes[0]:
        _epoch_axis(ax, epochs)
    fig.tight_layout()
    return fig


def task_weights(history, tasks=None):
    """The weighting method's `<task>_weight` logs over the epochs.

    Args:
        history: `keras.callbacks.History` or its `history` dict, from a
            model whose method logs weights (every method but `"equal"` and
            fixed weights).
        tasks: list of task names, or `None`: every `<task>_weight` log.

    Returns:
        A `matplotlib.figure.Figure`.

    Example:

    ```python
    history = model.fit(x, y, epochs=10)  # weighting="dwa"
    keras_mtl.plotting.task_weights(history).savefig("weights.png")
    ```
    """
    history = _history(history)
    tasks = _tasks(history, tasks, "_weight")
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    epochs = 1
    for index, task in enumerate(tasks):
        values = history[f"{task}_weight"]
        epochs = max(epochs, len(values))
        ax.plot(
            range(1, len(values) + 1), values, color=f"C{index}", label=task
        )
    _epoch_axis(ax, epochs)
    ax.set_ylabel("weight (epoch mean)")
    ax.legend()
    fig.tight_layout()
    return fig


def heatmap(matrix, names, title=None, vmin=None, vmax=None):
    """A `(T, T)` task matrix (gradient cosines, affinities) as a heatmap,
    each cell annotated with its value.

    Args:
        matrix: `(T, T)` array; row `i`, column `j` as the caller defines
            (for `task_affinity`, the affinity of task `i` onto task `j`).
        names: list of T task names, the row and column labels.
        title: str or `None`. Defaults to `None`.
        vmin: number or `None`: the colour scale's low end. Defaults to
            `None`: `-max(|matrix|)`, so that 0 is the middle colour.
        vmax: number or `None`. Defaults to `None`: `max(|matrix|)`.

    Returns:
        A `matplotlib.figure.Figure`.

    Example:

    ```python
    cosines = keras_mtl.evaluation.gradient_cosine_similarity(model, x, y)
    keras_mtl.plotting.heatmap(cosines, model.task_names,
                               title="gradient cosine").savefig("cos.png")
    ```
    """
    matrix = np.asarray(matrix, dtype="float64")
    names = list(names)
    if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1]:
        raise ValueError(
            f"`matrix` must be square (T, T). Received shape {matrix.shape}."
        )
    if len(names) != matrix.shape[0]:
        raise ValueError(
            f"`names` must have one name per row: {matrix.shape[0]}. "
            f"Received {len(names)}: {names}"
        )
    finite = matrix[np.isfinite(matrix)]
    scale = float(np.abs(finite).max()) if finite.size else 1.0
    vmin = -scale if vmin is None else vmin
    vmax = scale if vmax is None else vmax
    plt = _pyplot()
    size = 1.0 + 0.6 * len(names)
    fig, ax = plt.subplots(figsize=(size + 1.5, size))
    image = ax.imshow(matrix, cmap="RdBu", vmin=vmin, vmax=vmax)
    ax.set_xticks(range(len(names)), names, rotation=45, ha="right")
    ax.set_yticks(range(len(names)), names)
    for (i, j), value in np.ndenumerate(matrix):
        ax.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize=8)
    fig.colorbar(image, ax=ax)
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return fig


def tradeoff(runs, tasks, metric):
    """For two tasks, each run's pair of results as a point: the trade-off
    between them (points up and to the right dominate, for metrics where
    higher is better).

    Args:
        runs: dict `{label: {task: {metric: value}}}`, e.g. one
            `keras_mtl.evaluation.evaluate_tasks` result per weighting
            method or seed.
        tasks: the two task names, `(x axis, y axis)`.
        metric: str, or a dict `{task: metric}`: the metric plotted for
            each task.

    Returns:
        A `matplotlib.figure.Figure`.

    Example:

    ```python
    runs = {name: keras_mtl.evaluation.evaluate_tasks(m, x_test, y_test)
            for name, m in models.items()}
    keras_mtl.plotting.tradeoff(runs, ("left", "right"), "accuracy")
    ```
    """
    tasks = list(tasks)
    if len(tasks) != 2:
        raise ValueError(f"`tasks` must name two tasks. Received: {tasks}")
    if not isinstance(runs, dict) or not runs:
        raise TypeError(
            "`runs` must be a non-empty dict {label: {task: {metric: value}}}."
        )
    metrics = (
        metric if isinstance(metric, dict) else dict.fromkeys(tasks, metric)
    )
    points = {}
    for label, results in runs.items():
        try:
            points[label] = [float(results[t][metrics[t]]) for t in tasks]
        except (KeyError, TypeError):
            raise ValueError(
                f"Run {label!r} has no {metrics} for tasks {tasks}. "
                f"Received: {results!r}"
            ) from None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5, 5))
    for index, (label, (a, b)) in enumerate(points.items()):
        ax.scatter([a], [b], color=f"C{index % 10}", label=str(label))
    ax.set_xlabel(f"{tasks[0]} {metrics[tasks[0]]}")
    ax.set_ylabel(f"{tasks[1]} {metrics[tasks[1]]}")
    ax.legend()
    fig.tight_layout()
    return fig
