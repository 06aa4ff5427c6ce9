"""keras-mtl: multi-task learning for Keras 3."""

import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

from keras_mtl import callbacks  # noqa: E402
from keras_mtl import data  # noqa: E402
from keras_mtl import distribute  # noqa: E402
from keras_mtl import evaluation  # noqa: E402
from keras_mtl import layers  # noqa: E402
from keras_mtl import plotting  # noqa: E402
from keras_mtl import scheduling  # noqa: E402
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
    "callbacks",
    "data",
    "distribute",
    "evaluation",
    "layers",
    "plotting",
    "scheduling",
    "sharing",
    "weighting",
    "__version__",
]


def __getattr__(name):
    # keras-tuner is an optional extra: import `keras_mtl.tuner` on first use.
    if name == "tuner":
        import importlib

        return importlib.import_module("keras_mtl.tuner")
    raise AttributeError(f"module 'keras_mtl' has no attribute {name!r}")
