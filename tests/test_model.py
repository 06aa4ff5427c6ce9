import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_mtl
from keras_mtl import testing


def _manual_losses(model, x, y):
    """Each task's Keras loss on the labelled examples, computed by hand."""
    pred = model.predict(x, verbose=0)
    losses = {}
    for task in model.tasks:
        labels = np.asarray(y[task.name])
        keep = np.ones(len(labels), bool)
        if labels.dtype.kind == "f":
            keep &= ~np.isnan(labels.reshape(len(labels), -1)).any(axis=1)
        if task.missing_label is not None:
            keep &= labels.reshape(len(labels), -1)[:, 0] != task.missing_label
        loss_fn = keras.losses.get(task.loss)
        losses[task.name] = float(
            keras.ops.mean(loss_fn(labels[keep], pred[task.name][keep]))
        )
    return losses


def test_outputs_are_named_by_task():
    model = testing.tiny_model()
    x, _ = testing.tiny_data(n=4)
    pred = model.predict(x, verbose=0)
    assert sorted(pred) == ["binary", "multi", "reg"]
    assert pred["multi"].shape == (4, 4)
    assert sorted(model.output_names) == ["binary", "multi", "reg"]
    assert model.get_layer("binary_hidden_0").units == 4


def test_loss_is_weighted_sum_of_task_losses():
    inputs = keras.Input((8,))
    tasks = testing.tiny_tasks()
    tasks[1].loss_weight = 0.25
    model = keras_mtl.build_mtl_model(inputs, tasks, trunk=[8])
    model.compile(optimizer="sgd")
    x, y = testing.tiny_data(n=32)
    logs = model.evaluate(x, y, batch_size=32, return_dict=True, verbose=0)
    manual = _manual_losses(model, x, y)
    for name, value in manual.items():
        assert logs[f"{name}_loss"] == pytest.approx(value, rel=1e-5)
    expected = manual["reg"] + 0.25 * manual["binary"] + manual["multi"]
    assert logs["loss"] == pytest.approx(expected, rel=1e-5)


def test_loss_does_not_move_with_the_weights_or_the_batching():
    inputs = keras.Input((8,))
    tasks = testing.tiny_tasks()
    tasks[1].loss_weight = 0.25
    model = keras_mtl.build_mtl_model(
        inputs, tasks, trunk=[8], weighting="uncertainty"
    )
    model.compile(optimizer="sgd")
    model.weighting.log_variances.assign([1.0, -0.5, 0.3])
    x, y = testing.tiny_data(n=40)
    y["binary"][:30] = np.nan  # 10 labels, all in the last batch of 8
    manual = _manual_losses(model, x, y)
    expected = manual["reg"] + 0.25 * manual["binary"] + manual["multi"]
    for batch_size in (8, 40):
        logs = model.evaluate(
            x, y, batch_size=batch_size, return_dict=True, verbose=0
        )
        assert logs["loss"] == pytest.approx(expected, rel=1e-5)
    logs = model.fit(x, y, batch_size=40, epochs=1, verbose=0).history
    # The objective is the one minimised: the weights of uncertainty
    # weighting times the losses, plus its own term.
    s = np.array([1.0, -0.5, 0.3])
    losses = np.array([manual["reg"], 0.25 * manual["binary"], manual["multi"]])
    objective = np.sum(np.exp(-s) * losses + s)
    assert logs["weighted_loss"][0] == pytest.approx(objective, rel=1e-5)
    assert abs(logs["weighted_loss"][0] - logs["loss"][0]) > 0.1


