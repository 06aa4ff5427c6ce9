import json

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_mtl
from keras_mtl import testing
from keras_mtl.evaluation import GradientConflict


def _linear_model(names, dim=2, units=1, trunk=None, heads=None):
    """Trunk `h = x W` (shared, no bias); heads `y_t = h v_t + b_t` (MSE).

    Trained with a learning rate of 0: the weights stay where they are set.
    """
    inputs = keras.Input((dim,))
    tasks = [keras_mtl.Task(n) for n in names]
    layer = keras.layers.Dense(units, use_bias=False, kernel_initializer="ones")
    model = keras_mtl.build_mtl_model(inputs, tasks, trunk=layer)
    if trunk is not None:
        layer.set_weights([np.asarray(trunk, "float32")])
    for name, (kernel, bias) in (heads or {}).items():
        model.get_layer(name).set_weights(
            [np.asarray(kernel, "float32"), np.asarray(bias, "float32")]
        )
    model.compile(optimizer=keras.optimizers.SGD(0.0))
    return model


def _fit(model, x, y, callback, epochs=1, batch_size=None, **kwargs):
    return model.fit(
        x,
        y,
        epochs=epochs,
        batch_size=batch_size or len(x),
        shuffle=False,
        verbose=0,
        callbacks=[callback],
        **kwargs,
    )


def test_identical_tasks():
    heads = {n: ([[0.5]], [0.1]) for n in ("a", "b")}
    model = _linear_model(["a", "b"], trunk=[[0.3], [-0.2]], heads=heads)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(8, 2)).astype("float32")
    target = rng.normal(size=(8, 1)).astype("float32")
    conflict = GradientConflict(x, {"a": target, "b": target}, every=1)
    logs = _fit(model, x, {"a": target, "b": target}, conflict).history
    assert abs(logs["conflict_cos_a_b"][0] - 1.0) < 1e-6
    assert abs(logs["conflict_magnitude_a_b"][0] - 1.0) < 1e-6
    assert logs["conflict_fraction"] == [0.0]
    assert logs["a_grad_norm"][0] > 0
    assert logs["a_grad_norm"] == pytest.approx(logs["b_grad_norm"])


def test_opposite_tasks():
    # At W = 0 every prediction is 0: task a's gradient on W is
    # -(2/n) x^T y v and task b's (labels -y) is its negative.
    heads = {n: ([[1.0]], [0.0]) for n in ("a", "b")}
    model = _linear_model(["a", "b"], trunk=[[0.0], [0.0]], heads=heads)
    rng = np.random.default_rng(1)
    x = rng.normal(size=(8, 2)).astype("float32")
    target = rng.normal(size=(8, 1)).astype("float32")
    y = {"a": target, "b": -target}
    conflict = GradientConflict(x, y, every=1)
    logs = _fit(model, x, y, conflict).history
    assert abs(logs["conflict_cos_a_b"][0] + 1.0) < 1e-5
    assert abs(logs["conflict_magnitude_a_b"][0] - 1.0) < 1e-6
    assert logs["conflict_fraction"] == [1.0]
    expected = np.linalg.norm(2 / 8 * x.T @ target)
    assert logs["a_grad_norm"][0] == pytest.approx(expected, rel=1e-5)


