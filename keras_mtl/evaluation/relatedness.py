"""Task relatedness: how much the tasks' gradients agree on shared weights."""

import keras
import numpy as np
import tensorflow as tf

from keras_mtl.model import MTLModel

__all__ = ["gradient_cosine_similarity"]


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


def _task_gradients(model, shared, x, y, sample_weight):
    """`(T, P)`: each task's loss gradient at the shared variables."""
    with tf.GradientTape(persistent=True) as tape:
        y_pred = model(x, training=False)
        # One scalar per task: the gradient of each reaches only its own
        # task's head, not every head T times.
        per_task = model.compute_task_losses(
            y, y_pred, sample_weight=sample_weight
        )
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
    return np.stack(rows)


def _cosines(grads):
    """`(T, T)` cosine similarities of the rows; 0 where a row is zero."""
    norms = np.linalg.norm(grads, axis=1)
    gram = grads @ grads.T
    scale = np.outer(norms, norms)
    return np.divide(gram, scale, out=np.zeros_like(gram), where=scale > 0)


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
    total, count = 0.0, 0
    for batch in _batches(x, y, sample_weight, batch_size):
        if steps is not None and count >= steps:
            break
        total = total + _cosines(_task_gradients(model, shared, *batch))
        count += 1
    if count == 0:
        raise ValueError("No batch to compute gradients on: the data is empty.")
    return total / count
