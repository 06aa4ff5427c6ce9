"""UPGrad, DualProj, ConFIG and Krum: the peers' check cases, properties,
the in-graph box-QP solver against enumeration, XLA, bad arguments.

The check cases are those of shared/PEER_METHODS.md (TorchJD's docstrings
and numpy recomputations): J2 = (1, 0), (-1, 1); J3 = (1, 0, 0),
(-0.5, 1, 0), (0.2, -0.6, 1); Jd = (-4, 1, 1), (6, 1, 1).
"""

import itertools

import numpy as np
import pytest
import tensorflow as tf

import keras_mtl
from keras_mtl import testing
from keras_mtl.weighting import ConFIG
from keras_mtl.weighting import DualProj
from keras_mtl.weighting import Krum
from keras_mtl.weighting import UPGrad
from keras_mtl.weighting import solvers

J2 = [[1.0, 0.0], [-1.0, 1.0]]
J3 = [[1.0, 0.0, 0.0], [-0.5, 1.0, 0.0], [0.2, -0.6, 1.0]]
JD = [[-4.0, 1.0, 1.0], [6.0, 1.0, 1.0]]
# Blanchard et al.'s setting: four close gradients and one far away.
JK = [[1.0, 0.0], [1.1, 0.1], [0.9, -0.1], [1.0, 0.2], [-5.0, 5.0]]
NAMES = {"upgrad": UPGrad, "dual_proj": DualProj, "con_fig": ConFIG}


def _combine(method, gradients, present=None):
    """`method.combine` on the Gram matrix of `gradients`, run eagerly
    (cheap for a few tasks; `test_xla_matches_eager_and_config` compiles)."""
    gradients = np.asarray(gradients, "float32")
    size = len(gradients)
    if method.task_names is None:
        method.set_tasks([f"t{i}" for i in range(size)])
    if present is not None:
        gradients = np.where(np.asarray(present)[:, None], gradients, 0.0)
        present = tf.constant(present)
    gram = tf.constant(gradients @ gradients.T)
    return method.combine(gram, tf.ones((size,)), 0, present).numpy()


def _cosines(gradients, weights):
    gradients = np.asarray(gradients, "float64")
    direction = weights @ gradients
    norms = np.linalg.norm(gradients, axis=1) * np.linalg.norm(direction)
    return gradients @ direction / norms


def _enumerate_box_qp(gram, lower):
    """min v^T G v s.t. v >= u by trying every set of free coordinates."""
    size = len(lower)
    linear = gram @ lower
    best_value, best = np.inf, None
    for count in range(size + 1):
        for free in itertools.combinations(range(size), count):
            x = np.zeros(size)
            free = list(free)
            if free:
                x[free] = np.linalg.solve(
                    gram[np.ix_(free, free)], -linear[free]
                )
            if np.any(x < 0):
                continue
            v = lower + x
            if v @ gram @ v < best_value:
                best_value, best = v @ gram @ v, v
    return best


def _random_grams(rng, size):
    """A random, a near-parallel and an ill-conditioned regularised Gram."""
    width = int(rng.integers(1, 2 * size))
    random = rng.normal(size=(size, width))
    parallel = random[:1] + 1e-2 * rng.normal(size=(size, width))
    scaled = random * np.logspace(0, -3, size)[:, None]
    for gradients in (random, parallel, scaled):
        gram = gradients @ gradients.T
        yield gram / np.trace(gram) + 1e-4 * np.eye(size)


@pytest.mark.parametrize("size", [2, 3, 4, 6, 8])
def test_box_qp_matches_enumeration(size):
    rng = np.random.default_rng(size)
    solve = tf.function(solvers.box_qp)
    for gram in _random_grams(rng, size):
        # UPGrad's bounds (p_i e_i), DualProj's (p) and mixed signs.
        lower = np.concatenate(
            [
                np.eye(size) / size,
                np.full((1, size), 1.0 / size),
                rng.normal(size=(3, size)),
            ]
        )
        got = solve(tf.constant(gram), tf.constant(lower)).numpy()
        for row, bound in zip(got, lower):
            expected = _enumerate_box_qp(gram, bound)
            assert np.all(row >= bound - 1e-12)
            # Flat directions (eigenvalue 1e-4) turn objective rounding
            # (1e-18) into differences of about 1e-7 in v.
            testing.assert_allclose(row, expected, atol=1e-6, rtol=1e-6)
            value, best = row @ gram @ row, expected @ gram @ expected
            assert value <= best * (1 + 1e-9) + 1e-15, (value, best)