def test_three_tasks_by_hand():
    rng = np.random.default_rng(2)
    n, dim, units = 6, 3, 2
    x = rng.normal(size=(n, dim)).astype("float32")
    w = rng.normal(size=(dim, units)).astype("float32")
    names = ["a", "b", "c"]
    heads = {
        t: (rng.normal(size=(units, 1)), rng.normal(size=(1,))) for t in names
    }
    y = {t: rng.normal(size=(n, 1)).astype("float32") for t in names}
    y["c"][[1, 4]] = np.nan  # missing: the mean is over the other four
    model = _linear_model(names, dim, units, trunk=w, heads=heads)
    conflict = GradientConflict(x, y, every=10)
    logs = _fit(model, x, y, conflict).history

    # L_t = mean_labelled (x W v_t + b_t - y_t)^2, so
    # dL_t/dW = (2 / n_t) x^T (m_t * r_t) v_t^T.
    grads = []
    for t in names:
        kernel, bias = (np.asarray(a, "float64") for a in heads[t])
        labelled = ~np.isnan(y[t])
        residual = np.where(labelled, x @ w @ kernel + bias - y[t], 0.0)
        grads.append((2 / labelled.sum() * x.T @ residual @ kernel.T).ravel())
    grads = np.stack(grads)
    norms = np.linalg.norm(grads, axis=1)
    cosine = grads @ grads.T / np.outer(norms, norms)
    for i, a in enumerate(names):
        assert logs[f"{a}_grad_norm"][0] == pytest.approx(norms[i], rel=1e-5)
        for j in range(i + 1, 3):
            b = names[j]
            assert abs(logs[f"conflict_cos_{a}_{b}"][0] - cosine[i, j]) < 1e-5
            magnitude = (
                2 * norms[i] * norms[j] / (norms[i] ** 2 + norms[j] ** 2)
            )
            assert logs[f"conflict_magnitude_{a}_{b}"][0] == pytest.approx(
                magnitude, rel=1e-5
            )
    pairs = cosine[np.triu_indices(3, k=1)]
    assert logs["conflict_fraction"][0] == pytest.approx(np.mean(pairs < 0))
    measured = conflict.history[0]
    testing.assert_allclose(measured["cosine"], cosine, atol=1e-5)
    testing.assert_allclose(measured["grad_norm"], norms, rtol=1e-5)


def test_logs_reach_history():
    model = testing.tiny_model()
    x, y = testing.tiny_data(n=32)
    probe_x, probe_y = testing.tiny_data(n=16, seed=1)
    conflict = GradientConflict(probe_x, probe_y, every=2)
    logs = _fit(model, x, y, conflict, epochs=2, batch_size=8).history
    pairs = [("reg", "binary"), ("reg", "multi"), ("binary", "multi")]
    expected = {f"conflict_{k}_{a}_{b}" for a, b in pairs for k in ("cos",)}
    expected |= {f"conflict_magnitude_{a}_{b}" for a, b in pairs}
    expected |= {f"{t}_grad_norm" for t in model.task_names}
    expected |= {"conflict_fraction"}
    assert expected <= set(logs)
    for key in expected:
        assert len(logs[key]) == 2
        assert np.all(np.isfinite(logs[key])), key
    # Each epoch's value is the mean of its measurements (steps 2, 4).
    for epoch in range(2):
        measured = [m for m in conflict.history if m["epoch"] == epoch]
        assert len(measured) == 2
        mean = np.mean([m["cosine"][0, 1] for m in measured])
        assert logs["conflict_cos_reg_binary"][epoch] == pytest.approx(mean)


def test_schedule():
    # One model for every case: its train function is traced once.
    model = testing.tiny_model()
    x, y = testing.tiny_data(n=24)  # 6 batches of 4
    probe_x, probe_y = x[:8], {k: v[:8] for k, v in y.items()}
    cases = [
        (2, 1, [2, 4, 6]),  # the epoch-end one is step 6's
        (4, 2, [4, 6, 8, 12]),
        (1, 1, [1, 2, 3, 4, 5, 6]),
    ]
    for every, epochs, expected in cases:
        conflict = GradientConflict(probe_x, probe_y, every)
        _fit(model, x, y, conflict, epochs=epochs, batch_size=4)
        assert [m["step"] for m in conflict.history] == expected, every
        assert [m["epoch"] for m in conflict.history] == [
            (s - 1) // 6 for s in expected
        ]
    # The count carries over to the next `fit`.
    conflict = GradientConflict(probe_x, probe_y, every=4)
    _fit(model, x, y, conflict, batch_size=4)
    _fit(model, x, y, conflict, batch_size=4)
    assert [m["step"] for m in conflict.history] == [4, 6, 8, 12]
    # Batch callbacks every 3 steps: the first at or past each multiple.
    model.compile(optimizer="sgd", steps_per_execution=3)
    conflict = GradientConflict(probe_x, probe_y, every=2)
    _fit(model, x, y, conflict, batch_size=4)
    assert [m["step"] for m in conflict.history] == [3, 6]


