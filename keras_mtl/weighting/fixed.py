import keras
from keras import ops

from keras_mtl.tasks import check_weight
from keras_mtl.weighting.base import Weighting


@keras.saving.register_keras_serializable(package="keras_mtl")
class FixedWeighting(Weighting):
    """Multiplies each task loss by a constant weight.

    The weights multiply the tasks' static `loss_weight`s. Passing a
    `{task: weight}` dict as `weighting=` to `build_mtl_model` makes one.

    Args:
        weights: dict mapping every task name to a float >= 0.
        log_weights: bool. Whether to log `<task>_weight`. Defaults to
            `False` (the weights never change).
        **kwargs: Base layer keyword arguments.

    Example:

    ```python
    model = keras_mtl.build_mtl_model(
        inputs, tasks, weighting={"price": 1.0, "churn": 0.2})
    ```
    """

    def __init__(self, weights, log_weights=False, **kwargs):
        super().__init__(log_weights=log_weights, **kwargs)
        if not isinstance(weights, dict) or not weights:
            raise TypeError(
                "`weights` must be a non-empty dict {task_name: weight}. "
                f"Received: weights={weights!r}"
            )
        self.weights_by_task = {
            task: check_weight(weight, f"Weight of task '{task}'")
            for task, weight in weights.items()
        }

    def set_tasks(self, task_names):
        names = list(task_names)
        unknown = sorted(set(self.weights_by_task) - set(names))
        missing = [n for n in names if n not in self.weights_by_task]
        if unknown or missing:
            raise ValueError(
                "Fixed weights must name exactly the model's tasks "
                f"{names}. Unknown: {unknown}; missing: {missing}."
            )
        super().set_tasks(names)

    def compute_weights(self, task_losses, present, training=False):
        return ops.convert_to_tensor(
            [self.weights_by_task[n] for n in self.task_names],
            dtype=task_losses.dtype,
        )

    def get_config(self):
        config = super().get_config()
        config["weights"] = dict(self.weights_by_task)
        return config
