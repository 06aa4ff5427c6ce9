import keras
import numpy as np
import pytest
import tensorflow as tf
from numpy import testing

import keras_mtl
from keras_mtl import evaluation

# Affinity of i onto j, two related pairs (0, 2) and (1, 3): high within a
# pair, negative across.
PAIRS = np.array(
    [
        [1.0, -0.5, 0.9, -0.4],
        [-0.6, 1.0, -0.5, 0.6],
        [0.7, -0.3, 1.0, -0.5],
        [-0.5, 0.8, -0.4, 1.0],
    ]
)
# Hand-worked: a task's score in a group is the mean of Z[k, t] over the
# other members k. Pairs: {0,1} -> (0.2, 0.6); {0,2} -> (0.4, -0.2);
# {1,2} -> (-0.3, 0.5). All three: (0.3, 0.15, 0.15). Alone: 0.
THREE = np.array([[1.0, 0.6, -0.2], [0.2, 1.0, 0.5], [0.4, -0.3, 1.0]])


def _two_task_model(trunk, lr=0.1):
    inputs = keras.Input((3,))
    tasks = [keras_mtl.Task("a"), keras_mtl.Task("b")]
    model = keras_mtl.build_mtl_model(inputs, tasks, trunk=trunk)
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=lr))
    return model


def _linear_model(lr=0.1):
    """Shared kernel W (3 -> 2, no bias); heads p_t = h a_t + b_t."""
    model = _two_task_model(
        keras.layers.Dense(2, use_bias=False, name="trunk"), lr
    )
    model.get_layer("trunk").set_weights(
        [np.array([[0.5, -0.3], [0.2, 0.8], [-0.6, 0.1]], "float32")]
    )
    model.get_layer("a").set_weights(
        [np.array([[1.0], [0.5]], "float32"), np.array([0.1], "float32")]
    )
    model.get_layer("b").set_weights(
        [np.array([[-0.4], [1.2]], "float32"), np.array([-0.2], "float32")]
    )
    return model


def _data(n=8, seed=0, scale=1.0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 3)).astype("float32")
    y = {
        "a": (scale * rng.normal(size=(n, 1))).astype("float32"),
        "b": (scale * rng.normal(size=(n, 1))).astype("float32"),
    }
    return x, y


def _numpy_affinity(x, y, lr):
    """TAG affinity of the linear model on one batch, in float64."""
    w = np.array([[0.5, -0.3], [0.2, 0.8], [-0.6, 0.1]])
    heads = {
        "a": (np.array([1.0, 0.5]), 0.1),
        "b": (np.array([-0.4, 1.2]), -0.2),
    }

    def residual(kernel, task):
        a, b = heads[task]
        return x @ kernel @ a + b - y[task][:, 0]

    def loss(kernel, task):
        return np.mean(residual(kernel, task) ** 2)

    z = np.zeros((2, 2))
    for i, source in enumerate("ab"):
        # d/dW mean((x W a + b - y)^2) = (2/n) x^T r a^T.
        grad = (
            2 / len(x) * x.T @ np.outer(residual(w, source), heads[source][0])
        )
        ahead = w - lr * grad
        for j, target in enumerate("ab"):
            z[i, j] = 1 - loss(ahead, target) / loss(w, target)
    return z


def test_task_affinity_matches_hand_computation():
    model = _linear_model(lr=0.1)
    assert len(model.shared_variables) == 1
    x, y = _data()
    z = evaluation.task_affinity(model, x, y, batch_size=8)
    expected = _numpy_affinity(x.astype("float64"), y, 0.1)
    testing.assert_allclose(z, expected, atol=1e-5)
    # Not trivially small: the step moves both losses.
    assert np.abs(expected).min() > 5e-3
    # An explicit learning rate replaces the optimizer's.
    z = evaluation.task_affinity(model, x, y, batch_size=8, learning_rate=0.03)
    testing.assert_allclose(
        z, _numpy_affinity(x.astype("float64"), y, 0.03), atol=1e-5
    )


def test_task_affinity_averages_batches_and_reads_datasets():
    model = _linear_model()
    x, y = _data(n=8)
    halves = [
        (x[s], {k: v[s] for k, v in y.items()})
        for s in (slice(0, 4), slice(4, 8))
    ]
    per_batch = [
        _numpy_affinity(xs.astype("float64"), ys, 0.1) for xs, ys in halves
    ]
    z = evaluation.task_affinity(model, x, y, batch_size=4)
    testing.assert_allclose(z, np.mean(per_batch, axis=0), atol=1e-5)
    one = evaluation.task_affinity(model, x, y, batch_size=4, steps=1)
    testing.assert_allclose(one, per_batch[0], atol=1e-5)
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(4)
    testing.assert_allclose(
        evaluation.task_affinity(model, dataset), z, atol=1e-6
    )


def test_identical_tasks_transfer_fully():
    model = _two_task_model([8])
    model.get_layer("b").set_weights(model.get_layer("a").get_weights())
    x, y = _data(n=16)
    y["b"] = y["a"]
    z = evaluation.task_affinity(model, x, y, batch_size=16)
    assert z[0, 0] > 0.01
    testing.assert_allclose(z[0, 1], z[0, 0], atol=1e-5)
    testing.assert_allclose(z, np.full((2, 2), z[0, 0]), atol=1e-5)


