"""Weighting methods: how T task losses become one training objective."""

import keras

from keras_mtl.registry import Registry
from keras_mtl.weighting.aligned_mtl import AlignedMTL
from keras_mtl.weighting.base import Weighting
from keras_mtl.weighting.cagrad import CAGrad
from keras_mtl.weighting.con_fig import ConFIG
from keras_mtl.weighting.dual_proj import DualProj
from keras_mtl.weighting.dynamic_task_prioritization import (
    DynamicTaskPrioritization,
)
from keras_mtl.weighting.dynamic_weight_average import DynamicWeightAverage
from keras_mtl.weighting.equal import EqualWeighting
from keras_mtl.weighting.fair_grad import FairGrad
from keras_mtl.weighting.famo import FAMO
from keras_mtl.weighting.fixed import FixedWeighting
from keras_mtl.weighting.gls import GLS
from keras_mtl.weighting.grad_norm import GradNorm
from keras_mtl.weighting.grad_vac import GradVac
from keras_mtl.weighting.gradient_base import GradientWeighting
from keras_mtl.weighting.imtl import IMTL
from keras_mtl.weighting.imtl_g import IMTLG
from keras_mtl.weighting.imtl_l import IMTLL
from keras_mtl.weighting.krum import Krum
from keras_mtl.weighting.loss_balanced import LossBalanced
from keras_mtl.weighting.mgda import MGDA
from keras_mtl.weighting.nash_mtl import NashMTL
from keras_mtl.weighting.pcgrad import PCGrad
from keras_mtl.weighting.random_loss import RandomLossWeighting
from keras_mtl.weighting.smoothed import Smoothed
from keras_mtl.weighting.stch import STCH
from keras_mtl.weighting.uncertainty import UncertaintyWeighting
from keras_mtl.weighting.upgrad import UPGrad

__all__ = [
    "AlignedMTL",
    "CAGrad",
    "ConFIG",
    "DualProj",
    "DynamicTaskPrioritization",
    "DynamicWeightAverage",
    "EqualWeighting",
    "FAMO",
    "FairGrad",
    "FixedWeighting",
    "GLS",
    "GradNorm",
    "GradVac",
    "GradientWeighting",
    "IMTL",
    "IMTLG",
    "IMTLL",
    "Krum",
    "LossBalanced",
    "MGDA",
    "NashMTL",
    "PCGrad",
    "RandomLossWeighting",
    "STCH",
    "Smoothed",
    "UPGrad",
    "UncertaintyWeighting",
    "Weighting",
    "deserialize",
    "get",
    "register",
    "registry",
    "serialize",
]

registry = Registry(
    "weighting method",
    Weighting,
    suffix="Weighting",
    alternatives="a {task: weight} dict or a Weighting instance",
)
register = registry.register
register(EqualWeighting)
register(FixedWeighting)
register(UncertaintyWeighting)
register(DynamicWeightAverage, aliases=["dwa"])
register(RandomLossWeighting, aliases=["rlw", "random_loss_weighting"])
register(GradNorm, aliases=["gradnorm"])
register(FAMO, name="famo")
register(MGDA, name="mgda")
register(PCGrad, name="pcgrad")
register(CAGrad, name="cagrad")
register(IMTLG, name="imtl_g")
register(NashMTL)
register(AlignedMTL)
register(LossBalanced, aliases=["lbtw", "loss_balanced_task_weighting"])
register(DynamicTaskPrioritization, aliases=["dtp"])
register(UPGrad, name="upgrad")
register(DualProj, aliases=["dualproj"])
register(ConFIG, name="con_fig", aliases=["conflict_free"])
register(Krum)
register(GLS, name="gls")
register(STCH, name="stch")
register(IMTLL, name="imtl_l")
register(IMTL, name="imtl")
register(FairGrad, aliases=["fairgrad"])
register(GradVac, aliases=["gradvac"])
register(Smoothed, aliases=["cr_mogm"])
# Every name, alias and class name, kept in sync with `register`.
ALL_OBJECTS_DICT = registry.as_dict()


def serialize(weighting):
    """Returns the config dict of a weighting method.

    Args:
        weighting: a `keras_mtl.weighting.Weighting`.

    Returns:
        A JSON-serializable dict, which `deserialize` turns back into an
        equal method (its state lives in variables, saved with the model).

    Example:

    ```python
    config = keras_mtl.weighting.serialize(keras_mtl.weighting.CAGrad(c=0.5))
    keras_mtl.weighting.deserialize(config).c  # 0.5
    ```
    """
    return keras.saving.serialize_keras_object(weighting)


def deserialize(config, custom_objects=None):
    """Returns a weighting method from its config dict.

    Args:
        config: dict, from `serialize` (or a `.keras` file's config).
        custom_objects: dict of name to class, for methods of your own that
            are not registered with `keras.saving.register_keras_serializable`.
            Defaults to `None`.

    Returns:
        A new, unbound `keras_mtl.weighting.Weighting`.

    Example:

    ```python
    method = keras_mtl.weighting.deserialize(
        keras_mtl.weighting.serialize(keras_mtl.weighting.PCGrad(seed=3)))
    ```
    """
    return registry.deserialize(config, custom_objects)


def get(identifier):
    """Returns a weighting method from a name, a config or an instance.

    Args:
        identifier: a name such as `"equal"`, a `{task: weight}` dict (fixed
            weights), a config dict from `serialize`, or a `Weighting`.

    Returns:
        A new `Weighting` instance (or `identifier` itself if it is one).

    Example:

    ```python
    keras_mtl.weighting.get("equal")
    keras_mtl.weighting.get("uncertainty")
    keras_mtl.weighting.get({"price": 1.0, "churn": 0.5})
    ```
    """
    if identifier is None:
        return EqualWeighting()
    if isinstance(identifier, Weighting):
        return identifier
    if isinstance(identifier, dict):
        if "class_name" in identifier:
            return deserialize(identifier)
        return FixedWeighting(identifier)
    if isinstance(identifier, str):
        return registry[identifier]()
    raise TypeError(
        "`weighting` must be a name, a {task: weight} dict, a config dict or "
        f"a keras_mtl.weighting.Weighting. Received: {identifier!r}"
    )
