"""Task affinity grouping (TAG): lookahead affinities and task groups."""

import math
import numbers

import numpy as np
import tensorflow as tf
from keras import ops

from keras_mtl.evaluation.relatedness import _batches
from keras_mtl.model import MTLModel

__all__ = ["group_tasks", "task_affinity"]

# Exhaustive search visits 3^T (group, subset) pairs: 531,441 at 12 tasks.
MAX_GROUPING_TASKS = 12


def _check_count(value, name, low=1):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"`{name}` must be an int. Received: {name}={value!r}")
    if value < low:
        raise ValueError(
            f"`{name}` must be >= {low}. Received: {name}={value!r}"
        )


def _resolve_learning_rate(model, learning_rate):
    if learning_rate is None:
        optimizer = getattr(model, "optimizer", None)
        if optimizer is None or not hasattr(optimizer, "learning_rate"):
            raise ValueError(
                "Pass `learning_rate=`: the model has no optimizer with a "
                "learning rate to take it from."
            )
        learning_rate = float(ops.convert_to_numpy(optimizer.learning_rate))
    if (
        isinstance(learning_rate, bool)
        or not isinstance(learning_rate, numbers.Real)
        or not math.isfinite(learning_rate)
        or learning_rate <= 0
    ):
        raise ValueError(
            "`learning_rate` must be a finite number > 0. "
            f"Received: learning_rate={learning_rate!r}"
        )
    return float(learning_rate)


def _losses(model, x, y, sample_weight):
    """Each task's loss, and the `(T,)` labelled counts."""
    y_pred = model(x, training=False)
    return model.compute_task_losses(
        y, y_pred, sample_weight, return_counts=True
    )


def _batch_affinity(model, shared, originals, lr, x, y, sample_weight):
    """`(T, T)` affinities on one batch, and where they are defined."""
    with tf.GradientTape(persistent=True) as tape:
        losses, counts = _losses(model, x, y, sample_weight)
    present = ops.convert_to_numpy(counts) > 0
    before = np.array([float(ops.convert_to_numpy(v)) for v in losses])
    after = np.full((len(losses), len(losses)), np.nan)
    for i, loss in enumerate(losses):
        if not present[i]:
            continue
        grads = tape.gradient(loss, shared)
        for v, original, g in zip(shared, originals, grads):
            if g is not None:
                g = ops.cast(ops.convert_to_tensor(g), original.dtype)
                v.assign(original - lr * g)
        after[i] = [
            float(ops.convert_to_numpy(v))
            for v in _losses(model, x, y, sample_weight)[0]
        ]
        for v, original in zip(shared, originals):
            v.assign(original)
    del tape
    # The ratio needs a positive loss before the step: a task whose labelled
    # examples all have weight 0 (loss 0) sits the batch out as a target.
    defined = np.outer(present, present & (before > 0))
    ratio = np.divide(after, before, out=np.ones_like(after), where=defined)
    return 1.0 - ratio, defined


