"""GLS, STCH, IMTL-L, IMTL, FairGrad, GradVac and Smoothed (CR-MOGM): the
check cases of shared/PEER_METHODS.md recomputed, phases, state, absent
tasks."""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_mtl
from keras_mtl import testing
from keras_mtl import weighting as wt
from keras_mtl.weighting import solvers

J2 = np.array([[1.0, 0.0], [-1.0, 1.0]])
J3 = np.array([[1.0, 0.0, 0.0], [-0.5, 1.0, 0.0], [0.2, -0.6, 1.0]])


def _bound(method, size):
    if method.task_names is None:
        method.set_tasks([f"t{i}" for i in range(size)])
    return method


_GRAPHS = {}


def _gradient_weights(
    method, gradients, step=0, present=None, losses=None, jit=False
):
    """One step of `method` (`gradient_weights`: the absent-task rule, the
    state assigned), in a `tf.function`; `combine` XLA-compiled with `jit`
    only (a compile costs about 2 s)."""
    gradients = np.asarray(gradients, "float32")
    size = len(gradients)
    _bound(method, size)
    if id(method) not in _GRAPHS:
        method.jit_combine = jit
        _GRAPHS[id(method)] = (method, tf.function(method.gradient_weights))
    present = np.ones(size, bool) if present is None else np.asarray(present)
    gram = np.where(present[:, None], gradients, 0.0)
    losses = np.ones(size) if losses is None else np.asarray(losses)
    return _GRAPHS[id(method)][1](
        tf.constant(gram @ gram.T, "float32"),
        tf.constant(losses, "float32"),
        tf.constant(step, "int64"),
        tf.constant(present),
    ).numpy()


def _loss_weights(method, losses, present=None, training=True):
    losses = np.asarray(losses, "float32")
    _bound(method, len(losses))
    present = np.ones(len(losses), bool) if present is None else present
    return method.weights_for(
        tf.constant(losses), tf.constant(present), training=training
    ).numpy()


# --- GLS ---------------------------------------------------------------------


def test_gls_check_case_and_total():
    losses = np.array([2.0, 0.5, 4.0])
    mean = np.prod(losses) ** (1 / 3)
    testing.assert_allclose(mean, 1.5874, atol=1e-4)
    expected = mean / (3 * losses)
    testing.assert_allclose(expected, [0.2646, 1.0583, 0.1323], atol=1e-4)
    weights = testing.run_weighting_test(wt.GLS(), losses, mean)
    testing.assert_allclose(weights, expected, rtol=1e-5)
    # LibMTL logs L / (T prod L), which are not these weights.
    assert not np.allclose(losses / (3 * np.prod(losses)), expected)


def test_gls_counts_present_tasks_only_and_guards_zero_losses():
    present = np.array([True, False, True])
    weights = _loss_weights(wt.GLS(), [2.0, 9.0, 4.0], present)
    mean = np.sqrt(2.0 * 4.0)
    testing.assert_allclose(weights, [mean / 4, 0.0, mean / 8], rtol=1e-5)
    weights = _loss_weights(wt.GLS(epsilon=1e-6), [0.0, 1.0])
    testing.assert_allclose(weights, [0.5e3, 0.5e-3], rtol=1e-4)


# --- STCH --------------------------------------------------------------------


def _stch_after_warmup(nadir, **kwargs):
    method = _bound(wt.STCH(**kwargs), len(nadir))
    method.nadir.assign(np.asarray(nadir, "float32"))
    method.epochs_seen.assign(method.warmup_epochs + 1)
    return method


def _stch_reference(losses, nadir, mu):
    relative = np.log(np.asarray(losses) / np.asarray(nadir)) / mu
    shares = np.exp(relative - relative.max())
    shares /= shares.sum()
    return len(losses) * shares / np.asarray(losses)