def test_absent_task_is_nan():
    model = testing.tiny_model()
    x, y = testing.tiny_data(n=16)
    probe = {k: v.copy() for k, v in y.items()}
    probe["binary"][:] = np.nan
    conflict = GradientConflict(x, probe, every=100)
    logs = _fit(model, x, y, conflict, batch_size=8).history
    assert np.isnan(logs["binary_grad_norm"][0])
    for key in ("cos", "magnitude"):
        assert np.isnan(logs[f"conflict_{key}_reg_binary"][0])
        assert np.isnan(logs[f"conflict_{key}_binary_multi"][0])
        assert np.isfinite(logs[f"conflict_{key}_reg_multi"][0])
    assert np.isfinite(logs["reg_grad_norm"][0])
    cosine = logs["conflict_cos_reg_multi"][0]
    assert logs["conflict_fraction"][0] == float(cosine < 0)


def test_dataset_probe_matches_arrays():
    model = _linear_model(["a", "b"], trunk=[[0.3], [-0.2]])
    rng = np.random.default_rng(3)
    x = rng.normal(size=(8, 2)).astype("float32")
    y = {t: rng.normal(size=(8, 1)).astype("float32") for t in ("a", "b")}
    arrays = GradientConflict(x, y, every=1)
    dataset = GradientConflict(
        tf.data.Dataset.from_tensor_slices((x, y)).batch(8), every=1
    )
    model.fit(x, y, batch_size=8, verbose=0, callbacks=[arrays, dataset])
    testing.assert_allclose(
        arrays.history[0]["cosine"], dataset.history[0]["cosine"], atol=1e-6
    )


def test_bad_arguments():
    x, y = np.ones((4, 2), "float32"), {t: np.ones((4, 1)) for t in "ab"}
    for every in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="`every` must be an integer"):
            GradientConflict(x, y, every=every)
    with pytest.raises(ValueError, match="`y` must be the labels"):
        GradientConflict(x)
    with pytest.raises(ValueError, match="`y=None`"):
        GradientConflict(tf.data.Dataset.from_tensor_slices((x, y)), y)

    model = _linear_model(["a", "b"])
    with pytest.raises(ValueError, match="`y` must hold .* Missing: \\['b'\\]"):
        _fit(model, x, y, GradientConflict(x, {"a": y["a"]}))

    one_task = _linear_model(["a"])
    with pytest.raises(ValueError, match="at least 2"):
        _fit(one_task, x, {"a": y["a"]}, GradientConflict(x, {"a": y["a"]}))

    inputs = keras.Input((2,))
    no_trunk = keras_mtl.build_mtl_model(
        inputs, [keras_mtl.Task("a"), keras_mtl.Task("b")]
    )
    no_trunk.compile(optimizer="sgd")
    with pytest.raises(ValueError, match="no shared variables"):
        _fit(no_trunk, x, y, GradientConflict(x, y))

    plain = keras.Model(inputs, {"a": keras.layers.Dense(1)(inputs)})
    plain.compile(optimizer="sgd", loss="mse")
    with pytest.raises(TypeError, match="keras_mtl.MTLModel"):
        _fit(plain, x, {"a": y["a"]}, GradientConflict(x, y))


