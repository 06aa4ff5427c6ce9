"""`.keras` files saved by the release before the one-step redesign load,
predict as they did, and keep their weighting state."""

import json
import pathlib

import keras
import numpy as np
import pytest

import keras_mtl
from keras_mtl import testing

DATA = pathlib.Path(__file__).parent / "data"
EXPECTED = json.loads((DATA / "legacy_expected.json").read_text())


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_legacy_file_loads_with_its_state(name):
    model = keras.models.load_model(DATA / f"legacy_{name}.keras")
    assert isinstance(model, keras_mtl.MTLModel)
    expected = EXPECTED[name]
    x, y = testing.tiny_data(n=32)
    outputs = model.predict(x[:4], verbose=0)
    for task, value in expected["outputs"].items():
        testing.assert_allclose(outputs[task], np.array(value), atol=1e-6)
    state = {
        v.path.split("/")[-1]: v.numpy() for v in model.weighting.variables
    }
    for key, value in expected["weighting"].items():
        testing.assert_allclose(state[key], np.array(value), atol=1e-7)
    assert int(model.optimizer.iterations.numpy()) == expected["iterations"]
    # It trains on.
    model.fit(x, y, epochs=1, batch_size=16, verbose=0)
    assert int(model.optimizer.iterations.numpy()) == expected["iterations"] + 2
