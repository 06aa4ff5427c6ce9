import keras
import numpy as np
import pytest

from keras_mtl import testing
from keras_mtl import weighting as wt

WEIGHTINGS = {
    "equal": lambda: "equal",
    "uncertainty": wt.UncertaintyWeighting,
    "rlw": lambda: wt.RandomLossWeighting(seed=1),
    # SGD: a GradNorm step proportional to the kernel gradients it saw.
    "gradnorm": lambda: wt.GradNorm(optimizer="sgd", learning_rate=0.01),
    "famo": wt.FAMO,
}


def _one_step_update(policy, weighting="equal"):
    keras.config.set_dtype_policy(policy)
    keras.utils.set_random_seed(0)
    try:
        model = testing.tiny_model(weighting=WEIGHTINGS[weighting]())
        model.compile(optimizer=keras.optimizers.SGD(0.1))
        x, y = testing.tiny_data(n=32)
        before = [np.array(v, "float32") for v in model.trainable_variables]
        history = model.fit(x, y, epochs=1, batch_size=32, verbose=0)
        after = [np.array(v, "float32") for v in model.trainable_variables]
    finally:
        keras.config.set_dtype_policy("float32")
    return model, history, [a - b for a, b in zip(after, before)]


@pytest.mark.parametrize("weighting", sorted(WEIGHTINGS))
@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_mixed_precision_trains_like_float32(policy, weighting):
    reference_model, _, reference = _one_step_update("float32", weighting)
    model, history, update = _one_step_update(policy, weighting)
    assert model.get_layer("trunk_dense_0").compute_dtype != "float32"
    assert model.outputs[0].dtype == "float32"
    assert np.isfinite(history.history["loss"][0])
    if policy == "mixed_float16":
        assert type(model.optimizer).__name__ == "LossScaleOptimizer"
    # Updates have float32's size: the loss scale was undone.
    ratio = np.linalg.norm(update[0]) / np.linalg.norm(reference[0])
    assert 0.9 < ratio < 1.1, ratio
    # So was the weighting's own state (GradNorm's kernel gradients).
    for ours, theirs in zip(
        model.weighting.non_trainable_variables,
        reference_model.weighting.non_trainable_variables,
    ):
        if ours.dtype == "float32":
            testing.assert_allclose(ours, theirs, atol=2e-2, msg=ours.path)
