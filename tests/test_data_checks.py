"""What fit and evaluate receive: errors that name the task or argument."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_mtl

X = np.random.default_rng(0).random((16, 4)).astype("float32")
R = np.random.default_rng(1).random((16, 1)).astype("float32")
GOOD_IDS = np.array([0, 1, 2, -1] * 4)
BAD_IDS = np.array([0, 1, 2, -1] * 3 + [5, 0, 1, 2])


def _model(**compile_kwargs):
    tasks = [
        keras_mtl.Task(
            "c",
            loss="sparse_categorical_crossentropy",
            units=3,
            activation="softmax",
            missing_label=-1,
        ),
        keras_mtl.Task("r"),
    ]
    model = keras_mtl.build_mtl_model(keras.Input((4,), name="f"), tasks, [8])
    model.compile(optimizer="sgd", **compile_kwargs)
    return model


def _dataset(ids, batch=4):
    dataset = tf.data.Dataset.from_tensor_slices((X, {"c": ids, "r": R}))
    return dataset if batch is None else dataset.batch(batch)


ARRAY_CASES = {
    "fit": lambda m: m.fit(X, {"c": BAD_IDS, "r": R}, verbose=0),
    "evaluate": lambda m: m.evaluate(X, {"c": BAD_IDS, "r": R}, verbose=0),
    "validation_data": lambda m: m.fit(
        X,
        {"c": GOOD_IDS, "r": R},
        validation_data=(X, {"c": BAD_IDS, "r": R}),
        verbose=0,
    ),
    "float ids": lambda m: m.fit(
        X, {"c": np.where(BAD_IDS < 0, np.nan, BAD_IDS), "r": R}, verbose=0
    ),
}


@pytest.mark.parametrize("case", list(ARRAY_CASES))
def test_array_class_ids_out_of_range_name_the_task_before_a_trace(case):
    model = _model()
    with pytest.raises(
        ValueError, match=r"Task 'c'.*\[0, 3\).*from 0(\.0)? to 5"
    ):
        ARRAY_CASES[case](model)
    assert model.optimizer.iterations.numpy() == 0
    assert model.train_function is None


def test_dataset_class_ids_out_of_range_fail_the_step_naming_the_task():
    model = _model()
    with pytest.raises(
        tf.errors.InvalidArgumentError, match=r"Task `c`: class ids.*\[0, 3\)"
    ):
        model.fit(_dataset(BAD_IDS), verbose=0)


def test_missing_class_ids_are_not_out_of_range():
    model = _model()
    history = model.fit(_dataset(GOOD_IDS), verbose=0)
    assert history.history["c_examples"] == [12.0]
    floats = np.where(GOOD_IDS < 0, np.nan, GOOD_IDS).astype("float32")
    model.fit(X, {"c": floats, "r": R}, verbose=0)


def test_under_xla_an_out_of_range_batch_is_skipped_as_non_finite():
    """XLA drops the assertion; the NaN loss it leaves is skipped."""
    model = _model(jit_compile=True)
    history = model.fit(_dataset(BAD_IDS), verbose=0)
    assert history.history["skipped_steps"] == [1.0]
    assert history.history["c_examples"] == [9.0]


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda m: m.fit(X[:0], {"c": GOOD_IDS[:0], "r": R[:0]}), "`x` holds"),
        (lambda m: m.fit(_dataset(GOOD_IDS).take(0)), "`x` is an empty"),
        (lambda m: m.evaluate(_dataset(GOOD_IDS).take(0)), "`x` is an empty"),
        (
            lambda m: m.fit(
                _dataset(GOOD_IDS), validation_data=_dataset(GOOD_IDS).take(0)
            ),
            "`validation_data` is an empty",
        ),
        (
            lambda m: m.fit(_dataset(GOOD_IDS, batch=None)),
            r"input 'f' of shape \(batch, 4\): the dataset is not batched",
        ),
        (
            lambda m: m.fit(
                tf.data.Dataset.from_tensor_slices(
                    ({"f": X}, {"c": GOOD_IDS, "r": R[:, 0]})
                )
            ),
            "not batched",
        ),
    ],
)
def test_empty_or_unbatched_data_is_refused(call, match):
    model = _model()
    with pytest.raises(ValueError, match=match):
        call(model)
    assert model.train_function is None


def test_unbatched_scalar_labels_name_the_task():
    model = _model()
    unbatched = tf.data.Dataset.from_tensor_slices(
        (X, {"c": GOOD_IDS, "r": R[:, 0]})
    ).map(lambda x, y: (tf.reshape(x, (1, 4)), y))
    with pytest.raises(ValueError, match="scalar label.*task 'c'.*Batch it"):
        model.fit(unbatched, verbose=0)
