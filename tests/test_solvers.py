"""The simplex and linear solvers of the gradient-level methods.

Hand-worked answers and numpy brute force: a dense grid over the simplex
of three tasks, or `np.linalg` in float64.
"""

import numpy as np
import pytest
import tensorflow as tf

from keras_mtl import testing
from keras_mtl.weighting import solvers


def _run(fn, *args, **kwargs):
    """Runs `fn` in a graph, as the weighting methods do."""
    tensors = [tf.constant(a) for a in args]
    return tf.function(lambda *t: fn(*t, **kwargs))(*tensors).numpy()


def _gram(gradients):
    gradients = np.asarray(gradients, "float32")
    return gradients @ gradients.T


def _simplex_grid(steps=400):
    """The points of the 3-task simplex with coordinates in 1/steps."""
    i, j = np.meshgrid(np.arange(steps + 1), np.arange(steps + 1))
    keep = i + j <= steps
    i, j = i[keep], j[keep]
    return np.stack([i, j, steps - i - j], axis=1) / steps


def _grid_min_norm(gradients):
    """Brute-force minimum of `|w G|^2` over the simplex grid."""
    gram = np.asarray(gradients, "float64") @ np.asarray(gradients).T
    points = _simplex_grid()
    values = np.einsum("ni,ij,nj->n", points, gram, points)
    best = np.argmin(values)
    return points[best], values[best]


def _norm2(weights, gradients):
    return float(np.sum((weights @ np.asarray(gradients, "float64")) ** 2))


def _min_norm(gradients, present=None, **kwargs):
    kwargs.setdefault("max_iterations", 2000)
    kwargs.setdefault("tolerance", 1e-9)
    if present is not None:
        kwargs["present"] = tf.constant(present)
    return _run(solvers.min_norm_frank_wolfe, _gram(gradients), **kwargs)


def test_min_norm_two_closed_form_on_random_pairs():
    rng = np.random.default_rng(0)
    grid = np.linspace(0.0, 1.0, 100001)
    for _ in range(6):
        g1, g2 = rng.normal(size=(2, 5))
        alpha = np.clip((g2 - g1) @ g2 / np.sum((g1 - g2) ** 2), 0, 1)
        weights = _run(solvers.min_norm_two, _gram([g1, g2]))
        testing.assert_allclose(weights, [alpha, 1 - alpha], atol=1e-5)
        # And the brute force on the segment agrees.
        norms = np.sum((np.outer(grid, g1) + np.outer(1 - grid, g2)) ** 2, 1)
        assert abs(weights[0] - grid[np.argmin(norms)]) < 1e-4


@pytest.mark.parametrize(
    "gradients, expected",
    [
        # Orthogonal, equal norms: the midpoint.
        ([[3.0, 0.0], [0.0, 3.0]], [0.5, 0.5]),
        # Orthogonal, norms 1 and 3: a = 9 / 10.
        ([[1.0, 0.0], [0.0, 3.0]], [0.9, 0.1]),
        # Opposite: (1 - a) 2 = a -> a = 2 / 3, the zero vector.
        ([[1.0, 0.0], [-2.0, 0.0]], [2 / 3, 1 / 3]),
        # g1 . g2 >= |g2|^2: the endpoint g2 alone (clipped at 0).
        ([[2.0, 1.0], [1.0, 0.0]], [0.0, 1.0]),
        # Identical: any weights; the midpoint by convention.
        ([[1.0, -2.0], [1.0, -2.0]], [0.5, 0.5]),
        # Both zero.
        ([[0.0, 0.0], [0.0, 0.0]], [0.5, 0.5]),
    ],
)
def test_min_norm_two_hand_cases(gradients, expected):
    weights = _run(solvers.min_norm_two, _gram(gradients))
    testing.assert_allclose(weights, expected, atol=1e-6)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_frank_wolfe_matches_the_simplex_grid(seed):
    rng = np.random.default_rng(seed)
    gradients = rng.normal(size=(3, 6)).astype("float32")
    if seed == 2:
        # Conflict: the minimum lies on an edge or vertex.
        gradients[1] = -0.8 * gradients[0] + 0.2 * gradients[1]
    best, value = _grid_min_norm(gradients)
    for kwargs in ({}, {"max_iterations": 250, "tolerance": 1e-5}):
        weights = _min_norm(gradients, **kwargs)
        assert np.all(weights >= 0) and abs(weights.sum() - 1) < 1e-6
        # Never worse than the grid's best point, and near it.
        assert _norm2(weights, gradients) <= value + 1e-5
        testing.assert_allclose(weights, best, atol=5e-3)