def test_conflicting_tasks_interfere():
    # Labels y and -y, large against predictions near 0: the shared
    # gradients of the two tasks point (almost) opposite ways.
    model = _two_task_model([8], lr=0.05)
    model.get_layer("b").set_weights(model.get_layer("a").get_weights())
    x, y = _data(n=16, scale=5.0)
    y["b"] = -y["a"]
    z = evaluation.task_affinity(model, x, y, batch_size=16)
    assert z[0, 0] > 0 and z[1, 1] > 0
    assert z[0, 1] < -1e-3 and z[1, 0] < -1e-3


def test_task_affinity_leaves_the_model_as_it_was():
    model = _two_task_model([8])
    x, y = _data(n=16)
    before = [w.copy() for w in model.get_weights()]
    evaluation.task_affinity(model, x, y, batch_size=4)
    for old, new in zip(before, model.get_weights()):
        assert np.array_equal(old, new)
    assert int(model.optimizer.iterations) == 0
    # An error in the middle of a lookahead restores the weights too.
    original = model.compute_task_losses
    calls = []

    def failing(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:  # the first lookahead's losses
            raise RuntimeError("boom")
        return original(*args, **kwargs)

    model.compute_task_losses = failing
    with pytest.raises(RuntimeError, match="boom"):
        evaluation.task_affinity(model, x, y, batch_size=4)
    for old, new in zip(before, model.get_weights()):
        assert np.array_equal(old, new)


def test_task_affinity_skips_unlabelled_tasks():
    model = _linear_model()
    x, y = _data(n=8)
    y["b"][:4] = np.nan
    z = evaluation.task_affinity(model, x, y, batch_size=4)
    second = {k: v[4:] for k, v in y.items()}
    late = _numpy_affinity(x[4:].astype("float64"), second, 0.1)
    first = {"a": y["a"][:4], "b": np.zeros((4, 1))}
    early = _numpy_affinity(x[:4].astype("float64"), first, 0.1)
    # b only in the second batch: every pair with b is that batch's value.
    testing.assert_allclose(z[0, 1], late[0, 1], atol=1e-5)
    testing.assert_allclose(z[1], late[1], atol=1e-5)
    testing.assert_allclose(z[0, 0], (early[0, 0] + late[0, 0]) / 2, atol=1e-5)
    y["b"][:] = np.nan
    z = evaluation.task_affinity(model, x, y, batch_size=4)
    assert np.isfinite(z[0, 0])
    assert np.isnan(z[0, 1]) and np.isnan(z[1]).all()
    with pytest.raises(ValueError, match="must be finite"):
        evaluation.group_tasks(z, num_groups=1)


def test_task_affinity_errors():
    model = _linear_model()
    x, y = _data(n=8)
    with pytest.raises(TypeError, match="keras_mtl.MTLModel"):
        evaluation.task_affinity(keras.Sequential([]), x, y)
    with pytest.raises(ValueError, match="`steps` must be >= 1"):
        evaluation.task_affinity(model, x, y, steps=0)
    with pytest.raises(TypeError, match="`steps` must be an int"):
        evaluation.task_affinity(model, x, y, steps=1.5)
    for lr in (0.0, -0.1, float("nan")):
        with pytest.raises(ValueError, match="`learning_rate` must be"):
            evaluation.task_affinity(model, x, y, learning_rate=lr)
    with pytest.raises(ValueError, match="unknown keys: \\['c'\\]"):
        evaluation.task_affinity(model, x, {**y, "c": y["a"]})
    with pytest.raises(ValueError, match="data is empty"):
        evaluation.task_affinity(model, x[:0], {k: v[:0] for k, v in y.items()})
    inputs = keras.Input((3,))
    separate = keras_mtl.build_mtl_model(
        inputs, [keras_mtl.Task("a"), keras_mtl.Task("b")]
    )
    separate.compile(optimizer="sgd")
    with pytest.raises(ValueError, match="no shared variables"):
        evaluation.task_affinity(separate, x, y)


def test_group_tasks_recovers_related_pairs():
    grouping = evaluation.group_tasks(PAIRS, num_groups=2)
    assert grouping["groups"] == [(0, 2), (1, 3)]
    assert grouping["serving"] == {0: (0, 2), 1: (1, 3), 2: (0, 2), 3: (1, 3)}
    assert grouping["score"] == pytest.approx((0.7 + 0.8 + 0.9 + 0.6) / 4)
    # More groups allowed: the pairs are still best, and enough.
    names = ["w", "x", "y", "z"]
    grouping = evaluation.group_tasks(PAIRS, num_groups=4, task_names=names)
    assert grouping["groups"] == [("w", "y"), ("x", "z")]
    assert grouping["serving"]["z"] == ("x", "z")


@pytest.mark.parametrize(
    "num_groups, groups, serving, score",
    [
        (1, [(0, 1, 2)], [(0, 1, 2)] * 3, (0.3 + 0.15 + 0.15) / 3),
        (2, [(0, 1), (1, 2)], [(0, 1), (0, 1), (1, 2)], (0.2 + 0.6 + 0.5) / 3),
        (
            3,
            [(0, 1), (0, 2), (1, 2)],
            [(0, 2), (0, 1), (1, 2)],
            (0.4 + 0.6 + 0.5) / 3,
        ),
    ],
)
def test_group_tasks_by_hand(num_groups, groups, serving, score):
    grouping = evaluation.group_tasks(THREE, num_groups=num_groups)
    assert grouping["groups"] == groups
    assert grouping["serving"] == dict(enumerate(serving))
    assert grouping["score"] == pytest.approx(score)


def test_group_tasks_singletons_and_group_size():
    grouping = evaluation.group_tasks(THREE, num_groups=3, max_group_size=1)
    assert grouping["groups"] == [(0,), (1,), (2,)]
    assert grouping["score"] == 0.0
    # Task c is hurt by both others: alone (score 0) it is best off.
    affinity = [[1.0, 0.8, -0.5], [0.7, 1.0, -0.4], [-0.6, -0.3, 1.0]]
    grouping = evaluation.group_tasks(
        affinity, num_groups=2, task_names=["a", "b", "c"]
    )
    assert grouping["groups"] == [("a", "b"), ("c",)]
    assert grouping["score"] == pytest.approx(0.5)
    # Scored as the authors' notebook does, c joins b's group: groups
    # overlap, and b is served by its better one.
    grouping = evaluation.group_tasks(
        affinity, num_groups=2, task_names=["a", "b", "c"], singleton_score=-1e6
    )
    assert grouping["groups"] == [("a", "b"), ("b", "c")]
    assert grouping["serving"] == {
        "a": ("a", "b"),
        "b": ("a", "b"),
        "c": ("b", "c"),
    }
    assert grouping["score"] == pytest.approx((0.7 + 0.8 - 0.4) / 3)


def _brute_force_score(z, num_groups, max_group_size):
    import itertools

    size = len(z)
    groups = [
        g
        for r in range(1, max_group_size + 1)
        for g in itertools.combinations(range(size), r)
    ]

    def score(t, g):
        others = [z[k, t] for k in g if k != t]
        return np.mean(others) if others else 0.0

    best = -np.inf
    for b in range(1, num_groups + 1):
        for chosen in itertools.combinations(groups, b):
            served = [
                [score(t, g) for g in chosen if t in g] for t in range(size)
            ]
            if all(served):
                best = max(best, np.mean([max(s) for s in served]))
    return best


@pytest.mark.parametrize("seed", range(4))
def test_group_tasks_matches_brute_force(seed):
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(5, 5))
    for num_groups, max_group_size in [(1, 5), (2, 5), (2, 3), (3, 2)]:
        grouping = evaluation.group_tasks(
            z, num_groups=num_groups, max_group_size=max_group_size
        )
        assert len(grouping["groups"]) <= num_groups
        assert max(len(g) for g in grouping["groups"]) <= max_group_size
        assert grouping["score"] == pytest.approx(
            _brute_force_score(z, num_groups, max_group_size)
        )


