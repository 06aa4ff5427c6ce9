import keras
import tensorflow as tf
from keras import ops

from keras_mtl.weighting.imtl_g import IMTLG
from keras_mtl.weighting.imtl_l import check_initial_log_scale


@keras.saving.register_keras_serializable(package="keras_mtl")
class IMTL(IMTLG):
    """Impartial multi-task learning, the full (hybrid) method.

    The loss part scales each task loss by a trainable `exp(s_i)`,
    `L'_i = exp(s_i) L_i - s_i` (as `IMTLL`); the gradient part (as
    `IMTLG`) then combines the gradients `exp(s_i) g_i` of the scaled
    losses with weights `alpha` summing to 1 and giving the update equal
    projections on every unit task gradient. On the Gram matrix:

    `w_i = alpha_i(E G E) exp(s_i)`, `E = diag(exp(s))`,

    and the shared parameters move along `d = sum_i w_i g_i`. The log-scales
    are trained by the model's optimizer on the gradient of
    `sum_i exp(s_i) L_i - s_i` (the method's `regularization_loss`, on the
    stopped losses), `exp(s_i) L_i - 1`: each scaled loss is driven to 1.
    Task-specific parameters get the plain gradient of `sum_i L_i`, as for
    every `GradientWeighting` (LibMTL scales them by `exp(s_i)` too).
    The logged `weighted_loss` is `sum_i w_i L_i` plus that term.

    An absent task gets weight 0 and adds nothing to the term, so its
    `s_i` gets no gradient. The log-scales are read, not changed, by
    `combine`.

    Args:
        initial_log_scale: float. Initial value of every `s_i`. Defaults
            to `0.0`.
        mode: str. `"param"` or `"rep"` (see `GradientWeighting`).
            Defaults to `"param"`.
        parallel_tasks: int or `None`. See `GradientWeighting`.
        log_weights: bool. Whether to log `<task>_weight`. Defaults to
            `True`.
        **kwargs: Base layer keyword arguments.

    Example:

    ```python
    model = keras_mtl.build_mtl_model(
        inputs, tasks, trunk=[64], weighting="imtl")
    model.compile(optimizer="adam")
    model.fit(x, y)
    ```

    References:
        - [Liu et al., 2021](https://openreview.net/forum?id=IMPnRXEWpvr),
          Towards Impartial Multi-task Learning.
        - LibMTL `weighting/IMTL.py`, the peer code followed.
    """

    def __init__(
        self,
        initial_log_scale=0.0,
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
        self.initial_log_scale = check_initial_log_scale(initial_log_scale)

    def build(self, input_shape):
        super().build(input_shape)
        self.log_scales = self.add_weight(
            shape=(input_shape[0],),
            initializer=keras.initializers.Constant(self.initial_log_scale),
            trainable=True,
            name="log_scales",
        )

    def combine(self, gram, task_losses, step=0, present=None):
        scales = tf.exp(tf.convert_to_tensor(self.log_scales))
        scaled = gram * scales[:, None] * scales[None, :]
        return super().combine(scaled, task_losses, step, present) * scales

    def regularization_loss(self, task_losses, present):
        log_scales = ops.convert_to_tensor(self.log_scales)
        terms = ops.exp(log_scales) * task_losses - log_scales
        return ops.sum(ops.where(present, terms, ops.zeros_like(terms)))

    def get_config(self):
        config = super().get_config()
        config["initial_log_scale"] = self.initial_log_scale
        return config