def test_frank_wolfe_hand_cases():
    # Orthogonal, norms 1, 2, 3: w_i proportional to 1 / |g_i|^2.
    weights = _min_norm(np.diag([1.0, 2.0, 3.0]))
    inverse = np.array([1.0, 1 / 4, 1 / 9])
    testing.assert_allclose(weights, inverse / inverse.sum(), atol=1e-5)
    # The zero vector is in the hull: equal weights reach it.
    star = [[1.0, 0.0], [0.0, 1.0], [-1.0, -1.0]]
    weights = _min_norm(star)
    testing.assert_allclose(weights, [1 / 3] * 3, atol=1e-4)
    assert _norm2(weights, star) < 1e-7
    # Identical gradients: every point has the same norm.
    same = [[1.0, 2.0]] * 3
    weights = _min_norm(same)
    assert np.all(weights >= 0) and abs(weights.sum() - 1) < 1e-6
    assert _norm2(weights, same) == pytest.approx(5.0, rel=1e-6)


def test_frank_wolfe_all_present_is_no_mask():
    gradients = np.random.default_rng(3).normal(size=(4, 5))
    testing.assert_allclose(
        _min_norm(gradients, present=[True] * 4),
        _min_norm(gradients),
        atol=1e-7,
    )


@pytest.mark.parametrize("absent", [0, 2, 3])
def test_frank_wolfe_ignores_an_absent_zero_gradient(absent):
    rng = np.random.default_rng(4)
    gradients = rng.normal(size=(4, 6)).astype("float32")
    gradients[absent] = 0.0  # an absent task's gradient is zero
    present = np.arange(4) != absent
    weights = _min_norm(gradients, present=present)
    # Unmasked, the zero gradient wins: all the weight, norm 0.
    unmasked = _min_norm(gradients)
    testing.assert_allclose(unmasked[absent], 1.0, atol=1e-6)
    assert weights[absent] == 0.0
    best, value = _grid_min_norm(gradients[present])
    testing.assert_allclose(weights[present], best, atol=5e-3)
    assert _norm2(weights[present], gradients[present]) <= value + 1e-5
    assert value > 0.01


def test_frank_wolfe_ignores_an_absent_small_gradient():
    # An absent task's gradient would be the min-norm point if present.
    gradients = np.diag([1.0, 2.0, 3.0, 0.01]).astype("float32")
    weights = _min_norm(gradients, present=[True, True, True, False])
    inverse = np.array([1.0, 1 / 4, 1 / 9])
    testing.assert_allclose(
        weights, list(inverse / inverse.sum()) + [0.0], atol=1e-5
    )
    assert weights[3] == 0.0


def test_frank_wolfe_one_present_task_gets_weight_one():
    gradients = np.diag([1.0, 0.0, 3.0]).astype("float32")
    weights = _min_norm(gradients, present=[False, False, True])
    testing.assert_allclose(weights, [0.0, 0.0, 1.0], atol=0)


@pytest.mark.parametrize(
    "vector, expected",
    [
        ([0.2, 0.3, 0.5], [0.2, 0.3, 0.5]),  # already on the simplex
        ([2.0, 0.0, 0.0], [1.0, 0.0, 0.0]),
        ([0.5, 0.5, 0.5], [1 / 3, 1 / 3, 1 / 3]),
        # Threshold t with (1 - t) + (0.5 - t) = 1: t = 0.25.
        ([1.0, 0.5, -1.0], [0.75, 0.25, 0.0]),
        ([-3.0, -1.0, -2.0], [0.0, 1.0, 0.0]),
    ],
)
def test_project_to_simplex_hand_cases(vector, expected):
    projected = _run(solvers.project_to_simplex, np.float32(vector))
    testing.assert_allclose(projected, expected, atol=1e-6)


