import pathlib

from setuptools import find_packages
from setuptools import setup

HERE = pathlib.Path(__file__).parent
version = {}
exec((HERE / "keras_mtl" / "version.py").read_text(), version)

TUNER = ["keras-tuner>=1.4.8", "tensorboard>=2.21.0"]
DOCS = ["mkdocs>=1.6.1", "mkdocs-material>=9.8.2", "mkdocstrings-python>=2.0.11"]
DATASETS = [
    "tensorflow-datasets>=4.9.10",
    "importlib_resources>=7.1.0",
    "mlxtend>=0.25.0",
]

setup(
    version=version["__version__"],
    packages=find_packages(include=["keras_mtl", "keras_mtl.*"]),
    install_requires=["keras>=3.15.1", "numpy>=2.0"],
    extras_require={
        # TensorFlow comes in two wheels: pick one.
        "cpu": ["tensorflow-cpu>=2.21.0"],
        "gpu": ["tensorflow>=2.21.0"],
        "tuner": TUNER,
        "datasets": DATASETS,
        "test": TUNER
        + DATASETS
        + DOCS
        + ["pytest>=9.0", "pytest-xdist>=3.8", "matplotlib>=3.11", "pandas>=3.1", "ruff>=0.17"],
        "docs": DOCS + ["matplotlib>=3.11"],
        # keras_mtl.plotting needs matplotlib; `keras.utils.plot_model`
        # needs pydot and Graphviz's `dot` program, which comes from the
        # system's packages, not from pip.
        "plot": ["matplotlib>=3.11", "pydot>=4.0.1"],
    },
)
