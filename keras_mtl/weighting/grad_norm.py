import keras
from keras import ops

from keras_mtl.weighting._own_optimizer import apply_replica_gradient
from keras_mtl.weighting._own_optimizer import make_weight_optimizer
from keras_mtl.weighting.base import Weighting


@keras.saving.register_keras_serializable(package="keras_mtl")
class GradNorm(Weighting):
    """Learns task weights that balance gradient norms at a shared layer.

    With weights `w_i` (1 at first), `W` the kernel of the shared layer
    `layer` (by default the last variable named `kernel` in
    `model.shared_variables`, see `shared_kernel`), and `L_i(0)` the task
    losses of the first step (the first with labels for the task):

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

    The model computes the per-task gradients at `W` for it
    (`gradients = "kernel"`): one extra backward pass per task, from its
    loss to `W` only, and gives them to `after_step`. A task absent from a
    batch gets weight 0 in that step and keeps its weight for later: it
    counts in neither mean, and the present tasks' weights keep their sum.

    The weights sum to `T` (all tasks present); `<task>_weight` is `w_i`.

    Args:
        alpha: float >= 0. Strength of the restoring force towards equal
            training rates. Defaults to `1.5` (the paper's NYUv2 value; the
            paper's toy problem used `0.12`).
        learning_rate: float > 0. Learning rate of the weights' optimizer.
            Defaults to `0.025`.
        optimizer: str. Name of the Keras optimizer of the weights. Defaults
            to `"adam"`.
        layer: str or `None`. Name of the shared layer whose `kernel` is
            `W`. Defaults to `None`: the last shared kernel (see
            `shared_kernel`).
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

    gradients = "kernel"

    def __init__(
        self,
        alpha=1.5,
        learning_rate=0.025,
        optimizer="adam",
        layer=None,
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
        if layer is not None and not isinstance(layer, str):
            raise TypeError(
                "`layer` must be a layer name or None. "
                f"Received: layer={layer!r}"
            )
        self.layer = layer
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

    def compute_weights(self, task_losses, present, training=False):
        return ops.convert_to_tensor(self.task_weights)

    def gradient_variable(self, model):
        """The kernel whose per-task gradients balance: that of `layer`,
        else `shared_kernel(model)`."""
        if self.layer is None:
            return self.shared_kernel(model)
        try:
            kernel = model.get_layer(self.layer).kernel
        except (ValueError, AttributeError):
            raise ValueError(
                f"GradNorm: `layer={self.layer!r}` must name a layer of the "
                "model with a `kernel`."
            ) from None
        if not any(kernel is v for v in model.shared_variables):
            raise ValueError(
                f"GradNorm: the kernel of layer {self.layer!r} is not shared "
                f"by the tasks {model.task_names}; name a trunk layer."
            )
        return kernel

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

    def after_step(
        self, task_losses, present, task_gradients=None, new_task_losses=None
    ):
        self.update_task_weights(task_losses, task_gradients, present)

    def update_task_weights(self, task_losses, kernel_gradients, present=None):
        """One GradNorm step on the weights.

        Args:
            task_losses: `(T,)` tensor, the global-batch task losses (static
                weights included).
            kernel_gradients: `(T, ...)` tensor, the gradient of each task
                loss with respect to the shared kernel (global batch).
            present: `(T,)` bool tensor, or `None` (all present). Absent
                tasks keep their weight and `L_i(0)`, and count in neither
                mean.
        """
        losses = ops.convert_to_tensor(task_losses, "float32")
        if present is None:
            present = ops.ones((self.num_tasks,), dtype="bool")
        present_float = ops.cast(present, "float32")
        count = ops.maximum(ops.sum(present_float), 1.0)
        norms = ops.sqrt(
            ops.sum(
                ops.reshape(
                    ops.square(ops.cast(kernel_gradients, "float32")),
                    (self.num_tasks, -1),
                ),
                1,
            )
        )
        # L_i(0) is the loss of the first step with labels for the task.
        initial = ops.where(
            ops.logical_and(present, ops.equal(self.initial_losses, 0.0)),
            losses,
            self.initial_losses,
        )
        self.initial_losses.assign(initial)
        self.steps.assign_add(1)
        # A copy: a converted variable would read its later value.
        old_weights = ops.copy(self.task_weights)
        weighted_norms = old_weights * norms
        ratios = ops.divide_no_nan(losses, initial) * present_float
        rates = ops.divide_no_nan(ratios, ops.sum(ratios) / count)
        mean_norm = ops.sum(weighted_norms * present_float) / count
        targets = mean_norm * ops.power(rates, self.alpha)
        gradient = ops.sign(weighted_norms - targets) * norms * present_float
        apply_replica_gradient(
            self.weight_optimizer, gradient, self.task_weights
        )
        # The present tasks' weights keep their sum (T when all are
        # present); an absent task's weight does not move, not even by the
        # optimizer's momentum.
        weights = ops.maximum(ops.convert_to_tensor(self.task_weights), 1e-8)
        total = ops.sum(old_weights * present_float)
        weights = total * weights / ops.sum(weights * present_float)
        self.task_weights.assign(ops.where(present, weights, old_weights))

    def get_config(self):
        config = super().get_config()
        config.update(
            alpha=self.alpha,
            learning_rate=self.learning_rate,
            optimizer=self.optimizer,
            layer=self.layer,
        )
        return config
