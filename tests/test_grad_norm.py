import keras
import numpy as np
import pytest
import tensorflow as tf
from keras import ops

import keras_mtl
from keras_mtl import testing
from keras_mtl.weighting import GradNorm


def test_weight_steps_match_the_paper_by_hand():
    gradnorm = GradNorm(alpha=1.5, optimizer="sgd", learning_rate=0.1)
    gradnorm.set_tasks(["a", "b"])
    # ||g_a|| = 5, ||g_b|| = 1 at the shared kernel.
    kernel_gradients = ops.array(
        [[[3.0, 4.0], [0.0, 0.0]], [[1.0, 0.0], [0.0, 0.0]]]
    )
    # Step 1: L(0) = L, r = 1; G = (5, 1), target G_bar = 3;
    # dL_grad/dw = sign(G - 3) * ||g|| = (5, -1); w = (0.5, 1.1) -> sum 2.
    gradnorm.update_task_weights(ops.array([2.0, 1.0]), kernel_gradients)
    testing.assert_allclose(gradnorm.task_weights, [0.625, 1.375])
    testing.assert_allclose(gradnorm.initial_losses, [2.0, 1.0])
    # Step 2: L~ = (0.5, 0.8), r = (0.769231, 1.230769), r^1.5 =
    # (0.674660, 1.365416); G = (3.125, 1.375), G_bar = 2.25, targets
    # (1.517985, 3.072186): gradient (5, -1) again; w = (0.125, 1.475).
    gradnorm.update_task_weights(ops.array([1.0, 0.8]), kernel_gradients)
    testing.assert_allclose(gradnorm.task_weights, [0.15625, 1.84375])
    testing.assert_allclose(gradnorm.initial_losses, [2.0, 1.0])
    assert int(gradnorm.steps.numpy()) == 2
    total, weights = gradnorm(ops.array([1.0, 2.0]))
    testing.assert_allclose(total, 0.15625 + 2 * 1.84375)


def test_shared_kernel_is_a_layer_kernel_not_a_mixing_matrix():
    model = testing.tiny_model(
        weighting="gradnorm", sharing="cross_stitch", trunk=(8, 8)
    )
    kernel = GradNorm.shared_kernel(model)
    assert kernel.name == "kernel", kernel.path
    assert id(kernel) in {id(v) for v in model.shared_variables}
    assert any(
        v.name != "kernel" and len(v.shape) >= 2 for v in model.shared_variables
    )


def test_initial_loss_is_the_first_with_labels():
    gradnorm = GradNorm(optimizer="sgd", learning_rate=0.1)
    gradnorm.set_tasks(["a", "b"])
    gradients = ops.ones((2, 2, 2))
    gradnorm.update_task_weights(ops.array([0.0, 1.5]), gradients)
    testing.assert_allclose(gradnorm.initial_losses, [0.0, 1.5])
    gradnorm.update_task_weights(ops.array([3.0, 1.0]), gradients)
    testing.assert_allclose(gradnorm.initial_losses, [3.0, 1.5])


def test_train_step_uses_gradients_at_the_last_shared_kernel():
    inputs = keras.Input((4,), name="x")
    gradnorm = GradNorm(alpha=0.5, optimizer="sgd", learning_rate=0.01)
    model = keras_mtl.build_mtl_model(
        inputs,
        [keras_mtl.Task("a", loss_weight=2.0), keras_mtl.Task("b")],
        trunk=[5, 3],
        weighting=gradnorm,
    )
    model.compile(optimizer=keras.optimizers.SGD(0.1))
    kernel = GradNorm.shared_kernel(model)
    assert kernel.path == "trunk_dense_1/kernel"
    rng = np.random.default_rng(1)
    x = rng.normal(size=(8, 4)).astype("float32")
    y = {"a": rng.normal(size=(8, 1)).astype("float32")}
    y["b"] = 10.0 * x[:, :1]

    def steps(weights):
        """Model step and GradNorm step, from losses and plain gradients."""
        variables = model.trainable_variables
        with tf.GradientTape(persistent=True) as tape:
            pred = model(x)
            losses = [
                2.0 * ops.mean(ops.square(pred["a"] - y["a"])),
                ops.mean(ops.square(pred["b"] - y["b"])),
            ]
            total = weights[0] * losses[0] + weights[1] * losses[1]
        gradients = tape.gradient(total, variables)
        norms = np.array(
            [np.linalg.norm(tape.gradient(loss, kernel)) for loss in losses]
        )
        new = [
            v.numpy() - 0.1 * g.numpy() for v, g in zip(variables, gradients)
        ]
        return new, np.array([float(v) for v in losses]), norms

    initial = None
    weights = np.ones(2)
    for _ in range(3):
        new, losses, norms = steps(weights)
        initial = losses if initial is None else initial
        rates = (losses / initial) / np.mean(losses / initial)
        targets = np.mean(weights * norms) * rates**0.5
        weights = weights - 0.01 * np.sign(weights * norms - targets) * norms
        weights = np.maximum(weights, 1e-8)
        weights = 2 * weights / np.sum(weights)
        model.train_on_batch(x, y)
        for v, e in zip(model.trainable_variables, new):
            testing.assert_allclose(v, e, atol=1e-5, msg=v.path)
        testing.assert_allclose(gradnorm.task_weights, weights, atol=1e-5)
    assert abs(weights[0] - weights[1]) > 0.02, weights


def _toy_data(n, rng, shared, own, sigmas):
    x = rng.normal(size=(n, 250)).astype("float32")
    y = {
        f"t{i}": (sigma * np.tanh(x @ (shared + own[i]).T)).astype("float32")
        for i, sigma in enumerate(sigmas)
    }
    return x, y


@pytest.mark.slow
def test_toy_weights_fall_as_scale_rises_and_beat_equal_weighting():
    """The paper's toy: f_i(x) = sigma_i tanh((B + e_i) x) (REFERENCES.md)."""
    sigmas = [1.0, 4.0, 16.0, 64.0]
    rng = np.random.default_rng(0)
    shared = rng.normal(0, np.sqrt(10.0), size=(100, 250))
    own = [rng.normal(0, np.sqrt(3.5), size=(100, 250)) for _ in sigmas]
    x, y = _toy_data(4000, rng, shared, own, sigmas)
    x_test, y_test = _toy_data(1000, rng, shared, own, sigmas)
    tasks = [keras_mtl.Task(f"t{i}", units=100) for i in range(len(sigmas))]
    results = {}
    for name, weighting in [
        ("equal", "equal"),
        ("gradnorm", GradNorm(alpha=0.12)),
    ]:
        keras.utils.set_random_seed(1)
        model = keras_mtl.build_mtl_model(
            keras.Input((250,), name="x"),
            tasks,
            trunk=[100] * 4,
            weighting=weighting,
        )
        model.compile(optimizer=keras.optimizers.Adam(1e-3))
        model.fit(x, y, epochs=10, batch_size=100, verbose=0)
        logs = model.evaluate(x_test, y_test, verbose=0, return_dict=True)
        # Each task's test loss relative to its scale, averaged over tasks.
        results[name] = np.mean(
            [logs[f"t{i}_loss"] / s**2 for i, s in enumerate(sigmas)]
        )
        if name == "gradnorm":
            weights = model.weighting.task_weights.numpy()
    assert np.all(np.diff(weights) < 0), weights
    assert results["gradnorm"] < 0.9 * results["equal"], results