def test_box_qp_absent_coordinates_and_regularisation():
    rng = np.random.default_rng(0)
    gradients = rng.normal(size=(4, 3))
    gradients[2] = 0.0  # absent: a zero row
    gram = solvers.regularize_gram(tf.constant(gradients @ gradients.T))
    present = tf.constant([True, True, False, True])
    lower = tf.constant([0.25, -0.5, 0.7, 0.25], "float64")
    got = solvers.box_qp(gram, lower, present).numpy()
    kept = [0, 1, 3]
    sub = gram.numpy()[np.ix_(kept, kept)]
    expected = _enumerate_box_qp(sub, lower.numpy()[kept])
    assert got[2] == 0.0
    testing.assert_allclose(got[kept], expected, atol=1e-9)
    # G / tr(G) + eps I; a trace below norm_eps gives eps I.
    small = tf.constant(1e-6 * np.eye(3))
    testing.assert_allclose(
        solvers.regularize_gram(small, 1e-4, 0.5), 0.5 * np.eye(3)
    )
    big = tf.constant([[3.0, 1.0], [1.0, 1.0]], "float64")
    testing.assert_allclose(
        solvers.regularize_gram(big, 1e-4, 0.1),
        [[0.85, 0.25], [0.25, 0.35]],
    )


@pytest.mark.parametrize(
    "name, gradients, weights, direction",
    [
        ("upgrad", J2, [1.0, 0.75], [0.25, 0.75]),
        ("upgrad", J3, [0.5038, 0.6813, 0.5068], [0.2645, 0.3773, 0.5068]),
        ("upgrad", JD, [1.1109, 0.7894], [0.2929, 1.9004, 1.9004]),
        ("dual_proj", J2, [0.5, 0.5], [0.0, 0.5]),
        ("dual_proj", J3, [1 / 3] * 3, [0.2333, 0.1333, 0.3333]),
        ("dual_proj", JD, [0.6109, 0.5], [0.5563, 1.1109, 1.1109]),
        ("con_fig", J2, [1.2071, 0.8536], [0.3536, 0.8536]),
        ("con_fig", J3, [0.8898, 1.2388, 0.8675], None),
        ("con_fig", JD, None, [0.1588, 2.0706, 2.0706]),
    ],
)
def test_peer_check_cases(name, gradients, weights, direction):
    got = _combine(keras_mtl.weighting.get(name), gradients)
    if weights is not None:
        testing.assert_allclose(got, weights, atol=1e-3, rtol=0)
    if direction is not None:
        d = got @ np.asarray(gradients)
        testing.assert_allclose(d, direction, atol=1e-3, rtol=0)


def test_dual_proj_slack_and_upgrad_no_conflict():
    # reg_eps leaves DualProj a conflict of -0.0034 on Jd (cosine -5e-4);
    # with reg_eps = 0 it is on the boundary of the cone.
    weights = _combine(DualProj(), JD)
    testing.assert_allclose(np.asarray(JD)[0] @ (weights @ JD), -0.0034, 2e-4)
    assert abs(_cosines(JD, weights)[0]) < 1e-3
    exact = _combine(DualProj(reg_eps=0.0), JD)
    testing.assert_allclose(exact, [0.6111, 0.5], atol=2e-4)
    testing.assert_allclose(np.asarray(JD)[0] @ (exact @ JD), 0.0, atol=2e-3)
    # J2's J d = (0.25, 0.5) for UPGrad.
    d = _combine(UPGrad(), J2) @ np.asarray(J2)
    testing.assert_allclose(np.asarray(J2) @ d, [0.25, 0.5], atol=1e-3)


@pytest.mark.parametrize("cls", [UPGrad, DualProj])
def test_projections_do_not_conflict_and_ignore_scale(cls):
    rng = np.random.default_rng(3)
    # More tasks than dimensions (rank-deficient) and fewer.
    for shape in [(5, 3), (4, 10)]:
        gradients = rng.normal(size=shape).astype("float32")
        method = cls()
        weights = _combine(method, gradients)
        assert np.all(weights >= 0.0)
        assert np.all(_cosines(gradients, weights) > -1e-3)
        for scale in (1e-2, 1e3):
            scaled = _combine(method, scale * gradients)
            testing.assert_allclose(scaled, weights, atol=1e-5, rtol=1e-4)
    # A singular Gram matrix (two equal gradients, T > P) with reg_eps = 0:
    # bounds with no positive Schur complement stay fixed; no NaN.
    gradients = rng.normal(size=(6, 3)).astype("float32")
    gradients[5] = gradients[4]
    weights = _combine(cls(reg_eps=0.0), gradients)
    assert np.all(np.isfinite(weights)) and np.all(weights >= 1 / 6 - 1e-6)
    assert np.all(_cosines(gradients, weights) > -1e-5)