def test_history_has_task_losses_and_metrics():
    model = testing.tiny_model()
    x, y = testing.tiny_data()
    history = model.fit(
        x, y, validation_data=(x, y), epochs=2, batch_size=16, verbose=0
    )
    expected = {
        "loss",
        "weighted_loss",
        "reg_loss",
        "binary_loss",
        "multi_loss",
        "reg_mae",
        "binary_accuracy",
        "multi_accuracy",
    }
    expected |= {f"val_{k}" for k in expected if k != "weighted_loss"}
    # Counts of the labelled examples trained on: training only.
    expected |= {"reg_examples", "binary_examples", "multi_examples"}
    expected.add("skipped_steps")  # by the non-finite guard: training only
    assert set(history.history) == expected
    assert history.history["skipped_steps"] == [0.0, 0.0]
    assert history.history["reg_examples"] == [64.0, 64.0]
    assert history.history["loss"][1] < history.history["loss"][0]


def test_compile_arguments_override_tasks():
    model = testing.tiny_model()
    model.compile(
        optimizer="sgd",
        loss={"reg": "mae"},
        loss_weights={"multi": 0.0},
        metrics={"reg": ["mse"]},
    )
    x, y = testing.tiny_data(n=32)
    logs = model.evaluate(x, y, batch_size=32, return_dict=True, verbose=0)
    pred = model.predict(x, verbose=0)
    mae = np.mean(np.abs(pred["reg"] - y["reg"]))
    assert logs["reg_loss"] == pytest.approx(mae, rel=1e-5)
    assert "reg_mse" in logs and "reg_mae" not in logs
    assert logs["loss"] == pytest.approx(
        logs["reg_loss"] + logs["binary_loss"], rel=1e-5
    )
    with pytest.raises(ValueError, match="unknown tasks \\['nope'\\]"):
        model.compile(optimizer="sgd", loss={"nope": "mse"})


def _dense(layer, x):
    kernel, bias = (v.numpy() for v in layer.weights)
    return x @ kernel + bias


def test_dict_inputs_and_layer_trunk():
    inputs = {
        "b": keras.Input((2, 2), name="b"),
        "a": keras.Input((3,), name="a"),
    }
    model = keras_mtl.build_mtl_model(
        inputs, [keras_mtl.Task("t1"), keras_mtl.Task("t2")], trunk=[6]
    )
    model.compile(optimizer="sgd")
    rng = np.random.default_rng(0)
    data = {
        "a": rng.normal(size=(4, 3)).astype("float32"),
        "b": rng.normal(size=(4, 2, 2)).astype("float32"),
    }
    pred = model.predict(data, verbose=0)
    # By hand: the inputs flattened and concatenated in key order (a, b),
    # the ReLU trunk, then each linear head.
    merged = np.concatenate([data["a"], data["b"].reshape(4, 4)], axis=1)
    hidden = np.maximum(_dense(model.get_layer("trunk_dense_0"), merged), 0)
    for name in ("t1", "t2"):
        expected = _dense(model.get_layer(name), hidden)
        testing.assert_allclose(pred[name], expected, atol=1e-5, msg=name)
    assert not np.allclose(pred["t1"], pred["t2"], atol=1e-3)
    # The same dict in another order gives the same outputs; so does a
    # training-path loss on them.
    swapped = model.predict({"b": data["b"], "a": data["a"]}, verbose=0)
    testing.assert_allclose(swapped["t1"], pred["t1"], atol=0)
    y = {"t1": np.ones((4, 1), "float32"), "t2": np.zeros((4, 1), "float32")}
    logs = model.evaluate(data, y, return_dict=True, verbose=0)
    assert logs["t1_loss"] == pytest.approx(
        np.mean((pred["t1"] - 1.0) ** 2), rel=1e-5
    )
    assert logs["t2_loss"] == pytest.approx(np.mean(pred["t2"] ** 2), rel=1e-5)

    trunk = keras.Sequential([keras.layers.Dense(5, activation="relu")])
    flat = keras.Input((4,), name="flat")
    tasks = [keras_mtl.Task("t1"), keras_mtl.Task("t2", units=2)]
    model = keras_mtl.build_mtl_model(flat, tasks, trunk=trunk)
    assert trunk in model.layers
    assert [v.path for v in model.shared_variables] == [
        v.path for v in trunk.weights
    ]
    x = data["b"].reshape(4, 4)
    hidden = np.maximum(_dense(trunk.layers[0], x), 0)
    pred = model.predict(x, verbose=0)
    for name in ("t1", "t2"):
        expected = _dense(model.get_layer(name), hidden)
        testing.assert_allclose(pred[name], expected, atol=1e-5, msg=name)


