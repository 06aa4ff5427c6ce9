"""Saves the `.keras` files of tests/data/legacy_*.keras with the release
before the one-step redesign (commit c02aa49), with their expected outputs.

Kept to show how they were made; rerunning it with today's code would make
files of today's format, which is not what the test checks.
"""

import json
import pathlib

import keras
import numpy as np

import keras_mtl
from keras_mtl import testing

HERE = pathlib.Path(__file__).parent
METHODS = {
    "uncertainty": "uncertainty",
    "gradnorm": "gradnorm",
    "famo": "famo",
    "pcgrad": keras_mtl.weighting.PCGrad(seed=3),
    "mgda_rep": keras_mtl.weighting.MGDA(mode="rep"),
    "dwa": "dwa",
}

if __name__ == "__main__":
    x, y = testing.tiny_data(n=32)
    expected = {}
    for name, weighting in METHODS.items():
        keras.utils.set_random_seed(0)
        model = testing.tiny_model(weighting=weighting)
        model.fit(x, y, epochs=2, batch_size=16, shuffle=False, verbose=0)
        model.save(HERE / f"legacy_{name}.keras")
        outputs = model.predict(x[:4], verbose=0)
        expected[name] = {
            "outputs": {k: np.asarray(v).tolist() for k, v in outputs.items()},
            "weighting": {
                v.path.split("/")[-1]: np.asarray(v).tolist()
                for v in model.weighting.variables
            },
            "iterations": int(model.optimizer.iterations.numpy()),
        }
    (HERE / "legacy_expected.json").write_text(json.dumps(expected, indent=1))
