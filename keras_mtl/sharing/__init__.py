"""Sharing schemes: how the tasks share the network below their heads."""

from keras_mtl.sharing.base import Sharing
from keras_mtl.sharing.cross_stitch import CrossStitchSharing
from keras_mtl.sharing.gates import gate_model
from keras_mtl.sharing.hard import HardSharing
from keras_mtl.sharing.mmoe import MMoESharing
from keras_mtl.sharing.ple import PLESharing
from keras_mtl.sharing.soft import SoftSharing

ALL_OBJECTS_DICT = {
    "hard": HardSharing,
    "cross_stitch": CrossStitchSharing,
    "soft": SoftSharing,
    "mmoe": MMoESharing,
    "ple": PLESharing,
}


def get(identifier):
    """Returns a `Sharing` from a name or an instance.

    Args:
        identifier: a name (`"hard"`, `"cross_stitch"`, `"soft"`, `"mmoe"`,
            `"ple"`: the scheme with its default arguments) or a `Sharing`
            instance such as `keras_mtl.sharing.MMoESharing(num_experts=8)`.

    Returns:
        A `Sharing` instance.

    Example:

    ```python
    keras_mtl.sharing.get("mmoe")  # MMoESharing(num_experts=4)
    ```
    """
    if isinstance(identifier, Sharing):
        return identifier
    if isinstance(identifier, str) and identifier in ALL_OBJECTS_DICT:
        return ALL_OBJECTS_DICT[identifier]()
    raise ValueError(
        f"Unknown sharing {identifier!r}. Expected one of "
        f"{sorted(ALL_OBJECTS_DICT)} or a keras_mtl.sharing.Sharing instance."
    )


__all__ = [
    "CrossStitchSharing",
    "HardSharing",
    "MMoESharing",
    "PLESharing",
    "Sharing",
    "SoftSharing",
    "gate_model",
    "get",
]
