import math

import keras
from keras import ops

from keras_mtl.weighting.base import Weighting


@keras.saving.register_keras_serializable(package="keras_mtl")
class UncertaintyWeighting(Weighting):
    """Weights each task by a learned homoscedastic uncertainty.

    Each task gets a trainable log-variance `s_i = log sigma_i^2`, trained
    with the model by the model's optimizer. The total is

    `L = sum_i exp(-s_i) * L_i + s_i`

    (the form of the authors' notebook; for a fixed `L_i` it is minimised at
    `s_i = log L_i`, so a noisy task is weighted down). The logged weight of
    task `i` is `exp(-s_i)`. The regularising `s_i` term (the method's
    `regularization_loss`) makes the total loss negative when losses are
    small. A task absent from a batch contributes neither term: its `s_i`
    gets a zero gradient in that step (an optimizer with momentum, such as
    Adam, still moves it by the decaying momentum of earlier steps).

    Args:
        initial_log_variance: float. Initial value of every `s_i`. Defaults
            to `0.0` (weights of 1).
        log_weights: bool. Whether to log `<task>_weight`. Defaults to
            `True`.
        **kwargs: Base layer keyword arguments.

    Example:

    ```python
    model = keras_mtl.build_mtl_model(
        inputs, tasks, trunk=[64], weighting="uncertainty")
    model.compile(optimizer="adam")
    model.fit(x, y)
    sigmas = keras.ops.exp(0.5 * model.weighting.log_variances)
    ```

    References:
        - [Kendall et al., 2018](https://arxiv.org/abs/1705.07115)
    """

    def __init__(self, initial_log_variance=0.0, log_weights=True, **kwargs):
        super().__init__(log_weights=log_weights, **kwargs)
        if not isinstance(initial_log_variance, (int, float)) or isinstance(
            initial_log_variance, bool
        ):
            raise TypeError(
                "`initial_log_variance` must be a float. "
                f"Received: initial_log_variance={initial_log_variance!r}"
            )
        if not math.isfinite(initial_log_variance):
            raise ValueError(
                "`initial_log_variance` must be finite. "
                f"Received: initial_log_variance={initial_log_variance!r}"
            )
        self.initial_log_variance = float(initial_log_variance)

    def build(self, input_shape):
        self.log_variances = self.add_weight(
            shape=(input_shape[0],),
            initializer=keras.initializers.Constant(self.initial_log_variance),
            trainable=True,
            name="log_variances",
        )
        self.built = True

    def compute_weights(self, task_losses, present, training=False):
        # Carries the gradient of `exp(-s_i) L_i` to `s_i`.
        return ops.exp(-ops.convert_to_tensor(self.log_variances))

    def regularization_loss(self, task_losses, present):
        # Only present tasks: an absent task's `s_i` gets no gradient.
        log_variances = ops.convert_to_tensor(self.log_variances)
        return ops.sum(
            ops.where(present, log_variances, ops.zeros_like(log_variances))
        )

    def get_config(self):
        config = super().get_config()
        config["initial_log_variance"] = self.initial_log_variance
        return config
