import keras
import numpy as np
from keras import ops

from keras_mtl.weighting.base import Weighting


@keras.saving.register_keras_serializable(package="keras_mtl")
class DynamicWeightAverage(Weighting):
    """Weights tasks by how fast their losses fell over the last epochs.

    With `L_k(e)` the average training loss of task `k` over epoch `e`,
    the weights during epoch `t` are

    `lambda_k(t) = T * softmax_k(w(t - 1) / temperature)`,
    `w_k(t - 1) = L_k(t - 1) / L_k(t - 2)`,

    and 1 during the first two epochs. A task whose loss falls slowly gets a
    larger weight. The weights stay constant within an epoch.

    Epoch boundaries: every training step adds its task losses (of the
    global batch) to a running sum, for the tasks present in the batch;
    `MTLModel.fit` calls `on_epoch_end()` after each epoch, which turns the
    sum into the epoch's average (the mean over the steps in which the task
    was present; a task absent all epoch keeps its last average) and shifts
    the two-epoch history. A task absent from a batch gets weight 0 in that
    step; the others keep theirs (no renormalisation). Evaluation and
    validation steps do not count.
    In a custom training loop, call `model.weighting.on_epoch_end()` after
    each epoch. All of it is kept in variables, so `.keras` files and
    `keras.callbacks.BackupAndRestore` keep the history (resuming at an
    epoch boundary gives the same weights as training straight through).

    Args:
        temperature: float > 0. Softmax temperature; larger is more uniform.
            Defaults to `2.0` (the paper's value).
        log_weights: bool. Whether to log `<task>_weight`. Defaults to
            `True`.
        **kwargs: Base layer keyword arguments.

    Example:

    ```python
    model = keras_mtl.build_mtl_model(
        inputs, tasks, trunk=[64],
        weighting=keras_mtl.weighting.DynamicWeightAverage(temperature=2.0))
    ```

    References:
        - [Liu et al., 2019](https://arxiv.org/abs/1803.10704)
    """

    # Ranges of the arguments for keras_mtl.tuner (see `search_space`).
    search_space = {
        "temperature": {
            "min_value": 0.5,
            "max_value": 8.0,
            "sampling": "log",
            "default": 2.0,
        },
    }

    def __init__(self, temperature=2.0, log_weights=True, **kwargs):
        super().__init__(log_weights=log_weights, **kwargs)
        if not isinstance(temperature, (int, float)) or not temperature > 0:
            raise ValueError(
                "`temperature` must be a number > 0. "
                f"Received: temperature={temperature!r}"
            )
        self.temperature = float(temperature)

    def build(self, input_shape):
        num_tasks = input_shape[0]

        def state(name, shape, dtype="float32"):
            return self.add_weight(
                shape=shape,
                initializer="zeros",
                dtype=dtype,
                trainable=False,
                aggregation="only_first_replica",
                name=name,
            )

        self.epoch_loss_sums = state("epoch_loss_sums", (num_tasks,))
        # Per task: the steps in which it was present.
        self.epoch_steps = state("epoch_steps", (num_tasks,))
        # Row 0: average losses of the last epoch; row 1: the one before.
        self.epoch_losses = state("epoch_losses", (2, num_tasks))
        self.epochs_seen = state("epochs_seen", (), dtype="int64")
        self.built = True

    def compute_weights(self, task_losses, present, training=False):
        if training:
            counted = ops.cast(present, "float32")
            self.epoch_loss_sums.assign_add(task_losses * counted)
            self.epoch_steps.assign_add(counted)
        history = ops.convert_to_tensor(self.epoch_losses)
        rates = ops.divide_no_nan(history[0], history[1])
        weights = self.num_tasks * ops.softmax(rates / self.temperature)
        warm = ops.greater_equal(self.epochs_seen, 2)
        return ops.where(warm, weights, ops.ones_like(weights))

    def on_epoch_end(self, logs=None):
        steps = self.epoch_steps.numpy()
        if not steps.any():
            return
        # A task absent all epoch keeps its last average.
        history = self.epoch_losses.numpy()
        average = np.where(
            steps > 0,
            self.epoch_loss_sums.numpy() / np.maximum(steps, 1),
            history[0],
        )
        self.epoch_losses.assign(np.stack([average, history[0]]))
        self.epochs_seen.assign_add(1)
        self.epoch_loss_sums.assign(ops.zeros_like(self.epoch_loss_sums))
        self.epoch_steps.assign(ops.zeros_like(self.epoch_steps))

    def load_own_variables(self, store):
        # Files of keras-mtl 0.1 count steps with one scalar for all tasks.
        steps = store["1"]
        if np.ndim(steps) == 0:
            store = {k: store[k] for k in store.keys()}
            store["1"] = np.full((self.num_tasks,), steps, "float32")
        super().load_own_variables(store)

    def get_config(self):
        config = super().get_config()
        config["temperature"] = self.temperature
        return config
