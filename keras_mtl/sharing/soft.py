from keras_mtl.layers.soft_shared import SoftShared
from keras_mtl.sharing.base import Sharing
from keras_mtl.sharing.cross_stitch import check_num_tasks
from keras_mtl.sharing.cross_stitch import tower_inputs
from keras_mtl.sharing.cross_stitch import tower_layers


class SoftSharing(Sharing):
    """One tower per task, kernels tied by an L2 penalty (soft sharing).

    Each trunk layer becomes a `keras_mtl.layers.SoftShared` named
    `soft_shared_{depth}`, holding one copy per task; its penalty
    `strength * sum_{i<j} ||W_i - W_j||^2` over corresponding kernels is a
    model loss (`model.losses`), so training minimises it and it is saved
    with the model.

    Args:
        strength: float >= 0. The penalty's coefficient. Defaults to `1e-3`.

    Example:

    ```python
    model = keras_mtl.build_mtl_model(
        inputs, tasks, trunk=[64, 32],
        sharing=keras_mtl.sharing.SoftSharing(strength=1e-2))
    ```

    References:
        - [Duong et al., 2015](https://aclanthology.org/P15-2139/)
    """

    # Ranges of the arguments for keras_mtl.tuner (see `search_space`).
    search_space = {
        "strength": {
            "min_value": 1e-05,
            "max_value": 0.1,
            "sampling": "log",
            "default": 0.001,
        },
    }

    def __init__(self, strength=1e-3):
        if not isinstance(strength, (int, float)) or strength < 0:
            raise ValueError(
                "`strength` must be a number >= 0. "
                f"Received: strength={strength!r}"
            )
        self.strength = strength

    def get_config(self):
        return {"strength": self.strength}

    def build(self, inputs, trunk, task_names):
        check_num_tasks(task_names, "soft")
        features = tower_inputs(inputs, trunk)
        for depth, layer in enumerate(tower_layers(trunk, "soft")):
            features = SoftShared(
                layer,
                num_tasks=len(task_names),
                strength=self.strength,
                name=f"soft_shared_{depth}",
            )(features)
        return dict(zip(task_names, features))
