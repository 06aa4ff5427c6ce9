import itertools

import keras
from keras import ops

from keras_mtl.layers.towers import clone_layer
from keras_mtl.layers.towers import plain_config


@keras.saving.register_keras_serializable(package="keras_mtl")
class SoftShared(keras.layers.Layer):
    """One copy of a layer per task, tied by an L2 penalty on their kernels.

    Soft parameter sharing: task `i` has its own copy of `layer`, applied to
    its own input, and the copies are pulled together by
    `strength * sum_{i < j} sum_k ||W_i^k - W_j^k||_F^2`, where `W_i^k` is
    the `k`-th kernel of copy `i` (every trainable weight named `kernel`:
    `Dense`, `Conv*`, `EinsumDense`, and those inside a `Sequential`; biases
    are not tied). The penalty is added with `add_loss`, so it is part of
    `model.losses`: `keras_mtl.MTLModel` and plain `keras.Model` add it to
    the training loss, and it comes back after `.keras` loading.

    The copies are fresh clones of `layer` (same config, their own
    initialisation); `layer` itself is only a template and is not used.

    Args:
        layer: `keras.layers.Layer`. The layer to copy, e.g. a `Dense` or a
            `keras.Sequential` tower. It must have at least one kernel.
        num_tasks: int >= 2. Number of copies.
        strength: float >= 0. The penalty's coefficient (lambda). Defaults
            to `1e-3`.
        **kwargs: base `keras.layers.Layer` arguments (`name`, `dtype`).

    Call arguments:
        inputs: a list of `num_tasks` tensors (copy `i` gets input `i`), or
            one tensor given to every copy.

    Returns:
        List of `num_tasks` tensors, copy `i`'s output first to last.

    Example:

    ```python
    x = keras.Input((32,))
    tied = keras_mtl.layers.SoftShared(
        keras.layers.Dense(16, activation="relu"), num_tasks=2, strength=0.01)
    a, b = tied(x)
    tied.penalty()  # 0.01 * ||W_0 - W_1||^2, also in tied.losses after a call
    ```

    References:
        - [Duong et al., 2015](https://aclanthology.org/P15-2139/),
          Low Resource Dependency Parsing: Cross-lingual Parameter Sharing
          in a Neural Network Parser.
    """

    def __init__(self, layer, num_tasks, strength=1e-3, **kwargs):
        super().__init__(**kwargs)
        if isinstance(layer, dict):
            layer = keras.layers.deserialize(plain_config(layer))
        if not isinstance(layer, keras.layers.Layer):
            raise TypeError(
                f"`layer` must be a keras Layer. Received: layer={layer!r}"
            )
        if (
            not isinstance(num_tasks, int)
            or isinstance(num_tasks, bool)
            or num_tasks < 2
        ):
            raise ValueError(
                "`num_tasks` must be an int >= 2. "
                f"Received: num_tasks={num_tasks!r}"
            )
        if not isinstance(strength, (int, float)) or strength < 0:
            raise ValueError(
                "`strength` must be a number >= 0. "
                f"Received: strength={strength!r}"
            )
        # The template stays out of the tracked sublayers: only its config.
        self._layer_config = plain_config(keras.layers.serialize(layer))
        self.num_tasks = num_tasks
        self.strength = float(strength)
        self.towers = [
            clone_layer(self._layer_config, f"{layer.name}_{i}")
            for i in range(num_tasks)
        ]

    @property
    def layer(self):
        """A fresh copy of the template layer."""
        return keras.layers.deserialize(self._layer_config)

    def _spread(self, inputs):
        if isinstance(inputs, (list, tuple)):
            if len(inputs) != self.num_tasks:
                raise ValueError(
                    f"SoftShared with num_tasks={self.num_tasks} takes "
                    f"{self.num_tasks} inputs or one. Received {len(inputs)}."
                )
            return list(inputs)
        return [inputs] * self.num_tasks

    def _is_shape_list(self, input_shape):
        return isinstance(input_shape, (list, tuple)) and all(
            isinstance(s, (list, tuple)) for s in input_shape
        )

    def build(self, input_shape):
        shapes = (
            self._spread(list(input_shape))
            if self._is_shape_list(input_shape)
            else [input_shape] * self.num_tasks
        )
        for tower, shape in zip(self.towers, shapes):
            tower.build(shape)
        kernels = [self._kernels(tower) for tower in self.towers]
        if not kernels[0]:
            raise ValueError(
                f"SoftShared ties kernels, but layer "
                f"'{self.towers[0].name}' has no trainable weight named "
                "'kernel'."
            )
        reference = [tuple(k.shape) for k in kernels[0]]
        for i, own in enumerate(kernels[1:], start=1):
            if [tuple(k.shape) for k in own] != reference:
                raise ValueError(
                    "SoftShared copies must have kernels of the same shapes; "
                    f"copy 0 has {reference}, copy {i} has "
                    f"{[tuple(k.shape) for k in own]}. Give every copy inputs "
                    f"of one shape. Received input shapes: {shapes}"
                )

    @staticmethod
    def _kernels(tower):
        return [
            w
            for w in tower.trainable_weights
            if w.path.split("/")[-1] == "kernel"
        ]

    def penalty(self):
        """`strength * sum_{i<j} sum_k ||W_i^k - W_j^k||^2`, a scalar."""
        kernels = [self._kernels(tower) for tower in self.towers]
        total = ops.zeros((), "float32")
        for a, b in itertools.combinations(kernels, 2):
            for k_a, k_b in zip(a, b):
                diff = ops.cast(k_a, "float32") - ops.cast(k_b, "float32")
                total = total + ops.sum(ops.square(diff))
        return self.strength * total

    def call(self, inputs):
        outputs = [
            tower(x) for tower, x in zip(self.towers, self._spread(inputs))
        ]
        if self.strength:
            self.add_loss(self.penalty())
        return outputs

    def compute_output_shape(self, input_shape):
        shapes = (
            list(input_shape)
            if self._is_shape_list(input_shape)
            else [input_shape] * self.num_tasks
        )
        return [
            tower.compute_output_shape(shape)
            for tower, shape in zip(self.towers, shapes)
        ]

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "layer": self._layer_config,
                "num_tasks": self.num_tasks,
                "strength": self.strength,
            }
        )
        return config
