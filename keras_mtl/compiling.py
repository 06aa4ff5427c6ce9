"""`MTLModel.compile`'s arguments spread over the tasks."""

from keras_mtl.tasks import check_weight
from keras_mtl.tasks import resolve_loss


def per_task(value, names, what):
    """Spreads a compile argument over tasks: dict, list or one value."""
    if value is None:
        return {}
    if isinstance(value, dict):
        unknown = sorted(set(value) - set(names))
        if unknown:
            raise ValueError(
                f"`{what}` names unknown tasks {unknown}. "
                f"Expected keys among {names}."
            )
        return dict(value)
    if isinstance(value, (list, tuple)) and what != "metrics":
        if len(value) != len(names):
            raise ValueError(
                f"`{what}` as a list needs one entry per task {names}. "
                f"Received {len(value)} entries."
            )
        return dict(zip(names, value))
    return {name: value for name in names}


def resolve(tasks, loss=None, loss_weights=None, metrics=None, weighted=None):
    """Each task's loss function, static loss weight and metrics.

    The `Task`'s own unless `loss`, `loss_weights` or `metrics` (or
    `weighted_metrics`: every metric is weighted, which is how missing
    labels are masked) say otherwise, as a dict by task name or one value
    for every task.

    Returns:
        `(loss_fns, static_weights, metrics)`: two lists in task order and
        a dict `{task: [metrics]}` of the tasks that have metrics.
    """
    names = [t.name for t in tasks]
    losses = per_task(loss, names, "loss")
    weights = per_task(loss_weights, names, "loss_weights")
    task_metrics = {t.name: list(t.metrics) for t in tasks}
    for extra in (metrics, weighted):
        if extra is None:
            continue
        if isinstance(extra, dict):
            per_task(extra, names, "metrics")
            for name, value in extra.items():
                value = value if isinstance(value, list) else [value]
                task_metrics[name] = list(value)
        else:
            extra = extra if isinstance(extra, list) else [extra]
            task_metrics = {name: list(extra) for name in names}
    loss_fns = [resolve_loss(losses.get(t.name, t.loss), t.name) for t in tasks]
    static = [
        check_weight(weights[t.name], f"`loss_weights['{t.name}']`")
        if t.name in weights
        else t.loss_weight
        for t in tasks
    ]
    return loss_fns, static, {k: v for k, v in task_metrics.items() if v}
