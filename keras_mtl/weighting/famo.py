import keras
from keras import ops

from keras_mtl.weighting._own_optimizer import apply_replica_gradient
from keras_mtl.weighting._own_optimizer import make_weight_optimizer
from keras_mtl.weighting.base import Weighting


@keras.saving.register_keras_serializable(package="keras_mtl")
class FAMO(Weighting):
    """Fast Adaptive Multitask Optimization: balances the rates of descent.

    Task logits `xi` (0 at first) give `z = softmax(xi)`. The model steps
    along the gradient of `sum_i c z_i log L_i`, that is `sum_i w_i grad L_i`
    with weights `w_i = c z_i / L_i`, `c = 1 / sum_j (z_j / L_j)` (the logged
    `<task>_weight`). After the step, with the losses `L'_i` of the updated
    model on the same batch, the logits take a step of their own optimizer
    along

    `J_z(xi)^T (log L - log L') + gamma xi`,

    which raises the weight of the tasks whose loss fell least. Losses are
    summed over replicas before any of it, so the result is that of one
    device. `L_i + epsilon` stands for `L_i` throughout. A task absent from
    the batch gets weight 0 and sits out of the logits' update: the softmax
    is that of the present tasks, and its logit does not move. The weights
    are invariant to the tasks' static `loss_weight`s (keep them > 0); they
    sum to 1 over the present tasks.

    The model gives `after_step` the losses after the update
    (`losses_after_step = True`): one extra forward pass (with
    `training=True`, as in the authors' code: batch-norm statistics are
    updated twice per step).

    Args:
        learning_rate: float > 0. Step size `beta` of the logits. Defaults to
            `0.025`.
        gamma: float >= 0. Decay of the logits towards 0 (L2, added to their
            gradient as `torch.optim.Adam(weight_decay=gamma)` does in the
            authors' code). Defaults to `0.001`.
        epsilon: float > 0. Added to every loss before division and
            logarithm. Defaults to `1e-8`.
        optimizer: str. Name of the Keras optimizer of the logits. Defaults
            to `"adam"`, as in the authors' code; `"sgd"` gives the plain
            update `xi <- xi - beta (J^T (log L - log L') + gamma xi)`.
        log_weights: bool. Whether to log `<task>_weight`. Defaults to
            `True`.
        **kwargs: Base layer keyword arguments.

    Example:

    ```python
    model = keras_mtl.build_mtl_model(
        inputs, tasks, trunk=[64], weighting="famo")
    model.compile(optimizer="adam")
    ```

    References:
        - [Liu et al., 2023](https://arxiv.org/abs/2306.03792)
    """

    # Ranges of the arguments for keras_mtl.tuner (see `search_space`).
    search_space = {
        "learning_rate": {
            "min_value": 0.005,
            "max_value": 0.1,
            "sampling": "log",
            "default": 0.025,
        },
        "gamma": {
            "min_value": 0.0001,
            "max_value": 0.01,
            "sampling": "log",
            "default": 0.001,
        },
    }

    losses_after_step = True

    def __init__(
        self,
        learning_rate=0.025,
        gamma=0.001,
        epsilon=1e-8,
        optimizer="adam",
        log_weights=True,
        **kwargs,
    ):
        super().__init__(log_weights=log_weights, **kwargs)
        if not isinstance(gamma, (int, float)) or not gamma >= 0:
            raise ValueError(
                f"`gamma` must be a number >= 0. Received: gamma={gamma!r}"
            )
        if not isinstance(epsilon, (int, float)) or not epsilon > 0:
            raise ValueError(
                f"`epsilon` must be a number > 0. Received: epsilon={epsilon!r}"
            )
        self.learning_rate = float(learning_rate)
        self.gamma = float(gamma)
        self.epsilon = float(epsilon)
        self.optimizer = optimizer
        self.weight_optimizer = make_weight_optimizer(
            optimizer, learning_rate, "FAMO"
        )

    def build(self, input_shape):
        self.logits = self.add_weight(
            shape=(input_shape[0],),
            initializer="zeros",
            trainable=False,
            aggregation="only_first_replica",
            name="logits",
        )
        self.weight_optimizer.build([self.logits])
        self.built = True

    def compute_weights(self, task_losses, present, training=False):
        # Over the present tasks only (an absent one's loss is 0): the
        # normalisation makes this the softmax of their logits alone.
        z = ops.softmax(ops.convert_to_tensor(self.logits))
        scaled = ops.where(present, z / (task_losses + self.epsilon), 0.0)
        return ops.divide_no_nan(scaled, ops.sum(scaled))

    def after_step(
        self, task_losses, present, task_gradients=None, new_task_losses=None
    ):
        self.update_logits(task_losses, new_task_losses, present)

    def update_logits(self, task_losses, new_task_losses, present=None):
        """One FAMO step on the logits.

        Args:
            task_losses: `(T,)` tensor, the global-batch task losses before
                the model's step.
            new_task_losses: `(T,)` tensor, the same after the step.
            present: `(T,)` bool tensor, or `None` (tasks with a nonzero
                loss). The softmax and its Jacobian are those of the present
                tasks; an absent task's logit does not move.
        """
        before = ops.convert_to_tensor(task_losses, "float32")
        after = ops.convert_to_tensor(new_task_losses, "float32")
        if present is None:
            present = ops.greater(before, 0.0)
        present = ops.logical_and(
            present,
            ops.logical_and(ops.greater(before, 0.0), ops.greater(after, 0.0)),
        )
        delta = ops.log(before + self.epsilon) - ops.log(after + self.epsilon)
        delta = ops.where(present, delta, ops.zeros_like(delta))
        # A copy: a converted variable would read its later value.
        logits = ops.copy(self.logits)
        z = ops.softmax(ops.where(present, logits, float("-inf")))
        z = ops.where(present, z, 0.0)
        gradient = z * (delta - ops.sum(z * delta)) + self.gamma * logits
        gradient = ops.where(present, gradient, 0.0)
        apply_replica_gradient(self.weight_optimizer, gradient, self.logits)
        # Not even the optimizer's momentum moves an absent task's logit.
        self.logits.assign(ops.where(present, self.logits, logits))

    def get_config(self):
        config = super().get_config()
        config.update(
            learning_rate=self.learning_rate,
            gamma=self.gamma,
            epsilon=self.epsilon,
            optimizer=self.optimizer,
        )
        return config
