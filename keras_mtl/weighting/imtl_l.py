import math

import keras
from keras import ops

from keras_mtl.weighting.base import Weighting


def check_initial_log_scale(initial_log_scale):
    """`initial_log_scale` as a finite float, or a clear error."""
    if not isinstance(initial_log_scale, (int, float)) or isinstance(
        initial_log_scale, bool
    ):
        raise TypeError(
            "`initial_log_scale` must be a float. "
            f"Received: initial_log_scale={initial_log_scale!r}"
        )
    if not math.isfinite(initial_log_scale):
        raise ValueError(
            "`initial_log_scale` must be finite. "
            f"Received: initial_log_scale={initial_log_scale!r}"
        )
    return float(initial_log_scale)


@keras.saving.register_keras_serializable(package="keras_mtl")
class IMTLL(Weighting):
    """Impartial multi-task learning, loss part (IMTL-L).

    Each task gets a trainable log-scale `s_i`, trained with the model by
    the model's optimizer. The total is

    `L = sum_i exp(s_i) L_i - s_i`,

    so `d L / d s_i = exp(s_i) L_i - 1`: at the optimum of `s`, every scaled
    loss `exp(s_i) L_i` equals 1, whatever the scale of the raw losses.
    The logged weight of task `i` is `exp(s_i)`; the `-s_i` terms are the
    method's `regularization_loss`. A task absent from a batch contributes
    neither term: its `s_i` gets a zero gradient in that step (an optimizer
    with momentum still moves it by the momentum of earlier steps).

    It is `UncertaintyWeighting` (`exp(-s_i) L_i + s_i`) at `-s`, so it
    trains like it; IMTL uses it with the gradient part (`IMTL`).

    Args:
        initial_log_scale: float. Initial value of every `s_i`. Defaults
            to `0.0` (weights of 1).
        log_weights: bool. Whether to log `<task>_weight`. Defaults to
            `True`.
        **kwargs: Base layer keyword arguments.

    Example:

    ```python
    model = keras_mtl.build_mtl_model(
        inputs, tasks, trunk=[64], weighting="imtl_l")
    model.compile(optimizer="adam")
    model.fit(x, y)
    scales = keras.ops.exp(model.weighting.log_scales)
    ```

    References:
        - [Liu et al., 2021](https://openreview.net/forum?id=IMPnRXEWpvr),
          IMTL.
        - LibMTL `weighting/IMTL.py` (the loss part) and TorchJD
          `scalarization/_imtl_l.py`, the peer code followed.
    """

    def __init__(self, initial_log_scale=0.0, log_weights=True, **kwargs):
        super().__init__(log_weights=log_weights, **kwargs)
        self.initial_log_scale = check_initial_log_scale(initial_log_scale)

    def build(self, input_shape):
        self.log_scales = self.add_weight(
            shape=(input_shape[0],),
            initializer=keras.initializers.Constant(self.initial_log_scale),
            trainable=True,
            name="log_scales",
        )
        self.built = True

    def compute_weights(self, task_losses, present, training=False):
        # Carries the gradient of `exp(s_i) L_i` to `s_i`.
        return ops.exp(ops.convert_to_tensor(self.log_scales))

    def regularization_loss(self, task_losses, present):
        # Only present tasks: an absent task's `s_i` gets no gradient.
        log_scales = ops.convert_to_tensor(self.log_scales)
        return -ops.sum(
            ops.where(present, log_scales, ops.zeros_like(log_scales))
        )

    def get_config(self):
        config = super().get_config()
        config["initial_log_scale"] = self.initial_log_scale
        return config
