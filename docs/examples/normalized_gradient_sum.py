# docs/examples/normalized_gradient_sum.py
"""A gradient-level weighting method: the sum of unit task gradients."""

import keras
import tensorflow as tf

import keras_mtl


@keras.saving.register_keras_serializable(package="my_package")
@keras_mtl.weighting.register(aliases=["ngs"])
class NormalizedGradientSum(keras_mtl.weighting.GradientWeighting):
    """Moves the shared parameters along the sum of unit task gradients.

    With `g_i` the gradient of task `i` and `||g_i||^2` the diagonal of the
    Gram matrix, the weights are

    `w_i = c / ||g_i||`, with `c = mean_j ||g_j||` (`keep_scale=True`) or
    `c = 1`,

    over the present tasks `j`. Every task then pulls with the same
    strength, whatever the scale of its loss; with `keep_scale` the update
    keeps the size of an average task gradient. A task with a zero
    gradient, or absent from the batch, gets weight 0.

    Args:
        keep_scale: bool. Whether to multiply the unit gradients by the
            mean gradient norm. Defaults to `True`.
        mode: str. `"param"` or `"rep"` (see `GradientWeighting`).
            Defaults to `"param"`.
        parallel_tasks: int or `None`. See `GradientWeighting`.
        log_weights: bool. Whether to log `<task>_weight`. Defaults to
            `True`.
        **kwargs: Base layer keyword arguments, such as `name`.

    Example:

    ```python
    model = keras_mtl.build_mtl_model(
        inputs, tasks, trunk=[64], weighting="normalized_gradient_sum")
    ```
    """

    search_space = {"keep_scale": {"values": [True, False]}}

    def __init__(
        self,
        keep_scale=True,
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
        if not isinstance(keep_scale, bool):
            raise TypeError(
                "`keep_scale` must be a bool. "
                f"Received: keep_scale={keep_scale!r}"
            )
        self.keep_scale = keep_scale

    def combine(self, gram, task_losses, step=0, present=None):
        present = self.all_present(present)
        norms = tf.sqrt(tf.maximum(tf.linalg.diag_part(gram), 0.0))
        usable = tf.logical_and(present, norms > 1e-12)
        weights = tf.where(usable, 1.0 / tf.maximum(norms, 1e-12), 0.0)
        if self.keep_scale:
            count = tf.reduce_sum(tf.cast(usable, "float32"))
            mean_norm = tf.reduce_sum(tf.where(usable, norms, 0.0)) / count
            weights = weights * mean_norm
        return weights

    def get_config(self):
        config = super().get_config()
        config["keep_scale"] = self.keep_scale
        return config
