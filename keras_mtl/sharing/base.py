import abc

import keras


def trunk_layers(trunk, prefix):
    """Fresh layers for a trunk spec: hidden sizes, a layer, or `None`.

    A list of ints gives ReLU `Dense` layers named `{prefix}_dense_{i}`; a
    layer is returned as is (one layer, shared by whoever applies it).
    """
    if trunk is None:
        return []
    if isinstance(trunk, keras.layers.Layer):
        return [trunk]
    if isinstance(trunk, (list, tuple)) and all(
        isinstance(u, int) and not isinstance(u, bool) and u >= 1 for u in trunk
    ):
        return [
            keras.layers.Dense(
                units, activation="relu", name=f"{prefix}_dense_{i}"
            )
            for i, units in enumerate(trunk)
        ]
    raise TypeError(
        "`trunk` must be a list of hidden sizes (ints >= 1), a keras Layer or "
        f"Model, or None. Received: trunk={trunk!r}"
    )


def merge_inputs(inputs):
    """One feature tensor from one input or a dict/list of inputs."""
    if isinstance(inputs, dict):
        inputs = [inputs[k] for k in sorted(inputs)]
    if isinstance(inputs, (list, tuple)):
        flat = [
            keras.layers.Flatten()(x) if len(x.shape) > 2 else x for x in inputs
        ]
        return flat[0] if len(flat) == 1 else keras.layers.Concatenate()(flat)
    return inputs


class Sharing(abc.ABC):
    """Base class of the ways tasks share a network.

    A sharing scheme is a builder: `build` wires the model inputs through
    shared and task-specific layers and returns one feature tensor per
    task, on which `build_mtl_model` puts each task's head. The layers it
    creates live in the functional graph, so they are saved with the model.

    Example:

    ```python
    class SharedThenSplit(keras_mtl.sharing.Sharing):
        # One shared layer, then one private layer per task.

        def build(self, inputs, trunk, task_names):
            shared = keras.layers.Dense(32, activation="relu")(inputs)
            return {
                name: keras.layers.Dense(16, name=f"{name}_private")(shared)
                for name in task_names
            }

    model = keras_mtl.build_mtl_model(inputs, tasks, sharing=SharedThenSplit())
    ```

    References:
        - [Ruder, 2017](https://arxiv.org/abs/1706.05098), hard and soft
          parameter sharing.
    """

    @abc.abstractmethod
    def build(self, inputs, trunk, task_names):
        """Returns `{task_name: features}` for the given inputs and trunk.

        Args:
            inputs: the model's inputs, one `keras.Input` or a dict of them.
            trunk: the trunk spec: a list of hidden sizes, a layer or `None`.
            task_names: list of str.
        """
