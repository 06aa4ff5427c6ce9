"""Which way is better: the direction of each metric from its name."""

__all__ = ["metric_higher_is_better"]

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
