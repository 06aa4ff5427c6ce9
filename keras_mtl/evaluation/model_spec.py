"""`ModelSpec`: all that builds a multi-task model, but for the tasks."""

import copy
import re

import keras

from keras_mtl import sharing as sharing_module
from keras_mtl import weighting as weighting_module
from keras_mtl.builder import build_mtl_model
from keras_mtl.model import check_tasks
from keras_mtl.tasks import Task

__all__ = ["ModelSpec", "fresh_optimizer", "fresh_weighting"]

# The names `keras.Input` gives the tensors it was not asked to name.
_AUTO_TENSOR_NAME = re.compile(r"^keras_tensor(_\d+)?$")


def exactly_one(options, hint):
    """The name of the one `(name, value)` pair whose value is not `None`;
    else a `ValueError` saying to pass exactly one of `hint`."""
    given = [name for name, value in options if value is not None]
    if len(given) != 1:
        raise ValueError(
            f"Pass exactly one of {hint}. Received: {given or 'none of them'}."
        )
    return given[0]


def _copied(value):
    # Keras's deserializers edit config dicts in place.
    return copy.deepcopy(value) if isinstance(value, dict) else value


def _input_config(tensor):
    """The `keras.Input` arguments that make a new input like `tensor`."""
    if not isinstance(tensor, keras.KerasTensor):
        raise TypeError(
            "`inputs` must be a `keras.Input` or a dict/list of them. "
            f"Received: {tensor!r}"
        )
    name = tensor.name
    return {
        "batch_shape": list(tensor.shape),
        "dtype": tensor.dtype,
        "sparse": tensor.sparse,
        "ragged": tensor.ragged,
        "name": None if _AUTO_TENSOR_NAME.match(name) else name,
    }


def _is_input_config(value):
    return isinstance(value, dict) and "batch_shape" in value


def _check_trunk(trunk):
    if trunk is None or isinstance(trunk, keras.layers.Layer):
        return trunk
    if isinstance(trunk, (list, tuple)) and all(
        isinstance(u, int) and not isinstance(u, bool) and u >= 1 for u in trunk
    ):
        return list(trunk)
    raise TypeError(
        "`trunk` must be a list of hidden sizes (ints >= 1), a keras Layer or "
        f"Model, or None. Received: trunk={trunk!r}"
    )


def _fresh_trunk(trunk):
    """The same trunk with new weights: layers and models are cloned."""
    if isinstance(trunk, keras.Model):
        return keras.models.clone_model(trunk)
    if isinstance(trunk, keras.layers.Layer):
        return trunk.__class__.from_config(trunk.get_config())
    return None if trunk is None else list(trunk)


def fresh_weighting(weighting):
    """A new, unbound weighting method from a name, a dict or a method.

    Args:
        weighting: str, `{task: weight}` dict, config dict or
            `keras_mtl.weighting.Weighting`. An instance is copied from its
            config: the copy has no state and belongs to no model.

    Returns:
        A new `keras_mtl.weighting.Weighting`.
    """
    if isinstance(weighting, weighting_module.Weighting):
        return weighting_module.deserialize(
            weighting_module.serialize(weighting)
        )
    return weighting_module.get(_copied(weighting))


def fresh_optimizer(optimizer):
    """A new optimizer from a name, a config or an optimizer's config.

    Args:
        optimizer: str, config dict or `keras.optimizers.Optimizer`. An
            instance is copied from its config: the copy has no state.

    Returns:
        A new `keras.optimizers.Optimizer`.
    """
    if isinstance(optimizer, keras.optimizers.Optimizer):
        return keras.optimizers.deserialize(
            keras.optimizers.serialize(optimizer)
        )
    return keras.optimizers.get(_copied(optimizer))


def _serialize(value, what):
    if value is None or isinstance(value, (str, list)):
        return value
    if not hasattr(value, "get_config"):
        raise TypeError(
            f"`{what}` {value!r} has no `get_config`: the spec has no config. "
            f"Pass `{what}` by name, or give its class a `get_config`."
        )
    return keras.saving.serialize_keras_object(value)


