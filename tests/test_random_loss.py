import statistics

import numpy as np
import tensorflow as tf
from keras import ops

from keras_mtl import testing
from keras_mtl.weighting import RandomLossWeighting


def _normal(seed, n, num_tasks):
    """N(0, 1) from 31 Philox bits and the inverse CDF, computed apart."""
    bits = tf.random.stateless_uniform(
        (num_tasks,), [seed, n], 0, 2**31 - 1, "int32", alg="philox"
    ).numpy()
    inverse_cdf = statistics.NormalDist().inv_cdf
    return np.array([inverse_cdf((b + 0.5) / (2**31 - 1)) for b in bits])


def _expected_draws(seed, count, num_tasks):
    z = np.stack([_normal(seed, n, num_tasks) for n in range(count)])
    return np.exp(z) / np.sum(np.exp(z), axis=1, keepdims=True)


def test_each_step_draws_softmax_of_a_normal_vector():
    rlw = RandomLossWeighting(seed=4)
    rlw.set_tasks(["a", "b", "c"])
    losses = ops.array([1.0, 2.0, 3.0])
    expected = _expected_draws(4, 3, 3)
    for n in range(3):
        total, weights = rlw(losses, training=True)
        testing.assert_allclose(weights, expected[n], atol=1e-6)
        testing.assert_allclose(total, np.dot(expected[n], [1, 2, 3]))
        # Evaluation uses the expectation 1 / T and draws nothing.
        testing.assert_allclose(rlw(losses)[1], [1 / 3] * 3, atol=1e-7)
    assert int(rlw.draws.numpy()) == 3
    assert not np.allclose(expected[0], expected[1], atol=1e-2)
    other = RandomLossWeighting(seed=5)
    other.set_tasks(["a", "b", "c"])
    assert not np.allclose(other(losses, training=True)[1], expected[0])


def test_unseeded_methods_draw_their_seed_once_and_keep_it():
    rlw = RandomLossWeighting()
    rlw.set_tasks(["a", "b"])
    assert rlw.get_config()["seed"] is None
    seed = int(rlw.seed_value.numpy())
    _, weights = rlw(ops.array([1.0, 1.0]), training=True)
    testing.assert_allclose(weights, _expected_draws(seed, 1, 2)[0])


def test_fit_logs_the_mean_of_the_draws():
    model = testing.tiny_model(weighting=RandomLossWeighting(seed=9))
    x, y = testing.tiny_data(n=64)
    history = model.fit(x, y, epochs=2, batch_size=16, verbose=0).history
    expected = _expected_draws(9, 8, 3)
    for i, task in enumerate(["reg", "binary", "multi"]):
        testing.assert_allclose(
            history[f"{task}_weight"],
            [expected[:4, i].mean(), expected[4:, i].mean()],
            atol=1e-6,
        )


def test_draws_are_the_same_under_xla():
    rlw = RandomLossWeighting(seed=8)
    rlw.set_tasks(["a", "b", "c", "d"])
    losses = ops.ones((4,))
    xla = tf.function(lambda: rlw(losses, training=True)[1], jit_compile=True)
    for n in range(3):
        weights = xla() if n % 2 else rlw(losses, training=True)[1]
        testing.assert_allclose(weights, _expected_draws(8, 3, 4)[n])
