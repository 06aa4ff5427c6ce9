import math

import keras
import numpy as np
import pytest
import tensorflow as tf
from keras import ops

import keras_mtl
from keras_mtl import testing
from keras_mtl.weighting import FAMO

LOG3 = math.log(3.0)


def _famo(**kwargs):
    famo = FAMO(**kwargs)
    famo.set_tasks(["a", "b"])
    famo.logits.assign([0.0, LOG3])  # z = softmax = (0.25, 0.75)
    return famo


def test_weights_are_c_z_over_loss():
    famo = _famo()
    # z / L = (0.125, 0.75), c = 1 / 0.875; w = c z / L; total = c.
    weights = testing.run_weighting_test(
        famo, [2.0, 1.0], 1.0 / 0.875, task_names=["a", "b"]
    )
    testing.assert_allclose(weights, [0.142857, 0.857143], atol=1e-6)


def test_logit_step_matches_the_update_rule_by_hand():
    famo = _famo(optimizer="sgd", learning_rate=0.1, gamma=0.01)
    famo.update_logits(ops.array([2.0, 1.0]), ops.array([1.0, 0.9]))
    # delta = log L - log L' = (0.693147, 0.105361); z . delta = 0.252307;
    # J^T delta = z * (delta - z . delta) = (0.110210, -0.110210);
    # + gamma xi = (0, 0.010986); xi - 0.1 * that:
    testing.assert_allclose(famo.logits, [-0.011021, 1.108535], atol=1e-6)


def test_default_adam_first_step_moves_each_logit_by_the_step_size():
    famo = _famo(gamma=0.01)
    famo.update_logits(ops.array([2.0, 1.0]), ops.array([1.0, 0.9]))
    # Adam's first step is learning_rate * sign(gradient).
    testing.assert_allclose(
        famo.logits, [-0.025, LOG3 + 0.025], atol=2e-6, rtol=0
    )


def test_train_step_descends_log_losses_then_updates_logits():
    inputs = keras.Input((4,), name="x")
    weighting = FAMO(optimizer="sgd", learning_rate=0.5, gamma=0.0)
    model = keras_mtl.build_mtl_model(
        inputs,
        [keras_mtl.Task("a"), keras_mtl.Task("b")],
        trunk=[3],
        weighting=weighting,
    )
    model.compile(optimizer=keras.optimizers.SGD(0.1))
    rng = np.random.default_rng(0)
    x = rng.normal(size=(8, 4)).astype("float32")
    y = {"a": rng.normal(size=(8, 1)).astype("float32")}
    y["b"] = 5.0 * x[:, :1] ** 2

    def losses():
        pred = model(x)
        return ops.stack(
            [ops.mean(ops.square(pred[t] - y[t])) for t in ("a", "b")]
        )

    variables = model.trainable_variables
    with tf.GradientTape() as tape:
        before = losses()
        # z = (0.5, 0.5): the model descends sum_i c z_i log L_i.
        c = 1.0 / ops.sum(0.5 / ops.stop_gradient(before))
        objective = ops.sum(c * 0.5 * ops.log(before))
    gradients = tape.gradient(objective, variables)
    expected = [
        v.numpy() - 0.1 * g.numpy() for v, g in zip(variables, gradients)
    ]

    logs = model.train_on_batch(x, y, return_dict=True)
    for v, e in zip(variables, expected):
        testing.assert_allclose(v, e, atol=1e-6, msg=v.path)
    after = losses().numpy()
    delta = np.log(before.numpy()) - np.log(after)
    assert np.all(delta > 0)
    z = np.array([0.5, 0.5])
    logits = -0.5 * z * (delta - np.dot(z, delta))
    testing.assert_allclose(weighting.logits, logits, atol=1e-6)
    assert logs["weighted_loss"] == pytest.approx(float(c), rel=1e-6)
    testing.assert_allclose(
        [logs["a_weight"], logs["b_weight"]],
        c.numpy() * 0.5 / before.numpy(),
        atol=1e-6,
    )


def test_a_task_without_labels_sits_out_the_step():
    famo = _famo(optimizer="sgd", learning_rate=0.1, gamma=0.0)
    famo.set_tasks(["a", "b"])
    # The model says which tasks have labels in the batch.
    _, weights = famo(ops.array([0.0, 2.0]), present=ops.array([False, True]))
    testing.assert_allclose(weights, [0.0, 1.0])  # c = L_b / z_b: w_b = 1
    famo.update_logits(ops.array([0.0, 2.0]), ops.array([0.0, 1.0]))
    # The softmax is that of the present tasks: z = (0, 1), and
    # J^T delta = z * (delta - z . delta) = 0. The absent task's logit does
    # not move either (before the redesign it took -0.1 * 0.25 * -0.52).
    testing.assert_allclose(famo.logits, [0.0, LOG3], atol=1e-6)
