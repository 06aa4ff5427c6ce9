import keras
import tensorflow as tf

from keras_mtl.weighting import solvers
from keras_mtl.weighting.gradient_base import GradientWeighting


def _two_task_weights(gram, towards_mean, radius):
    """Exact inner solution for two tasks, `w = (t, 1 - t)`.

    The objective is `b t + r sqrt(A t^2 + B t + C)` plus a constant; its
    stationary points solve a quadratic. The minimum is at one of them or
    at an end of [0, 1]: all four are evaluated.
    """
    slope = towards_mean[0] - towards_mean[1]
    a = gram[0, 0] - 2.0 * gram[0, 1] + gram[1, 1]
    b = 2.0 * (gram[0, 1] - gram[1, 1])
    c = gram[1, 1]
    r2, s2 = radius * radius, slope * slope
    # r^2 (2 A t + B)^2 = 4 s^2 (A t^2 + B t + C)
    qa = 4.0 * a * (r2 * a - s2)
    qb = 4.0 * b * (r2 * a - s2)
    qc = r2 * b * b - 4.0 * s2 * c
    root = tf.sqrt(tf.maximum(qb * qb - 4.0 * qa * qc, 0.0))
    safe = tf.where(tf.abs(qa) > 1e-30, qa, 1.0)
    candidates = tf.stack(
        [
            tf.constant(0.0, gram.dtype),
            tf.constant(1.0, gram.dtype),
            (-qb + root) / (2.0 * safe),
            (-qb - root) / (2.0 * safe),
        ]
    )
    candidates = tf.clip_by_value(
        tf.where(tf.math.is_finite(candidates), candidates, 0.0), 0.0, 1.0
    )
    norms = tf.sqrt(
        tf.maximum(a * candidates**2 + b * candidates + c, 0.0) + 1e-8
    )
    values = slope * candidates + radius * norms
    best = tf.gather(candidates, tf.argmin(values))
    return tf.stack([best, 1.0 - best])


