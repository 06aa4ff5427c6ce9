import numbers

import keras
import tensorflow as tf

from keras_mtl.weighting import solvers
from keras_mtl.weighting.gradient_base import GradientWeighting


def check_pref_vector(pref_vector):
    """`pref_vector` as a list of floats (or `None`), validated."""
    if pref_vector is None:
        return None
    values = list(pref_vector) if hasattr(pref_vector, "__len__") else None
    if (
        not values
        or isinstance(pref_vector, str)
        or not all(
            isinstance(v, numbers.Real) and not isinstance(v, bool)
            for v in values
        )
        or min(values) < 0
        or max(values) <= 0
    ):
        raise ValueError(
            "`pref_vector` must be None or a list of floats >= 0, one per "
            f"task, not all 0. Received: pref_vector={pref_vector!r}"
        )
    return [float(v) for v in values]


def check_eps(name, value):
    """`value` as a float >= 0, or an error naming the argument `name`."""
    if not isinstance(value, numbers.Real) or isinstance(value, bool):
        raise TypeError(f"`{name}` must be a float. Received: {name}={value!r}")
    if value < 0:
        raise ValueError(f"`{name}` must be >= 0. Received: {name}={value!r}")
    return float(value)


def check_pref_length(pref_vector, num_tasks):
    """Raises unless `pref_vector` is `None` or has `num_tasks` entries."""
    if pref_vector is not None and len(pref_vector) != num_tasks:
        raise ValueError(
            f"`pref_vector` must have one entry per task ({num_tasks}). "
            f"Received: pref_vector={pref_vector!r}"
        )


def preference(pref_vector, present, default):
    """The `(T,)` preference weights, zero for absent tasks.

    `None` gives `default` (`"mean"`: `1 / n` over the `n` present tasks,
    `"sum"`: 1); a given vector is used as it is on the present tasks.
    """
    if pref_vector is None:
        count = tf.reduce_sum(tf.cast(present, "float32"))
        value = 1.0 / count if default == "mean" else 1.0
        return tf.where(present, value, 0.0)
    return tf.where(present, tf.constant(pref_vector, "float32"), 0.0)


@keras.saving.register_keras_serializable(package="keras_mtl")
class UPGrad(GradientWeighting):
    """Unconflicting projection of gradients (UPGrad, Jacobian descent).

    Each task gradient, scaled by its preference `p_i`, is projected onto
    the dual cone of all of them (the directions that conflict with no
    task), and the projections are summed. In weights, with the
    regularised Gram matrix `G~ = G / tr(G) + reg_eps I`:

    `w = sum_i v^(i)`, `v^(i) = argmin_v v^T G~ v  s.t.  v >= p_i e_i`,

    and the update is `d = sum_j w_j g_j`. Then `g_j . d >= 0` for every
    task (up to the slack `reg_eps` leaves), and the weights do not change
    when the gradients are scaled (the trace normalisation). When
    `tr(G) < norm_eps` (all gradients about zero) `G~ = reg_eps I`, and
    `w = p`.

    The T quadratic programs are solved together in the graph by an exact
    active-set method (`solvers.project_to_dual_cone`, Lawson-Hanson on
    `v - p_i e_i >= 0`, in float64), where the peers call `quadprog` on
    the host. Absent tasks get weight 0 and play no part: their
    preference is 0 and their (zero) rows of `G` are decoupled by
    `reg_eps`; the default preference is `1 / n` over the `n` present
    tasks.

    Args:
        pref_vector: list of floats >= 0 (one per task) or `None`. The
            preferences `p`. Defaults to `None`: `1 / T` (the mean), as in
            TorchJD and LibMTL.
        norm_eps: float >= 0. Gram traces below it count as zero. Defaults
            to `1e-4` (TorchJD, LibMTL).
        reg_eps: float >= 0. Added to the diagonal of the normalised Gram
            matrix. Defaults to `1e-4` (TorchJD, LibMTL).
        mode: str. `"param"` or `"rep"` (see `GradientWeighting`).
            Defaults to `"param"`.
        parallel_tasks: int or `None`. See `GradientWeighting`.
        log_weights: bool. Whether to log `<task>_weight`. Defaults to
            `True`.
        **kwargs: Base layer keyword arguments.

    Example:

    ```python
    model = keras_mtl.build_mtl_model(
        inputs, tasks, trunk=[64], weighting="upgrad")
    # Gradients (1, 0) and (-1, 1): w = (1, 0.75), d = (0.25, 0.75).
    ```

    References:
        - [Quinton & Rey, 2024](https://arxiv.org/abs/2406.16232),
          Jacobian Descent for Multi-Objective Optimization; follows
          TorchJD's `aggregation/_upgrad.py` and `_linalg/_dual_cone.py`
          (also copied in LibMTL's `weighting/UPGrad.py`).
    """

    # Ranges of the arguments for keras_mtl.tuner (see `search_space`).
    search_space = {
        "reg_eps": {
            "min_value": 1e-5,
            "max_value": 1e-2,
            "sampling": "log",
            "default": 1e-4,
        },
    }

    def __init__(
        self,
        pref_vector=None,
        norm_eps=1e-4,
        reg_eps=1e-4,
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
        self.pref_vector = check_pref_vector(pref_vector)
        self.norm_eps = check_eps("norm_eps", norm_eps)
        self.reg_eps = check_eps("reg_eps", reg_eps)

    def build(self, input_shape):
        check_pref_length(self.pref_vector, input_shape[0])
        super().build(input_shape)

    def combine(self, gram, task_losses, step=0, present=None):
        present = self.all_present(present)
        pref = preference(self.pref_vector, present, "mean")
        # One QP per task: row i of `lower` is p_i e_i.
        projections = solvers.project_to_dual_cone(
            gram,
            tf.linalg.diag(pref),
            present,
            norm_eps=self.norm_eps,
            reg_eps=self.reg_eps,
        )
        return tf.reduce_sum(projections, axis=0)

    def get_config(self):
        config = super().get_config()
        config.update(
            pref_vector=self.pref_vector,
            norm_eps=self.norm_eps,
            reg_eps=self.reg_eps,
        )
        return config
