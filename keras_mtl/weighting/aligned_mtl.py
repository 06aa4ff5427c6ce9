import keras
import tensorflow as tf

from keras_mtl.weighting.gradient_base import GradientWeighting


@keras.saving.register_keras_serializable(package="keras_mtl")
class AlignedMTL(GradientWeighting):
    """Aligned-MTL: gradients aligned to an orthogonal, well-conditioned set.

    With the eigen-decomposition `G G^T = V diag(lambda) V^T` (eigenvalues
    above a rank tolerance only), the task gradients are replaced by the
    rows of `B G`, `B = sqrt(lambda_min) V diag(lambda)^-1/2 V^T`: they have
    condition number 1 and the scale of the smallest singular value. The
    update is their sum, so the weight of `g_j` is `sum_i B_ij`.

    Args:
        mode: str. `"param"` or `"rep"` (see `GradientWeighting`).
            Defaults to `"param"`.
        parallel_tasks: int or `None`. See `GradientWeighting`.
        log_weights: bool. Whether to log `<task>_weight`. Defaults to
            `True`.
        **kwargs: Base layer keyword arguments.

    Example:

    ```python
    model = keras_mtl.build_mtl_model(
        inputs, tasks, trunk=[64], weighting="aligned_mtl")
    ```

    References:
        - [Senushkin et al., 2023](https://arxiv.org/abs/2305.19000)
    """

    def combine(self, gram, task_losses, step=0, present=None):
        present = self.all_present(present)
        # Absent tasks have zero rows: their eigenvalues are 0 and dropped,
        # and the kept eigenvectors have no component along them.
        size = tf.reduce_sum(tf.cast(present, gram.dtype))
        eigenvalues, eigenvectors = tf.linalg.eigh(gram)
        tolerance = tf.reduce_max(eigenvalues) * size * 1.1920929e-07
        kept = eigenvalues > tolerance
        smallest = tf.reduce_min(
            tf.where(kept, eigenvalues, tf.reduce_max(eigenvalues))
        )
        inverse_root = tf.where(
            kept, 1.0 / tf.sqrt(tf.where(kept, eigenvalues, 1.0)), 0.0
        )
        balance = tf.sqrt(tf.maximum(smallest, 0.0)) * tf.matmul(
            eigenvectors * inverse_root[None, :], eigenvectors, transpose_b=True
        )
        return tf.where(present, tf.reduce_sum(balance, axis=0), 0.0)