@pytest.mark.parametrize("mu", [1.0, 0.3])
def test_stch_check_case(mu):
    method = _stch_after_warmup([4.0, 0.4], mu=mu)
    weights = _loss_weights(method, [2.0, 0.5])
    expected = _stch_reference([2.0, 0.5], [4.0, 0.4], mu)
    testing.assert_allclose(weights, expected, rtol=1e-5)
    if mu == 1.0:
        testing.assert_allclose(weights, [0.2857, 2.857], atol=1e-3)
    # sum_i w_i L_i = T in the smooth phase, and 1 / L before it.
    testing.assert_allclose(np.sum(weights * [2.0, 0.5]), 2.0, rtol=1e-5)
    warm = _bound(wt.STCH(mu=mu), 2)
    testing.assert_allclose(_loss_weights(warm, [2.0, 0.5]), [0.5, 2.0])


def test_stch_softmax_over_present_tasks_only():
    method = _stch_after_warmup([4.0, 1.0, 0.4])
    present = np.array([True, False, True])
    weights = _loss_weights(method, [2.0, 7.0, 0.5], present)
    expected = _stch_reference([2.0, 0.5], [4.0, 0.4], 1.0)
    testing.assert_allclose(weights, [expected[0], 0.0, expected[1]], 1e-5)


def test_stch_nadir_of_present_tasks_per_epoch():
    method = _bound(wt.STCH(warmup_epochs=0), 3)
    both = np.array([True, False, True])
    # Epoch 0 measures the nadir; task 1 has no label in it.
    _loss_weights(method, [2.0, 5.0, 1.0], both)
    _loss_weights(method, [4.0, 5.0, 3.0], both)
    _loss_weights(method, [9.0, 9.0, 9.0], both, training=False)
    method.on_epoch_end()
    testing.assert_allclose(method.nadir, [3.0, 0.0, 2.0])
    # Epoch 1: task 1 keeps 1 / L and measures its nadir now; the others
    # are in the smooth phase, with T = 2.
    weights = _loss_weights(method, [1.5, 0.5, 4.0])
    expected = _stch_reference([1.5, 4.0], [3.0, 2.0], 1.0)
    testing.assert_allclose(weights, [expected[0], 2.0, expected[1]], 1e-5)
    method.on_epoch_end()
    testing.assert_allclose(method.nadir, [3.0, 0.5, 2.0])
    testing.assert_allclose(method.nadir_steps, [0.0, 0.0, 0.0])
    assert int(method.epochs_seen.numpy()) == 2


def test_stch_phases_in_a_fit_and_saved_state(tmp_path):
    x, y = testing.tiny_data(n=32)
    model = testing.tiny_model(weighting=wt.STCH(warmup_epochs=1))
    # Loss-level steps are cheaper run eagerly than traced.
    model.compile(optimizer=keras.optimizers.Adam(0.01), run_eagerly=True)

    def fit(model, epochs):
        history = model.fit(
            x, y, batch_size=32, epochs=epochs, shuffle=False, verbose=0
        ).history
        names = model.task_names
        losses = np.array([history[f"{n}_loss"] for n in names]).T
        weights = np.array([history[f"{n}_weight"] for n in names]).T
        return losses, weights

    # One step per epoch: the logged loss and weight are the step's.
    losses, weights = fit(model, 3)
    testing.assert_allclose(weights[0], 1.0 / losses[0], rtol=1e-5)
    testing.assert_allclose(weights[1], 1.0 / losses[1], rtol=1e-5)
    testing.assert_allclose(model.weighting.nadir, losses[1], rtol=1e-5)
    expected = _stch_reference(losses[2], losses[1], 1.0)
    testing.assert_allclose(weights[2], expected, rtol=1e-4)
    assert not np.allclose(weights[2], 1.0 / losses[2], rtol=1e-2)
    assert int(model.weighting.epochs_seen.numpy()) == 3

    loaded = testing.run_model_saving_test(model, x, tmp_path / "stch.keras")
    testing.assert_allclose(loaded.weighting.nadir, losses[1])
    after, resumed = fit(loaded, 1)
    straight_losses, straight = fit(model, 1)
    testing.assert_allclose(resumed, straight, rtol=1e-5)
    expected = _stch_reference(straight_losses[0], losses[1], 1.0)
    testing.assert_allclose(straight[0], expected, rtol=1e-4)