def test_missing_labels_count_for_nothing():
    model = testing.tiny_model()
    x, y = testing.tiny_data(n=32)
    y["reg"][::3] = np.nan
    y["multi"][1::4] = -1
    logs = model.evaluate(x, y, batch_size=32, return_dict=True, verbose=0)
    manual = _manual_losses(model, x, y)
    for name, value in manual.items():
        assert logs[f"{name}_loss"] == pytest.approx(value, rel=1e-5)
    pred = model.predict(x, verbose=0)
    keep = y["multi"] != -1
    accuracy = np.mean(np.argmax(pred["multi"][keep], -1) == y["multi"][keep])
    assert logs["multi_accuracy"] == pytest.approx(accuracy, rel=1e-5)
    keep = ~np.isnan(y["reg"][:, 0])
    mae = np.mean(np.abs(pred["reg"][keep] - y["reg"][keep]))
    assert logs["reg_mae"] == pytest.approx(mae, rel=1e-5)
    history = model.fit(x, y, epochs=2, batch_size=8, verbose=0)
    assert np.all(np.isfinite(history.history["loss"]))


def test_task_without_any_label_contributes_zero():
    model = testing.tiny_model()
    x, y = testing.tiny_data(n=16)
    y["reg"][:] = np.nan
    before = [v.numpy() for v in model.trainable_variables]
    logs = model.evaluate(x, y, batch_size=16, return_dict=True, verbose=0)
    assert np.isnan(logs["reg_loss"]) and np.isnan(logs["reg_mae"])
    assert logs["loss"] == pytest.approx(
        logs["binary_loss"] + logs["multi_loss"], rel=1e-5
    )
    model.fit(x, y, epochs=1, batch_size=16, verbose=0)
    after = model.trainable_variables
    reg_kernel = [i for i, v in enumerate(after) if v.path == "reg/kernel"][0]
    testing.assert_allclose(before[reg_kernel], after[reg_kernel])
    assert all(np.all(np.isfinite(v.numpy())) for v in after)


def test_sample_weights_shared_and_per_task():
    model = testing.tiny_model()
    x, y = testing.tiny_data(n=32)
    pred = model.predict(x, verbose=0)
    weights = np.linspace(0.0, 2.0, 32).astype("float32")
    sq = (pred["reg"][:, 0] - y["reg"][:, 0]) ** 2
    expected = np.sum(weights * sq) / 32
    logs = model.evaluate(
        x, y, sample_weight=weights, batch_size=32, return_dict=True, verbose=0
    )
    assert logs["reg_loss"] == pytest.approx(expected, rel=1e-5)
    ds = tf.data.Dataset.from_tensor_slices((x, y, {"reg": weights})).batch(32)
    per_task = model.evaluate(ds, return_dict=True, verbose=0)
    assert per_task["reg_loss"] == pytest.approx(expected, rel=1e-5)
    assert per_task["multi_loss"] == pytest.approx(
        _manual_losses(model, x, y)["multi"], rel=1e-5
    )
    # Arrays too: a dict that names some tasks leaves the others unweighted.
    arrays = model.evaluate(
        x, y, sample_weight={"reg": weights}, return_dict=True, verbose=0
    )
    for key in ("reg_loss", "multi_loss", "binary_loss"):
        assert arrays[key] == pytest.approx(per_task[key], rel=1e-6)
    with pytest.raises(ValueError, match="unknown tasks \\['regg'\\]"):
        model.fit(x, y, sample_weight={"regg": weights}, verbose=0)


