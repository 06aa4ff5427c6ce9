"""ExpertUtilization: the logged mean gates against the gates by hand."""

import numpy as np
import pytest

from keras_mtl import testing
from keras_mtl.evaluation.experts import ExpertUtilization


def _gates_by_hand(model, x):
    """Each MMoE gate's softmax(x W_k), averaged over the rows."""
    layer = model.get_layer("mmoe")
    features = x  # the MMoE layer reads the model's inputs directly
    out = {}
    for name, kernel in zip(model.task_names, layer.gate_kernels):
        logits = features @ np.asarray(kernel.numpy(), "float64")
        z = np.exp(logits - logits.max(axis=1, keepdims=True))
        out[f"mmoe/{name}"] = (z / z.sum(axis=1, keepdims=True)).mean(0)
    return out


def test_logs_each_tasks_mean_gate_per_expert():
    x, y = testing.tiny_data(n=64)
    model = testing.tiny_model(sharing="mmoe")
    usage = ExpertUtilization(x[:32], batch_size=16)
    history = model.fit(
        x, y, epochs=2, batch_size=16, callbacks=[usage], verbose=0
    ).history
    assert len(usage.history) == 2
    expected = _gates_by_hand(model, x[:32].astype("float64"))
    assert sorted(usage.history[-1]) == sorted(expected)
    for name, values in expected.items():
        assert values.shape == (4,)
        np.testing.assert_allclose(usage.history[-1][name], values, rtol=1e-5)
        np.testing.assert_allclose(values.sum(), 1.0, rtol=1e-6)
        for e, value in enumerate(values):
            key = f"{name}/expert_{e}"
            np.testing.assert_allclose(history[key][-1], value, rtol=1e-5)
    # The gates train: the first epoch's means differ from the last's.
    first = usage.history[0]["mmoe/reg"]
    assert np.abs(first - usage.history[1]["mmoe/reg"]).max() > 1e-4


def test_ple_logs_task_and_shared_gates():
    x, y = testing.tiny_data(n=32)
    model = testing.tiny_model(sharing="ple")
    usage = ExpertUtilization(x)
    model.fit(x, y, epochs=1, batch_size=16, callbacks=[usage], verbose=0)
    names = sorted(usage.history[0])
    assert any(n.endswith("/shared") for n in names), names
    for values in usage.history[0].values():
        np.testing.assert_allclose(values.sum(), 1.0, rtol=1e-6)


def test_a_model_without_gates_or_a_bad_batch_size_is_an_error():
    x, y = testing.tiny_data(n=32)
    model = testing.tiny_model()
    with pytest.raises(ValueError, match="no MMoE or CGC layer"):
        model.fit(x, y, epochs=1, callbacks=[ExpertUtilization(x)], verbose=0)
    with pytest.raises(ValueError, match="`batch_size` must be an int"):
        ExpertUtilization(x, batch_size=0)