# --- IMTL-L and IMTL ---------------------------------------------------------


def test_imtl_l_total_and_gradient_of_the_scales():
    method = wt.IMTLL(initial_log_scale=0.3)
    losses = np.array([2.0, 0.5, 1.0])
    total = np.sum(np.exp(0.3) * losses - 0.3)
    testing.run_weighting_test(method, losses, total)
    present = tf.constant([True, True, False])
    with tf.GradientTape() as tape:
        total, weights = method(tf.constant(losses, "float32"), present)
    gradient = tape.gradient(total, method.log_scales).numpy()
    # d/ds_i (e^s_i L_i - s_i) = e^s_i L_i - 1; absent: 0.
    expected = np.where([1, 1, 0], np.exp(0.3) * losses - 1.0, 0.0)
    testing.assert_allclose(gradient, expected, rtol=1e-5)
    testing.assert_allclose(weights, np.exp(0.3) * np.array([1, 1, 0]))


def _imtl_g_reference(gradients):
    """IMTL-G of the paper on explicit gradients, float64."""
    units = gradients / np.linalg.norm(gradients, axis=1, keepdims=True)
    differences = gradients[0] - gradients[1:]
    unit_differences = units[0] - units[1:]
    rest = (
        gradients[0]
        @ unit_differences.T
        @ np.linalg.inv(differences @ unit_differences.T)
    )
    return np.concatenate([[1.0 - rest.sum()], rest])


def test_imtl_weights_are_imtl_g_of_the_scaled_gradients():
    method = _bound(wt.IMTL(), 3)
    log_scales = np.array([0.2, -0.1, 0.3])
    method.log_scales.assign(log_scales.astype("float32"))
    weights = _gradient_weights(method, J3)
    scales = np.exp(log_scales)
    alpha = _imtl_g_reference(J3 * scales[:, None])
    testing.assert_allclose(weights, alpha * scales, rtol=1e-4)
    testing.assert_allclose(np.sum(weights / scales), 1.0, rtol=1e-5)
    # d has equal projections on every unit task gradient.
    direction = weights @ J3
    projections = J3 @ direction / np.linalg.norm(J3, axis=1)
    testing.assert_allclose(projections, projections[0], rtol=1e-4)
    # With s = 0 it is IMTL-G.
    testing.assert_allclose(
        _gradient_weights(wt.IMTL(), J3),
        _gradient_weights(wt.IMTLG(), J3),
        rtol=1e-6,
    )


def test_imtl_trains_its_scales_with_the_model():
    x, y = testing.tiny_data(n=32)
    model = testing.tiny_model(weighting="imtl")
    model.compile(optimizer=keras.optimizers.SGD(0.1))
    history = model.fit(
        x, y, batch_size=32, epochs=2, shuffle=False, verbose=0
    ).history
    names = model.task_names
    losses = np.array([history[f"{n}_loss"] for n in names]).T
    weights = np.array([history[f"{n}_weight"] for n in names]).T
    # SGD on sum_i e^s_i L_i - s_i, one full-batch step per epoch.
    first = -0.1 * (losses[0] - 1.0)
    second = first - 0.1 * (np.exp(first) * losses[1] - 1.0)
    testing.assert_allclose(model.weighting.log_scales, second, rtol=1e-4)
    # The IMTL-G part sums to 1 on the scaled gradients.
    testing.assert_allclose(weights[0].sum(), 1.0, rtol=1e-5)
    testing.assert_allclose((weights[1] / np.exp(first)).sum(), 1.0, 1e-5)


# --- FairGrad ----------------------------------------------------------------


