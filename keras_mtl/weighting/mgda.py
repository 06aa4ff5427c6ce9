import keras
import tensorflow as tf

from keras_mtl.weighting import solvers
from keras_mtl.weighting.gradient_base import GradientWeighting

NORMALIZATIONS = ("none", "l2", "loss", "loss+")


@keras.saving.register_keras_serializable(package="keras_mtl")
class MGDA(GradientWeighting):
    """Multiple-gradient descent: the minimum-norm convex combination.

    Finds weights `w` on the simplex minimising `||sum_i w_i g_i||^2`: in
    closed form for two tasks, by Frank-Wolfe for more. The direction is a
    common descent direction of all tasks (zero at a Pareto-stationary
    point). With `mode="rep"` this is MGDA-UB, the variant the paper
    recommends: gradients with respect to the shared representation.

    The gradients can be normalised before the weights are found: by their
    L2 norm (`"l2"`), by the task loss (`"loss"`) or both (`"loss+"`). As in
    the authors' code, the weights found on the normalised gradients then
    multiply the original task losses.

    Args:
        normalization: str. One of `"none"`, `"l2"`, `"loss"`, `"loss+"`.
            Defaults to `"none"`.
        max_iterations: int. Frank-Wolfe steps for more than two tasks.
            Defaults to `250`.
        tolerance: float. Frank-Wolfe stops when the weights change by
            less (L1). Defaults to `1e-5`.
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
        weighting=keras_mtl.weighting.MGDA(normalization="loss+", mode="rep"))
    ```

    References:
        - [Sener & Koltun, 2018](https://arxiv.org/abs/1810.04650)
        - [Désidéri, 2012](https://doi.org/10.1016/j.crma.2012.03.014)
    """

    # Ranges of the arguments for keras_mtl.tuner (see `search_space`).
    search_space = {
        "normalization": ["none", "l2", "loss", "loss+"],
    }

    def __init__(
        self,
        normalization="none",
        max_iterations=250,
        tolerance=1e-5,
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
        if normalization not in NORMALIZATIONS:
            raise ValueError(
                f"`normalization` must be one of {NORMALIZATIONS}. "
                f"Received: normalization={normalization!r}"
            )
        if not isinstance(max_iterations, int) or max_iterations < 1:
            raise ValueError(
                "`max_iterations` must be an int >= 1. "
                f"Received: max_iterations={max_iterations!r}"
            )
        self.normalization = normalization
        self.max_iterations = max_iterations
        self.tolerance = tolerance

    def normalizers(self, gram, task_losses):
        """The `(T,)` numbers each task gradient is divided by."""
        norms = tf.sqrt(tf.maximum(tf.linalg.diag_part(gram), 0.0))
        if self.normalization == "l2":
            return norms
        if self.normalization == "loss":
            return task_losses
        if self.normalization == "loss+":
            return task_losses * norms
        return tf.ones_like(norms)

    def combine(self, gram, task_losses, step=0, present=None):
        present = self.all_present(present)
        scale = self.normalizers(gram, task_losses)
        scale = tf.where(scale > 1e-12, scale, 1.0)
        gram = gram / (scale[:, None] * scale[None, :])
        if self.num_tasks == 2:
            # Called with both present (the model gives one task weight 1).
            return solvers.min_norm_two(gram)
        # The simplex of the present tasks: an absent task's zero gradient
        # would otherwise take all the weight.
        return solvers.min_norm_frank_wolfe(
            gram, self.max_iterations, self.tolerance, present
        )

    def get_config(self):
        config = super().get_config()
        config.update(
            normalization=self.normalization,
            max_iterations=self.max_iterations,
            tolerance=self.tolerance,
        )
        return config
