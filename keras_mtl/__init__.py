"""keras-mtl: multi-task learning for Keras 3."""

import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

from keras_mtl import data  # noqa: E402
from keras_mtl import distribute  # noqa: E402
from keras_mtl import layers  # noqa: E402
from keras_mtl import sharing  # noqa: E402
from keras_mtl import weighting  # noqa: E402
from keras_mtl.builder import build_mtl_model  # noqa: E402
from keras_mtl.model import MTLModel  # noqa: E402
from keras_mtl.tasks import Task  # noqa: E402
from keras_mtl.version import __version__  # noqa: E402

__all__ = [
    "MTLModel",
    "Task",
    "build_mtl_model",
    "data",
    "distribute",
    "layers",
    "sharing",
    "weighting",
    "__version__",
]
