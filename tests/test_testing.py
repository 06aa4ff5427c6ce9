"""The test helpers themselves must catch what they claim to catch."""

import keras
import pytest

from keras_mtl import testing


def test_run_layer_test_passes_a_correct_layer():
    testing.run_layer_test(
        keras.layers.Dense,
        {"units": 3},
        input_shape=(2, 4),
        expected_output_shape=(2, 3),
        expected_num_trainable_weights=2,
    )


def test_run_layer_test_catches_wrong_expectations():
    with pytest.raises(AssertionError):
        testing.run_layer_test(
            keras.layers.Dense,
            {"units": 3},
            input_shape=(2, 4),
            expected_output_shape=(2, 5),
        )
    with pytest.raises(AssertionError):
        testing.run_layer_test(
            keras.layers.Dense,
            {"units": 3},
            input_shape=(2, 4),
            expected_output_shape=(2, 3),
            expected_num_trainable_weights=1,
        )


def test_run_layer_test_with_several_inputs():
    testing.run_layer_test(
        keras.layers.Add,
        {},
        input_shape=[(2, 4), (2, 4)],
        expected_output_shape=(2, 4),
        expected_num_trainable_weights=0,
    )


def test_run_model_saving_test_catches_lost_state(tmp_path, monkeypatch):
    model = testing.tiny_model()
    x, y = testing.tiny_data(n=16)
    model.fit(x, y, epochs=1, verbose=0)
    original_load = keras.models.load_model

    def load_without_optimizer_state(path):
        loaded = original_load(path)
        for v in loaded.optimizer.variables:
            v.assign(keras.ops.zeros_like(v))
        return loaded

    monkeypatch.setattr(
        keras.models, "load_model", load_without_optimizer_state
    )
    with pytest.raises(AssertionError, match="optimizer variable"):
        testing.run_model_saving_test(model, x, tmp_path / "m.keras")