def _fair_grad_reference(gram, alpha):
    """`least_squares` on `G w - w^(-1/alpha)`, as LibMTL and TorchJD."""
    optimize = pytest.importorskip("scipy.optimize")
    size = len(gram)
    result = optimize.least_squares(
        lambda w: gram @ w - w ** (-1.0 / alpha),
        np.ones(size) / size,
        bounds=(0, np.inf),
        xtol=1e-14,
        ftol=1e-14,
        gtol=1e-14,
    )
    return result.x


NOTES_FAIR_GRAD = {
    ("J2", 0.5): [1.5647, 1.1563],
    ("J2", 1.0): [1.8478, 1.3066],
    ("J2", 2.0): [2.1741, 1.4958],
    ("J3", 1.0): [1.3461, 1.7010, 1.2361],
}


@pytest.mark.parametrize("alpha", [0.5, 1.0, 2.0])
@pytest.mark.parametrize("case", ["J2", "J3"])
def test_fair_grad_check_cases(case, alpha):
    jacobian = {"J2": J2, "J3": J3}[case]
    gram = jacobian @ jacobian.T
    jit = case == "J3" and alpha == 2.0
    weights = _gradient_weights(wt.FairGrad(alpha=alpha), jacobian, jit=jit)
    # The ridge (1e-6 of ||G||_F) moves the weights by about 1e-6.
    residual = gram @ weights - weights ** (-1.0 / alpha)
    assert np.abs(residual).max() < 1e-4, residual
    testing.assert_allclose(
        weights, _fair_grad_reference(gram, alpha), rtol=1e-4
    )
    if (case, alpha) in NOTES_FAIR_GRAD:
        testing.assert_allclose(
            weights, NOTES_FAIR_GRAD[(case, alpha)], atol=1e-4
        )
    if case == "J2" and alpha == 1.0:
        testing.assert_allclose(weights @ J2, [0.5412, 1.3066], atol=1e-4)
        # alpha = 1: ||d||^2 = w^T G w = T.
        testing.assert_allclose(weights @ gram @ weights, 2.0, rtol=1e-4)


@pytest.mark.parametrize("alpha", [0.5, 1.0, 2.0])
def test_fair_grad_zero_gradient_and_scale(alpha):
    # G = [[0, 0], [0, 1]] made TorchJD's Nash-MTL fail.
    zero = np.array([[0.0, 0.0], [0.0, 1.0]])
    weights = _gradient_weights(wt.FairGrad(alpha=alpha), zero)
    assert np.all(np.isfinite(weights)) and np.all(weights > 0), weights
    # The update is g_2 alone, with 1 * w_2 = w_2^(-1/alpha): w_2 = 1.
    testing.assert_allclose(weights[1], 1.0, rtol=1e-5)
    testing.assert_allclose(weights[0], 1e-6 ** (-alpha / (alpha + 1)), 1e-3)
    # Gradients c times larger: weights c^(-2 alpha / (alpha + 1)) times.
    rng = np.random.default_rng(3)
    jacobian = rng.normal(size=(4, 7))
    method = wt.FairGrad(alpha=alpha)
    base = _gradient_weights(method, jacobian)
    for c in (1e-10, 1e8):
        scaled = _gradient_weights(method, c * jacobian)
        factor = c ** (-2 * alpha / (alpha + 1))
        testing.assert_allclose(scaled, base * factor, rtol=1e-4)


def test_fair_grad_alpha_one_is_nash_mtl_unnormalised():
    rng = np.random.default_rng(5)
    jacobian = rng.normal(size=(5, 9))
    fair = _gradient_weights(wt.FairGrad(alpha=1.0, ridge=0.0), jacobian)
    nash = wt.NashMTL(normalize=False, ridge=0.0)
    testing.assert_allclose(fair, _gradient_weights(nash, jacobian), 1e-5)