def test_preferences_and_vanishing_gradients():
    # A trace below norm_eps: G~ = reg_eps I, so w = p.
    tiny = 1e-3 * np.asarray(J3)
    testing.assert_allclose(_combine(UPGrad(), tiny), [1 / 3] * 3, atol=1e-6)
    pref = [0.5, 0.2, 0.3]
    testing.assert_allclose(_combine(DualProj(pref), tiny), pref, atol=1e-6)
    # Orthogonal gradients: no conflict, so each method keeps p.
    testing.assert_allclose(_combine(UPGrad(pref), np.eye(3)), pref, 1e-6)
    testing.assert_allclose(_combine(DualProj(pref), np.eye(3)), pref, 1e-6)
    # ConFIG's cosines are proportional to p.
    rng = np.random.default_rng(4)
    gradients = rng.normal(size=(3, 6)).astype("float32")
    cosines = _cosines(gradients, _combine(ConFIG(pref), gradients))
    testing.assert_allclose(cosines / cosines.sum(), pref, atol=1e-4)


def test_con_fig_equal_cosines_scale_and_zero_gradients():
    rng = np.random.default_rng(5)
    gradients = rng.normal(size=(4, 10)).astype("float32")
    weights = _combine(ConFIG(), gradients)
    cosines = _cosines(gradients, weights)
    testing.assert_allclose(cosines, np.full(4, cosines[0]), atol=1e-5)
    assert cosines[0] > 0.0
    # Length: d . x^ = sum_j g_j . x^, i.e. ||d|| = sum_j ||g_j|| cos_j.
    d = weights @ gradients
    total = np.sum(np.linalg.norm(gradients, axis=1) * cosines)
    testing.assert_allclose(np.linalg.norm(d), total, rtol=1e-4)
    scaled = _combine(ConFIG(), 100.0 * gradients)
    testing.assert_allclose(scaled, weights, rtol=1e-4, atol=1e-6)
    # A zero gradient gets weight 0 and leaves the others' update alone.
    with_zero = np.concatenate([gradients[:3], np.zeros((1, 10))])
    testing.assert_allclose(
        _combine(ConFIG(), with_zero),
        np.append(_combine(ConFIG(), gradients[:3]), 0.0),
        atol=1e-5,
    )


def test_krum_check_case_ties_and_clamp():
    # Scores (0.283, 0.283, 0.424, 0.341, 15.48): task 0 or its tie 1.
    weights = _combine(Krum(n_byzantine=1), JK)
    assert weights.sum() == 1.0 and weights[0] + weights[1] == 1.0
    # Two lowest scores, averaged.
    testing.assert_allclose(
        _combine(Krum(1, n_selected=2), JK), [0.5, 0.5, 0, 0, 0], atol=0
    )
    # Exact ties (every score 2 sqrt 2) go to the first task.
    square = [[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0], [0.0, -1.0]]
    testing.assert_allclose(_combine(Krum(0), square), [1, 0, 0, 0], atol=0)
    testing.assert_allclose(
        _combine(Krum(0), square[::-1]), [1, 0, 0, 0], atol=0
    )
    # Near-duplicate gradients whose squared distance rounds below 0.
    close = [[1e3, 1.0], [1e3, 1.0 + 1e-4], [1e3, 1.0], [-1e3, 0.0]]
    weights = _combine(Krum(1), close)
    assert np.all(np.isfinite(weights)) and weights.sum() == 1.0
    assert weights[3] == 0.0


@pytest.mark.parametrize("name", ["upgrad", "dual_proj", "con_fig", "krum"])
def test_absent_tasks_get_zero_and_the_rest_as_without(name):
    make = {"krum": lambda: Krum(0)}.get(
        name, lambda: keras_mtl.weighting.get(name)
    )
    rng = np.random.default_rng(6)
    gradients = rng.normal(size=(4, 5)).astype("float32")
    # Krum would pick task 0 or its close twin 1; absent, 0 is never picked.
    gradients[1] = gradients[0] + 0.1
    present = [False, True, True, True]
    weights = _combine(make(), gradients, present)
    assert weights[0] == 0.0
    expected = _combine(make(), gradients[1:])
    testing.assert_allclose(weights[1:], expected, atol=1e-5, rtol=1e-4)