def test_one_hot_and_column_labels():
    inputs = keras.Input((8,))
    tasks = [
        keras_mtl.Task(
            "c", loss="categorical_crossentropy", units=3, activation="softmax"
        ),
        keras_mtl.Task("r", loss="mse"),
    ]
    model = keras_mtl.build_mtl_model(inputs, tasks, trunk=[4])
    model.compile(optimizer="sgd")
    x = np.random.normal(size=(8, 8)).astype("float32")
    y = {
        "c": np.eye(3, dtype="float32")[np.arange(8) % 3],
        "r": np.ones((8, 1), "float32"),
    }
    logs = model.evaluate(x, y, return_dict=True, verbose=0)
    assert np.isfinite(logs["loss"])
    y["r"] = np.ones((8,), "float32")
    assert model.evaluate(x, y, return_dict=True, verbose=0)["r_loss"] == (
        pytest.approx(logs["r_loss"], rel=1e-6)
    )


@pytest.mark.parametrize(
    "change, error, match",
    [
        ({"multi": None}, ValueError, "Missing: \\['multi'\\]"),
        ({"extra": np.zeros(8)}, ValueError, "unknown keys: \\['extra'\\]"),
        ({"reg": np.ones((8, 3))}, ValueError, "task 'reg'.*shape"),
        # One-hot labels for a sparse loss, class ids for a dense one.
        ({"multi": np.eye(4)[np.arange(8) % 4]}, ValueError, "'multi'.*ids"),
        ({"binary": np.zeros((8, 1, 1))}, ValueError, "'binary'.*shape"),
        ({"reg": np.array(["a"] * 8)}, TypeError, "task 'reg'.*dtype"),
    ],
)
@pytest.mark.parametrize("as_dataset", [False, True])
def test_bad_labels_raise_clear_errors(change, error, match, as_dataset):
    model = testing.tiny_model()
    x, y = testing.tiny_data(n=8)
    y = {**y, **change}
    y = {k: v for k, v in y.items() if v is not None}
    data = {"x": x, "y": y}
    if as_dataset:
        data = {"x": tf.data.Dataset.from_tensor_slices((x, y)).batch(8)}
    with pytest.raises(error, match=match):
        model.fit(**data, epochs=1, verbose=0)


def test_class_ids_for_a_dense_loss_raise_a_clear_error():
    inputs = keras.Input((8,))
    tasks = [
        keras_mtl.Task(
            "c", loss="categorical_crossentropy", units=3, activation="softmax"
        ),
        keras_mtl.Task("r"),
    ]
    model = keras_mtl.build_mtl_model(inputs, tasks, trunk=[4])
    model.compile(optimizer="sgd")
    x = np.zeros((8, 8), "float32")
    with pytest.raises(ValueError, match="'c'.*categorical_crossentropy.*ids"):
        model.fit(x, {"c": np.arange(8) % 3, "r": np.zeros(8)}, verbose=0)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"tasks": []}, ValueError, "non-empty"),
        (
            {"tasks": [keras_mtl.Task("a"), keras_mtl.Task("a")]},
            ValueError,
            "unique.*'a'",
        ),
        ({"tasks": ["a"]}, TypeError, "keras_mtl.Task"),
        ({"weighting": "nope"}, ValueError, "Unknown weighting"),
        ({"weighting": {"zzz": 1.0}}, ValueError, "zzz"),
        ({"sharing": "nope"}, ValueError, "Unknown sharing"),
        ({"trunk": "big"}, TypeError, "trunk"),
        ({"tasks": [keras_mtl.Task("x")]}, ValueError, "input names"),
        ({"inputs": np.ones((2, 8))}, TypeError, "keras.Input"),
    ],
)
def test_bad_build_arguments_raise_clear_errors(kwargs, error, match):
    args = {
        "inputs": keras.Input((8,), name="x"),
        "tasks": [keras_mtl.Task("a")],
        "trunk": [4],
    }
    args.update(kwargs)
    with pytest.raises(error, match=match):
        keras_mtl.build_mtl_model(**args)


