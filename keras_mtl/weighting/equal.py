import keras

from keras_mtl.weighting.base import Weighting


@keras.saving.register_keras_serializable(package="keras_mtl")
class EqualWeighting(Weighting):
    """Sums the task losses, each with weight 1.

    The total is `sum_i loss_weight_i * L_i`: a sum, not a mean, as in Keras
    `compile(loss_weights=...)` and LibMTL. Each task's static `loss_weight`
    still applies.

    Args:
        log_weights: bool. Whether to log `<task>_weight`. Defaults to
            `False` (the weights never change).
        **kwargs: Base layer keyword arguments.

    Example:

    ```python
    model = keras_mtl.build_mtl_model(inputs, tasks, weighting="equal")
    ```

    References:
        - [Caruana, 1997](https://doi.org/10.1023/A:1007379606734)
    """

    def __init__(self, log_weights=False, **kwargs):
        super().__init__(log_weights=log_weights, **kwargs)
