import math
import random

import keras
import tensorflow as tf
from keras import ops

from keras_mtl.weighting.base import Weighting


def _standard_normal(shape, seed):
    """N(0, 1) draws that are the same with and without XLA.

    TensorFlow's stateless float samplers draw differently under XLA; their
    integer Philox bits do not. So: 31 random bits, a uniform in (0, 1), and
    the inverse normal CDF, in float64.
    """
    bits = tf.random.stateless_uniform(
        shape, seed, minval=0, maxval=2**31 - 1, dtype="int32", alg="philox"
    )
    uniform = (ops.cast(bits, "float64") + 0.5) / (2**31 - 1)
    z = math.sqrt(2.0) * ops.erfinv(2.0 * uniform - 1.0)
    return ops.cast(z, "float32")


@keras.saving.register_keras_serializable(package="keras_mtl")
class RandomLossWeighting(Weighting):
    """Draws new random task weights at every training step.

    Each training step draws `z ~ N(0, I_T)` and weights the task losses by
    `softmax(z)`. The weights sum to 1 (the paper's convention), so the total
    is on the scale of a mean of the task losses, where `"equal"` sums them.
    Evaluation uses their expectation, `1 / T` each. A task absent from a
    batch gets weight 0; the others keep their draws (no renormalisation).

    The draws are stateless: draw `n` uses the seed `(seed, n)` (Philox bits
    through the inverse normal CDF, so XLA draws the same), with the
    seed and the step counter `n` kept in variables. So every replica under
    `tf.distribute` draws the same weights, and a model saved or restored by
    `keras.callbacks.BackupAndRestore` goes on with the same sequence.

    Args:
        seed: int or `None`. Seed of the draws. Defaults to `None`: a random
            seed, drawn when the method is built and saved with the model.
        log_weights: bool. Whether to log `<task>_weight`. Defaults to
            `True`.
        **kwargs: Base layer keyword arguments.

    Example:

    ```python
    model = keras_mtl.build_mtl_model(
        inputs, tasks, trunk=[64],
        weighting=keras_mtl.weighting.RandomLossWeighting(seed=42))
    ```

    References:
        - [Lin et al., 2022](https://arxiv.org/abs/2111.10603)
    """

    def __init__(self, seed=None, log_weights=True, **kwargs):
        super().__init__(log_weights=log_weights, **kwargs)
        if seed is not None and (
            not isinstance(seed, int) or isinstance(seed, bool) or seed < 0
        ):
            raise ValueError(
                f"`seed` must be an int >= 0 or None. Received: seed={seed!r}"
            )
        self.seed = seed

    def build(self, input_shape):
        seed = self.seed
        if seed is None:
            seed = random.randint(0, 2**31 - 1)
        options = dict(
            shape=(),
            dtype="int64",
            trainable=False,
            aggregation="only_first_replica",
        )
        self.seed_value = self.add_weight(
            initializer=keras.initializers.Constant(seed),
            name="seed",
            **options,
        )
        self.draws = self.add_weight(
            initializer="zeros", name="draws", **options
        )
        self.built = True

    def compute_weights(self, task_losses, present, training=False):
        if not training:
            return ops.full((self.num_tasks,), 1.0 / self.num_tasks)
        seed = ops.stack(
            [ops.cast(self.seed_value, "int64"), ops.cast(self.draws, "int64")]
        )
        z = _standard_normal((self.num_tasks,), seed)
        self.draws.assign_add(1)
        return ops.softmax(z)

    def get_config(self):
        config = super().get_config()
        config["seed"] = self.seed
        return config