def test_a_weighting_method_belongs_to_one_model():
    method = keras_mtl.weighting.UncertaintyWeighting()
    testing.tiny_model(weighting=method)
    with pytest.raises(ValueError, match="already belongs to another model"):
        testing.tiny_model(weighting=method)


def test_model_outputs_must_match_tasks():
    inputs = keras.Input((4,))
    outputs = {"a": keras.layers.Dense(1, name="a")(inputs)}
    with pytest.raises(ValueError, match="task names"):
        keras_mtl.MTLModel(inputs, outputs, tasks=[keras_mtl.Task("b")])
    with pytest.raises(ValueError, match="needs `tasks`.*clone_model"):
        keras.models.clone_model(testing.tiny_model())


def test_shared_and_task_variables():
    model = testing.tiny_model()
    shared = [v.path for v in model.shared_variables]
    assert shared == ["trunk_dense_0/kernel", "trunk_dense_0/bias"]
    own = {k: [v.path for v in vs] for k, vs in model.task_variables.items()}
    assert own["reg"] == ["reg/kernel", "reg/bias"]
    assert own["binary"] == [
        "binary_hidden_0/kernel",
        "binary_hidden_0/bias",
        "binary/kernel",
        "binary/bias",
    ]
    assert not any(
        v in model.shared_variables for v in model.weighting.variables
    )


def test_xla_matches_eager():
    x, y = testing.tiny_data(n=32)
    y["reg"][::4] = np.nan
    results = []
    for jit_compile in (False, True):
        keras.utils.set_random_seed(0)
        model = testing.tiny_model()
        model.compile(optimizer="sgd", jit_compile=jit_compile)
        assert model.jit_compile == jit_compile
        model.fit(x, y, epochs=1, batch_size=16, shuffle=False, verbose=0)
        results.append([v.numpy() for v in model.trainable_variables])
    for a, b in zip(*results):
        testing.assert_allclose(a, b, atol=1e-5)


def test_single_task_logs_keep_the_task_prefix():
    inputs = keras.Input((8,))
    task = keras_mtl.Task("only", metrics=["mae"])
    model = keras_mtl.build_mtl_model(inputs, [task], trunk=[4])
    model.compile(optimizer="sgd")
    x, y = testing.tiny_data(n=16)
    history = model.fit(
        x,
        {"only": y["reg"]},
        validation_data=(x, {"only": y["reg"]}),
        epochs=1,
        verbose=0,
    )
    assert set(history.history) == {
        "loss",
        "weighted_loss",
        "skipped_steps",
        "only_loss",
        "only_mae",
        "only_examples",
        "val_loss",
        "val_only_loss",
        "val_only_mae",
    }


def test_summary_shows_the_weighting_and_the_shared_task_split():
    model = keras_mtl.build_mtl_model(
        keras.Input((8,)),
        [keras_mtl.Task("a"), keras_mtl.Task("b", head=[4])],
        trunk=[16],
        weighting="uncertainty",
    )
    lines = []
    model.summary(print_fn=lambda line, **kwargs: lines.append(line))
    assert lines[-4:] == [
        "Weighting: UncertaintyWeighting (2 parameters in the totals above)",
        "Shared parameters: 144 (trainable; more than one task's output "
        "depends on them)",
        "  a: 17 task parameters",
        "  b: 73 task parameters",
    ]
    assert 2 + 144 + 17 + 73 == model.count_params()
    mmoe = keras_mtl.build_mtl_model(
        keras.Input((8,)),
        [keras_mtl.Task("a"), keras_mtl.Task("b")],
        trunk=[16],
        sharing="mmoe",
    )
    lines = []
    mmoe.summary(print_fn=lambda line, **kwargs: lines.append(line))
    assert "Sharing layer mmoe: MMoE(num_tasks=2, num_experts=4)" in lines
    assert lines[-5] == "Weighting: EqualWeighting (no state)"
