import keras
from keras import ops

from keras_mtl.layers import towers


@keras.saving.register_keras_serializable(package="keras_mtl")
class CGC(keras.layers.Layer):
    """Customized gate control: task-specific and shared experts.

    Each task `k` has `num_task_experts` experts of its own, and all tasks
    share `num_shared_experts` experts. Task `k`'s output is a softmax gate
    on its input mixing its own experts and the shared ones. With
    `shared_output=True` the layer also returns a shared output, a gate on
    the shared input over *all* experts: stacking such layers, with the
    last one without it, gives Progressive Layered Extraction (PLE).

    Args:
        num_tasks: int >= 1. Number of tasks.
        num_task_experts: int >= 0. Experts of each task.
        num_shared_experts: int >= 0. Experts shared by all tasks. At least
            one expert in all is needed.
        expert: list of int, or `keras.layers.Layer`. The expert network:
            hidden sizes of ReLU `Dense` layers, or a layer cloned (fresh
            weights) for each expert.
        shared_output: bool. Also compute the shared output (a PLE level
            below the top). Defaults to `False`.
        return_gates: bool. Also return the gate values. Defaults to
            `False`.
        **kwargs: base `keras.layers.Layer` arguments (`name`, `dtype`).

    Call arguments:
        inputs: one tensor for all, or a list of `num_tasks + 1` tensors:
            each task's input, then the shared experts' input (the outputs
            of a lower level with `shared_output=True`).

    Returns:
        A list of `num_tasks` tensors (plus the shared output last, if
        `shared_output`); with `return_gates=True`, a tuple
        `(outputs, gates)`, `gates` a list of `(batch, experts)` tensors in
        the same order (task `k`'s gate covers its own experts, then the
        shared ones; the shared gate covers all task experts by task, then
        the shared ones).

    Example:

    ```python
    x = keras.Input((100,))
    level_1 = keras_mtl.layers.CGC(2, 1, 2, expert=[32], shared_output=True)
    level_2 = keras_mtl.layers.CGC(2, 1, 2, expert=[16])
    tower_a, tower_b = level_2(level_1(x))
    ```

    References:
        - [Tang et al., 2020](https://doi.org/10.1145/3383313.3412236),
          Progressive Layered Extraction (PLE): A Novel Multi-Task Learning
          (MTL) Model for Personalized Recommendations.
    """

    def __init__(
        self,
        num_tasks,
        num_task_experts,
        num_shared_experts,
        expert,
        shared_output=False,
        return_gates=False,
        **kwargs,
    ):
        super().__init__(**kwargs)
        towers.check_count(num_tasks, "num_tasks", 1)
        towers.check_count(num_task_experts, "num_task_experts", 0)
        towers.check_count(num_shared_experts, "num_shared_experts", 0)
        if num_task_experts + num_shared_experts < 1:
            raise ValueError(
                "CGC needs at least one expert. Received: num_task_experts=0, "
                "num_shared_experts=0"
            )
        expert = towers.check_tower_spec(
            towers.deserialize_tower_spec(expert), "expert"
        )
        self.num_tasks = num_tasks
        self.num_task_experts = num_task_experts
        self.num_shared_experts = num_shared_experts
        self._expert_spec = towers.serialize_tower_spec(expert)
        self.shared_output = bool(shared_output)
        self.return_gates = bool(return_gates)
        self.task_experts = [
            [
                towers.make_tower(self._expert_spec, f"task_{k}_expert_{e}")
                for e in range(num_task_experts)
            ]
            for k in range(num_tasks)
        ]
        self.shared_experts = [
            towers.make_tower(self._expert_spec, f"shared_expert_{e}")
            for e in range(num_shared_experts)
        ]

    @property
    def expert(self):
        return towers.deserialize_tower_spec(self._expert_spec)

    def _spread(self, inputs):
        if isinstance(inputs, (list, tuple)):
            if len(inputs) != self.num_tasks + 1:
                raise ValueError(
                    f"CGC with num_tasks={self.num_tasks} takes one input or "
                    f"a list of {self.num_tasks + 1} (one per task, then the "
                    f"shared one). Received {len(inputs)}."
                )
            return list(inputs)
        return [inputs] * (self.num_tasks + 1)

    def build(self, input_shape):
        if isinstance(input_shape, (list, tuple)) and all(
            isinstance(s, (list, tuple)) for s in input_shape
        ):
            shapes = self._spread(list(input_shape))
        else:
            shapes = [input_shape] * (self.num_tasks + 1)
        for k, shape in enumerate(shapes[:-1]):
            for expert in self.task_experts[k]:
                expert.build(shape)
        for expert in self.shared_experts:
            expert.build(shapes[-1])
        per_task = self.num_task_experts + self.num_shared_experts
        self.gate_kernels = [
            self.add_weight(
                name=f"gate_{k}_kernel",
                shape=(towers.flat_size(shapes[k], "CGC"), per_task),
                initializer="glorot_uniform",
            )
            for k in range(self.num_tasks)
        ]
        if self.shared_output:
            total = self.num_tasks * self.num_task_experts
            total += self.num_shared_experts
            self.shared_gate_kernel = self.add_weight(
                name="shared_gate_kernel",
                shape=(towers.flat_size(shapes[-1], "CGC"), total),
                initializer="glorot_uniform",
            )

    def call(self, inputs):
        inputs = self._spread(inputs)
        shared = [expert(inputs[-1]) for expert in self.shared_experts]
        own = [
            [expert(inputs[k]) for expert in self.task_experts[k]]
            for k in range(self.num_tasks)
        ]
        mixed = [
            towers.gate_and_mix(
                inputs[k], self.gate_kernels[k], ops.stack(own[k] + shared, 1)
            )
            for k in range(self.num_tasks)
        ]
        if self.shared_output:
            every = [out for outs in own for out in outs] + shared
            mixed.append(
                towers.gate_and_mix(
                    inputs[-1], self.shared_gate_kernel, ops.stack(every, 1)
                )
            )
        outputs = [m[0] for m in mixed]
        if self.return_gates:
            return outputs, [m[1] for m in mixed]
        return outputs

    def compute_output_shape(self, input_shape):
        if isinstance(input_shape, (list, tuple)) and all(
            isinstance(s, (list, tuple)) for s in input_shape
        ):
            first = tuple(input_shape[0])
        else:
            first = tuple(input_shape)
        any_expert = (self.shared_experts or self.task_experts[0])[0]
        shape = tuple(any_expert.compute_output_shape(first))
        count = self.num_tasks + int(self.shared_output)
        outputs = [shape] * count
        if not self.return_gates:
            return outputs
        per_task = self.num_task_experts + self.num_shared_experts
        gates = [(first[0], per_task)] * self.num_tasks
        if self.shared_output:
            total = self.num_tasks * self.num_task_experts
            gates.append((first[0], total + self.num_shared_experts))
        return outputs, gates

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "num_tasks": self.num_tasks,
                "num_task_experts": self.num_task_experts,
                "num_shared_experts": self.num_shared_experts,
                "expert": self._expert_spec,
                "shared_output": self.shared_output,
                "return_gates": self.return_gates,
            }
        )
        return config