@keras.saving.register_keras_serializable(package="keras_mtl")
class CAGrad(GradientWeighting):
    """Conflict-averse gradient descent.

    With `g_0` the mean task gradient, finds `w` on the simplex minimising
    `g_w . g_0 + c ||g_0|| ||g_w||` (`g_w = sum_i w_i g_i`), then moves along
    `d = g_0 + (c ||g_0|| / ||g_w||) g_w`, divided by `1 + c^2`
    (`rescale=1`, the authors' default), `1 + c` (`rescale=2`, their toy)
    or not at all (`rescale=0`). `d` maximises the worst task's
    improvement within a ball of radius `c ||g_0||` around `g_0`; `c = 0`
    is the mean gradient.

    The weights returned (and logged as `<task>_weight`) are those of
    `d = sum_i w'_i g_i`, `w' = (1 / T + c ||g_0|| w / ||g_w||)` over the
    rescaling; they do not depend on the scale of the gradients. When
    `g_w` is zero (to 1e-8 of the largest task gradient: all of `w` on
    tasks whose gradients are zero) it has no direction to move along, and
    `d` is `g_0` whatever weight a zero gradient gets: the weights are then
    the mean's, `1 / T` over the rescaling, not `c ||g_0|| / eps` on a zero
    vector. A task with a zero gradient beside conflicting ones gets no
    inner weight, so it too keeps `1 / T`.

    The inner problem is solved by projected gradient descent on the
    simplex with backtracking, on the Gram matrix.

    Args:
        c: float >= 0. Radius of the ball, relative to `||g_0||`. Defaults
            to `0.4` (the authors' NYUv2 setting; 0.5 on their toy).
        rescale: int, 0, 1 or 2. Defaults to `1`.
        max_iterations: int. Steps of the inner solver. Defaults to `200`.
        mode: str. `"param"` or `"rep"` (see `GradientWeighting`).
            Defaults to `"param"`.
        parallel_tasks: int or `None`. See `GradientWeighting`.
        log_weights: bool. Whether to log `<task>_weight`. Defaults to
            `True`.
        **kwargs: Base layer keyword arguments.

    Example:

    ```python
    model = keras_mtl.build_mtl_model(
        inputs, tasks, trunk=[64],
        weighting=keras_mtl.weighting.CAGrad(c=0.5))
    ```

    References:
        - [Liu et al., 2021](https://arxiv.org/abs/2110.14048)
    """

    # Ranges of the arguments for keras_mtl.tuner (see `search_space`).
    search_space = {
        "c": {"min_value": 0.1, "max_value": 0.9, "default": 0.4},
    }

    def __init__(
        self,
        c=0.4,
        rescale=1,
        max_iterations=200,
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
        if not isinstance(c, (int, float)) or c < 0:
            raise ValueError(f"`c` must be a float >= 0. Received: c={c!r}")
        if rescale not in (0, 1, 2):
            raise ValueError(
                f"`rescale` must be 0, 1 or 2. Received: rescale={rescale!r}"
            )
        if not isinstance(max_iterations, int) or max_iterations < 1:
            raise ValueError(
                "`max_iterations` must be an int >= 1. "
                f"Received: max_iterations={max_iterations!r}"
            )
        self.c = float(c)
        self.rescale = rescale
        self.max_iterations = max_iterations

    def conflict_averse_weights(self, gram, present=None):
        """The `(T,)` simplex weights `w` of the inner problem.

        Solved in float64: the objective is flat near its minimum, and in
        float32 rounding alone would move the weights by about 1e-4.
        """
        present = self.all_present(present)
        gram = tf.cast(gram, "float64")
        size = tf.reduce_sum(tf.cast(present, "float64"))
        # The minimiser does not change with the scale of the Gram matrix.
        trace = tf.linalg.trace(gram)
        gram = gram / tf.where(trace > 0.0, trace / size, 1.0)
        # The mean of the present tasks' gradients.
        mean = tf.where(present, 1.0 / size, tf.constant(0.0, "float64"))
        towards_mean = tf.linalg.matvec(gram, mean)
        radius = self.c * tf.sqrt(tf.tensordot(mean, towards_mean, 1) + 1e-8)

        def value_and_gradient(weights):
            product = tf.linalg.matvec(gram, weights)
            norm = tf.sqrt(tf.tensordot(weights, product, 1) + 1e-8)
            value = tf.tensordot(weights, towards_mean, 1) + radius * norm
            return value, towards_mean + radius * product / norm

        if self.num_tasks == 2:
            # Called with both present (the model gives one task weight 1).
            weights = _two_task_weights(gram, towards_mean, radius)
        else:
            weights = solvers.minimize_on_simplex(
                value_and_gradient, mean, self.max_iterations, present
            )
        return tf.cast(weights, "float32")

    def combine(self, gram, task_losses, step=0, present=None):
        present = self.all_present(present)
        size = tf.reduce_sum(tf.cast(present, "float32"))
        weights = self.conflict_averse_weights(gram, present)
        mean = tf.where(present, 1.0 / size, 0.0)
        mean_norm = tf.sqrt(tf.maximum(tf.reduce_sum(gram) / size**2, 0.0))
        gw_norm = tf.sqrt(
            tf.maximum(
                tf.tensordot(weights, tf.linalg.matvec(gram, weights), 1), 0.0
            )
        )
        # g_w = 0 (the inner weight on tasks whose gradients are zero) has
        # no direction: d is g_0 whatever the weight of a zero gradient, so
        # the weights are the mean's, not c ||g_0|| / eps on a zero vector.
        largest = tf.sqrt(tf.reduce_max(tf.linalg.diag_part(gram)))
        moves = gw_norm > 1e-8 * largest
        factor = tf.where(
            moves, self.c * mean_norm / tf.where(moves, gw_norm, 1.0), 0.0
        )
        combined = mean + factor * weights
        if self.rescale == 1:
            combined = combined / (1.0 + self.c**2)
        elif self.rescale == 2:
            combined = combined / (1.0 + self.c)
        return combined

    def get_config(self):
        config = super().get_config()
        config.update(
            c=self.c, rescale=self.rescale, max_iterations=self.max_iterations
        )
        return config
