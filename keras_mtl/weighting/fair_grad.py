import math

import keras
import tensorflow as tf

from keras_mtl.weighting import solvers
from keras_mtl.weighting.gradient_base import GradientWeighting


@keras.saving.register_keras_serializable(package="keras_mtl")
class FairGrad(GradientWeighting):
    """Alpha-fair allocation of the update among the tasks (FairGrad).

    The weights `w > 0` solve

    `(G G^T) w = w^(-1 / alpha)` (elementwise),

    and the update is `d = sum_i w_i g_i`: task `i` improves at the rate
    `g_i . d = w_i^(-1 / alpha)`, the allocation that maximises the
    `alpha`-fair utility of the rates. `alpha=1` is proportional fairness,
    Nash-MTL's bargaining equation (`NashMTL(normalize=False)`, and then
    `||d||^2 = T`); larger `alpha` approaches max-min fairness, smaller
    the largest total improvement. The weights minimise a strictly convex
    function, found by Newton steps in the graph (`solvers.
    solve_power_equation`, shared with `NashMTL`) instead of the peers'
    `scipy.optimize.least_squares` on the host.

    The system is solved on the Gram matrix divided by its Frobenius norm
    `s`, plus `ridge` times the identity, and the weights are scaled back by
    `s^(-alpha / (alpha + 1))`: gradients `c` times larger give the weights
    times `c^(-2 alpha / (alpha + 1))`, at any float32 scale. The
    ridge keeps the weight of a task with a zero gradient finite (it then
    multiplies nothing); a task whose gradient is a combination of the
    others' can otherwise make the system singular.

    The update is that of LibMTL and TorchJD. The authors' code
    (OptMN-Lab/fairgrad) also multiplies it by `T` and clips the norm of
    the shared gradient to 1; that is a learning-rate and clipping choice
    of their benchmarks, left to the optimizer here (`clipnorm` clips each
    variable's gradient, `global_clipnorm` all of them together, the
    task-specific ones included).

    Args:
        alpha: float > 0. The fairness exponent. Defaults to `1.0` (the
            peers' default; the authors use `2.0` on CelebA and QM9).
        max_iterations: int >= 1. Newton steps. Defaults to `20`.
        ridge: float >= 0. Added to the diagonal of the normalised Gram
            matrix. Defaults to `1e-6`.
        mode: str. `"param"` or `"rep"` (see `GradientWeighting`).
            Defaults to `"param"`.
        parallel_tasks: int or `None`. See `GradientWeighting`.
        log_weights: bool. Whether to log `<task>_weight`. Defaults to
            `True`.
        **kwargs: Base layer keyword arguments.

    Example:

    ```python
    model = keras_mtl.build_mtl_model(
        inputs, tasks, trunk=[64],
        weighting=keras_mtl.weighting.FairGrad(alpha=2.0))
    ```

    References:
        - [Ban & Ji, 2024](https://arxiv.org/abs/2402.15638), Fair Resource
          Allocation in Multi-Task Learning.
        - LibMTL `weighting/FairGrad.py` and TorchJD
          `aggregation/_fairgrad.py`, the peer code followed.
    """

    # Ranges of the arguments for keras_mtl.tuner (see `search_space`).
    search_space = {
        "alpha": {
            "min_value": 0.25,
            "max_value": 4.0,
            "sampling": "log",
            "default": 1.0,
        },
    }

    def __init__(
        self,
        alpha=1.0,
        max_iterations=20,
        ridge=1e-6,
        mode="param",
        parallel_tasks=None,
        log_weights=True,
        **kwargs,
    ):
        super().__init__(
            mode=mode,
            parallel_tasks=parallel_tasks,
            log_weights=log_weights,
            **kwargs,
        )
        if (
            not isinstance(alpha, (int, float))
            or isinstance(alpha, bool)
            or not math.isfinite(alpha)
            or not alpha > 0
        ):
            raise ValueError(
                f"`alpha` must be a float > 0. Received: alpha={alpha!r}"
            )
        if (
            not isinstance(max_iterations, int)
            or isinstance(max_iterations, bool)
            or max_iterations < 1
        ):
            raise ValueError(
                "`max_iterations` must be an int >= 1. "
                f"Received: max_iterations={max_iterations!r}"
            )
        if (
            not isinstance(ridge, (int, float))
            or isinstance(ridge, bool)
            or not math.isfinite(ridge)
            or ridge < 0
        ):
            raise ValueError(
                f"`ridge` must be a float >= 0. Received: ridge={ridge!r}"
            )
        self.alpha = float(alpha)
        self.max_iterations = max_iterations
        self.ridge = float(ridge)

    def combine(self, gram, task_losses, step=0, present=None):
        size = self.num_tasks
        present = self.all_present(present)
        # With N = G G^T / s, w = beta s^(-alpha / (alpha + 1)) turns
        # s N w = w^(-1 / alpha) into N beta = beta^(-1 / alpha).
        scale = solvers.stable_norm(gram)
        scale = tf.where(scale > 0.0, scale, 1.0)
        gram = gram / scale
        # Absent tasks (zero rows) get an identity block, decoupled.
        pair = tf.logical_and(present[:, None], present[None, :])
        gram = tf.where(pair, gram, tf.eye(size))
        gram = gram + self.ridge * tf.eye(size)
        weights = solvers.solve_power_equation(
            gram, power=1.0 / self.alpha, max_iterations=self.max_iterations
        )
        weights = weights * scale ** (-self.alpha / (self.alpha + 1.0))
        return tf.where(present, weights, 0.0)

    def get_config(self):
        config = super().get_config()
        config.update(
            alpha=self.alpha,
            max_iterations=self.max_iterations,
            ridge=self.ridge,
        )
        return config