@pytest.mark.parametrize("power", [0.1, 0.5, 2.0, 10.0])
def test_power_equation_solver(power):
    rng = np.random.default_rng(11)
    for size in (2, 5, 9):
        jacobian = rng.normal(size=(size, size + 3))
        jacobian *= rng.uniform(0.1, 3.0, (size, 1))
        gram = jacobian @ jacobian.T
        gram /= np.linalg.norm(gram)
        solution = tf.function(solvers.solve_power_equation)(
            tf.constant(gram, "float32"), power=power
        ).numpy()
        residual = gram @ solution - solution ** (-power)
        assert (
            np.abs(residual).max() < 1e-4 * np.abs(solution ** (-power)).max()
        ), (size, residual)


# --- GradVac -----------------------------------------------------------------


def _grad_vac_reference(gradients, targets, orders, beta, present=None):
    """LibMTL's loop on explicit gradients (float64): coefficients of the
    update and the new targets."""
    size = len(gradients)
    present = np.ones(size, bool) if present is None else present
    targets = np.array(targets, "float64")
    coefficients = np.eye(size)
    for i in np.flatnonzero(present):
        for j in orders[i]:
            if j == i or not present[j]:
                continue
            own = coefficients[i] @ gradients
            own_norm = np.linalg.norm(own)
            other_norm = np.linalg.norm(gradients[j])
            rho = own @ gradients[j] / (own_norm * other_norm + 1e-8)
            phi = targets[i, j]
            if rho < phi:
                coefficients[i, j] += (
                    own_norm
                    * (phi * np.sqrt(1 - rho**2) - rho * np.sqrt(1 - phi**2))
                    / (other_norm * np.sqrt(1 - phi**2) + 1e-8)
                )
            targets[i, j] = (1 - beta) * phi + beta * rho
    return coefficients.sum(0) * present, targets


def test_grad_vac_check_case():
    method = wt.GradVac(beta=0.5)
    # Step 1 (phi = 0): PCGrad's projection.
    weights = _gradient_weights(method, J2)
    testing.assert_allclose(weights, [2.0, 1.5], rtol=1e-6)
    testing.assert_allclose(weights, _gradient_weights(wt.PCGrad(), J2))
    testing.assert_allclose(weights @ J2, [0.5, 1.5], rtol=1e-6)
    rho = -1.0 / np.sqrt(2.0)
    targets = method.cosine_targets.numpy()
    testing.assert_allclose(targets, [[0, rho / 2], [rho / 2, 0]], 1e-6)
    testing.assert_allclose(targets[0, 1], -0.3536, atol=1e-4)
    # Step 2: rho = -0.336 is above the target: no correction.
    second = np.array([[1.0, 0.2], [-0.6, 1.0]])
    weights = _gradient_weights(method, second, step=1)
    testing.assert_allclose(weights, [1.0, 1.0], rtol=1e-6)
    rho2 = -0.4 / (np.linalg.norm(second[0]) * np.linalg.norm(second[1]))
    testing.assert_allclose(rho2, -0.336, atol=1e-3)
    expected = 0.5 * rho / 2 + 0.5 * rho2
    testing.assert_allclose(method.cosine_targets[0, 1], expected, 1e-5)
    testing.assert_allclose(expected, -0.3449, atol=1e-4)


def test_grad_vac_random_orders_over_steps_match_the_reference():
    rng = np.random.default_rng(2)
    method = wt.GradVac(beta=0.3, seed=4)
    _bound(method, 4)
    targets = np.zeros((4, 4))
    for step in range(4):
        gradients = rng.normal(size=(4, 6))
        gradients[1] = -gradients[3] + 0.2 * gradients[0]
        orders = method.task_orders(step).numpy()
        expected, targets = _grad_vac_reference(gradients, targets, orders, 0.3)
        weights = _gradient_weights(method, gradients, step=step, jit=True)
        testing.assert_allclose(weights, expected, rtol=1e-4, atol=1e-5)
        testing.assert_allclose(method.cosine_targets, targets, atol=1e-5)
    assert np.abs(targets[~np.eye(4, dtype=bool)]).min() > 0.0
    assert not np.array_equal(method.task_orders(0), method.task_orders(1))
    # The graph `combine` gives what the XLA-compiled one gave.
    gram = tf.constant(gradients @ gradients.T, "float32")
    before = method.cosine_targets.numpy()
    graph, _ = tf.function(method.combine)(gram, tf.ones(4), step)
    method.cosine_targets.assign(before)
    compiled = _gradient_weights(method, gradients, step=step, jit=True)
    testing.assert_allclose(graph, compiled, rtol=1e-5, atol=1e-6)