def test_project_to_simplex_matches_the_grid():
    points = _simplex_grid()
    rng = np.random.default_rng(5)
    for vector in rng.normal(scale=2.0, size=(5, 3)).astype("float32"):
        projected = _run(solvers.project_to_simplex, vector)
        distances = np.sum((points - vector) ** 2, axis=1)
        nearest = points[np.argmin(distances)]
        assert np.sum((projected - vector) ** 2) <= distances.min() + 1e-6
        testing.assert_allclose(projected, nearest, atol=2.5e-3)


def test_project_to_simplex_of_the_present_coordinates():
    vector = np.float32([1.0, 50.0, 0.5, -1.0])
    present = tf.constant([True, False, True, True])
    projected = _run(solvers.project_to_simplex, vector, present=present)
    # As [1.0, 0.5, -1.0] alone; the absent coordinate is 0, however big.
    testing.assert_allclose(projected, [0.75, 0.0, 0.25, 0.0], atol=1e-6)
    one = tf.constant([False, False, True, False])
    projected = _run(solvers.project_to_simplex, vector, present=one)
    testing.assert_allclose(projected, [0.0, 0.0, 1.0, 0.0], atol=1e-6)


def _quadratic(matrix, target):
    """`w -> (0.5 |A w - b|^2, A^T (A w - b))`."""
    matrix = tf.constant(matrix, "float32")
    target = tf.constant(target, "float32")

    def value_and_gradient(weights):
        residual = tf.linalg.matvec(matrix, weights) - target
        return (
            0.5 * tf.reduce_sum(residual**2),
            tf.linalg.matvec(matrix, residual, transpose_a=True),
        )

    return value_and_gradient


def _minimize(value_and_gradient, start, present=None, max_iterations=200):
    if present is not None:
        present = tf.constant(present)
    return _run(
        lambda start: solvers.minimize_on_simplex(
            value_and_gradient, start, max_iterations, present
        ),
        np.float32(start),
    )


def test_minimize_on_simplex_matches_the_grid():
    rng = np.random.default_rng(6)
    matrix = rng.normal(size=(5, 3)).astype("float32")
    target = rng.normal(size=5).astype("float32")
    weights = _minimize(_quadratic(matrix, target), [1 / 3] * 3)
    points = _simplex_grid()
    values = 0.5 * np.sum((points @ matrix.T - target) ** 2, axis=1)
    value = 0.5 * np.sum((matrix @ weights - target) ** 2)
    assert np.all(weights >= 0) and abs(weights.sum() - 1) < 1e-6
    assert value <= values.min() + 1e-5
    testing.assert_allclose(weights, points[np.argmin(values)], atol=5e-3)


def _linear(costs):
    costs = tf.constant(costs, "float32")
    return lambda weights: (tf.tensordot(costs, weights, 1), costs)


def test_minimize_on_simplex_linear_and_present():
    linear = _linear([0.3, -1.0, 0.2, -5.0])
    # The vertex of the least cost.
    weights = _minimize(linear, [0.25] * 4, max_iterations=20)
    testing.assert_allclose(weights, [0.0, 0.0, 0.0, 1.0], atol=1e-6)
    # Without task 3: the least cost among the rest, task 3 exactly 0.
    weights = _minimize(
        linear,
        [1 / 3, 1 / 3, 1 / 3, 0.0],
        [True, True, True, False],
        max_iterations=20,
    )
    testing.assert_allclose(weights, [0.0, 1.0, 0.0, 0.0], atol=1e-6)
    assert weights[3] == 0.0


