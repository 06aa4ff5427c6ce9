import keras
import pytest
from keras import ops

import keras_mtl
from keras_mtl import testing


def test_equal_sums_losses():
    weights = testing.run_weighting_test(
        keras_mtl.weighting.EqualWeighting(), [1.0, 2.0, 3.5], 6.5
    )
    testing.assert_allclose(weights, [1.0, 1.0, 1.0])


def test_fixed_weights_by_task_name():
    weighting = keras_mtl.weighting.get({"b": 2.0, "a": 0.5})
    assert isinstance(weighting, keras_mtl.weighting.FixedWeighting)
    weights = testing.run_weighting_test(
        weighting, [1.0, 3.0], 0.5 * 1.0 + 2.0 * 3.0, task_names=["a", "b"]
    )
    testing.assert_allclose(weights, [0.5, 2.0])


def test_fixed_weights_must_name_every_task():
    weighting = keras_mtl.weighting.FixedWeighting({"a": 1.0, "zzz": 1.0})
    with pytest.raises(ValueError, match="Unknown: \\['zzz'\\].*missing"):
        weighting.set_tasks(["a", "b"])


@pytest.mark.parametrize(
    "identifier, cls",
    [
        ("equal", keras_mtl.weighting.EqualWeighting),
        ("EqualWeighting", keras_mtl.weighting.EqualWeighting),
        (None, keras_mtl.weighting.EqualWeighting),
        ({"a": 1.0}, keras_mtl.weighting.FixedWeighting),
        (
            keras_mtl.weighting.serialize(
                keras_mtl.weighting.FixedWeighting({"a": 2.0})
            ),
            keras_mtl.weighting.FixedWeighting,
        ),
    ],
)
def test_get(identifier, cls):
    assert isinstance(keras_mtl.weighting.get(identifier), cls)


def test_get_rejects_unknown_name():
    with pytest.raises(ValueError, match="Unknown weighting method 'nope'"):
        keras_mtl.weighting.get("nope")
    with pytest.raises(TypeError, match="weighting"):
        keras_mtl.weighting.get(3)


@keras.saving.register_keras_serializable(package="keras_mtl_tests")
class InverseLossWeighting(keras_mtl.weighting.Weighting):
    """A user's own method: weights inversely proportional to the loss."""

    def compute_weights(self, task_losses, training=False):
        totals = keras_mtl.distribute.all_reduce_sum(task_losses)
        inverse = 1.0 / (totals + 1e-8)
        return self.num_tasks * inverse / ops.sum(inverse)


def test_custom_weighting_trains_and_saves(tmp_path):
    weights = testing.run_weighting_test(
        InverseLossWeighting(), [1.0, 4.0], 2 * 0.8 * 1.0 + 2 * 0.2 * 4.0
    )
    testing.assert_allclose(weights, [1.6, 0.4], atol=1e-5)
    model = testing.tiny_model(weighting=InverseLossWeighting())
    x, y = testing.tiny_data()
    history = model.fit(x, y, epochs=1, batch_size=16, verbose=0)
    assert "reg_weight" in history.history
    loaded = testing.run_model_saving_test(model, x, tmp_path / "m.keras")
    assert isinstance(loaded.weighting, InverseLossWeighting)