def test_grad_vac_absent_tasks_are_not_visited():
    rng = np.random.default_rng(8)
    gradients = rng.normal(size=(4, 5))
    present = np.array([True, False, True, True])
    method = _bound(wt.GradVac(), 4)
    start = rng.uniform(-0.5, 0.5, (4, 4)).astype("float32")
    method.cosine_targets.assign(start)
    weights = _gradient_weights(method, gradients, present=present)
    orders = np.tile(np.arange(4), (4, 1))
    expected, targets = _grad_vac_reference(
        gradients, start, orders, 0.5, present
    )
    testing.assert_allclose(weights, expected, rtol=1e-4, atol=1e-6)
    assert weights[1] == 0.0
    after = method.cosine_targets.numpy()
    testing.assert_allclose(after[1], start[1], atol=0)
    testing.assert_allclose(after[:, 1], start[:, 1], atol=0)
    testing.assert_allclose(after, targets, atol=1e-5)
    # One present task: weight 1, nothing moves.
    alone = np.array([False, False, True, False])
    weights = _gradient_weights(method, gradients, present=alone)
    testing.assert_allclose(weights, alone.astype("float32"), atol=0)
    testing.assert_allclose(method.cosine_targets, after, atol=0)


# --- Smoothed (CR-MOGM) ------------------------------------------------------


class StepWeights(wt.GradientWeighting):
    """Returns `table[step]` (a stand-in inner method)."""

    def __init__(self, table, **kwargs):
        super().__init__(**kwargs)
        self.table = table

    def combine(self, gram, task_losses, step=0, present=None):
        weights = tf.gather(tf.constant(self.table, "float32"), step)
        return tf.where(self.all_present(present), weights, 0.0)


def test_smoothed_check_case_and_absent_tasks():
    # The notes' two tasks (UPGrad's weights on two steps), and a third.
    table = [[1.0, 0.75, 0.5], [0.6923, 0.647, 0.2], [0.5, 0.1, 0.3]]
    method = wt.Smoothed(StepWeights(table), alpha=0.9)
    first = _gradient_weights(method, J3, step=0)
    testing.assert_allclose(first, table[0], rtol=1e-6)
    second = _gradient_weights(method, J3, step=1)
    expected = 0.9 * np.array(table[0]) + 0.1 * np.array(table[1])
    testing.assert_allclose(second, expected, rtol=1e-6)
    # The notes give (0.9691, 0.7397); 0.9 + 0.1 * 0.6923 is 0.96923.
    testing.assert_allclose(second[:2], [0.9691, 0.7397], atol=2e-4)
    # Task 1 absent: weight 0, its smoothed weight kept.
    present = [True, False, True]
    third = _gradient_weights(method, J3, step=2, present=present)
    expected = 0.9 * second + 0.1 * np.array(table[2])
    testing.assert_allclose(third, [expected[0], 0.0, expected[2]], 1e-6)
    kept = method.smoothed_weights.numpy()
    testing.assert_allclose(kept, [third[0], second[1], third[2]], 1e-6)


