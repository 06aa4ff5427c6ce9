"""LearningProgressBandit (Exp3.S): its updates against numbers worked by
hand, what it does in training, its state, and bad input."""

import json
import math

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_mtl
from keras_mtl.scheduling import LearningProgressBandit

TASKS = [keras_mtl.Task("a", loss="mse"), keras_mtl.Task("b", loss="mse")]


def _sources(size=256, seed=0):
    # A: a function of x that takes a while to learn; B: noise of std 2,
    # the same whatever x: nothing to learn but its mean.
    rng = np.random.default_rng(seed)
    w = 3 * rng.normal(size=(4, 1)).astype("float32")
    xa, xb = rng.normal(size=(2, size, 4)).astype("float32")
    ya = (np.sin(xa @ w) + xa @ w).astype("float32")
    yb = rng.normal(0, 2.0, (size, 1)).astype("float32")
    return [
        keras_mtl.data.Source(
            tf.data.Dataset.from_tensor_slices((x, y)), tasks=[task], name=name
        )
        for x, y, task, name in ((xa, ya, "a", "A"), (xb, yb, "b", "B"))
    ]


def _mixture(**kwargs):
    kwargs.setdefault("layout", "homogeneous")
    kwargs.setdefault("seed", 3)
    kwargs.setdefault("steps_per_epoch", 8)
    sources = kwargs.pop("sources", None) or _sources()
    return keras_mtl.data.mix(sources, TASKS, batch_size=16, **kwargs)


def _policy(w, epsilon):
    z = np.exp(np.asarray(w) - np.max(w))
    return (1 - epsilon) * z / z.sum() + epsilon / len(w)


class Scripted(LearningProgressBandit):
    """The probe losses come from a script instead of the model."""

    def __init__(self, mixture, script, **kwargs):
        super().__init__(mixture, **kwargs)
        self.script = [np.asarray(v, "float64") for v in script]

    def probe_losses(self):
        return self.script.pop(0)


def _compiled(**compile_kwargs):
    model = keras_mtl.build_mtl_model(keras.Input((4,)), TASKS, trunk=[4])
    model.compile(optimizer="adam", **compile_kwargs)
    return model


def test_updates_match_the_exp3s_formulas_worked_by_hand():
    mixture = _mixture()
    # Probe losses (A, B) at the start, then after each of 3 steps.
    script = [[1.0, 2.0], [0.6, 2.0], [0.6, 1.9], [0.6, 2.0]]
    bandit = Scripted(mixture, script, epsilon=0.05, eta=0.5, alpha=0.1)
    bandit.set_model(_compiled())
    bandit.on_train_begin()
    bandit.on_epoch_begin(0)
    # Batch logs count the labelled examples so far this epoch: the
    # batches come from A, B, then B.
    logs = [
        {"a_examples": 16, "b_examples": 0},
        {"a_examples": 16, "b_examples": 16},
        {"a_examples": 16, "b_examples": 32},
    ]
    rates = []
    for batch, batch_logs in enumerate(logs):
        bandit.on_train_batch_begin(batch)
        rates.append(mixture.rates.numpy())
        bandit.on_train_batch_end(batch, batch_logs)

    def exp3s(w, moved, alpha=0.1):
        # Two arms: each keeps 1 - alpha of its own and gets alpha of the
        # other's moved weight.
        return [
            math.log(
                (1 - alpha) * math.exp(moved[0]) + alpha * math.exp(moved[1])
            ),
            math.log(
                (1 - alpha) * math.exp(moved[1]) + alpha * math.exp(moved[0])
            ),
        ]

    # Step 1, A: progress 1.0 - 0.6 = 0.4, no history: reward +1, rate 0.5.
    w1 = exp3s([0, 0], [0 + 0.5 * 1 / 0.5, 0])
    p1 = _policy(w1, 0.05)
    # Step 2, B: progress 0.1 against the history [0.4]: reward -1.
    w2 = exp3s(w1, [w1[0], w1[1] + 0.5 * -1 / p1[1]])
    p2 = _policy(w2, 0.05)
    # Step 3, B: progress -0.1; history [0.4, 0.1]: q20 = 0.16, q80 = 0.34,
    # below q20: reward -1.
    w3 = exp3s(w2, [w2[0], w2[1] + 0.5 * -1 / p2[1]])
    np.testing.assert_allclose(rates[0], [0.5, 0.5], rtol=1e-6)
    np.testing.assert_allclose(rates[1], p1, rtol=1e-6)
    np.testing.assert_allclose(rates[2], p2, rtol=1e-6)
    np.testing.assert_allclose(bandit.policy(), _policy(w3, 0.05), rtol=1e-9)
    assert bandit.rewards == pytest.approx([0.4, 0.1, -0.1])
    assert bandit.steps == 3


