import keras
import tensorflow as tf

from keras_mtl.weighting import solvers
from keras_mtl.weighting.gradient_base import GradientWeighting


@keras.saving.register_keras_serializable(package="keras_mtl")
class NashMTL(GradientWeighting):
    """Nash bargaining over the task gradients (Nash-MTL).

    The weights `alpha > 0` solve `(G G^T) alpha = 1 / alpha` (elementwise),
    the bargaining solution of the paper, and the update is
    `sum_i alpha_i g_i`. They are the unique minimiser of the strictly
    convex `0.5 alpha^T G G^T alpha - sum_i log alpha_i`, found here by
    damped Newton steps (the function is self-concordant, so every step
    stays positive and the iteration converges;
    `solvers.solve_power_equation`, shared with `FairGrad`, whose `alpha=1`
    is `normalize=False` here) instead of the authors' sequence of convex
    programs.

    As in the authors' code, the Gram matrix is first divided by its
    Frobenius norm (`normalize=True`), so the weights solve
    `(G G^T / ||G G^T||) alpha = 1 / alpha`: they do not depend on the
    scale of the gradients, and the update keeps that scale. With
    `normalize=False` they solve the equation itself, so gradients `s`
    times larger get weights `s` times smaller (`alpha_i = 1 / ||g_i||`
    for orthogonal gradients) and the update has norm `sqrt(T)`. Either
    way the Newton steps run on the normalised matrix, and the norm is
    taken without squaring the entries (`solvers.stable_norm`), so Gram
    matrices of any float32 scale (1e-30 to 1e30) give the weights of the
    same problem at scale 1.

    Args:
        normalize: bool. Divide the Gram matrix by its Frobenius norm.
            Defaults to `True`.
        max_iterations: int. Newton steps. Defaults to `20`.
        ridge: float. Added to the diagonal of the Gram matrix (the
            normalised one with `normalize=True`), so that a task with a
            zero gradient gets a finite weight, `1 / sqrt(ridge)`.
            Defaults to `1e-6`.
        mode: str. `"param"` or `"rep"` (see `GradientWeighting`).
            Defaults to `"param"`.
        parallel_tasks: int or `None`. See `GradientWeighting`.
        log_weights: bool. Whether to log `<task>_weight`. Defaults to
            `True`.
        **kwargs: Base layer keyword arguments.

    Example:

    ```python
    model = keras_mtl.build_mtl_model(
        inputs, tasks, trunk=[64], weighting="nash_mtl")
    ```

    References:
        - [Navon et al., 2022](https://arxiv.org/abs/2202.01017)
    """

    def __init__(
        self,
        normalize=True,
        max_iterations=20,
        ridge=1e-6,
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
        if not isinstance(max_iterations, int) or max_iterations < 1:
            raise ValueError(
                "`max_iterations` must be an int >= 1. "
                f"Received: max_iterations={max_iterations!r}"
            )
        if not isinstance(ridge, (int, float)) or ridge < 0:
            raise ValueError(
                f"`ridge` must be a float >= 0. Received: ridge={ridge!r}"
            )
        self.normalize = bool(normalize)
        self.max_iterations = max_iterations
        self.ridge = float(ridge)

    def combine(self, gram, task_losses, step=0, present=None):
        size = self.num_tasks
        present = self.all_present(present)
        # Solved on N = G G^T / s, s = ||G G^T||_F, of entries at most 1
        # at any scale. Unnormalised, alpha = beta / sqrt(s) turns
        # (s N + ridge I) alpha = 1 / alpha into
        # (N + ridge / s I) beta = 1 / beta.
        scale = solvers.stable_norm(gram)
        scale = tf.where(scale > 0.0, scale, 1.0)
        gram = gram / scale
        ridge = self.ridge if self.normalize else self.ridge / scale
        # Absent tasks (zero rows) get an identity block: decoupled from
        # the present ones, whose system is then that of the present alone.
        pair = tf.logical_and(present[:, None], present[None, :])
        gram = tf.where(pair, gram, tf.eye(size))
        gram = gram + ridge * tf.eye(size)
        alpha = solvers.solve_power_equation(
            gram, power=1.0, max_iterations=self.max_iterations
        )
        if not self.normalize:
            alpha = alpha / tf.sqrt(scale)
        return tf.where(present, alpha, 0.0)

    def get_config(self):
        config = super().get_config()
        config.update(
            normalize=self.normalize,
            max_iterations=self.max_iterations,
            ridge=self.ridge,
        )
        return config
