import keras
import tensorflow as tf

from keras_mtl.weighting.gradient_base import GradientWeighting
from keras_mtl.weighting.upgrad import check_pref_length
from keras_mtl.weighting.upgrad import check_pref_vector
from keras_mtl.weighting.upgrad import preference

# Eigenvalues of the unit-gradient Gram matrix below this fraction of the
# largest, times T, count as zero in its pseudo-inverse: the Gram matrix
# comes in float32, so smaller ones are rounding.
RCOND = 1.1920929e-07


@keras.saving.register_keras_serializable(package="keras_mtl")
class ConFIG(GradientWeighting):
    """Conflict-free updates with equal cosines to every task gradient.

    With unit gradients `u_i = g_i / ||g_i||`, ConFIG takes the
    minimum-norm `x` with `u_i . x = p_i` for every task (`x = U^+ p`, all
    ones by default: equal cosines), and moves along its direction with
    the length of the projections, `d = (sum_j g_j . x^) x^`,
    `x^ = x / ||x||`. On the Gram matrix, with `D = diag ||g_i||`,
    `C = D^-1 G D^-1` and `c = C^+ p`:

    `w_i = [sum_j ||g_j|| (C c)_j] / (c^T C c) * c_i / ||g_i||`,

    and `d = sum_i w_i g_i`. When the gradients are linearly independent
    every cosine `cos(g_i, d)` equals `p_i / ||x||`, positive: no task's
    loss increases to first order. When they are not (more tasks than
    parameters, or a rank-deficient set), `x` only solves the system in
    the least-squares sense and the update is not guaranteed conflict-free
    (TorchJD issue 131). The pseudo-inverse is taken by `eigh` of the
    `(T, T)` matrix `C` in float64 (eigenvalues below `T * 1.2e-7` of the
    largest count as zero), instead of an SVD of the `(T, P)` gradients.

    A task whose gradient is zero gets a zero unit gradient (as TorchJD's
    `nan_to_num`) and weight 0; so does an absent task, whose preference
    is 0 too: the update is that of the present tasks alone.

    Args:
        pref_vector: list of floats >= 0 (one per task) or `None`. The
            target projections `p`. Defaults to `None`: all ones (TorchJD's
            `SumWeighting`, the official code's equal cosines).
        mode: str. `"param"` or `"rep"` (see `GradientWeighting`).
            Defaults to `"param"`.
        parallel_tasks: int or `None`. See `GradientWeighting`.
        log_weights: bool. Whether to log `<task>_weight`. Defaults to
            `True`.
        **kwargs: Base layer keyword arguments.

    Example:

    ```python
    model = keras_mtl.build_mtl_model(
        inputs, tasks, trunk=[64], weighting="con_fig")
    # Gradients (1, 0) and (-1, 1): w = (1.2071, 0.8536), both cosines
    # 0.3827.
    ```

    References:
        - [Liu, Chu & Thuerey, 2024](https://arxiv.org/abs/2408.11104),
          ConFIG: Towards Conflict-free Training of Physics Informed Neural
          Networks, eq. 2; follows TorchJD's `aggregation/_config.py`
          (`pinv`, the length `sum_j g_j . x^`), which the official
          tum-pbs/ConFIG `ConFIG_update` matches with its least-squares
          default and `ProjectionLength`.
    """

    # No hyperparameter to tune: `pref_vector` is the user's preference.
    search_space = {}

    def __init__(
        self,
        pref_vector=None,
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

    def build(self, input_shape):
        check_pref_length(self.pref_vector, input_shape[0])
        super().build(input_shape)

    def combine(self, gram, task_losses, step=0, present=None):
        present = self.all_present(present)
        pref = tf.cast(preference(self.pref_vector, present, "sum"), "float64")
        gram = tf.cast(gram, "float64")
        squared_norms = tf.linalg.diag_part(gram)
        nonzero = tf.logical_and(present, squared_norms > 0.0)
        norms = tf.sqrt(tf.where(nonzero, squared_norms, 1.0))
        inverse_norms = tf.where(nonzero, 1.0 / norms, 0.0)
        norms = tf.where(nonzero, norms, 0.0)
        cosines = gram * inverse_norms[:, None] * inverse_norms[None, :]
        eigenvalues, eigenvectors = tf.linalg.eigh(cosines)
        largest = tf.reduce_max(eigenvalues)
        kept = eigenvalues > RCOND * self.num_tasks * largest
        inverse = tf.where(kept, 1.0 / tf.where(kept, eigenvalues, 1.0), 0.0)
        # c = C^+ p, and C c = (u_j . x)_j with x = sum_i c_i u_i.
        coefficients = tf.linalg.matvec(
            eigenvectors * inverse[None, :],
            tf.linalg.matvec(eigenvectors, pref, transpose_a=True),
        )
        projections = tf.linalg.matvec(cosines, coefficients)
        squared_length = tf.tensordot(coefficients, projections, 1)
        length = tf.tensordot(norms, projections, 1)
        positive = squared_length > 0.0
        scale = tf.where(
            positive, length / tf.where(positive, squared_length, 1.0), 0.0
        )
        return tf.cast(scale * coefficients * inverse_norms, "float32")

    def get_config(self):
        config = super().get_config()
        config["pref_vector"] = self.pref_vector
        return config
