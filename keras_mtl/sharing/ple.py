from keras_mtl.layers.cgc import CGC
from keras_mtl.layers.towers import check_count
from keras_mtl.sharing.base import Sharing
from keras_mtl.sharing.base import merge_inputs
from keras_mtl.sharing.mmoe import expert_spec


class PLESharing(Sharing):
    """Progressive layered extraction: stacked CGC levels of experts.

    Each of the `num_levels` levels is a `keras_mtl.layers.CGC` named
    `cgc_{level}`, with `num_task_experts` experts per task and
    `num_shared_experts` shared ones. The trunk spec is *each expert*:
    `trunk=[128]` makes every expert, at every level, a ReLU `Dense(128)`
    (a layer trunk is cloned per expert, each clone with fresh weights and
    seeds of its own). `sharing="ple"` is `PLESharing()`: 2 levels of one
    expert per task and one shared expert, so `T + 1` experts per level for
    `T` tasks; pass an instance to choose. Lower levels also pass a shared
    output up, gated over all their experts. `num_levels=1` is CGC
    alone. The inputs are merged into one vector first if they are a dict
    or list. The gates can be read with `keras_mtl.sharing.gate_model(model)`.

    Args:
        num_levels: int >= 1. Number of CGC levels. Defaults to `2`.
        num_task_experts: int >= 0. Experts per task and level. Defaults to
            `1`.
        num_shared_experts: int >= 0. Shared experts per level. Defaults to
            `1`.

    Example:

    ```python
    inputs = keras.Input((32,))
    tasks = [keras_mtl.Task("a", loss="mse"), keras_mtl.Task("b", loss="mse")]
    model = keras_mtl.build_mtl_model(
        inputs, tasks, trunk=[32],
        sharing=keras_mtl.sharing.PLESharing(
            num_levels=2, num_task_experts=1, num_shared_experts=2))
    ```

    References:
        - [Tang et al., 2020](https://doi.org/10.1145/3383313.3412236)
    """

    # Ranges of the arguments for keras_mtl.tuner (see `search_space`).
    search_space = {
        "num_levels": [1, 2],
        "num_task_experts": [1, 2],
        "num_shared_experts": [1, 2],
    }

    def __init__(self, num_levels=2, num_task_experts=1, num_shared_experts=1):
        self.num_levels = check_count(num_levels, "num_levels", 1)
        self.num_task_experts = check_count(
            num_task_experts, "num_task_experts", 0
        )
        self.num_shared_experts = check_count(
            num_shared_experts, "num_shared_experts", 0
        )
        if num_task_experts + num_shared_experts < 1:
            raise ValueError(
                "PLE needs at least one expert per level. Received: "
                "num_task_experts=0, num_shared_experts=0"
            )

    def get_config(self):
        return {
            "num_levels": self.num_levels,
            "num_task_experts": self.num_task_experts,
            "num_shared_experts": self.num_shared_experts,
        }

    def build(self, inputs, trunk, task_names):
        expert = expert_spec(trunk, "ple")
        features = merge_inputs(inputs)
        for level in range(self.num_levels):
            features, _ = CGC(
                num_tasks=len(task_names),
                num_task_experts=self.num_task_experts,
                num_shared_experts=self.num_shared_experts,
                expert=expert,
                shared_output=level < self.num_levels - 1,
                return_gates=True,
                name=f"cgc_{level}",
            )(features)
        return dict(zip(task_names, features))