def task_affinity(
    model,
    x,
    y=None,
    sample_weight=None,
    batch_size=32,
    steps=10,
    learning_rate=None,
):
    """Inter-task affinity (TAG): how a step on one task moves the others.

    On each batch, for each task i, the shared variables
    (`model.shared_variables`) take a lookahead step of plain SGD on task
    i's loss alone, `theta_s|i = theta_s - lr * grad L_i(theta_s)`; every
    task's loss is measured again on the same batch, and the variables are
    put back. The affinity of i onto j is

    `Z[i, j] = 1 - L_j(theta_s|i) / L_j(theta_s)`,

    positive where the step on i lowers j's loss (transfer), negative where
    it raises it (interference); `Z[i, i]` is the task's self-affinity,
    computed the same way. The result is the mean over at most `steps`
    batches. Losses are the tasks' unweighted losses over their labelled
    examples (`compute_task_losses`), in inference mode (no dropout) and
    without regularisers; the ratio assumes they are positive.

    A task with no label in a batch takes no step there and is no target:
    `Z[i, j]` averages over the batches where both tasks have labels (and
    j's loss is positive), and is NaN where there is none.

    The authors' code applies the optimizer's own update (SGD with
    momentum) as the lookahead and divides the affinity by the learning
    rate. This function takes a plain SGD step instead, which is stateless:
    no optimizer slot or iteration count is read or moved, and the result
    does not depend on the optimizer's history. It does not divide by the
    learning rate, so `Z` is the relative change of loss itself
    (comparable across tasks, not across learning rates).

    Cost per batch: one forward pass and one backward pass per task for
    the gradients, then T lookahead forward passes, each giving all T
    losses (T x T loss evaluations). The model's weights are restored
    exactly, also if an error interrupts the measurement; its optimizer is
    not touched.

    Args:
        model: a compiled `keras_mtl.MTLModel` with shared variables.
        x: inputs, or a `tf.data.Dataset` of `(x, y[, sample_weight])`
            batches with `y` a dict `{task: labels}`.
        y: labels `{task: y}`, or `None` with a dataset.
        sample_weight: array or `{task: array}`. Defaults to `None`.
        batch_size: int. Batch size for arrays. Defaults to `32`.
        steps: int. Use at most this many batches. Defaults to `10`.
        learning_rate: float. Step size of the lookahead. Defaults to `None`:
            the current learning rate of `model.optimizer`.

    Returns:
        A `(T, T)` numpy array `Z`, rows (the task stepped on) and
            columns (the task measured) in `model.task_names` order.

    Example:

    ```python
    affinity = keras_mtl.evaluation.task_affinity(
        model, x_train, y_train, steps=20)
    grouping = keras_mtl.evaluation.group_tasks(affinity, num_groups=2)
    ```

    References:
        - [Fifty et al., 2021](https://arxiv.org/abs/2109.04617),
          "Efficiently identifying task groupings for multi-task learning"
          (TAG).
    """
    if not isinstance(model, MTLModel):
        raise TypeError(
            f"`model` must be a keras_mtl.MTLModel. Received: {type(model)}"
        )
    _check_count(steps, "steps")
    _check_count(batch_size, "batch_size")
    shared = model.shared_variables
    if not shared:
        raise ValueError(
            "The model has no shared variables: no two tasks' outputs depend "
            "on the same trainable weights, so no task's step can move "
            "another's loss."
        )
    lr = _resolve_learning_rate(model, learning_rate)
    num_tasks = len(model.task_names)
    total = np.zeros((num_tasks, num_tasks))
    count = np.zeros((num_tasks, num_tasks))
    originals = [ops.convert_to_tensor(ops.convert_to_numpy(v)) for v in shared]
    seen = 0
    try:
        for batch in _batches(x, y, sample_weight, batch_size):
            if seen >= steps:
                break
            affinity, defined = _batch_affinity(
                model, shared, originals, lr, *batch
            )
            total += np.where(defined, affinity, 0.0)
            count += defined
            seen += 1
    finally:
        for v, original in zip(shared, originals):
            v.assign(original)
    if seen == 0:
        raise ValueError(
            "No batch to compute affinities on: the data is empty."
        )
    return np.divide(
        total, count, out=np.full_like(total, np.nan), where=count > 0
    )


def _check_affinity(affinity):
    matrix = np.asarray(affinity, dtype="float64")
    if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1]:
        raise ValueError(
            "`affinity` must be a square (T, T) matrix. "
            f"Received shape: {matrix.shape}"
        )
    if matrix.shape[0] == 0:
        raise ValueError("`affinity` must hold at least one task.")
    bad = np.argwhere(~np.isfinite(matrix))
    if len(bad):
        raise ValueError(
            "`affinity` must be finite. Non-finite entries at (row, column): "
            f"{[tuple(int(k) for k in b) for b in bad[:5]]}. (task_affinity "
            "gives NaN for two tasks that never had labels in one batch.)"
        )
    if matrix.shape[0] > MAX_GROUPING_TASKS:
        raise ValueError(
            f"group_tasks searches all groupings exhaustively, up to "
            f"{MAX_GROUPING_TASKS} tasks. Received {matrix.shape[0]} tasks: "
            "group a subset, or pre-cluster the tasks."
        )
    return matrix