def test_krum_absent_counting():
    # f = 1 with 5 tasks: 2 neighbours. With 2 absent, 3 are present and
    # the rule clamps to the nearest neighbour: the close pair wins.
    present = [True, False, True, False, True]
    weights = _combine(Krum(1), JK, present)
    testing.assert_allclose(weights, [1, 0, 0, 0, 0], atol=0)
    # n_selected beyond the present tasks averages all of them.
    weights = _combine(
        Krum(0, n_selected=3), JK[:4], [True, True, False, False]
    )
    testing.assert_allclose(weights, [0.5, 0.5, 0, 0], atol=0)


@pytest.mark.parametrize("name", ["upgrad", "dual_proj", "con_fig", "krum"])
def test_xla_matches_eager_and_config(name):
    cls = keras_mtl.weighting.registry[name]
    kwargs = {"n_byzantine": 1} if name == "krum" else {}
    method = cls(mode="rep", name="grad", **kwargs)
    assert method.jit_combine and method.gradients == "representation"
    revived = cls.from_config(method.get_config())
    assert revived.get_config() == method.get_config()
    testing.run_serialization_test(method)
    # The model's path: `combine` XLA-compiled, with task 4 absent.
    present = [True, True, True, True, False]
    eager = _combine(method, JK, present)
    masked = np.where(np.asarray(present)[:, None], JK, 0.0)
    gram = tf.constant(masked @ masked.T, "float32")
    step = tf.constant(0, "int64")
    present = tf.constant(present)
    weights = method.gradient_weights(gram, tf.ones(5), step, present)
    assert method._compiled_combine is not None
    testing.assert_allclose(weights, eager, atol=1e-6, rtol=1e-5)
    assert weights[4] == 0.0
    testing.assert_allclose(method.task_weights, weights, atol=0)
    # Shapes are static: another Gram matrix does not compile again.
    method.gradient_weights(2.0 * gram, tf.ones(5), step, present)
    assert method._compiled_combine.experimental_get_tracing_count() == 1


def test_registry_names_and_pref_vector_config():
    assert keras_mtl.weighting.get("conflict_free").__class__ is ConFIG
    assert keras_mtl.weighting.get("dualproj").__class__ is DualProj
    assert keras_mtl.weighting.get("UPGrad").__class__ is UPGrad
    method = UPGrad(pref_vector=np.array([1, 2]), norm_eps=0, reg_eps=1e-3)
    assert method.get_config()["pref_vector"] == [1.0, 2.0]
    revived = keras_mtl.weighting.deserialize(
        keras_mtl.weighting.serialize(method)
    )
    assert revived.pref_vector == [1.0, 2.0] and revived.reg_eps == 1e-3


@pytest.mark.parametrize(
    "make, error, match",
    [
        (lambda: UPGrad(pref_vector=[1.0, -1.0]), ValueError, "pref_vector"),
        (lambda: DualProj(pref_vector=[0.0, 0.0]), ValueError, "pref_vector"),
        (lambda: ConFIG(pref_vector="ab"), ValueError, "pref_vector"),
        (lambda: UPGrad(reg_eps=-1e-4), ValueError, "`reg_eps` must be >= 0"),
        (lambda: DualProj(norm_eps="x"), TypeError, "`norm_eps` must be"),
        (lambda: UPGrad(mode="params"), ValueError, "`mode` must be one of"),
        (lambda: Krum(), TypeError, "n_byzantine"),
        (lambda: Krum(-1), ValueError, "`n_byzantine` must be >= 0"),
        (lambda: Krum(1.0), TypeError, "`n_byzantine` must be an int"),
        (lambda: Krum(0, n_selected=0), ValueError, "`n_selected` must be"),
    ],
)
def test_bad_arguments_are_named(make, error, match):
    with pytest.raises(error, match=match):
        make()


@pytest.mark.parametrize(
    "method, match",
    [
        (Krum(1), "at least `n_byzantine \\+ 3` tasks.*n_byzantine=1 with 3"),
        (Krum(0, n_selected=4), "`n_selected` must be at most.*\\(3\\)"),
        (UPGrad(pref_vector=[1.0, 1.0]), "one entry per task \\(3\\)"),
        (ConFIG(pref_vector=[1.0] * 4), "one entry per task \\(3\\)"),
    ],
)
def test_task_count_is_checked_when_bound(method, match):
    with pytest.raises(ValueError, match=match):
        testing.tiny_model(weighting=method)
