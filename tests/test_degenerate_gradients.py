"""CAGrad and Nash-MTL on degenerate task gradients.

A task whose gradient is zero (CAGrad: the logged weights must stay those
of the combination, not `c ||g_0|| / 1e-8` on a zero vector) and Gram
matrices of scale 1e30 and 1e-30 (Nash-MTL: the Frobenius norm must not
square the entries). Expected numbers are worked out in float64.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_mtl import testing
from keras_mtl.weighting import CAGrad
from keras_mtl.weighting import NashMTL

SCALES = [1e30, 1e-30]


def _combine(method, gram, jit=False):
    gram = np.asarray(gram, "float32")
    size = len(gram)
    if method.task_names is None:
        method.set_tasks([f"t{i}" for i in range(size)])
    if jit:
        present = tf.ones((size,), "bool")
        step = tf.constant(0, "int64")
        return method.gradient_weights(
            tf.constant(gram), tf.ones((size,)), step, present
        ).numpy()
    combine = tf.function(method.combine)
    return combine(tf.constant(gram), tf.ones((size,))).numpy()


def _agreeing_gradients(size, zero, seed=0):
    """Positive entries, so every `g_i . g_j >= 0`; gradient `zero` is 0."""
    rng = np.random.default_rng(seed)
    gradients = rng.uniform(0.2, 2.0, size=(size, 6))
    gradients[zero] = 0.0
    return gradients


@pytest.mark.parametrize("jit", [False, True], ids=["graph", "xla"])
@pytest.mark.parametrize("c, rescale", [(0.4, 1), (0.5, 2), (0.4, 0)])
@pytest.mark.parametrize("size, zero", [(2, 1), (3, 2), (4, 0)])
def test_cagrad_zero_gradient_gets_the_mean_weight(size, zero, c, rescale, jit):
    # No g_w has g_w . g_0 < 0, so the inner minimum is 0, at the zero
    # task's vertex: g_w = 0, no move, d = g_0 (rescaled) and every task,
    # the zero one too, gets 1 / T (rescaled). Before: 1.5e7 to 3.7e7.
    gradients = _agreeing_gradients(size, zero)
    divisor = {0: 1.0, 1: 1.0 + c**2, 2: 1.0 + c}[rescale]
    weights = _combine(
        CAGrad(c=c, rescale=rescale), gradients @ gradients.T, jit
    )
    testing.assert_allclose(weights, [1 / (size * divisor)] * size, atol=1e-7)
    testing.assert_allclose(
        weights @ gradients, gradients.mean(0) / divisor, rtol=1e-6
    )


def test_cagrad_zero_gradient_beside_conflicting_tasks():
    # g_1 . g_2 < 0 enough that the inner minimum is negative: it puts no
    # weight on the zero task (scaling g_w up lowers a negative value), so
    # d is the move of the two conflicting tasks and the zero task keeps
    # the mean's 1 / (3 (1 + c^2)).
    c = 0.4
    gradients = np.array([[1.0, 0.0, 0.3], [-2.0, 0.1, 0.0], [0.0, 0.0, 0.0]])
    gram = gradients @ gradients.T
    mean = np.full(3, 1 / 3)
    radius = c * np.sqrt(mean @ gram @ mean)
    grid = np.linspace(0.0, 1.0, 200001)
    pairs = np.stack([grid, 1 - grid, 0 * grid], axis=1)
    norms = np.sqrt(np.einsum("ni,ij,nj->n", pairs, gram, pairs))
    values = pairs @ gram @ mean + radius * norms
    best = pairs[np.argmin(values)]
    assert values.min() < -0.01
    expected = (mean + radius / np.sqrt(best @ gram @ best) * best) / (1 + c**2)
    weights = _combine(CAGrad(c=c), gram)
    testing.assert_allclose(weights[2], 1 / (3 * (1 + c**2)), atol=1e-7)
    testing.assert_allclose(weights, expected, atol=2e-5)
    # (1 + c^2) d - g_0 has norm c ||g_0||: the whole ball is used.
    move = ((1 + c**2) * weights - mean) @ gradients
    testing.assert_allclose(np.linalg.norm(move), radius, rtol=1e-5)


def test_cagrad_nonzero_gradients_keep_the_authors_move():
    # Away from g_w = 0 the weights are g_0 + c ||g_0|| g_w / ||g_w||,
    # from the inner weights, to float32 rounding.
    rng = np.random.default_rng(3)
    for size in (2, 3, 6):
        gradients = rng.normal(size=(size, 7))
        gradients[1] = -0.7 * gradients[0] + 0.3 * gradients[1]
        gram = (gradients @ gradients.T).astype("float32")
        method = CAGrad(c=0.4)
        method.set_tasks([f"t{i}" for i in range(size)])
        inner = tf.function(method.conflict_averse_weights)(gram).numpy()
        inner = inner.astype("float64")
        gram64 = gram.astype("float64")
        mean = np.full(size, 1 / size)
        factor = (
            0.4
            * np.sqrt(mean @ gram64 @ mean)
            / np.sqrt(inner @ gram64 @ inner)
        )
        expected = (mean + factor * inner) / (1 + 0.4**2)
        testing.assert_allclose(_combine(method, gram), expected, rtol=1e-6)


@pytest.mark.parametrize("scale", SCALES)
@pytest.mark.parametrize("size", [2, 3, 6])
def test_cagrad_weights_do_not_depend_on_the_gradient_scale(size, scale):
    # d = sum_i w_i g_i scales with the gradients, so w does not. Before,
    # at 1e-30 an absolute 1e-8 in ||g_w|| + 1e-8 (and in the Gram
    # normalisation) hid the move: the weights were the mean's.
    rng = np.random.default_rng(size)
    gradients = rng.normal(size=(size, 7))
    gradients[1] = -0.7 * gradients[0] + 0.3 * gradients[1]
    gram = gradients @ gradients.T
    expected = _combine(CAGrad(), gram)
    assert np.ptp(expected) > 0.05
    for jit in (False, True):
        weights = _combine(CAGrad(), gram * scale, jit)
        testing.assert_allclose(weights, expected, rtol=1e-5, atol=0)


def test_cagrad_logs_the_mean_weight_for_a_task_without_gradient():
    # A zero head kernel: the "reg" loss does not reach the shared trunk.
    keras.utils.set_random_seed(2)
    keras.backend.clear_session()
    model = testing.tiny_model(weighting=CAGrad(c=0.4))
    kernel = next(
        v for v in model.trainable_variables if v.path == "reg/kernel"
    )
    kernel.assign(tf.zeros_like(kernel))
    x, y = testing.tiny_data(n=32)
    history = model.fit(x, y, batch_size=32, verbose=0).history
    expected = 1 / (3 * (1 + 0.4**2))
    assert history["reg_weight"][0] == pytest.approx(expected, rel=1e-6)
    for name in ("binary", "multi"):
        assert 0.0 < history[f"{name}_weight"][0] < 10.0


def _nash_reference(gram, ridge):
    """`alpha > 0` with `(gram + ridge I) alpha = 1 / alpha`, in float64."""
    matrix = np.asarray(gram, "float64") + ridge * np.eye(len(gram))
    alpha = 1.0 / np.sqrt(np.diag(matrix))
    for _ in range(100):
        gradient = matrix @ alpha - 1.0 / alpha
        hessian = matrix + np.diag(1.0 / alpha**2)
        newton = np.linalg.solve(hessian, gradient)
        alpha = alpha - newton / (1.0 + np.sqrt(max(gradient @ newton, 0)))
    return alpha


def test_nash_mtl_two_orthogonal_tasks_closed_form():
    # Normalised, G = diag(a^2, b^2) / sqrt(a^4 + b^4) + ridge I and
    # alpha_i = 1 / sqrt(G_ii), at every scale of the gradients.
    a, b = 2.0, 0.5
    frobenius = np.sqrt(a**4 + b**4)
    expected = 1.0 / np.sqrt(np.array([a**2, b**2]) / frobenius + 1e-6)
    testing.assert_allclose(expected, [1.000975, 4.003868], rtol=1e-6)
    for scale in [1.0] + SCALES:
        gram = np.diag([a**2, b**2]) * scale
        for jit in (False, True):
            weights = _combine(NashMTL(), gram, jit)
            testing.assert_allclose(weights, expected, rtol=1e-5, atol=0)


@pytest.mark.parametrize("scale", SCALES)
@pytest.mark.parametrize("size", [2, 3, 8])
def test_nash_mtl_weights_do_not_depend_on_the_gram_scale(size, scale):
    # With `normalize=True` the weights solve the equation of G / ||G||_F:
    # the same at every scale (the update keeps the gradients' scale).
    # Before, ||G||_F overflowed (1e30) or underflowed (1e-30) in float32
    # and the weights were the ridge's 1 / sqrt(1e-6) = 1000 for each task.
    rng = np.random.default_rng(size)
    gradients = rng.normal(size=(size, 12)) * 3.0
    gram = gradients @ gradients.T
    normalised = gram / np.linalg.norm(gram)
    expected = _nash_reference(normalised, 1e-6)
    testing.assert_allclose(_combine(NashMTL(), gram), expected, rtol=2e-5)
    for jit in (False, True):
        weights = _combine(NashMTL(), gram * scale, jit)
        testing.assert_allclose(weights, expected, rtol=2e-5, atol=0)
        assert np.all(weights < 100.0)


@pytest.mark.parametrize("scale", SCALES)
@pytest.mark.parametrize("size", [2, 3, 8])
def test_nash_mtl_unnormalised_weights_scale_as_one_over_the_gradients(
    size, scale
):
    # `normalize=False` solves G alpha = 1 / alpha itself: gradients s
    # times larger (a Gram matrix s^2 times) give weights s times smaller.
    # Before: NaN at 1e30, and the solver stopped far off at 1e-30.
    rng = np.random.default_rng(size)
    gradients = rng.normal(size=(size, 12)) * 3.0
    gram = gradients @ gradients.T
    expected = _nash_reference(gram, 0.0)
    method = NashMTL(normalize=False, ridge=0.0)
    testing.assert_allclose(_combine(method, gram), expected, rtol=2e-5)
    for jit in (False, True):
        weights = _combine(method, gram * scale, jit)
        testing.assert_allclose(
            weights * np.sqrt(scale), expected, rtol=2e-5, atol=0
        )


def test_every_gradient_zero():
    # CAGrad: g_0 = g_w = 0, the mean's weights. Nash-MTL: the ridge alone,
    # alpha_i = 1 / sqrt(1e-6) = 1000 (normalised or not).
    zeros = np.zeros((3, 3))
    weights = _combine(CAGrad(c=0.4), zeros)
    testing.assert_allclose(weights, [1 / (3 * 1.16)] * 3, atol=1e-7)
    for normalize in (True, False):
        weights = _combine(NashMTL(normalize=normalize), zeros)
        testing.assert_allclose(weights, [1000.0] * 3, rtol=1e-5)
