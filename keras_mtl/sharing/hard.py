from keras_mtl.sharing.base import Sharing
from keras_mtl.sharing.base import merge_inputs
from keras_mtl.sharing.base import trunk_layers


class HardSharing(Sharing):
    """One trunk shared by every task; each task adds its own head.

    A list trunk sees the inputs merged into one vector (flattened and
    concatenated in key order); a layer trunk is called on the inputs as
    given, dict included.

    Example:

    ```python
    model = keras_mtl.build_mtl_model(inputs, tasks, trunk=[64, 64],
                                      sharing="hard")
    ```

    References:
        - [Caruana, 1997](https://doi.org/10.1023/A:1007379606734)
    """

    def build(self, inputs, trunk, task_names):
        layers = trunk_layers(trunk, "trunk")
        if isinstance(trunk, (list, tuple)) or trunk is None:
            features = merge_inputs(inputs)
        else:
            features = inputs
        for layer in layers:
            features = layer(features)
        return {name: features for name in task_names}
