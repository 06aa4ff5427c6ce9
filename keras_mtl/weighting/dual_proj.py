import keras

from keras_mtl.weighting import solvers
from keras_mtl.weighting.gradient_base import GradientWeighting
from keras_mtl.weighting.upgrad import check_eps
from keras_mtl.weighting.upgrad import check_pref_length
from keras_mtl.weighting.upgrad import check_pref_vector
from keras_mtl.weighting.upgrad import preference


@keras.saving.register_keras_serializable(package="keras_mtl")
class DualProj(GradientWeighting):
    """The preference-weighted gradient, projected onto the dual cone.

    The combination `sum_i p_i g_i` (the mean by default) is projected
    onto the dual cone of the task gradients, the directions that conflict
    with none of them, as GEM does for the gradients of past tasks. In
    weights, with the regularised Gram matrix `G~ = G / tr(G) + reg_eps I`:

    `w = argmin_v v^T G~ v  s.t.  v >= p`,

    one quadratic program, and the update is `d = sum_j w_j g_j`. If the
    mean does not conflict with any task it is kept (`w = p`); otherwise
    `d` is the nearest non-conflicting direction. `reg_eps` leaves a small
    slack: on TorchJD's example gradients `(-4, 1, 1)` and `(6, 1, 1)`,
    `g_1 . d = -0.0034` (a cosine of -5e-4). The weights do not change
    when the gradients are scaled; when `tr(G) < norm_eps`, `w = p`.

    The program is solved in the graph by an exact active-set method
    (`solvers.project_to_dual_cone`), where TorchJD calls `quadprog` on the
    host. Absent tasks get weight 0 and play no part; the default
    preference is `1 / n` over the `n` present tasks.

    Args:
        pref_vector: list of floats >= 0 (one per task) or `None`. The
            preferences `p`. Defaults to `None`: `1 / T` (the mean), as in
            TorchJD.
        norm_eps: float >= 0. Gram traces below it count as zero. Defaults
            to `1e-4` (TorchJD).
        reg_eps: float >= 0. Added to the diagonal of the normalised Gram
            matrix. Defaults to `1e-4` (TorchJD).
        mode: str. `"param"` or `"rep"` (see `GradientWeighting`).
            Defaults to `"param"`.
        parallel_tasks: int or `None`. See `GradientWeighting`.
        log_weights: bool. Whether to log `<task>_weight`. Defaults to
            `True`.
        **kwargs: Base layer keyword arguments.

    Example:

    ```python
    model = keras_mtl.build_mtl_model(
        inputs, tasks, trunk=[64], weighting="dual_proj")
    ```

    References:
        - [Lopez-Paz & Ranzato, 2017](https://arxiv.org/abs/1706.08840),
          Gradient Episodic Memory, eq. 11 (the dual problem).
        - [Quinton & Rey, 2024](https://arxiv.org/abs/2406.16232); follows
          TorchJD's `aggregation/_dualproj.py`.
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
        return solvers.project_to_dual_cone(
            gram,
            pref,
            present,
            norm_eps=self.norm_eps,
            reg_eps=self.reg_eps,
        )

    def get_config(self):
        config = super().get_config()
        config.update(
            pref_vector=self.pref_vector,
            norm_eps=self.norm_eps,
            reg_eps=self.reg_eps,
        )
        return config
