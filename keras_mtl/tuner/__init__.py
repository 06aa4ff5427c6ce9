"""Tune task weights, weighting methods and sharing with keras-tuner.

`MTLHyperModel` is a `keras_tuner.HyperModel`; `MultiTaskObjective` is a
callback that writes a multi-task score into the logs, which the tuner then
optimises like any other metric.
"""

try:
    import keras_tuner  # noqa: F401
except ImportError:  # pragma: no cover - depends on the environment
    raise ImportError(
        "keras_mtl.tuner needs keras-tuner. Install it with "
        "`pip install 'keras-mtl[tuner]'` (or `pip install keras-tuner`)."
    ) from None

from keras_mtl import sharing as sharing_module
from keras_mtl import weighting as weighting_module
from keras_mtl.tuner.hypermodel import MTLHyperModel
from keras_mtl.tuner.objective import MultiTaskObjective
from keras_mtl.tuner.objective import default_objective_metrics
from keras_mtl.tuner.search_space import declared_spaces

__all__ = [
    "MTLHyperModel",
    "MultiTaskObjective",
    "default_objective_metrics",
]


def __getattr__(name):
    # Read-only views of the `search_space` each class declares, for code
    # written when the ranges were module tables.
    if name == "WEIGHTING_SEARCH_SPACE":
        return declared_spaces(weighting_module)
    if name == "SHARING_SEARCH_SPACE":
        return declared_spaces(sharing_module)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
