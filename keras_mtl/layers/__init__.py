"""Keras layers that share between tasks: mixing, tied copies, experts."""

from keras_mtl.layers.cgc import CGC
from keras_mtl.layers.cross_stitch import CrossStitch
from keras_mtl.layers.mmoe import MMoE
from keras_mtl.layers.soft_shared import SoftShared

__all__ = ["CGC", "CrossStitch", "MMoE", "SoftShared"]
