import keras
import tensorflow as tf

from keras_mtl.weighting.gradient_base import GradientWeighting


@keras.saving.register_keras_serializable(package="keras_mtl")
class PCGrad(GradientWeighting):
    """Projecting conflicting gradients ("gradient surgery").

    For each task `i`, in a random order of the other tasks `j`: if
    `g_i . g_j < 0`, `g_i` loses its component along `g_j`,
    `g_i <- g_i - (g_i . g_j / ||g_j||^2) g_j` (`g_j` the original). The
    update is the sum of the projected gradients. Each projected gradient
    is a linear combination of the original ones, so the method runs on
    the Gram matrix: the logged weights are the coefficients of the sum.

    The random orders are drawn statelessly from `seed` and the optimizer
    step, from integer Philox bits, which XLA draws alike: every replica, a
    rerun and a `jit_compile=True` model use the same orders.

    Args:
        seed: int. Seed of the random task orders. Defaults to `0`.
        mode: str. `"param"` or `"rep"` (see `GradientWeighting`).
            Defaults to `"param"`.
        parallel_tasks: int or `None`. See `GradientWeighting`.
        log_weights: bool. Whether to log `<task>_weight`. Defaults to
            `True`.
        **kwargs: Base layer keyword arguments.

    Example:

    ```python
    model = keras_mtl.build_mtl_model(
        inputs, tasks, trunk=[64], weighting="pcgrad")
    ```

    References:
        - [Yu et al., 2020](https://arxiv.org/abs/2001.06782)
    """

    def __init__(
        self,
        seed=0,
        mode="param",
        parallel_tasks=None,
        log_weights=True,
        **kwargs,
    ):
        super().__init__(
            mode=mode,
            parallel_tasks=parallel_tasks,
            log_weights=log_weights,
            **kwargs,
        )
        if not isinstance(seed, int):
            raise TypeError(f"`seed` must be an int. Received: seed={seed!r}")
        self.seed = seed

    def task_orders(self, step):
        """`(T, T)` int32: row `i` is the order in which task `i` is
        projected onto the others (it skips itself)."""
        size = self.num_tasks
        seed = tf.stack(
            [tf.constant(self.seed, tf.int64), tf.cast(step, tf.int64)]
        )
        bits = tf.random.stateless_uniform(
            (size, size),
            seed,
            minval=0,
            maxval=2**31 - 1,
            dtype="int32",
            alg="philox",
        )
        return tf.cast(tf.argsort(bits, axis=1, stable=True), tf.int32)

    def combine(self, gram, task_losses, step=0, present=None):
        # An absent task's gradient is zero: no gradient is projected onto
        # it, and its own (zero) coefficients are masked out.
        weights = self.combine_in_order(gram, self.task_orders(step))
        return tf.where(self.all_present(present), weights, 0.0)

    def combine_in_order(self, gram, orders):
        """PCGrad weights with explicit `(T, T)` projection orders."""
        size = self.num_tasks
        # Row i holds the coefficients of the projected g_i on the g_j.
        coefficients = tf.eye(size, dtype=gram.dtype)
        rows = tf.range(size)
        squared_norms = tf.maximum(tf.linalg.diag_part(gram), 1e-20)
        for position in range(size):
            other = orders[:, position]
            dots = tf.reduce_sum(coefficients * tf.gather(gram, other), axis=1)
            project = tf.logical_and(dots < 0.0, other != rows)
            amount = tf.where(
                project, dots / tf.gather(squared_norms, other), 0.0
            )
            coefficients -= amount[:, None] * tf.one_hot(other, size)
        return tf.reduce_sum(coefficients, axis=0)

    def get_config(self):
        config = super().get_config()
        config["seed"] = self.seed
        return config
