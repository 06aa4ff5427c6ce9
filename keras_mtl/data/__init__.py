"""Multi-task datasets and loaders."""

from keras_mtl.data.multi_mnist import load_multi_mnist
from keras_mtl.data.multi_mnist import make_multi_mnist

__all__ = ["load_multi_mnist", "make_multi_mnist"]