def test_smoothed_starts_a_task_at_its_first_inner_weight():
    method = wt.Smoothed("mgda", alpha=0.5)
    _bound(method, 3)
    rng = np.random.default_rng(1)
    gradients = rng.normal(size=(3, 4))
    present = np.array([True, True, False])
    first = _gradient_weights(method, gradients, present=present)
    testing.assert_allclose(
        first, _gradient_weights(wt.MGDA(), gradients, present=present), 1e-5
    )
    second = _gradient_weights(method, gradients)
    mgda = _gradient_weights(wt.MGDA(), gradients)
    testing.assert_allclose(
        second, [*(0.5 * first[:2] + 0.5 * mgda[:2]), mgda[2]], rtol=1e-5
    )


def test_smoothed_config_state_and_arguments(tmp_path):
    method = wt.Smoothed(wt.PCGrad(seed=3), alpha=0.8, mode="rep")
    revived = testing.run_serialization_test(method)
    assert type(revived.inner) is wt.PCGrad and revived.inner.seed == 3
    assert (revived.alpha, revived.mode) == (0.8, "rep")
    assert wt.Smoothed().inner.mode == "param"
    with pytest.raises(ValueError, match="alpha"):
        wt.Smoothed(alpha=1.0)
    with pytest.raises(TypeError, match="inner"):
        wt.Smoothed("equal")
    used = wt.MGDA()
    testing.tiny_model(weighting=used)
    with pytest.raises(ValueError, match="already belongs"):
        testing.tiny_model(weighting=wt.Smoothed(used))

    # A stateful inner method: both states move, are saved and restored.
    x, y = testing.tiny_data(n=32)
    model = testing.tiny_model(weighting=wt.Smoothed(wt.GradVac(seed=2)))
    model.fit(x, y, batch_size=16, epochs=1, shuffle=False, verbose=0)
    smoothed = model.weighting
    assert np.abs(smoothed.inner.cosine_targets.numpy()).max() > 1e-3
    assert smoothed.smoothed_tasks.numpy().tolist() == [1.0] * 3
    testing.assert_allclose(smoothed.smoothed_weights, smoothed.task_weights)
    loaded = testing.run_model_saving_test(model, x, tmp_path / "m.keras")
    assert type(loaded.weighting.inner) is wt.GradVac
    testing.assert_allclose(
        loaded.weighting.inner.cosine_targets, smoothed.inner.cosine_targets
    )


# --- every method ------------------------------------------------------------

CONFIGS = {
    "gls": (wt.GLS, {"epsilon": 1e-6}),
    "stch": (wt.STCH, {"mu": 0.5, "warmup_epochs": 2, "epsilon": 1e-7}),
    "imtl_l": (wt.IMTLL, {"initial_log_scale": -0.5}),
    "imtl": (wt.IMTL, {"initial_log_scale": 0.5, "mode": "rep"}),
    "fair_grad": (wt.FairGrad, {"alpha": 2.0, "max_iterations": 30}),
    "grad_vac": (wt.GradVac, {"beta": 0.1, "seed": 7, "epsilon": 0.0}),
    "smoothed": (wt.Smoothed, {"alpha": 0.7}),
}


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_registry_and_config_round_trip(name):
    cls, kwargs = CONFIGS[name]
    assert type(wt.get(name)) is cls
    revived = testing.run_serialization_test(cls(**kwargs))
    for key, value in kwargs.items():
        assert revived.get_config()[key] == value, key
    for key in cls.search_space:
        assert key in revived.get_config(), key


@pytest.mark.parametrize("alias", ["fairgrad", "gradvac", "cr_mogm"])
def test_aliases(alias):
    expected = {"fairgrad": wt.FairGrad, "gradvac": wt.GradVac}
    assert type(wt.get(alias)) is expected.get(alias, wt.Smoothed)