def _by_hand_case(weighting, loss_weights=None):
    rng = np.random.default_rng(2)
    n, dim, units = 6, 3, 2
    x = rng.normal(size=(n, dim)).astype("float32")
    w = rng.normal(size=(dim, units)).astype("float32")
    names = ["a", "b", "c"]
    heads = {
        t: (rng.normal(size=(units, 1)), rng.normal(size=(1,))) for t in names
    }
    y = {t: rng.normal(size=(n, 1)).astype("float32") for t in names}
    model = keras_mtl.build_mtl_model(
        keras.Input((dim,)),
        [keras_mtl.Task(t) for t in names],
        trunk=keras.layers.Dense(units, use_bias=False),
        weighting=weighting,
    )
    model.layers[1].set_weights([w])
    for t, (kernel, bias) in heads.items():
        model.get_layer(t).set_weights(
            [np.asarray(kernel, "float32"), np.asarray(bias, "float32")]
        )
    model.compile(
        optimizer=keras.optimizers.SGD(0.0), loss_weights=loss_weights
    )
    grads = []
    for t in names:
        kernel, bias = (np.asarray(a, "float64") for a in heads[t])
        residual = x @ w @ kernel + bias - y[t]
        if weighting.mode == "rep":  # d L_t / d h, summed over the batch
            grads.append((2 / n * residual @ kernel.T).ravel())
        else:
            grads.append((2 / n * x.T @ residual @ kernel.T).ravel())
    return model, x, y, np.stack(grads)


@pytest.mark.parametrize("mode", ["param", "rep"])
def test_step_mode_reads_the_steps_own_gram(mode):
    # No probe: the Gram matrix of the step's own per-task gradients, the
    # static loss weights divided out; the same numbers as by hand.
    method = keras_mtl.weighting.PCGrad(mode=mode)
    model, x, y, grads = _by_hand_case(method, {"a": 2.0, "b": 1.0, "c": 0.5})
    conflict = GradientConflict(every=1)
    logs = _fit(model, x, y, conflict).history
    norms = np.linalg.norm(grads, axis=1)
    cosine = grads @ grads.T / np.outer(norms, norms)
    assert len(conflict.history) == 1
    testing.assert_allclose(conflict.history[0]["cosine"], cosine, atol=1e-5)
    testing.assert_allclose(conflict.history[0]["grad_norm"], norms, rtol=1e-5)
    assert logs["conflict_cos_a_c"][0] == pytest.approx(cosine[0, 2], abs=1e-5)


def test_step_mode_needs_a_gradient_method():
    model = testing.tiny_model("uncertainty")
    x, y = testing.tiny_data(n=16)
    with pytest.raises(ValueError, match="only gradient-level methods"):
        model.fit(x, y, verbose=0, callbacks=[GradientConflict()])
    with pytest.raises(ValueError, match="pass `y=None`"):
        GradientConflict(y=y)


def test_step_mode_is_exact_under_mirrored_strategy():
    code = """
import json
import json

import keras
import numpy as np
import keras_mtl
from keras_mtl import testing

x, y = testing.tiny_data(n=32)
results = {}
for name, strategy in [
    ("one", tf.distribute.OneDeviceStrategy("/cpu:0")),
    ("two", tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])),
]:
    keras.utils.set_random_seed(5)
    with strategy.scope():
        model = testing.tiny_model("mgda")
        model.compile(optimizer=keras.optimizers.SGD(0.0))
    conflict = keras_mtl.evaluation.GradientConflict(every=1)
    model.fit(x, y, batch_size=32, epochs=1, verbose=0, callbacks=[conflict])
    results[name] = [conflict.history[0]["cosine"].tolist(),
                     conflict.history[0]["grad_norm"].tolist()]
print(json.dumps(results))
"""
    output = testing.run_with_devices(code).strip().splitlines()[-1]
    results = json.loads(output)
    for one, two in zip(results["one"], results["two"]):
        testing.assert_allclose(np.array(two), np.array(one), atol=1e-5)
    # A real conflict to compare: not all cosines are 1.
    assert np.min(np.array(results["one"][0])) < 0.99