def test_minimize_on_simplex_stays_on_the_simplex_at_a_vertex():
    # At a vertex minimum every step is accepted; an unbounded step size
    # (1.5x per step) once lost the weights to rounding after ~60 steps and
    # returned all zeros.
    weights = _minimize(_linear([0.3, -1.0, 0.2, -5.0]), [0.25] * 4)
    testing.assert_allclose(weights, [0.0, 0.0, 0.0, 1.0], atol=1e-6)


def test_solve_regular_and_singular():
    rng = np.random.default_rng(7)
    matrix = rng.normal(size=(4, 4)).astype("float32")
    vector = rng.normal(size=4).astype("float32")
    solution, ok = tf.function(solvers.solve)(matrix, vector)
    expected = np.linalg.solve(matrix.astype("float64"), vector)
    testing.assert_allclose(solution, expected, rtol=1e-4, atol=1e-5)
    assert bool(ok)
    # Rank 1: flagged, and no exception.
    singular = np.float32([[1.0, 2.0], [2.0, 4.0]])
    _, ok = tf.function(solvers.solve)(singular, np.float32([1.0, 1.0]))
    assert not bool(ok)
    # Pivots 1 and 1e-8: singular to rcond=1e-6, regular to rcond=0.
    nearly = np.diag([1.0, 1e-8]).astype("float32")
    solution, ok = tf.function(solvers.solve)(nearly, np.float32([1.0, 1.0]))
    assert not bool(ok)
    solution, ok = tf.function(solvers.solve)(
        nearly, np.float32([1.0, 1.0]), rcond=0.0
    )
    assert bool(ok)
    testing.assert_allclose(solution, [1.0, 1e8], rtol=1e-5)


def test_frank_wolfe_and_projection_compile_with_xla():
    gradients = np.random.default_rng(8).normal(size=(4, 6))
    gram = tf.constant(_gram(gradients))
    present = tf.constant([True, False, True, True])

    def both(gram, present):
        weights = solvers.min_norm_frank_wolfe(gram, present=present)
        return weights, solvers.project_to_simplex(gram[0], present)

    graph = [t.numpy() for t in tf.function(both)(gram, present)]
    compiled = tf.function(both, jit_compile=True)(gram, present)
    for a, b in zip(graph, compiled):
        testing.assert_allclose(b, a, atol=1e-6)
    assert graph[0][1] == 0.0 and graph[1][1] == 0.0


@pytest.mark.parametrize("scale", [1.0, 1e30, 1e-30, 1e36, 1e-37])
def test_stable_norm_at_every_float32_scale(scale):
    # [[3, 4], [0, 12]]: sqrt(9 + 16 + 144) = 13, times the scale.
    matrix = np.float32([[3.0, 4.0], [0.0, 12.0]]) * np.float32(scale)
    norm = _run(solvers.stable_norm, matrix)
    expected = 13.0 * np.float64(np.float32(scale))
    testing.assert_allclose(norm, expected, rtol=2e-6, atol=0)


def test_stable_norm_hand_cases():
    assert _run(solvers.stable_norm, np.zeros((3, 3), "float32")) == 0.0
    # Entries 36 decades apart: the small one is rounded away, not lost
    # to underflow first and overflow after.
    mixed = np.float32([1e30, -1e-30, 0.0])
    testing.assert_allclose(_run(solvers.stable_norm, mixed), 1e30, rtol=1e-7)
    vector = np.random.default_rng(9).normal(size=7).astype("float32")
    testing.assert_allclose(
        _run(solvers.stable_norm, vector),
        np.linalg.norm(vector.astype("float64")),
        rtol=1e-6,
    )
    # What `tf.norm` gives at those scales: the squares overflow and
    # underflow in float32.
    big = np.float32([[3.0, 4.0]]) * np.float32(1e30)
    assert np.isinf(_run(tf.norm, big))
    assert _run(tf.norm, big * np.float32(1e-60)) == 0.0
    compiled = tf.function(solvers.stable_norm, jit_compile=True)
    testing.assert_allclose(compiled(tf.constant(big)), 5e30, rtol=1e-6)
