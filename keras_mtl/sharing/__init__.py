"""Sharing schemes: how the tasks share the network below their heads."""

import keras

from keras_mtl.registry import Registry
from keras_mtl.sharing.base import Sharing
from keras_mtl.sharing.base import dense_stack
from keras_mtl.sharing.cross_stitch import CrossStitchSharing
from keras_mtl.sharing.gates import gate_model
from keras_mtl.sharing.hard import HardSharing
from keras_mtl.sharing.mmoe import MMoESharing
from keras_mtl.sharing.ple import PLESharing
from keras_mtl.sharing.soft import SoftSharing

registry = Registry(
    "sharing",
    Sharing,
    suffix="Sharing",
    alternatives=(
        "a config dict from `keras_mtl.sharing.serialize` or a "
        "keras_mtl.sharing.Sharing instance"
    ),
)
register = registry.register

register(HardSharing, name="hard")
register(CrossStitchSharing, name="cross_stitch")
register(SoftSharing, name="soft")
register(MMoESharing, name="mmoe")
register(PLESharing, name="ple")

# Every name, alias and class name, kept in sync with `register`.
ALL_OBJECTS_DICT = registry.as_dict()


def serialize(sharing):
    """Returns the config dict of a sharing scheme.

    Args:
        sharing: a `keras_mtl.sharing.Sharing`.

    Returns:
        A JSON-serializable dict, which `deserialize` turns back into an
        equal scheme.

    Example:

    ```python
    config = keras_mtl.sharing.serialize(
        keras_mtl.sharing.MMoESharing(num_experts=8))
    keras_mtl.sharing.deserialize(config).num_experts  # 8
    ```
    """
    if not isinstance(sharing, Sharing):
        raise TypeError(
            "`sharing` must be a keras_mtl.sharing.Sharing. "
            f"Received: sharing={sharing!r}"
        )
    return keras.saving.serialize_keras_object(sharing)


def deserialize(config, custom_objects=None):
    """Returns a sharing scheme from its config dict.

    Args:
        config: dict, from `serialize`.
        custom_objects: dict of name to class, for schemes of your own that
            are not registered with `keras_mtl.sharing.register`. Defaults
            to `None`.

    Returns:
        A new `keras_mtl.sharing.Sharing`.

    Example:

    ```python
    scheme = keras_mtl.sharing.deserialize(
        keras_mtl.sharing.serialize(keras_mtl.sharing.PLESharing(3, 1, 2)))
    ```
    """
    return registry.deserialize(config, custom_objects)


def get(identifier):
    """Returns a `Sharing` from a name, a config dict or an instance.

    Args:
        identifier: a registered name (`"hard"`, `"cross_stitch"`,
            `"soft"`, `"mmoe"`, `"ple"` or one of your own: the scheme
            with its default arguments), a config dict from `serialize`, or
            a `Sharing` instance such as
            `keras_mtl.sharing.MMoESharing(num_experts=8)`.

    Returns:
        A `Sharing` instance (`identifier` itself if it is one).

    Example:

    ```python
    keras_mtl.sharing.get("mmoe")  # MMoESharing(num_experts=4)
    keras_mtl.sharing.get(
        {"class_name": "PLESharing", "config": {"num_levels": 3}})
    ```
    """
    if isinstance(identifier, Sharing):
        return identifier
    if isinstance(identifier, dict) and "class_name" in identifier:
        return deserialize(identifier)
    if isinstance(identifier, str):
        return registry[identifier]()
    if isinstance(identifier, dict):
        raise TypeError(
            "`sharing` must be a name, an instance or a config dict from "
            "`keras_mtl.sharing.serialize` (with 'class_name' and 'config'). "
            "To set a scheme's arguments, pass an instance, such as "
            "`keras_mtl.sharing.MMoESharing(num_experts=8)`. "
            f"Received: sharing={identifier!r}"
        )
    raise TypeError(
        "`sharing` must be a name, a config dict or a "
        f"keras_mtl.sharing.Sharing. Received: sharing={identifier!r}"
    )


__all__ = [
    "ALL_OBJECTS_DICT",
    "CrossStitchSharing",
    "HardSharing",
    "MMoESharing",
    "PLESharing",
    "Sharing",
    "SoftSharing",
    "dense_stack",
    "deserialize",
    "gate_model",
    "get",
    "register",
    "registry",
    "serialize",
]
