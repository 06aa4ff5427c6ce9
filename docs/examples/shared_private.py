# docs/examples/shared_private.py
"""A sharing scheme: a shared trunk beside one private layer per task."""

import keras

import keras_mtl
from keras_mtl.sharing.base import merge_inputs
from keras_mtl.sharing.base import trunk_layers


@keras.saving.register_keras_serializable(package="my_package")
@keras_mtl.sharing.register
class SharedPrivateSharing(keras_mtl.sharing.Sharing):
    """A shared trunk and a private layer per task, side by side.

    Every task reads the concatenation of the shared trunk's output and of
    its own private `Dense` layer on the inputs (named `{task}_private`), so
    it can keep what the other tasks do not need out of the trunk. The
    trunk's variables are shared (`MTLModel.shared_variables`); each
    private layer belongs to its task alone (`MTLModel.task_variables`).
    There is no single shared representation, so gradient methods use
    `mode="param"`.

    Args:
        private_units: int >= 1. Width of each private layer. Defaults to
            `8`.

    Example:

    ```python
    model = keras_mtl.build_mtl_model(
        inputs, tasks, trunk=[64],
        sharing=SharedPrivateSharing(private_units=16))
    ```

    References:
        - [Liu et al., 2017](https://arxiv.org/abs/1704.05742), the
          shared-private model.
    """

    # Ranges of the arguments for keras_mtl.tuner.
    search_space = {
        "private_units": {
            "min_value": 2,
            "max_value": 64,
            "sampling": "log",
            "default": 8,
        },
    }

    def __init__(self, private_units=8):
        if (
            not isinstance(private_units, int)
            or isinstance(private_units, bool)
            or private_units < 1
        ):
            raise ValueError(
                "`private_units` must be an int >= 1. "
                f"Received: private_units={private_units!r}"
            )
        self.private_units = private_units

    def get_config(self):
        return {"private_units": self.private_units}

    def build(self, inputs, trunk, task_names):
        features = merge_inputs(inputs)
        shared = features
        for layer in trunk_layers(trunk, "trunk"):
            shared = layer(shared)
        outputs = {}
        for name in task_names:
            private = keras.layers.Dense(
                self.private_units, activation="relu", name=f"{name}_private"
            )(features)
            outputs[name] = keras.layers.Concatenate(name=f"{name}_features")(
                [shared, private]
            )
        return outputs
