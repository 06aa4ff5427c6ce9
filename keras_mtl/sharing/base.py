import abc
import inspect

import keras

# Defined with the towers (layers do not import sharing); exported here.
from keras_mtl.layers.towers import dense_stack
from keras_mtl.layers.towers import is_hidden_sizes

__all__ = ["Sharing", "dense_stack", "merge_inputs", "trunk_layers"]


def trunk_layers(trunk, prefix):
    """Fresh layers for a trunk spec: hidden sizes, a layer, or `None`.

    A list of ints gives ReLU `Dense` layers named `{prefix}_dense_{i}`; a
    layer is returned as is (one layer, shared by whoever applies it).
    """
    if trunk is None:
        return []
    if isinstance(trunk, keras.layers.Layer):
        return [trunk]
    if is_hidden_sizes(trunk):
        return dense_stack(trunk, f"{prefix}_dense")
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

    A scheme is saved by its config: `get_config` returns the constructor
    arguments and `from_config` calls `cls(**config)`. A scheme with
    arguments overrides `get_config` (and `from_config` where an argument
    is an object, such as a layer, stored with
    `keras.saving.serialize_keras_object`). Register it with
    `keras_mtl.sharing.register` to look it up by name and to save it.

    References:
        - [Ruder, 2017](https://arxiv.org/abs/1706.05098), hard and soft
          parameter sharing.
    """

    # Ranges of the constructor arguments for keras_mtl.tuner:
    # `{argument: spec}`, a spec as in `keras_mtl.tuner`'s search spaces.
    search_space = {}

    @abc.abstractmethod
    def build(self, inputs, trunk, task_names):
        """Returns `{task_name: features}` for the given inputs and trunk.

        Args:
            inputs: the model's inputs, one `keras.Input` or a dict of them.
            trunk: the trunk spec: a list of hidden sizes, a layer or `None`.
            task_names: list of str.
        """

    def get_config(self):
        """The constructor arguments, as a JSON-serializable dict.

        The base returns `{}`, which is right for a scheme without
        arguments; a scheme with arguments must override it.
        """
        init = type(self).__init__
        if init is not object.__init__:
            arguments = list(inspect.signature(init).parameters)[1:]
            if arguments:
                raise NotImplementedError(
                    f"{type(self).__name__} takes arguments {arguments}, so "
                    "it must override `get_config` to return them."
                )
        return {}

    @classmethod
    def from_config(cls, config):
        """A scheme from the dict `get_config` returned."""
        return cls(**config)

    def __repr__(self):
        try:
            config = self.get_config()
        except NotImplementedError:
            return super().__repr__()
        arguments = ", ".join(f"{k}={v!r}" for k, v in config.items())
        return f"{type(self).__name__}({arguments})"
