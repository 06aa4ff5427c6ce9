"""Sharing schemes: how the tasks share the network below their heads."""

from keras_mtl.sharing.base import Sharing
from keras_mtl.sharing.hard import HardSharing

ALL_OBJECTS_DICT = {
    "hard": HardSharing,
}


def get(identifier):
    """Returns a `Sharing` from a name such as `"hard"` or an instance."""
    if isinstance(identifier, Sharing):
        return identifier
    if isinstance(identifier, str) and identifier in ALL_OBJECTS_DICT:
        return ALL_OBJECTS_DICT[identifier]()
    raise ValueError(
        f"Unknown sharing {identifier!r}. Expected one of "
        f"{sorted(ALL_OBJECTS_DICT)} or a keras_mtl.sharing.Sharing instance."
    )