def _group_scores(matrix, singleton_score, max_group_size):
    """`(2^T, T)`: each task's score in each group (by bit mask)."""
    num_tasks = matrix.shape[0]
    masks = np.arange(2**num_tasks)
    members = (masks[:, None] >> np.arange(num_tasks)) & 1
    sizes = members.sum(axis=1)
    # Sum of Z[k, t] over the group's members k, less t's own Z[t, t].
    onto = members @ matrix - members * np.diag(matrix)
    scores = onto / np.maximum(sizes - 1, 1)[:, None]
    scores[sizes == 1] = singleton_score
    scores[(members == 0) | (sizes > max_group_size)[:, None]] = -np.inf
    return scores, sizes


def _subset_pairs(num_tasks):
    """All `(mask, submask)` pairs of T bits: 3^T of them."""
    mask = np.zeros(1, dtype="int64")
    sub = np.zeros(1, dtype="int64")
    for t in range(num_tasks):
        bit = 1 << t
        mask = np.concatenate([mask, mask | bit, mask | bit])
        sub = np.concatenate([sub, sub, sub | bit])
    keep = sub > 0
    return mask[keep], sub[keep]


def _best_grouping(scores, sizes, num_groups):
    """Masks of the chosen groups: the best covering by at most B groups.

    Each task is served by one chosen group, so a grouping is a partition of
    the tasks into at most B blocks, block S served by its best group
    `G >= S`. `best[S]` is that group's total score over S; a dynamic
    programme over subsets finds the best partition.
    """
    num_tasks = scores.shape[1]
    group, block = _subset_pairs(num_tasks)
    value = np.zeros(len(group))
    for t in range(num_tasks):
        value += np.where((block >> t) & 1, scores[group, t], 0.0)
    best = np.full(2**num_tasks, -np.inf)
    np.maximum.at(best, block, value)
    # layers[k][mask]: best total of the tasks in mask with <= k blocks.
    layers = [np.full(2**num_tasks, -np.inf)]
    layers[0][0] = 0.0
    for _ in range(num_groups):
        layer = layers[-1].copy()
        np.maximum.at(layer, group, best[block] + layers[-1][group ^ block])
        layers.append(layer)
    blocks, mask, k = [], 2**num_tasks - 1, num_groups
    while mask:
        if layers[k - 1][mask] == layers[k][mask]:
            k -= 1
            continue
        subs = block[group == mask]
        totals = best[subs] + layers[k - 1][mask ^ subs]
        blocks.append(int(subs[np.argmax(totals)]))
        mask ^= blocks[-1]
        k -= 1
    chosen = set()
    for b in blocks:
        supersets = group[block == b]
        totals = value[block == b]
        # Ties go to the smallest group.
        ties = supersets[totals == totals.max()]
        chosen.add(int(min(ties, key=lambda g: (sizes[g], g))))
    return chosen


