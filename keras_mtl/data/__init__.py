"""Multi-task datasets: loaders, and sampling across per-task datasets."""

from keras_mtl.data.mixture import Mixture
from keras_mtl.data.multi_mnist import load_multi_mnist
from keras_mtl.data.multi_mnist import make_multi_mnist
from keras_mtl.data.rates import annealed_rates
from keras_mtl.data.rates import sampling_rates
from keras_mtl.data.sampling import mix
from keras_mtl.data.source import Source

__all__ = [
    "Mixture",
    "Source",
    "annealed_rates",
    "load_multi_mnist",
    "make_multi_mnist",
    "mix",
    "sampling_rates",
]
