import math

import keras
from keras import ops

from keras_mtl.weighting.base import Weighting


def check_epsilon(epsilon):
    """`epsilon` as a float > 0, or a `ValueError` naming it."""
    if (
        not isinstance(epsilon, (int, float))
        or isinstance(epsilon, bool)
        or not math.isfinite(epsilon)
        or not epsilon > 0
    ):
        raise ValueError(
            f"`epsilon` must be a float > 0. Received: epsilon={epsilon!r}"
        )
    return float(epsilon)


@keras.saving.register_keras_serializable(package="keras_mtl")
class GLS(Weighting):
    """Geometric loss strategy: minimises the geometric mean of the losses.

    The objective is `GM = (prod_i L_i)^(1/T)`. Its gradient is that of
    `sum_i w_i L_i` with

    `w_i = GM / (T L_i)`,

    computed from the global-batch losses with their gradient stopped, so
    the step is one ordinary backward pass. `sum_i w_i L_i` equals `GM`
    (the logged `weighted_loss`). A task that is far along (small `L_i`)
    gets a large weight: the geometric mean rewards relative, not absolute,
    decreases.

    Only the tasks present in the batch count: `T` is their number and
    `GM` their geometric mean; an absent task gets weight 0. Losses below
    `epsilon` count as `epsilon` (as `exp(mean(log L))`, so no product
    overflows), which keeps the weight of a task whose loss reaches 0
    finite.

    Args:
        epsilon: float > 0. Smallest loss used in the weights. Defaults to
            `1e-8`.
        log_weights: bool. Whether to log `<task>_weight`. Defaults to
            `True`.
        **kwargs: Base layer keyword arguments.

    Example:

    ```python
    model = keras_mtl.build_mtl_model(
        inputs, tasks, trunk=[64], weighting="gls")
    ```

    References:
        - [Chennupati et al., 2019](https://arxiv.org/abs/1904.08492),
          MultiNet++ (the geometric loss strategy).
        - LibMTL `weighting/GLS.py` and TorchJD
          `scalarization/_geometric_mean.py`, the peer code followed
          (LibMTL's logged weights `L / (T prod L)` are not the weights of
          its update; these are).
    """

    def __init__(self, epsilon=1e-8, log_weights=True, **kwargs):
        super().__init__(log_weights=log_weights, **kwargs)
        self.epsilon = check_epsilon(epsilon)

    def compute_weights(self, task_losses, present, training=False):
        counted = ops.cast(present, "float32")
        count = ops.maximum(ops.sum(counted), 1.0)
        logs = ops.log(ops.maximum(task_losses, self.epsilon))
        log_mean = ops.sum(logs * counted) / count
        return ops.exp(log_mean - logs) / count

    def get_config(self):
        config = super().get_config()
        config["epsilon"] = self.epsilon
        return config
