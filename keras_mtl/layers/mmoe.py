import keras
from keras import ops

from keras_mtl.layers import towers


@keras.saving.register_keras_serializable(package="keras_mtl")
class MMoE(keras.layers.Layer):
    """Multi-gate mixture of experts: one softmax gate per task over experts.

    `num_experts` experts `f_e` see the same input `x`; task `k` gets
    `sum_e g_k(x)_e f_e(x)` with its own gate `g_k(x) = softmax(W_k x)`
    (`x` flattened; no bias, as in the paper). Tasks that need different
    features learn different gates, which is what makes the model robust to
    weakly related tasks.

    Args:
        num_tasks: int >= 1. Number of gates, one per task.
        num_experts: int >= 1. Number of experts.
        expert: list of int, or `keras.layers.Layer`. The expert network:
            hidden sizes of ReLU `Dense` layers, or a layer cloned (fresh
            weights) for each expert. All experts must give the same shape.
        return_gates: bool. Also return the gate values. Defaults to
            `False`.
        **kwargs: base `keras.layers.Layer` arguments (`name`, `dtype`).

    Call arguments:
        inputs: a tensor `(batch, ...)` of known shape apart from the batch.

    Returns:
        A list of `num_tasks` tensors, each of the experts' output shape;
        with `return_gates=True`, a tuple `(outputs, gates)` where `gates`
        is a list of `num_tasks` tensors `(batch, num_experts)`.

    Example:

    ```python
    x = keras.Input((100,))
    mmoe = keras_mtl.layers.MMoE(num_tasks=2, num_experts=8, expert=[16],
                                 return_gates=True)
    (tower_a, tower_b), (gates_a, gates_b) = mmoe(x)
    ```

    References:
        - [Ma et al., 2018](https://doi.org/10.1145/3219819.3220007),
          Modeling Task Relationships in Multi-task Learning with
          Multi-gate Mixture-of-Experts.
    """

    def __init__(
        self, num_tasks, num_experts, expert, return_gates=False, **kwargs
    ):
        super().__init__(**kwargs)
        towers.check_count(num_tasks, "num_tasks", 1)
        towers.check_count(num_experts, "num_experts", 1)
        expert = towers.check_tower_spec(
            towers.deserialize_tower_spec(expert), "expert"
        )
        self.num_tasks = num_tasks
        self.num_experts = num_experts
        self._expert_spec = towers.serialize_tower_spec(expert)
        self.return_gates = bool(return_gates)
        self.experts = [
            towers.make_tower(self._expert_spec, f"expert_{e}")
            for e in range(num_experts)
        ]

    @property
    def expert(self):
        return towers.deserialize_tower_spec(self._expert_spec)

    def build(self, input_shape):
        for expert in self.experts:
            expert.build(input_shape)
        size = towers.flat_size(input_shape, "MMoE")
        self.gate_kernels = [
            self.add_weight(
                name=f"gate_{k}_kernel",
                shape=(size, self.num_experts),
                initializer="glorot_uniform",
            )
            for k in range(self.num_tasks)
        ]

    def call(self, inputs):
        experts = ops.stack([expert(inputs) for expert in self.experts], 1)
        mixed = [
            towers.gate_and_mix(inputs, kernel, experts)
            for kernel in self.gate_kernels
        ]
        outputs = [m[0] for m in mixed]
        if self.return_gates:
            return outputs, [m[1] for m in mixed]
        return outputs

    def compute_output_shape(self, input_shape):
        shape = tuple(self.experts[0].compute_output_shape(input_shape))
        outputs = [shape] * self.num_tasks
        if self.return_gates:
            gates = [(input_shape[0], self.num_experts)] * self.num_tasks
            return outputs, gates
        return outputs

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "num_tasks": self.num_tasks,
                "num_experts": self.num_experts,
                "expert": self._expert_spec,
                "return_gates": self.return_gates,
            }
        )
        return config
