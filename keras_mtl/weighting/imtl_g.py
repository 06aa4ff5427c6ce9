import keras
import tensorflow as tf

from keras_mtl.weighting import solvers
from keras_mtl.weighting.gradient_base import GradientWeighting


@keras.saving.register_keras_serializable(package="keras_mtl")
class IMTLG(GradientWeighting):
    """Impartial multi-task learning, gradient part (IMTL-G).

    Finds weights `alpha` summing to 1 such that `d = sum_i alpha_i g_i` has
    the same projection on every unit task gradient `u_i = g_i / ||g_i||`:
    with `D` the rows `g_1 - g_i` and `U` the rows `u_1 - u_i` (i = 2..T),
    `alpha_{2..T} = g_1 U^T (D U^T)^-1` and `alpha_1 = 1 - sum alpha_{2..T}`.
    The solution does not depend on which task anchors the differences.
    If the system is singular (parallel gradients), the weights are equal.

    Args:
        mode: str. `"param"` or `"rep"` (see `GradientWeighting`).
            Defaults to `"param"`.
        parallel_tasks: int or `None`. See `GradientWeighting`.
        log_weights: bool. Whether to log `<task>_weight`. Defaults to
            `True`.
        **kwargs: Base layer keyword arguments.

    Example:

    ```python
    model = keras_mtl.build_mtl_model(
        inputs, tasks, trunk=[64], weighting="imtl_g")
    ```

    References:
        - [Liu et al., 2021](https://openreview.net/forum?id=IMPnRXEWpvr)
    """

    def combine(self, gram, task_losses, step=0, present=None):
        size = self.num_tasks
        present = self.all_present(present)
        # Present tasks first (stable), so that the anchor task is present;
        # absent ones are decoupled below and get weight 0.
        order = tf.argsort(
            tf.cast(tf.logical_not(present), tf.int32), stable=True
        )
        gram = tf.gather(tf.gather(gram, order), order, axis=1)
        kept = tf.gather(present, order)[1:]
        alpha = self.anchored_weights(gram, kept, size)
        return tf.scatter_nd(order[:, None], alpha, (size,))

    def anchored_weights(self, gram, kept, size):
        """The weights with task 0 (present) as anchor; `kept` says which
        of tasks 1..T-1 are present."""
        norms = tf.sqrt(tf.maximum(tf.linalg.diag_part(gram), 1e-20))
        # dots[i, j] = g_i . u_j
        dots = gram / norms[None, :]
        # (D U^T)[k, l] = (g_1 - g_k) . (u_1 - u_l), k, l = 2..T
        system = (
            dots[0, 0]
            - dots[0, 1:][None, :]
            - dots[1:, 0][:, None]
            + dots[1:, 1:]
        )
        target = dots[0, 0] - dots[0, 1:]
        pair = tf.logical_and(kept[:, None], kept[None, :])
        system = tf.where(pair, system, tf.eye(size - 1))
        target = tf.where(kept, target, 0.0)
        rest, ok = solvers.solve(tf.transpose(system), target)
        rest = tf.where(kept, rest, 0.0)
        alpha = tf.concat([[1.0 - tf.reduce_sum(rest)], rest], axis=0)
        present = tf.concat([[True], kept], axis=0)
        count = tf.reduce_sum(tf.cast(present, "float32"))
        equal = tf.where(present, 1.0 / count, 0.0)
        return tf.where(ok, alpha, equal)
