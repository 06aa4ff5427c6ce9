from keras_mtl.layers.mmoe import MMoE
from keras_mtl.layers.towers import check_count
from keras_mtl.layers.towers import check_tower_spec
from keras_mtl.sharing.base import Sharing
from keras_mtl.sharing.base import merge_inputs


def expert_spec(trunk, scheme):
    if trunk is None:
        raise ValueError(
            f"`sharing='{scheme}'` builds its experts from the trunk, so it "
            "needs one: a list of hidden sizes or a keras Layer. "
            "Received: trunk=None"
        )
    return check_tower_spec(trunk, "trunk")


class MMoESharing(Sharing):
    """Multi-gate mixture of experts between the inputs and the heads.

    Builds `num_experts` experts in one `keras_mtl.layers.MMoE` layer named
    `mmoe`, with one softmax gate per task. The trunk spec is *each
    expert*, not the whole shared network: `trunk=[128]` makes every expert
    a ReLU `Dense(128)` (a layer trunk is cloned per expert, each clone
    with fresh weights and seeds of its own), so the experts hold
    `num_experts` times the parameters of the same trunk under
    `sharing="hard"`. `sharing="mmoe"` is `MMoESharing()`: 4 experts; pass
    an instance to choose. The inputs are merged into one vector first if
    they are a dict or list. The gates can be read with
    `keras_mtl.sharing.gate_model(model)`.

    Args:
        num_experts: int >= 1. Number of experts, each built from the
            trunk spec. Defaults to `4`.

    Example:

    ```python
    inputs = keras.Input((32,))
    tasks = [keras_mtl.Task("a", loss="mse"), keras_mtl.Task("b", loss="mse")]
    # 8 experts, each a Dense(16): 8 * (32 * 16 + 16) expert parameters.
    model = keras_mtl.build_mtl_model(
        inputs, tasks, trunk=[16],
        sharing=keras_mtl.sharing.MMoESharing(num_experts=8))
    ```

    References:
        - [Ma et al., 2018](https://doi.org/10.1145/3219819.3220007)
    """

    # Ranges of the arguments for keras_mtl.tuner (see `search_space`).
    search_space = {
        "num_experts": {"values": [2, 4, 8], "default": 4},
    }

    def __init__(self, num_experts=4):
        self.num_experts = check_count(num_experts, "num_experts", 1)

    def get_config(self):
        return {"num_experts": self.num_experts}

    def build(self, inputs, trunk, task_names):
        expert = expert_spec(trunk, "mmoe")
        layer = MMoE(
            num_tasks=len(task_names),
            num_experts=self.num_experts,
            expert=expert,
            return_gates=True,
            name="mmoe",
        )
        outputs, _ = layer(merge_inputs(inputs))
        return dict(zip(task_names, outputs))