@pytest.mark.parametrize(
    "make, error, match",
    [
        (lambda: wt.GLS(epsilon=0.0), ValueError, "epsilon"),
        (lambda: wt.STCH(mu=0), ValueError, "mu"),
        (lambda: wt.STCH(warmup_epochs=-1), ValueError, "warmup_epochs"),
        (lambda: wt.STCH(warmup_epochs=1.5), ValueError, "warmup_epochs"),
        (lambda: wt.IMTLL("big"), TypeError, "initial_log_scale"),
        (lambda: wt.IMTL(float("nan")), ValueError, "initial_log_scale"),
        (lambda: wt.FairGrad(alpha=0.0), ValueError, "alpha"),
        (lambda: wt.FairGrad(max_iterations=0), ValueError, "max_iter"),
        (lambda: wt.FairGrad(ridge=-1.0), ValueError, "ridge"),
        (lambda: wt.GradVac(beta=0.0), ValueError, "beta"),
        (lambda: wt.GradVac(seed="a"), TypeError, "seed"),
        (lambda: wt.GradVac(epsilon=-1.0), ValueError, "epsilon"),
        (lambda: wt.Smoothed(alpha=-0.1), ValueError, "alpha"),
    ],
)
def test_bad_arguments_raise_clear_errors(make, error, match):
    with pytest.raises(error, match=match):
        make()


DISTRIBUTED = """
import json
import keras
import numpy as np
import keras_mtl
from keras_mtl import testing
from keras_mtl import weighting as wt

x, y = testing.tiny_data(n=48)
y["multi"][::5] = -1
y["reg"] = y["reg"].astype("float32")
y["reg"][21] = np.inf  # the second step is skipped on every replica

def train(name, strategy, initial=None):
    keras.utils.set_random_seed(5)
    with strategy.scope():
        model = testing.tiny_model(weighting=eval(MAKERS[name]))
    if initial is not None:
        model.set_weights(initial)
    start = model.get_weights()
    history = model.fit(x, y, epochs=1, batch_size=16, shuffle=False, verbose=0)
    own = [v.numpy() for v in model.weighting.variables]
    return start, model.get_weights() + own, history.history, own

mirrored = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
single = tf.distribute.OneDeviceStrategy("/cpu:0")
result = {}
for name in MAKERS:
    start, one, one_logs, own = train(name, single)
    _, two, two_logs, _ = train(name, mirrored, initial=start)
    result[name] = {
        "state": max(float(np.max(np.abs(a - b))) for a, b in zip(one, two)),
        "scale": max(float(np.max(np.abs(a))) for a in one),
        "skipped": [one_logs["skipped_steps"], two_logs["skipped_steps"]],
        "own": [np.asarray(v).tolist() for v in own],
    }
print("RESULT" + json.dumps(result))
"""


def _check_distributed(makers):
    code = f"MAKERS = {makers!r}\n" + DISTRIBUTED
    output = testing.run_with_devices(code)
    result = json.loads(output.split("RESULT", 1)[1])
    for name, numbers in result.items():
        assert numbers["state"] < 1e-5 * numbers["scale"], (name, numbers)
        assert numbers["skipped"] == [[1.0]] * 2, (name, numbers)
    return result


@pytest.mark.slow  # about 15 s on an idle 2-core machine
def test_stateful_combine_two_replicas_match_one_device():
    # State assigned after the compiled combine, under MirroredStrategy.
    result = _check_distributed(
        {"smoothed": "wt.Smoothed(wt.GradVac(seed=1, beta=0.3), alpha=0.5)"}
    )
    (targets,) = [
        np.array(v) for v in result["smoothed"]["own"] if np.ndim(v) == 2
    ]
    assert targets.shape == (3, 3) and np.abs(targets).max() > 1e-3


@pytest.mark.slow
def test_two_replicas_match_one_device_every_method():
    _check_distributed(
        {
            "gls": "wt.GLS()",
            "stch": "wt.STCH(warmup_epochs=0)",
            "imtl_l": "wt.IMTLL()",
            "imtl": "wt.IMTL()",
            "imtl_rep": "wt.IMTL(mode='rep')",
            "fair_grad": "wt.FairGrad(alpha=2.0)",
            "grad_vac": "wt.GradVac()",
        }
    )


def test_registered_names():
    names = keras_mtl.weighting.registry.names()
    for name in CONFIGS:
        assert name in names