def test_a_step_with_no_label_or_two_sources_updates_nothing():
    mixture = _mixture()
    bandit = Scripted(mixture, [[1.0, 2.0], [0.5, 1.0], [0.2, 0.5]])
    bandit.set_model(_compiled())
    bandit.on_train_begin()
    bandit.on_epoch_begin(0)
    for batch, logs in enumerate(
        [{"a_examples": 0, "b_examples": 0}, {"a_examples": 8, "b_examples": 8}]
    ):
        bandit.on_train_batch_begin(batch)
        bandit.on_train_batch_end(batch, logs)
    np.testing.assert_array_equal(bandit.logits, [0.0, 0.0])
    assert bandit.rewards == [] and bandit.steps == 2


def test_the_probe_is_each_sources_first_examples_with_labels_filled():
    mixture = _mixture()
    bandit = LearningProgressBandit(mixture, probe_size=8)
    model = _compiled()
    bandit.set_model(model)
    bandit.on_train_begin()
    expected = []
    for source, task in zip(_sources(), ("a", "b")):
        x, y = next(iter(source.dataset.batch(8)))
        loss = keras.losses.mean_squared_error(y, model(x)[task])
        expected.append(float(np.mean(loss)))
    np.testing.assert_allclose(bandit.probe_losses(), expected, rtol=1e-5)


def test_rewards_are_rescaled_by_the_20th_and_80th_percentiles():
    bandit = LearningProgressBandit(_mixture())
    bandit.rewards = [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]  # q20 = 1, q80 = 4
    assert bandit._rescale(2.5) == pytest.approx(0.0)
    assert bandit._rescale(1.75) == pytest.approx(-0.5)
    assert bandit._rescale(9.0) == 1.0
    assert bandit._rescale(-9.0) == -1.0


class PolicyLog(keras.callbacks.Callback):
    def __init__(self, bandit):
        super().__init__()
        self.bandit, self.policies = bandit, []

    def on_train_batch_end(self, batch, logs=None):
        self.policies.append(self.bandit.policy())


def test_in_training_it_favours_the_source_that_still_learns():
    # Measured over seeds 0-3: A's mean rate 0.76-0.87 over 60 steps; with
    # both sources noise, 0.26-0.76 (a random walk).
    mixture = _mixture(sources=_sources(), steps_per_epoch=60)
    bandit = LearningProgressBandit(mixture, eta=0.05)
    log = PolicyLog(bandit)
    model = keras_mtl.build_mtl_model(keras.Input((4,)), TASKS, trunk=[16])
    model.compile(optimizer=keras.optimizers.Adam(0.01))
    history = model.fit(mixture, epochs=1, callbacks=[bandit, log], verbose=0)
    assert bandit.steps == 60
    policies = np.array(log.policies)
    np.testing.assert_allclose(policies.sum(axis=1), 1.0, rtol=1e-9)
    assert policies[:, 0].mean() > 0.7, policies[:, 0].mean()
    logged = [history.history["A_rate"][0], history.history["B_rate"][0]]
    np.testing.assert_allclose(logged, bandit.policy(), rtol=1e-6)
    assert (
        history.history["a_examples"][0] > 2 * history.history["b_examples"][0]
    )


def test_the_state_is_written_each_epoch_and_read_back(tmp_path):
    mixture = _mixture()
    bandit = LearningProgressBandit(mixture, eta=0.1, backup_dir=tmp_path)
    model = _compiled()
    model.fit(mixture, epochs=2, callbacks=[bandit], verbose=0)
    state = json.loads((tmp_path / bandit.STATE_FILE).read_text())
    assert state == bandit.get_state()
    assert state["steps"] == 16 and len(state["rewards"]) == 16
    resumed = LearningProgressBandit(mixture, eta=0.1, backup_dir=tmp_path)
    resumed.set_model(model)
    resumed.on_train_begin()
    np.testing.assert_array_equal(resumed.logits, bandit.logits)
    assert resumed.get_state() == bandit.get_state()


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="layout='homogeneous'"):
        LearningProgressBandit(_mixture(layout="mixed"))
    both = _sources()
    x = np.zeros((8, 4), "float32")
    labels = {
        "a": np.zeros((8, 1), "float32"),
        "b": np.zeros((8, 1), "float32"),
    }
    both[1] = keras_mtl.data.Source(
        tf.data.Dataset.from_tensor_slices((x, labels)),
        tasks=["a", "b"],
        name="B",
    )
    with pytest.raises(ValueError, match="both label task 'a'"):
        LearningProgressBandit(_mixture(sources=both))
    with pytest.raises(ValueError, match="`epsilon` must be in"):
        LearningProgressBandit(_mixture(), epsilon=1.5)
    with pytest.raises(ValueError, match="`eta` must be > 0"):
        LearningProgressBandit(_mixture(), eta=0)
    with pytest.raises(TypeError, match="`history` must be an int"):
        LearningProgressBandit(_mixture(), history=2.0)
    with pytest.raises(ValueError, match=r"`alpha` must be in \[0.0, 1.0\)"):
        LearningProgressBandit(_mixture(), alpha=1.0)
    model = _compiled(steps_per_execution=2)
    mixture = _mixture()
    with pytest.raises(ValueError, match="steps_per_execution=1"):
        model.fit(mixture, callbacks=[LearningProgressBandit(mixture)])
