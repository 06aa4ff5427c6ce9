import keras
import numpy as np
from keras import ops


@keras.saving.register_keras_serializable(package="keras_mtl")
class CrossStitch(keras.layers.Layer):
    """Cross-stitch unit: mixes T same-shaped task features linearly.

    Given the features `x_1, ..., x_T` of T task towers at the same depth,
    returns `x~_i = sum_j a_ij x_j` with a learned `T x T` mixing matrix
    `a`, one for the whole feature vector or one per channel (the last
    axis), so it fits dense features `(batch, units)` and convolutional
    ones `(batch, height, width, channels)` alike.

    The matrix starts convex: `diagonal` on the diagonal and
    `(1 - diagonal) / (T - 1)` elsewhere; the paper found `0.9` best for two
    tasks. The paper also found that the mixing parameters must learn
    faster than the towers. Keras has no per-variable learning rate, so
    `learning_rate_multiplier` `m` does it inside the layer: the weight
    stores `a / m`, and the forward pass uses `m` times it while its
    gradient is passed through unscaled. A step of any optimiser on the
    stored weight then moves `a` `m` times as far: under SGD because the
    step is proportional to the (unscaled) gradient, under Adam and other
    scale-invariant optimisers because the step size does not depend on the
    gradient's scale at all. (Scaling the gradient alone would be undone by
    Adam; scaling the parameter alone would give `m**2` under SGD.)

    Args:
        per_channel: bool. Learn one matrix per channel (last axis) instead
            of one for the whole feature. Defaults to `False`.
        diagonal: float in `[0, 1]`. Initial weight of a task's own
            features. Defaults to `0.9`.
        learning_rate_multiplier: float > 0. How much faster the mixing
            matrix learns than the other weights. Defaults to `1.0`. The
            paper scaled the units' SGD learning rate by `10**2`-`10**3`.
        **kwargs: base `keras.layers.Layer` arguments (`name`, `dtype`).

    Call arguments:
        inputs: list of T >= 2 tensors of the same shape.

    Returns:
        List of T tensors of that shape: the mixed features, in input order.

    Example:

    ```python
    a = keras.Input((16,))
    b = keras.Input((16,))
    stitch = keras_mtl.layers.CrossStitch(learning_rate_multiplier=10.0)
    mixed_a, mixed_b = stitch([a, b])
    stitch.mixing_matrix  # (2, 2), starts at [[0.9, 0.1], [0.1, 0.9]]
    ```

    References:
        - [Misra et al., 2016](https://arxiv.org/abs/1604.03539),
          Cross-stitch Networks for Multi-task Learning.
    """

    def __init__(
        self,
        per_channel=False,
        diagonal=0.9,
        learning_rate_multiplier=1.0,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if not isinstance(per_channel, bool):
            raise TypeError(
                "`per_channel` must be a bool. "
                f"Received: per_channel={per_channel!r}"
            )
        if not isinstance(diagonal, (int, float)) or not 0 <= diagonal <= 1:
            raise ValueError(
                "`diagonal` must be a number in [0, 1]. "
                f"Received: diagonal={diagonal!r}"
            )
        if (
            not isinstance(learning_rate_multiplier, (int, float))
            or learning_rate_multiplier <= 0
        ):
            raise ValueError(
                "`learning_rate_multiplier` must be a number > 0. Received: "
                f"learning_rate_multiplier={learning_rate_multiplier!r}"
            )
        self.per_channel = per_channel
        self.diagonal = float(diagonal)
        self.learning_rate_multiplier = float(learning_rate_multiplier)

    def _check_shapes(self, input_shape):
        if not isinstance(input_shape, (list, tuple)) or not all(
            isinstance(s, (list, tuple)) for s in input_shape
        ):
            raise ValueError(
                "CrossStitch takes a list of T >= 2 tensors of one shape. "
                f"Received input shape: {input_shape}"
            )
        shapes = [tuple(s) for s in input_shape]
        if len(shapes) < 2:
            raise ValueError(
                "CrossStitch needs at least 2 inputs (one per task). "
                f"Received {len(shapes)}."
            )
        for shape in shapes[1:]:
            if len(shape) != len(shapes[0]) or any(
                a is not None and b is not None and a != b
                for a, b in zip(shape[1:], shapes[0][1:])
            ):
                raise ValueError(
                    "CrossStitch inputs must all have the same shape. "
                    f"Received shapes: {shapes}"
                )
        return shapes

    def build(self, input_shape):
        shapes = self._check_shapes(input_shape)
        num_tasks = len(shapes)
        shape = (num_tasks, num_tasks)
        if self.per_channel:
            channels = shapes[0][-1]
            if channels is None or len(shapes[0]) < 2:
                raise ValueError(
                    "`per_channel=True` needs a known last axis. "
                    f"Received shapes: {shapes}"
                )
            shape += (channels,)
        self.stitch = self.add_weight(
            name="stitch",
            shape=shape,
            initializer=self._initial_stitch,
            trainable=True,
        )

    def _initial_stitch(self, shape, dtype=None):
        num_tasks = shape[0]
        off = (1.0 - self.diagonal) / (num_tasks - 1)
        matrix = np.full((num_tasks, num_tasks), off, "float32")
        np.fill_diagonal(matrix, self.diagonal)
        if len(shape) == 3:
            matrix = np.repeat(matrix[..., None], shape[2], axis=-1)
        matrix /= self.learning_rate_multiplier
        return ops.convert_to_tensor(matrix, dtype=dtype or "float32")

    @property
    def mixing_matrix(self):
        """The current mixing matrix `a`: `(T, T)`, or `(T, T, channels)`."""
        stitch = ops.convert_to_tensor(self.stitch)
        if self.learning_rate_multiplier == 1.0:
            return stitch
        # Value m * stitch, gradient that of stitch alone.
        scale = self.learning_rate_multiplier - 1.0
        return stitch + scale * ops.stop_gradient(stitch)

    def call(self, inputs):
        matrix = ops.cast(self.mixing_matrix, inputs[0].dtype)
        # matrix[i, j] is a scalar, or per channel a (channels,) vector that
        # broadcasts over the last axis.
        return [
            sum(matrix[i, j] * x for j, x in enumerate(inputs))
            for i in range(len(inputs))
        ]

    def compute_output_shape(self, input_shape):
        return [tuple(s) for s in input_shape]

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "per_channel": self.per_channel,
                "diagonal": self.diagonal,
                "learning_rate_multiplier": self.learning_rate_multiplier,
            }
        )
        return config
