"""Sampling schedules: the rates they set, logged, resumed, and bad input."""

import os

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_mtl

TASKS = [keras_mtl.Task("a", loss="mse"), keras_mtl.Task("b", loss="mse")]


def _mixture(sizes=(96, 32), **kwargs):
    rng = np.random.default_rng(0)
    sources = []
    for name, size, column in zip(("A", "B"), sizes, (0, 1)):
        x = rng.normal(size=(size, 4)).astype("float32")
        dataset = tf.data.Dataset.from_tensor_slices(
            (x, x[:, column : column + 1])
        )
        sources.append(
            keras_mtl.data.Source(dataset, tasks=["ab"[column]], name=name)
        )
    kwargs.setdefault("seed", 3)
    return keras_mtl.data.mix(sources, TASKS, batch_size=16, **kwargs)


def _model():
    keras.utils.set_random_seed(1)
    model = keras_mtl.build_mtl_model(keras.Input((4,)), TASKS, trunk=[4])
    model.compile(optimizer=keras.optimizers.SGD(0.01))
    return model


def test_annealed_sampling_sets_and_logs_the_papers_rates():
    mixture = _mixture(sizes=(90, 10))
    history = (
        _model()
        .fit(
            mixture,
            epochs=3,
            verbose=0,
            callbacks=[keras_mtl.scheduling.AnnealedSampling(mixture, 3)],
        )
        .history
    )
    # alpha 1.0, 0.6, 0.2 of sizes 90 and 10.
    for epoch, alpha in enumerate((1.0, 0.6, 0.2)):
        p = np.array([90.0, 10.0]) ** alpha
        p /= p.sum()
        np.testing.assert_allclose(history["A_rate"][epoch], p[0], rtol=1e-6)
        np.testing.assert_allclose(history["B_rate"][epoch], p[1], rtol=1e-6)
    # The last epoch draws far more of B than the first (p 0.1 -> 0.389):
    # 6 batches of 16 = 96 draws per epoch.
    assert history["b_examples"][0] < history["b_examples"][2]


def test_curriculum_by_epoch_keeps_a_source_out_until_it_joins():
    mixture = _mixture()
    schedule = keras_mtl.scheduling.Curriculum(
        mixture, {0: {"A": 1.0}, 2: {"A": 1.0, "B": 3.0}}
    )
    history = (
        _model().fit(mixture, epochs=3, verbose=0, callbacks=[schedule]).history
    )
    assert history["A_rate"] == [1.0, 1.0, 0.25]
    assert history["B_rate"] == [0.0, 0.0, 0.75]
    # The pipeline prefetches: a change reaches training within a few
    # batches. The first epoch may see a prefetched batch or two drawn
    # with the mixture's own rates (B: 0.25); the second sees no B at all.
    assert history["b_examples"][0] <= 3 * 16
    assert history["b_examples"][1] == 0.0
    assert np.isnan(history["b_loss"][1])  # no label: the mean of nothing
    assert history["b_examples"][2] > 16
    assert history["a_examples"][1] == mixture.steps_per_epoch * 16


def test_curriculum_by_step():
    mixture = _mixture()
    schedule = keras_mtl.scheduling.Curriculum(
        mixture, {0: [0.0, 1.0], 5: [1.0, 0.0]}, unit="step"
    )
    model = _model()
    model.fit(
        mixture, epochs=1, steps_per_epoch=5, verbose=0, callbacks=[schedule]
    )
    np.testing.assert_allclose(mixture.rates.numpy(), [0.0, 1.0])
    history = model.fit(
        mixture, epochs=1, steps_per_epoch=3, verbose=0, callbacks=[schedule]
    ).history
    np.testing.assert_allclose(mixture.rates.numpy(), [1.0, 0.0])
    assert history["A_rate"] == [1.0]


def test_a_resumed_run_continues_with_the_rates_of_its_epoch(tmp_path):
    class Interrupt(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 1:
                raise RuntimeError("interrupted")

    backup = str(tmp_path / "backup")
    mixture = _mixture(sizes=(90, 10))
    schedule = keras_mtl.scheduling.AnnealedSampling(mixture, 3)
    model = _model()
    with pytest.raises(RuntimeError, match="interrupted"):
        model.fit(
            mixture,
            epochs=3,
            verbose=0,
            callbacks=[
                schedule,
                keras.callbacks.BackupAndRestore(backup),
                Interrupt(),
            ],
        )
    assert os.path.isdir(backup)
    mixture = _mixture(sizes=(90, 10))
    history = (
        _model()
        .fit(
            mixture,
            epochs=3,
            verbose=0,
            callbacks=[
                keras_mtl.scheduling.AnnealedSampling(mixture, 3),
                keras.callbacks.BackupAndRestore(backup),
            ],
        )
        .history
    )
    # Resumed at epoch 3 (index 2): alpha 0.2.
    p = np.array([90.0, 10.0]) ** 0.2
    np.testing.assert_allclose(history["A_rate"], [p[0] / p.sum()], rtol=1e-6)


def test_a_custom_schedule():
    class MainFirst(keras_mtl.scheduling.SamplingSchedule):
        def rates(self, epoch, step):
            return [1.0, 0.0] if epoch < 1 else None

    mixture = _mixture()
    history = (
        _model()
        .fit(mixture, epochs=2, verbose=0, callbacks=[MainFirst(mixture)])
        .history
    )
    assert history["B_rate"] == [0.0, 0.0]


def test_bad_input():
    mixture = _mixture()
    with pytest.raises(TypeError, match="keras_mtl.data.Mixture"):
        keras_mtl.scheduling.AnnealedSampling("not a mixture", 3)
    with pytest.raises(ValueError, match="`unit` must be one of"):
        keras_mtl.scheduling.Curriculum(mixture, {0: [1, 1]}, unit="batch")
    with pytest.raises(ValueError, match=r"unknown sources \['C'\]"):
        keras_mtl.scheduling.Curriculum(mixture, {0: {"C": 1.0}})
    with pytest.raises(ValueError, match="all zero"):
        keras_mtl.scheduling.Curriculum(mixture, {0: [0.0, 0.0]})
    with pytest.raises(ValueError, match="finite and >= 0"):
        keras_mtl.scheduling.Curriculum(mixture, {0: [1.0, -1.0]})
    with pytest.raises(ValueError, match="one rate per source"):
        keras_mtl.scheduling.Curriculum(mixture, {0: [1.0]})
    with pytest.raises(ValueError, match="ints >= 0"):
        keras_mtl.scheduling.Curriculum(mixture, {-1: [1.0, 1.0]})
    with pytest.raises(ValueError, match="`epochs` must be >= 1"):
        keras_mtl.scheduling.AnnealedSampling(mixture, 0)
    once = _mixture(exhaustion="once")
    with pytest.raises(ValueError, match="not drawn at random"):
        keras_mtl.scheduling.AnnealedSampling(once, 3)