def test_group_tasks_errors():
    with pytest.raises(ValueError, match="square"):
        evaluation.group_tasks(np.ones((2, 3)), num_groups=1)
    with pytest.raises(ValueError, match="square"):
        evaluation.group_tasks(np.ones((2, 2, 2)), num_groups=1)
    with pytest.raises(ValueError, match="must be finite.*\\(1, 0\\)"):
        evaluation.group_tasks([[1.0, 0.0], [np.inf, 1.0]], num_groups=1)
    with pytest.raises(ValueError, match="`num_groups` must be >= 1"):
        evaluation.group_tasks(PAIRS, num_groups=0)
    with pytest.raises(ValueError, match="at most the number of tasks \\(4\\)"):
        evaluation.group_tasks(PAIRS, num_groups=5)
    with pytest.raises(TypeError, match="`num_groups` must be an int"):
        evaluation.group_tasks(PAIRS, num_groups=2.0)
    with pytest.raises(ValueError, match="`max_group_size` must be >= 1"):
        evaluation.group_tasks(PAIRS, num_groups=2, max_group_size=0)
    with pytest.raises(ValueError, match="cannot cover 4 tasks"):
        evaluation.group_tasks(PAIRS, num_groups=1, max_group_size=3)
    with pytest.raises(ValueError, match="4 distinct strings"):
        evaluation.group_tasks(PAIRS, 2, task_names=["a", "b", "c"])
    with pytest.raises(ValueError, match="4 distinct strings"):
        evaluation.group_tasks(PAIRS, 2, task_names=["a", "b", "c", "a"])
    with pytest.raises(ValueError, match="`singleton_score` must be"):
        evaluation.group_tasks(PAIRS, 2, singleton_score=float("nan"))
    with pytest.raises(ValueError, match="up to 12 tasks. Received 13"):
        evaluation.group_tasks(np.eye(13), num_groups=2)
