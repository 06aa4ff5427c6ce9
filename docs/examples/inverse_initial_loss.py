# docs/examples/inverse_initial_loss.py
"""A loss-level weighting method: each task weighted by L_i(0) / L_i."""

import keras
from keras import ops

import keras_mtl


@keras.saving.register_keras_serializable(package="my_package")
@keras_mtl.weighting.register(aliases=["inverse_initial"])
class InverseInitialLossWeighting(keras_mtl.weighting.Weighting):
    """Weights each task by how far its loss has fallen since it started.

    With `L_i(0)` the loss of task `i` in the first training step in which
    it had labels, the weight of the step is

    `w_i = (L_i(0) / max(L_i, epsilon)) ** power`,

    1 in that first step. With `power=1`, `w_i grad L_i` is
    `L_i(0) grad log L_i`: each task's step is relative to its own loss, so
    a task whose loss has fallen far keeps the pull it had at the start.
    The weights have no fixed sum (`T` at the first step); `power=0` is
    equal weighting.

    `L_i(0)` lives in the variable `initial_losses` (0 until it is set), so
    it is saved with the model. A task absent from a batch gets weight 0
    and its `L_i(0)` waits for its first labelled step. Evaluation steps
    record nothing; a task never seen in training has weight 1 there.

    Args:
        power: float >= 0. The exponent of the ratio. Defaults to `1.0`.
        epsilon: float > 0. Floor of the current loss in the ratio.
            Defaults to `1e-8`.
        log_weights: bool. Whether to log `<task>_weight`. Defaults to
            `True`.
        **kwargs: Base layer keyword arguments, such as `name`.

    Example:

    ```python
    model = keras_mtl.build_mtl_model(
        inputs, tasks, trunk=[64], weighting="inverse_initial_loss")
    ```
    """

    # Ranges of the arguments for keras_mtl.tuner.
    search_space = {
        "power": {"min_value": 0.0, "max_value": 2.0, "default": 1.0},
    }

    def __init__(self, power=1.0, epsilon=1e-8, log_weights=True, **kwargs):
        super().__init__(log_weights=log_weights, **kwargs)
        if not isinstance(power, (int, float)) or not power >= 0:
            raise ValueError(
                f"`power` must be a number >= 0. Received: power={power!r}"
            )
        if not isinstance(epsilon, (int, float)) or not epsilon > 0:
            raise ValueError(
                f"`epsilon` must be a number > 0. Received: epsilon={epsilon!r}"
            )
        self.power = float(power)
        self.epsilon = float(epsilon)

    def build(self, input_shape):
        self.initial_losses = self.add_weight(
            shape=(input_shape[0],),
            initializer="zeros",
            trainable=False,
            # Every replica computes the same value from the global losses.
            aggregation="only_first_replica",
            name="initial_losses",
        )
        self.built = True

    def compute_weights(self, task_losses, present, training=False):
        initial = ops.convert_to_tensor(self.initial_losses)
        unset = ops.equal(initial, 0.0)
        if training:
            initial = ops.where(
                ops.logical_and(present, unset), task_losses, initial
            )
            self.initial_losses.assign(initial)
            unset = ops.equal(initial, 0.0)
        ratio = initial / ops.maximum(task_losses, self.epsilon)
        weights = ops.where(unset, 1.0, ops.power(ratio, self.power))
        return ops.where(present, weights, 0.0)

    def get_config(self):
        config = super().get_config()
        config["power"] = self.power
        config["epsilon"] = self.epsilon
        return config
