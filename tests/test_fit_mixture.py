"""`MTLModel.fit` / `evaluate` on a `keras_mtl.data.Mixture`, and the
`<task>_examples` counts of what training delivered."""

import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_mtl

TASKS = [keras_mtl.Task("a", loss="mse"), keras_mtl.Task("b", loss="mse")]


def _mixture(**kwargs):
    rng = np.random.default_rng(0)
    sources = []
    for name, size, column in (("A", 64, 0), ("B", 32, 1)):
        x = rng.normal(size=(size, 4)).astype("float32")
        labels = x[:, column : column + 1]
        dataset = tf.data.Dataset.from_tensor_slices((x, labels))
        sources.append(
            keras_mtl.data.Source(dataset, tasks=["ab"[column]], name=name)
        )
    return keras_mtl.data.mix(sources, TASKS, batch_size=16, seed=0, **kwargs)


def _model(weighting="equal", tasks=TASKS):
    keras.utils.set_random_seed(0)
    model = keras_mtl.build_mtl_model(
        keras.Input((4,)), tasks, trunk=[4], weighting=weighting
    )
    model.compile(optimizer=keras.optimizers.SGD(0.05))
    return model


def test_fit_takes_the_mixture_and_its_steps_per_epoch():
    mixture = _mixture(exhaustion="once")
    history = (
        _model()
        .fit(mixture, epochs=2, verbose=0, validation_data=_mixture())
        .history
    )
    # "once": every example of both sources once per epoch.
    assert history["a_examples"] == [64.0, 64.0]
    assert history["b_examples"] == [32.0, 32.0]
    # Counts are of the data trained on: none for validation.
    assert "val_a_examples" not in history
    assert np.isfinite(history["val_loss"]).all()
    assert history["a_loss"][1] < history["a_loss"][0]


def test_examples_count_the_labelled_examples_of_array_data():
    x = np.random.default_rng(1).normal(size=(40, 4)).astype("float32")
    y = {"a": x[:, :1].copy(), "b": x[:, 1:2].copy()}
    y["b"][:25] = np.nan
    history = _model().fit(x, y, batch_size=8, epochs=2, verbose=0).history
    assert history["a_examples"] == [40.0, 40.0]
    assert history["b_examples"] == [15.0, 15.0]


def test_evaluate_takes_a_mixture():
    mixture = _mixture(exhaustion="once")
    model = _model()
    logs = model.evaluate(mixture, verbose=0, return_dict=True)
    # The task losses are the means over each task's own examples (of
    # another pass: "once" reshuffles, but every example is in each pass).
    batches = list(mixture.dataset.as_numpy_iterator())
    xs = np.concatenate([x for x, _ in batches])
    for name, size in (("a", 64), ("b", 32)):
        ys = np.concatenate([y[name] for _, y in batches])
        labelled = ~np.isnan(ys[:, 0])
        assert labelled.sum() == size
        predicted = model.predict(xs[labelled], verbose=0)[name]
        expected = np.mean((predicted - ys[labelled]) ** 2)
        np.testing.assert_allclose(logs[f"{name}_loss"], expected, rtol=1e-5)


def test_a_gradient_method_on_homogeneous_batches_warns():
    mixture = _mixture(layout="homogeneous")
    with pytest.warns(UserWarning, match="layout='mixed'"):
        _model("pcgrad").fit(mixture, epochs=1, steps_per_epoch=2, verbose=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        _model("equal").fit(mixture, epochs=1, steps_per_epoch=2, verbose=0)
        _model("pcgrad").fit(_mixture(), epochs=1, steps_per_epoch=2, verbose=0)


def test_bad_input():
    mixture = _mixture()
    with pytest.raises(ValueError, match="pass `y=None`"):
        _model().fit(mixture, {"a": np.zeros((4, 1))}, verbose=0)
    other = [keras_mtl.Task("a", loss="mse"), keras_mtl.Task("c", loss="mse")]
    with pytest.raises(ValueError, match=r"the model has tasks \['a', 'c'\]"):
        _model(tasks=other).fit(mixture, verbose=0)
