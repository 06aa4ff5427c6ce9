import keras
import numpy as np
import pytest

import keras_mtl
from keras_mtl import testing

# The state a skip must keep: plain (equal), epoch statistics assigned in
# the step (dwa), an after-step hook with its own optimizer and a second
# forward pass (famo), the gradient-level step (pcgrad).
METHODS = ["equal", "dwa", "famo", "pcgrad"]


def _fit(method, x, y, skip=True, seed=0):
    keras.utils.set_random_seed(seed)
    model = keras_mtl.build_mtl_model(
        keras.Input((8,)), testing.tiny_tasks(), trunk=[8], weighting=method
    )
    model.compile(optimizer="adam", skip_non_finite=skip)
    history = model.fit(
        x, y, batch_size=16, epochs=2, shuffle=False, verbose=0
    ).history
    return model, history


def _poisoned(value):
    """The tiny data with one non-finite `reg` label in the second batch,
    and the same data without that batch."""
    x, y = testing.tiny_data(n=64)
    y = {k: np.array(v) for k, v in y.items()}
    y["reg"] = y["reg"].astype("float32")
    y["reg"][20] = value
    keep = np.r_[0:16, 32:64]
    return (x, y), (x[keep], {k: v[keep] for k, v in y.items()})


@pytest.mark.parametrize("method", METHODS)
def test_a_skipped_step_is_as_if_the_batch_were_not_there(method):
    (x, y), (x_clean, y_clean) = _poisoned(np.inf)
    model, history = _fit(method, x, y)
    clean, clean_history = _fit(method, x_clean, y_clean)
    assert history["skipped_steps"] == [1.0, 1.0]
    assert clean_history["skipped_steps"] == [0.0, 0.0]
    for got, want in zip(model.get_weights(), clean.get_weights()):
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)
    for key in ("loss", "reg_loss", "binary_loss", "reg_examples"):
        np.testing.assert_allclose(history[key], clean_history[key], rtol=1e-6)
    optimizer = model.optimizer
    assert int(optimizer.iterations) == int(clean.optimizer.iterations) == 6


def test_without_the_guard_one_label_poisons_every_weight():
    (x, y), _ = _poisoned(1e30)
    model, history = _fit("equal", x, y, skip=False)
    assert "skipped_steps" not in history
    trunk = model.get_layer(index=1).get_weights()[0]
    assert not np.isfinite(trunk).any()


def test_skip_non_finite_must_be_a_bool():
    model = testing.tiny_model()
    with pytest.raises(TypeError, match="skip_non_finite"):
        model.compile(optimizer="adam", skip_non_finite="yes")


# Under MirroredStrategy: tests/test_weighting_methods.py::
# test_mirrored_strategy_matches_one_device trains on a batch with one inf
# label on one replica and checks both replicas skip it, exactly.