def group_tasks(
    affinity,
    num_groups,
    max_group_size=None,
    task_names=None,
    singleton_score=0.0,
):
    """Groups tasks to train together from their affinities, as TAG does.

    A task t's score in a group G is the mean affinity onto it from the
    other members, `mean(Z[k, t] for k in G if k != t)`. Of all groups of
    tasks (of at most `max_group_size`), at most `num_groups` are chosen to
    maximise the mean over tasks of each task's best score among the chosen
    groups that hold it; every task is served by one chosen group, and
    groups may overlap (a task can be in a group that does not serve it,
    for the benefit of others). One model is then trained per group, and
    each task is read from its serving group's model.

    The search is exhaustive, over 3^T (group, served subset) pairs, and
    exact: it takes up to 12 tasks (larger inputs raise a `ValueError`).

    A task alone scores `singleton_score`, by default 0: with no other task
    stepping on the shared weights its loss gets no transfer and no
    interference. The diagonal of `affinity` (self-affinity) is not used:
    a task's own step lowers its loss far more than another's, so scoring
    singletons by it would make every task go alone. The authors' notebook
    scores singletons -1e6 (alone only when nothing else covers the task);
    pass `singleton_score=-1e6` to do the same.

    Args:
        affinity: `(T, T)` array-like of finite floats, `affinity[i, j]` the
            affinity of task i onto task j, as `task_affinity` returns it.
        num_groups: int. Largest number of groups to choose, 1 to T.
        max_group_size: int. Largest number of tasks in a group. Defaults to
            `None` (no limit).
        task_names: list of T distinct str. Names to report the tasks by
            (e.g. `model.task_names`). Defaults to `None` (indices).
        singleton_score: float. Score of a task in a group of its own.
            Defaults to `0.0`.

    Returns:
        A dict with `"groups"`, the chosen groups (a list of tuples of
            task indices, or names, in ascending order), `"serving"`, a dict
            from each task to the chosen group that serves it (its best),
            and `"score"`, the mean over tasks of their scores in their
            serving groups.

    Example:

    ```python
    affinity = [[1.0, 0.8, -0.5],
                [0.7, 1.0, -0.4],
                [-0.6, -0.3, 1.0]]
    grouping = keras_mtl.evaluation.group_tasks(
        affinity, num_groups=2, task_names=["a", "b", "c"])
    grouping["groups"]  # [("a", "b"), ("c",)]
    ```

    References:
        - [Fifty et al., 2021](https://arxiv.org/abs/2109.04617),
          "Efficiently identifying task groupings for multi-task learning"
          (TAG).
    """
    matrix = _check_affinity(affinity)
    num_tasks = matrix.shape[0]
    _check_count(num_groups, "num_groups")
    if num_groups > num_tasks:
        raise ValueError(
            f"`num_groups` must be at most the number of tasks ({num_tasks}). "
            f"Received: num_groups={num_groups}"
        )
    if max_group_size is None:
        max_group_size = num_tasks
    _check_count(max_group_size, "max_group_size")
    if num_groups * max_group_size < num_tasks:
        raise ValueError(
            f"{num_groups} groups of at most {max_group_size} tasks cannot "
            f"cover {num_tasks} tasks. Received: num_groups={num_groups}, "
            f"max_group_size={max_group_size}"
        )
    if task_names is None:
        task_names = list(range(num_tasks))
    else:
        task_names = list(task_names)
        if (
            len(task_names) != num_tasks
            or len(set(task_names)) != num_tasks
            or not all(isinstance(n, str) for n in task_names)
        ):
            raise ValueError(
                f"`task_names` must be {num_tasks} distinct strings, one per "
                f"row of `affinity`. Received: task_names={task_names!r}"
            )
    if not isinstance(singleton_score, numbers.Real) or not math.isfinite(
        singleton_score
    ):
        raise ValueError(
            "`singleton_score` must be a finite number. "
            f"Received: singleton_score={singleton_score!r}"
        )
    scores, sizes = _group_scores(
        matrix, float(singleton_score), max_group_size
    )

    def indices(mask):
        return [t for t in range(num_tasks) if mask >> t & 1]

    def members(mask):
        return tuple(task_names[t] for t in indices(mask))

    chosen = sorted(_best_grouping(scores, sizes, num_groups), key=indices)

    serving, served_scores = {}, []
    for t in range(num_tasks):
        holding = [g for g in chosen if g >> t & 1]
        best = max(holding, key=lambda g: scores[g, t])
        serving[task_names[t]] = members(best)
        served_scores.append(scores[best, t])
    return {
        "groups": [members(g) for g in chosen],
        "serving": serving,
        "score": float(np.mean(served_scores)),
    }
