import keras
from keras import ops

from keras_mtl.weighting.base import Weighting


@keras.saving.register_keras_serializable(package="keras_mtl")
class LossBalanced(Weighting):
    """Weights each task by how little its loss fell since the epoch began.

    Loss-balanced task weighting (LBTW). With `L_i` the task's loss on the
    batch and `L_i(0)` its loss on the first batch of the current epoch,

    `w_i = T * r_i^alpha / sum_{j present} r_j^alpha`,
    `r_i = L_i / L_i(0)`,

    for the tasks present in the batch, and `w_i = 0` for the absent ones.
    A task whose loss has fallen fast since the start of the epoch (a task
    that may be overfitting, or hurting the others) is weighted down. The
    weights are constants of the step: no gradient flows through them.

    As in the authors' code, `L_i(0)` is recorded afresh at the first
    training batch of every epoch (so the first batch of an epoch has equal
    weights) and the weights are renormalised to sum to `T`, the number of
    tasks. When some tasks are absent from a batch, the present tasks'
    weights still sum to `T` (the authors' code does the same: a task
    with no labels in a batch has loss, hence ratio, 0). A task's `L_i(0)`
    is its loss at its first *present* training batch of the epoch; an
    absent task's `L_i(0)` is left as it was. `MTLModel.fit` marks the
    epoch boundaries (through `on_epoch_end`); in a custom training loop,
    call `model.weighting.on_epoch_end()` after each epoch, or `L_i(0)`
    stays that of the first batch of training.

    Evaluation and validation steps use the current `L_i(0)` and record
    nothing. A ratio is taken as 1 while `L_i(0)` is 0 (never recorded, or a
    zero loss), and negative losses count as 0. `L_i(0)` and the per-epoch
    step counts are variables, saved in `.keras` files and restored by
    `keras.callbacks.BackupAndRestore`.

    Args:
        alpha: float >= 0. Exponent of the loss ratio; `0` gives equal
            weights. Defaults to `0.5` (the paper's and the authors' code's
            value).
        log_weights: bool. Whether to log `<task>_weight`. Defaults to
            `True`.
        **kwargs: Base layer keyword arguments.

    Returns:
        From `compute_weights`: the `(T,)` float32 weights of the step,
        summing to `T` over the present tasks, 0 for the absent ones.

    Example:

    ```python
    import keras
    import numpy as np
    import keras_mtl

    inputs = keras.Input((8,))
    tasks = [
        keras_mtl.Task("price", loss="mse"),
        keras_mtl.Task("churn", loss="binary_crossentropy",
                       activation="sigmoid"),
    ]
    model = keras_mtl.build_mtl_model(
        inputs, tasks, trunk=[16],
        weighting=keras_mtl.weighting.LossBalanced(alpha=0.5))
    model.compile(optimizer="adam")
    x = np.random.normal(size=(64, 8)).astype("float32")
    y = {"price": x[:, :1], "churn": (x[:, 1:2] > 0).astype("float32")}
    history = model.fit(x, y, batch_size=16, epochs=2, verbose=0)
    history.history["price_weight"]  # mean weight of each epoch
    model.weighting.initial_losses  # L_i(0) of the last epoch
    ```

    References:
        - [Liu, Liang & Gitter, 2019](
          https://doi.org/10.1609/aaai.v33i01.33019977), Loss-Balanced Task
          Weighting to Reduce Negative Transfer in Multi-Task Learning
          (AAAI); the authors' code:
          https://github.com/chao1224/Loss-Balanced-Task-Weighting
    """

    # Ranges of the arguments for keras_mtl.tuner (see `search_space`).
    search_space = {
        "alpha": {"min_value": 0.1, "max_value": 1.0, "default": 0.5},
    }

    def __init__(self, alpha=0.5, log_weights=True, **kwargs):
        super().__init__(log_weights=log_weights, **kwargs)
        if (
            not isinstance(alpha, (int, float))
            or isinstance(alpha, bool)
            or not alpha >= 0
        ):
            raise ValueError(
                f"`alpha` must be a number >= 0. Received: alpha={alpha!r}"
            )
        self.alpha = float(alpha)

    def build(self, input_shape):
        num_tasks = input_shape[0]
        options = dict(
            initializer="zeros",
            trainable=False,
            aggregation="only_first_replica",
        )
        # L_i(0): each task's loss at its first present batch of the epoch.
        self.initial_losses = self.add_weight(
            shape=(num_tasks,), name="initial_losses", **options
        )
        # Per task: the training steps of this epoch in which it was present.
        self.epoch_steps = self.add_weight(
            shape=(num_tasks,), name="epoch_steps", **options
        )
        self.built = True

    def compute_weights(self, task_losses, present, training=False):
        present = ops.convert_to_tensor(present, "bool")
        initial = ops.convert_to_tensor(self.initial_losses)
        if training:
            first = ops.logical_and(present, ops.equal(self.epoch_steps, 0.0))
            initial = ops.where(first, task_losses, initial)
            self.initial_losses.assign(initial)
            self.epoch_steps.assign_add(ops.cast(present, "float32"))
        ratios = ops.where(
            ops.greater(initial, 0.0),
            ops.maximum(task_losses, 0.0) / ops.maximum(initial, 1e-12),
            ops.ones_like(task_losses),
        )
        powered = ops.where(
            present, ops.power(ratios, self.alpha), ops.zeros_like(ratios)
        )
        # Every present loss 0: equal weights rather than none.
        powered = ops.where(
            ops.greater(ops.sum(powered), 0.0),
            powered,
            ops.cast(present, "float32"),
        )
        total = ops.maximum(ops.sum(powered), 1e-12)
        return self.num_tasks * powered / total

    def on_epoch_end(self, logs=None):
        # The next training batch of each task records its new L_i(0).
        self.epoch_steps.assign(ops.zeros_like(self.epoch_steps))

    def get_config(self):
        config = super().get_config()
        config["alpha"] = self.alpha
        return config
