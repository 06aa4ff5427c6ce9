import keras
import tensorflow as tf
from keras import ops

from keras_mtl import distribute
from keras_mtl.weighting._own_optimizer import apply_replica_gradient
from keras_mtl.weighting._own_optimizer import make_weight_optimizer
from keras_mtl.weighting.base import Weighting


@keras.saving.register_keras_serializable(package="keras_mtl")
class GradNorm(Weighting):
    """Learns task weights that balance gradient norms at a shared layer.

    With weights `w_i` (1 at first), `W` the last shared layer's kernel (the
    last variable named `kernel` in `model.shared_variables`, see
    `shared_kernel`), and `L_i(0)` the task losses of the first step (the
    first with labels for the task):

    - `G_i = ||grad_W(w_i L_i)||`, `G_bar = mean_i G_i`;
    - `r_i = (L_i / L_i(0)) / mean_j (L_j / L_j(0))`, the relative inverse
      training rate;
    - `L_grad = sum_i |G_i - G_bar r_i^alpha|`, the target held constant.

    The model takes its step on `sum_i w_i L_i`; then `w` takes a step of its
    own optimizer along `d L_grad / d w` and is renormalised to sum to `T`.
    Since `G_i` is linear in `w_i`, `d L_grad / d w_i = sign(G_i - target_i)
    ||grad_W L_i||`: no second-order gradient is needed. Task losses and
    gradients at `W` are summed over replicas first, so the weights are the
    same as on one device. The weights, `L_i(0)` and the optimizer's state are
    saved with the model.

    This method overrides the training step (`custom_train_step = True`):
    one extra backward pass per task, from its loss to `W` only. With
    `mixed_float16` those passes start from the loss-scaled task losses, as
    the model's own does, and their gradients are unscaled.

    Args:
        alpha: float >= 0. Strength of the restoring force towards equal
            training rates. Defaults to `1.5` (the paper's NYUv2 value; the
            paper's toy problem used `0.12`).
        learning_rate: float > 0. Learning rate of the weights' optimizer.
            Defaults to `0.025`.
        optimizer: str. Name of the Keras optimizer of the weights. Defaults
            to `"adam"`.
        log_weights: bool. Whether to log `<task>_weight`. Defaults to
            `True`.
        **kwargs: Base layer keyword arguments.

    Example:

    ```python
    model = keras_mtl.build_mtl_model(
        inputs, tasks, trunk=[64, 64],
        weighting=keras_mtl.weighting.GradNorm(alpha=1.5))
    model.compile(optimizer="adam")
    ```

    References:
        - [Chen et al., 2018](https://arxiv.org/abs/1711.02257)
    """

    # Ranges of the arguments for keras_mtl.tuner (see `search_space`).
    search_space = {
        "alpha": {
            "min_value": 0.1,
            "max_value": 3.0,
            "sampling": "log",
            "default": 1.5,
        },
        "learning_rate": {
            "min_value": 0.001,
            "max_value": 0.1,
            "sampling": "log",
            "default": 0.025,
        },
    }

    custom_train_step = True

    def __init__(
        self,
        alpha=1.5,
        learning_rate=0.025,
        optimizer="adam",
        log_weights=True,
        **kwargs,
    ):
        super().__init__(log_weights=log_weights, **kwargs)
        if not isinstance(alpha, (int, float)) or not alpha >= 0:
            raise ValueError(
                f"`alpha` must be a number >= 0. Received: alpha={alpha!r}"
            )
        self.alpha = float(alpha)
        self.learning_rate = float(learning_rate)
        self.optimizer = optimizer
        self.weight_optimizer = make_weight_optimizer(
            optimizer, learning_rate, "GradNorm"
        )

    def build(self, input_shape):
        num_tasks = input_shape[0]
        options = dict(trainable=False, aggregation="only_first_replica")
        self.task_weights = self.add_weight(
            shape=(num_tasks,),
            initializer="ones",
            name="task_weights",
            **options,
        )
        self.initial_losses = self.add_weight(
            shape=(num_tasks,),
            initializer="zeros",
            name="initial_losses",
            **options,
        )
        self.steps = self.add_weight(
            shape=(),
            initializer="zeros",
            dtype="int64",
            name="steps",
            **options,
        )
        self.weight_optimizer.build([self.task_weights])
        self.built = True

    def compute_weights(self, task_losses, training=False):
        return ops.convert_to_tensor(self.task_weights)

    @staticmethod
    def shared_kernel(model):
        """The last shared variable named `kernel` (else of rank >= 2)."""
        shared = model.shared_variables
        # Variables named "kernel" first: mixing weights such as
        # cross-stitch units are matrices too, but not a layer's kernel.
        kernels = [v for v in shared if v.name == "kernel"] or [
            v for v in shared if len(v.shape) >= 2
        ]
        if not kernels:
            raise ValueError(
                "GradNorm needs a shared layer with a kernel (a `trunk`), "
                "but no trainable variable of rank >= 2 is shared by the "
                f"tasks {model.task_names}."
            )
        return kernels[-1]

    def update_task_weights(self, task_losses, kernel_gradients):
        """One GradNorm step on the weights.

        Args:
            task_losses: `(T,)` tensor, this replica's share of the task
                losses (static weights included).
            kernel_gradients: `(T, ...)` tensor, this replica's gradient of
                each task loss with respect to the shared kernel.
        """
        losses = distribute.all_reduce_sum(task_losses)
        gradients = distribute.all_reduce_sum(kernel_gradients)
        norms = ops.sqrt(
            ops.sum(ops.reshape(ops.square(gradients), (self.num_tasks, -1)), 1)
        )
        # L_i(0) is the first nonzero loss: a task may have no labels in
        # the first batches.
        initial = ops.where(
            ops.greater(self.initial_losses, 0.0), self.initial_losses, losses
        )
        self.initial_losses.assign(initial)
        self.steps.assign_add(1)
        weighted_norms = ops.convert_to_tensor(self.task_weights) * norms
        ratios = ops.divide_no_nan(losses, initial)
        rates = ops.divide_no_nan(ratios, ops.mean(ratios))
        targets = ops.mean(weighted_norms) * ops.power(rates, self.alpha)
        gradient = ops.sign(weighted_norms - targets) * norms
        apply_replica_gradient(
            self.weight_optimizer, gradient, self.task_weights
        )
        weights = ops.maximum(ops.convert_to_tensor(self.task_weights), 1e-8)
        self.task_weights.assign(self.num_tasks * weights / ops.sum(weights))

    def train_step(self, model, data):
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        kernel = self.shared_kernel(model)
        # The task losses are scaled like the total (mixed_float16), so that
        # their gradients at the kernel do not underflow; unscaled below.
        scale = ops.cast(model.optimizer.scale_loss(1.0), "float32")
        with tf.GradientTape(persistent=True) as tape:
            y_pred = model(x, training=True)
            loss_list = model.compute_task_loss_list(y, y_pred, sample_weight)
            task_losses = ops.stack(loss_list)
            loss = model.combine_losses(task_losses, y_pred, training=True)
            model._loss_tracker.update_state(
                loss * distribute.num_replicas(),
                sample_weight=ops.shape(keras.tree.flatten(x)[0])[0],
            )
            static = ops.convert_to_tensor(model.static_loss_weights, "float32")
            weighted_losses = task_losses * static
            per_task = [
                value * weight * scale
                for value, weight in zip(loss_list, model.static_loss_weights)
            ]
            loss = model.optimizer.scale_loss(loss)
        variables = model.trainable_variables
        gradients = tape.gradient(loss, variables)
        kernel_gradients = []
        for task_loss in per_task:
            gradient = tape.gradient(task_loss, kernel)
            if gradient is None:
                gradient = ops.zeros_like(kernel)
            kernel_gradients.append(ops.cast(gradient, "float32") / scale)
        del tape
        model.optimizer.apply(gradients, variables)
        self.update_task_weights(weighted_losses, ops.stack(kernel_gradients))
        return model.compute_metrics(x, y, y_pred, sample_weight=sample_weight)

    def get_config(self):
        config = super().get_config()
        config.update(
            alpha=self.alpha,
            learning_rate=self.learning_rate,
            optimizer=self.optimizer,
        )
        return config
