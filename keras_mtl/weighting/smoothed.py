import inspect
import math

import keras
import tensorflow as tf

from keras_mtl.weighting.gradient_base import GradientWeighting


def _resolve_inner(inner):
    # The registry lives in the package that imports this module.
    from keras_mtl import weighting

    method = weighting.get(inner)
    if not isinstance(method, GradientWeighting):
        raise TypeError(
            "`inner` must be a gradient-level method (a name, config or "
            "instance of a keras_mtl.weighting.GradientWeighting). "
            f"Received: inner={inner!r}"
        )
    return method


@keras.saving.register_keras_serializable(package="keras_mtl")
class Smoothed(GradientWeighting):
    """Smooths the weights of a gradient-level method over steps (CR-MOGM).

    With `lambda_hat_k` the weights the `inner` method gives at step `k`,
    the update uses

    `lambda_k = alpha lambda_{k-1} + (1 - alpha) lambda_hat_k`,

    starting from `lambda_0 = lambda_hat_0`, the inner method's first
    weights, and moves along `d = sum_i lambda_k,i g_i` (the current
    gradients). Averaging the weights, not the gradients, makes the
    weights of MGDA-like methods (which jump between vertices of the
    simplex) change slowly: the paper shows that this is what their
    convergence in the stochastic setting needs.

    The smoothed weights are a non-trainable variable, `smoothed_weights`,
    saved with the model (with the inner method's own state). A task absent
    from the batch gets weight 0 and keeps its smoothed weight; a task seen
    for the first time starts from its inner weight. A step with fewer than
    two present tasks moves nothing. The inner method runs on the Gram
    matrix of this method's `mode`; its own `task_weights` are not used.

    Args:
        inner: str, dict or `keras_mtl.weighting.GradientWeighting`. The
            method whose weights are smoothed (a name, a config, or an
            instance not yet used by a model). Defaults to `"mgda"`.
        alpha: float in [0, 1). Weight of the past. Defaults to `0.9`
            (TorchJD's default; the paper's schedule
            `alpha_k = 1 - lr_k / lr_0` is not built in).
        mode: str or `None`. `"param"` or `"rep"` (see
            `GradientWeighting`). Defaults to `None`: the inner method's.
        parallel_tasks: int or `None`. See `GradientWeighting`. Defaults to
            `None`: the inner method's.
        log_weights: bool. Whether to log `<task>_weight`. Defaults to
            `True`.
        **kwargs: Base layer keyword arguments.

    Example:

    ```python
    model = keras_mtl.build_mtl_model(
        inputs, tasks, trunk=[64],
        weighting=keras_mtl.weighting.Smoothed("mgda", alpha=0.9))
    ```

    References:
        - [Zhou et al., 2022](https://arxiv.org/abs/2210.05165), On the
          Convergence of Stochastic Multi-Objective Gradient Manipulation
          and Beyond (CR-MOGM).
        - TorchJD `aggregation/_cr_mogm.py`, the peer code followed.
    """

    # Ranges of the arguments for keras_mtl.tuner (see `search_space`).
    search_space = {
        "alpha": {"min_value": 0.5, "max_value": 0.99, "default": 0.9},
    }

    def __init__(
        self,
        inner="mgda",
        alpha=0.9,
        mode=None,
        parallel_tasks=None,
        log_weights=True,
        **kwargs,
    ):
        inner = _resolve_inner(inner)
        super().__init__(
            mode=inner.mode if mode is None else mode,
            parallel_tasks=(
                inner.parallel_tasks
                if parallel_tasks is None
                else parallel_tasks
            ),
            log_weights=log_weights,
            **kwargs,
        )
        if (
            not isinstance(alpha, (int, float))
            or isinstance(alpha, bool)
            or not math.isfinite(alpha)
            or not 0 <= alpha < 1
        ):
            raise ValueError(
                f"`alpha` must be a float in [0, 1). Received: alpha={alpha!r}"
            )
        self.inner = inner
        self.alpha = float(alpha)
        # The inner combine runs inside this one's compiled function.
        self.jit_combine = inner.jit_combine

    def set_tasks(self, task_names):
        super().set_tasks(task_names)
        self.inner.set_tasks(task_names)

    def attach(self, task_names):
        self.inner.attach(task_names)  # refuses an inner method in use
        super().attach(task_names)

    def build(self, input_shape):
        super().build(input_shape)

        def state(name):
            return self.add_weight(
                shape=(input_shape[0],),
                initializer="zeros",
                trainable=False,
                aggregation="only_first_replica",
                name=name,
            )

        self.smoothed_weights = state("smoothed_weights")
        # 1 for the tasks that have a smoothed weight.
        self.smoothed_tasks = state("smoothed_tasks")

    def combine_state(self):
        return [
            self.smoothed_weights,
            self.smoothed_tasks,
            *self.inner.combine_state(),
        ]

    def combine(self, gram, task_losses, step=0, present=None):
        """The weights and the new state (see `combine_state`)."""
        present = self.all_present(present)
        inner_combine = self.inner.combine
        if "present" in inspect.signature(inner_combine).parameters:
            result = inner_combine(gram, task_losses, step, present)
        else:  # a method written before `present` existed
            result = inner_combine(gram, task_losses, step)
        inner_state = []
        if self.inner.combine_state():
            result, inner_state = result
        current = tf.cast(result, "float32")
        previous = tf.convert_to_tensor(self.smoothed_weights)
        started = tf.convert_to_tensor(self.smoothed_tasks) > 0.0
        average = self.alpha * previous + (1.0 - self.alpha) * current
        smoothed = tf.where(started, average, current)
        smoothed = tf.where(present, smoothed, previous)
        started = tf.cast(tf.logical_or(started, present), "float32")
        weights = tf.where(present, smoothed, 0.0)
        return weights, [smoothed, started, *inner_state]

    def get_config(self):
        config = super().get_config()
        inner = keras.saving.serialize_keras_object(self.inner)
        # `set_tasks` builds it: its build shape would only come back from
        # a `.keras` file as a list instead of a tuple.
        inner.pop("build_config", None)
        config["inner"] = inner
        config["alpha"] = self.alpha
        return config
