import inspect

import keras
from keras import ops

GRADIENTS = (None, "kernel", "shared", "representation")


class Weighting(keras.layers.Layer):
    """Base class of the methods that combine T task losses into one.

    A weighting method is a layer owned by the `MTLModel`: its variables
    (learned log-variances, loss histories, ...) are trained, saved and
    restored with the model. It never runs the training step: the model's
    `train_step` does, and asks the method narrow questions.

    - `compute_weights(task_losses, present, training)`: the `(T,)` weights
      of the step. It runs once per training and test step.
    - `regularization_loss(task_losses, present)`: a term of the method's
      own, added to the objective (uncertainty weighting's `sum_i s_i`).
    - `after_step(task_losses, present, task_gradients, new_task_losses)`:
      runs after the optimizer's update (GradNorm, FAMO).
    - `on_epoch_end(logs)`: `MTLModel.fit` calls it after each training
      epoch with the epoch's logs (validation included), before the user's
      callbacks, so that `BackupAndRestore` saves the state of the new
      epoch.

    The model minimises `sum_i w_i L_i + regularization_loss + model.losses`.

    Conventions:

    - `task_losses` is the `(T,)` loss of each task over the labelled
      examples of the *global* batch (summed over replicas), already
      multiplied by the task's static `loss_weight`, with its gradient
      stopped: a method cannot differentiate through the losses by accident,
      and need not know about `tf.distribute`. A method's weights may depend
      on its own trainable variables (uncertainty's log-variances): the
      gradient of `w_i L_i` then trains them.
    - `present` is a `(T,)` boolean tensor: whether the batch holds at least
      one label of the task (decided on the global batch, so every replica
      agrees). An absent task sits out: the model multiplies its weight by 0,
      and a method must not move the task's own state (histories, learned
      weights) in that step.
    - The scale of the weights is each method's own and stated in its
      docstring; `<task>_weight` in the logs is the mean of `w_i` over the
      epoch's steps in which task `i` was present.
    - Methods that need per-task gradients say so in the class attribute
      `gradients`: `None` (none), `"kernel"` (each task's gradient at one
      shared kernel, given to `after_step`, see `gradient_variable`),
      `"shared"` or `"representation"` (gradient-level methods, see
      `keras_mtl.weighting.GradientWeighting`). `losses_after_step = True`
      asks for the task losses of the updated model on the same batch,
      given to `after_step` (one more forward pass).

    Args:
        log_weights: bool. Whether the model logs each task's weight as
            `<task>_weight` (the mean over the epoch). Defaults to `True`.
        **kwargs: Base layer keyword arguments, such as `name`.

    Example:

    ```python
    class InverseLossWeighting(keras_mtl.weighting.Weighting):
        def compute_weights(self, task_losses, present, training=False):
            inverse = 1.0 / (task_losses + 1e-8)
            return len(self.task_names) * inverse / keras.ops.sum(inverse)
    ```

    References:
        - [Vandenhende et al., 2021](https://arxiv.org/abs/2004.13379), a
          survey of task-balancing methods.
        - [Lin & Zhang, 2022](https://arxiv.org/abs/2203.14338), LibMTL,
          the weighting interface of the PyTorch library.
    """

    gradients = None
    losses_after_step = False
    search_space = {}

    def __init__(self, log_weights=True, **kwargs):
        # Losses are combined in float32, whatever the mixed precision policy.
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        self.log_weights = log_weights
        self.task_names = None
        # Set by the MTLModel that owns the method: one model per instance.
        self.has_owner = False

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

    def attach(self, task_names):
        """Makes the method the weighting of one model, of these tasks."""
        if self.has_owner:
            raise ValueError(
                f"Weighting '{self.name}' already belongs to another model: "
                "its state (weights, histories, its optimizer) would be "
                "shared and trained twice. Give each model its own: a new "
                "instance, or the method's name."
            )
        self.set_tasks(task_names)
        self.has_owner = True

    @property
    def num_tasks(self):
        return len(self.task_names)

    def build(self, input_shape):
        self.built = True

    def compute_weights(self, task_losses, present, training=False):
        """Returns the `(T,)` weights of the task losses. Defaults to ones.

        Args:
            task_losses: `(T,)` float32 tensor, the global-batch task losses
                (static loss weights applied, no gradient).
            present: `(T,)` bool tensor, the tasks with labels in the batch.
            training: bool. Whether this is a training step.
        """
        return ops.ones_like(task_losses)

    def regularization_loss(self, task_losses, present):
        """A term of the method's own for the objective, or `None`.

        Computed for the global batch: the model divides it by the number
        of replicas. Defaults to `None`.
        """
        return None

    def gradient_variable(self, model):
        """The shared variable of `gradients = "kernel"` (see `GradNorm`)."""
        raise ValueError(
            f"{type(self).__name__} declares gradients={self.gradients!r} "
            "but does not say at which variable."
        )

    def after_step(
        self, task_losses, present, task_gradients=None, new_task_losses=None
    ):
        """Runs after the optimizer's update, in training only.

        Args:
            task_losses: `(T,)` global-batch task losses of the step.
            present: `(T,)` bool tensor.
            task_gradients: with `gradients = "kernel"`, the `(T, ...)`
                per-task gradients at `gradient_variable(model)`, summed
                over replicas and unscaled; else `None`.
            new_task_losses: with `losses_after_step`, the `(T,)` task
                losses of the updated model on the same batch; else `None`.
        """

    def on_epoch_end(self, logs=None):
        """Called by `MTLModel.fit` at the end of each training epoch.

        Args:
            logs: dict, the epoch's logs as Keras callbacks get them
                (`<task>_<metric>`, and `val_<task>_<metric>` with
                validation data).
        """

    def weights_for(self, task_losses, present, training=False):
        """`compute_weights` on stopped losses, zero for absent tasks."""
        task_losses = ops.stop_gradient(ops.cast(task_losses, "float32"))
        if "present" in inspect.signature(self.compute_weights).parameters:
            weights = self.compute_weights(
                task_losses, present, training=training
            )
        else:  # a method written before `present` existed
            weights = self.compute_weights(task_losses, training=training)
        weights = ops.cast(weights, "float32")
        return ops.where(present, weights, ops.zeros_like(weights))

    def call(self, task_losses, present=None, training=False):
        """The weighted total and the weights, for one device.

        Args:
            task_losses: `(T,)` task losses.
            present: `(T,)` bool tensor. Defaults to `None`: all present.
            training: bool.

        Returns:
            `(total, weights)`: `sum_i w_i L_i` plus `regularization_loss`,
            and the `(T,)` weights.
        """
        task_losses = ops.cast(task_losses, "float32")
        if present is None:
            present = ops.ones(ops.shape(task_losses), dtype="bool")
        weights = self.weights_for(task_losses, present, training=training)
        total = ops.sum(weights * task_losses)
        extra = self.regularization_loss(
            ops.stop_gradient(task_losses), present
        )
        if extra is not None:
            total = total + extra
        return total, weights

    def compute_output_spec(self, task_losses, present=None, training=False):
        return (
            keras.KerasTensor((), dtype="float32"),
            keras.KerasTensor(task_losses.shape, dtype="float32"),
        )

    def get_config(self):
        config = super().get_config()
        config["log_weights"] = self.log_weights
        return config


class EpochEnd(keras.callbacks.Callback):
    """Tells the model's weighting method that a training epoch ended."""

    def __init__(self, weighting):
        super().__init__()
        self.weighting = weighting

    def on_epoch_end(self, epoch, logs=None):
        hook = self.weighting.on_epoch_end
        if inspect.signature(hook).parameters:
            hook(dict(logs or {}))
        else:  # a method written before the hook took the logs
            hook()
