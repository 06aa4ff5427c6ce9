import keras
from keras import ops

from keras_mtl import distribute


@keras.saving.register_keras_serializable(package="keras_mtl")
class Weighting(keras.layers.Layer):
    """Base class of the methods that combine T task losses into one.

    A weighting method is a layer owned by the `MTLModel`: its variables
    (learned log-variances, loss histories, ...) are trained, saved and
    restored with the model. Subclasses override `compute_weights` (and
    `build` for state); the layer's call returns the total loss and the
    weights.

    `task_losses` is a `(T,)` tensor of this replica's share of each task's
    loss (statically weighted by the tasks' `loss_weight`): the shares add
    up over replicas to the loss of the global batch. A term that is not
    proportional to a task loss must therefore be divided by
    `keras_mtl.distribute.num_replicas()`, and a statistic of the losses
    (a history, a ratio) must use `keras_mtl.distribute.all_reduce_sum`.

    Methods that need more than the total loss (per-task gradients, the
    losses after the step) set `custom_train_step = True` and implement
    `train_step(model, data)`, which `MTLModel.train_step` then calls.

    Methods that work on epoch statistics override `on_epoch_end()`:
    `MTLModel.fit` calls it after each training epoch (after validation,
    before the user's callbacks, so that `BackupAndRestore` saves the state
    of the new epoch). A custom training loop calls it itself.

    Args:
        log_weights: bool. Whether the model logs each task's weight as
            `<task>_weight` (the mean over the epoch). Defaults to `True`.
        **kwargs: Base layer keyword arguments, such as `name`.

    Example:

    ```python
    class InverseLossWeighting(keras_mtl.weighting.Weighting):
        def compute_weights(self, task_losses, training=False):
            totals = keras_mtl.distribute.all_reduce_sum(task_losses)
            inverse = 1.0 / (totals + 1e-8)
            return len(self.task_names) * inverse / ops.sum(inverse)
    ```

    References:
        - [Vandenhende et al., 2021](https://arxiv.org/abs/2004.13379), a
          survey of task-balancing methods.
        - [Lin & Zhang, 2022](https://arxiv.org/abs/2203.14338), LibMTL,
          the weighting interface of the PyTorch library.
    """

    custom_train_step = False

    def __init__(self, log_weights=True, **kwargs):
        # Losses are combined in float32, whatever the mixed precision policy.
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        self.log_weights = log_weights
        self.task_names = None

    def set_tasks(self, task_names):
        """Binds the method to the model's tasks and builds its state."""
        task_names = list(task_names)
        if self.task_names is not None and self.task_names != task_names:
            raise ValueError(
                f"Weighting '{self.name}' is already bound to tasks "
                f"{self.task_names}; it cannot be reused for {task_names}."
            )
        self.task_names = task_names
        if not self.built:
            self.build((len(task_names),))

    @property
    def num_tasks(self):
        return len(self.task_names)

    def build(self, input_shape):
        self.built = True

    def compute_weights(self, task_losses, training=False):
        """Returns the `(T,)` weights of the task losses. Defaults to ones."""
        return ops.ones_like(task_losses)

    def on_epoch_end(self):
        """Called by `MTLModel.fit` at the end of each training epoch."""

    def call(self, task_losses, training=False):
        weights = ops.cast(
            self.compute_weights(task_losses, training=training),
            task_losses.dtype,
        )
        return ops.sum(weights * task_losses), weights

    def compute_output_spec(self, task_losses, training=False):
        return (
            keras.KerasTensor((), dtype=task_losses.dtype),
            keras.KerasTensor(task_losses.shape, dtype=task_losses.dtype),
        )

    def _num_replicas(self):
        return distribute.num_replicas()

    def get_config(self):
        config = super().get_config()
        config["log_weights"] = self.log_weights
        return config