@keras.saving.register_keras_serializable(package="keras_mtl")
class ModelSpec:
    """The inputs, trunk, sharing, weighting and optimizer of a model.

    Everything `keras_mtl.build_mtl_model` needs but the tasks, and the
    optimizer to compile with: a recipe for many independent models of one
    architecture, such as single-task baselines
    (`keras_mtl.evaluation.train_single_task_baselines`) or tuner trials
    (`keras_mtl.tuner.MTLHyperModel`). Each `build` makes new inputs of the
    same specs, a clone of a layer or model trunk, a new weighting method
    and a new optimizer from their configs, so that no two models share
    weights or state. A `Sharing` instance is a stateless builder and is
    used as is.

    Args:
        inputs: `keras.Input`, or a dict or list of them. Only their specs
            (shape, dtype, sparseness, name) are used.
        trunk: list of int, `keras.layers.Layer` (or model) or `None`: see
            `keras_mtl.build_mtl_model`. Defaults to `None`.
        sharing: str or `keras_mtl.sharing.Sharing`. Defaults to `"hard"`.
        weighting: str, `{task: weight}` dict or
            `keras_mtl.weighting.Weighting`. Defaults to `"equal"`.
        optimizer: str, config dict or `keras.optimizers.Optimizer`.
            Defaults to `"adam"`.

    Example:

    ```python
    spec = keras_mtl.evaluation.ModelSpec(
        keras.Input((32,), name="features"), trunk=[64, 64],
        weighting="uncertainty", optimizer=keras.optimizers.Adam(1e-3))
    model = spec.build(tasks)  # compiled, ready to fit
    another = spec.build(tasks)  # same architecture, its own weights
    ```
    """

    def __init__(
        self,
        inputs,
        trunk=None,
        sharing="hard",
        weighting="equal",
        optimizer="adam",
    ):
        if not keras.tree.flatten(inputs):
            raise TypeError(
                "`inputs` must be a `keras.Input` or a dict/list of them. "
                f"Received: inputs={inputs!r}"
            )
        keras.tree.map_structure(_input_config, inputs)
        sharing_module.get(sharing)
        if (
            not isinstance(weighting, str)
            or weighting not in weighting_module.registry
        ):
            # Validates; a known name is not instantiated (a layer) here.
            weighting_module.get(_copied(weighting))
        if not isinstance(optimizer, keras.optimizers.Optimizer):
            keras.optimizers.get(_copied(optimizer))
        self.inputs = inputs
        self.trunk = _check_trunk(trunk)
        self.sharing = sharing
        self.weighting = weighting
        self.optimizer = optimizer

    def build(
        self,
        tasks,
        sharing=None,
        weighting=None,
        compile=True,
        compile_kwargs=None,
    ):
        """Builds a new `MTLModel` of this spec for `tasks`.

        Args:
            tasks: list of `keras_mtl.Task`. The model gets copies.
            sharing: str or `keras_mtl.sharing.Sharing`, instead of the
                spec's. Defaults to `None` (the spec's).
            weighting: str, dict or `keras_mtl.weighting.Weighting`, instead
                of the spec's (a copy of an instance is used). Defaults to
                `None` (the spec's).
            compile: bool. Whether to compile the model with a new optimizer
                of the spec's config. Defaults to `True`.
            compile_kwargs: dict of more `compile` arguments, e.g.
                `{"steps_per_execution": 8}`. Defaults to `None`.

        Returns:
            A `keras_mtl.MTLModel`, compiled if `compile`.
        """
        tasks = [Task.from_config(t.get_config()) for t in check_tasks(tasks)]
        model = build_mtl_model(
            self.fresh_inputs(),
            tasks,
            trunk=_fresh_trunk(self.trunk),
            sharing=sharing_module.get(
                self.sharing if sharing is None else sharing
            ),
            weighting=fresh_weighting(
                self.weighting if weighting is None else weighting
            ),
        )
        if compile:
            model.compile(
                optimizer=fresh_optimizer(self.optimizer),
                **(compile_kwargs or {}),
            )
        elif compile_kwargs:
            raise ValueError(
                "`compile_kwargs` needs `compile=True`. "
                f"Received: compile_kwargs={compile_kwargs!r}"
            )
        return model

    def fresh_inputs(self):
        """New `keras.Input`s with the specs (and names) of `inputs`."""
        return keras.tree.map_structure(
            lambda t: keras.Input(**_input_config(t)), self.inputs
        )

    def get_config(self):
        weighting = self.weighting
        if isinstance(weighting, weighting_module.Weighting):
            weighting = weighting_module.serialize(weighting)
        optimizer = self.optimizer
        if isinstance(optimizer, keras.optimizers.Optimizer):
            optimizer = keras.optimizers.serialize(optimizer)
        return {
            "inputs": keras.tree.map_structure(_input_config, self.inputs),
            "trunk": _serialize(self.trunk, "trunk"),
            "sharing": _serialize(self.sharing, "sharing"),
            "weighting": weighting,
            "optimizer": optimizer,
        }

    @classmethod
    def from_config(cls, config):
        # Keras's deserializers edit configs in place: work on a copy.
        config = copy.deepcopy(config)
        config["inputs"] = keras.tree.traverse(
            lambda v: keras.Input(**v) if _is_input_config(v) else None,
            config["inputs"],
        )
        for key in ("trunk", "sharing"):
            if isinstance(config.get(key), dict):
                config[key] = keras.saving.deserialize_keras_object(config[key])
        weighting = config.get("weighting")
        if isinstance(weighting, dict) and "class_name" in weighting:
            config["weighting"] = weighting_module.deserialize(weighting)
        if isinstance(config.get("optimizer"), dict):
            config["optimizer"] = keras.optimizers.deserialize(
                config["optimizer"]
            )
        return cls(**config)
