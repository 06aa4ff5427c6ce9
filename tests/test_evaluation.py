import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_mtl
from keras_mtl import evaluation
from keras_mtl import testing

# MultiMNIST accuracies from REFERENCES.md (MGDA paper, second-hand).
SINGLE_TASK = {"left": {"accuracy": 97.23}, "right": {"accuracy": 95.90}}
EQUAL = {"left": {"accuracy": 96.46}, "right": {"accuracy": 94.99}}
MGDA_UB = {"left": {"accuracy": 97.26}, "right": {"accuracy": 95.90}}


def test_delta_m_published_multi_mnist():
    expected = 100 / 2 * ((96.46 - 97.23) / 97.23 + (94.99 - 95.90) / 95.90)
    assert evaluation.delta_m(EQUAL, SINGLE_TASK) == pytest.approx(expected)
    assert expected == pytest.approx(-0.8704, abs=1e-4)
    assert evaluation.delta_m(MGDA_UB, SINGLE_TASK) == pytest.approx(
        50 * 0.03 / 97.23
    )


def test_delta_m_lower_is_better_flips_the_sign():
    # QM9-style: errors, lower is better. Halving one error, doubling the
    # other: (100/2) * (+0.5 - 1.0).
    mtl = {"a": {"mae": 1.0}, "b": {"mae": 4.0}}
    base = {"a": {"mae": 2.0}, "b": {"mae": 2.0}}
    assert evaluation.delta_m(mtl, base) == pytest.approx(-25.0)
    assert evaluation.delta_m(
        {"a": 1.0, "b": 4.0}, {"a": 2.0, "b": 2.0}, higher_is_better=False
    ) == pytest.approx(-25.0)
    assert evaluation.delta_m(
        {"a": 1.0, "b": 4.0}, {"a": 2.0, "b": 2.0}, higher_is_better=True
    ) == pytest.approx(25.0)


def test_delta_m_averaging_conventions():
    # LibMTL's `count_improvement` docstring example: task A has a
    # higher-is-better and a lower-is-better metric, task B one metric.
    base = {"A": {"acc": 96.0, "err": 98.0}, "B": {"acc": 0.2}}
    new = {"A": {"acc": 93.0, "err": 99.0}, "B": {"acc": 0.5}}
    a_acc, a_err, b_acc = -3 / 96, -1 / 98, 0.3 / 0.2
    by_tasks = 100 * ((a_acc + a_err) / 2 + b_acc) / 2
    by_metrics = 100 * (a_acc + a_err + b_acc) / 3
    assert by_tasks == pytest.approx(73.9636, abs=1e-4)
    higher = {"A": {"acc": True, "err": False}, "B": True}
    assert evaluation.delta_m(
        new, base, higher_is_better=higher, average="tasks"
    ) == pytest.approx(by_tasks)
    assert evaluation.delta_m(
        new, base, higher_is_better=higher
    ) == pytest.approx(by_metrics)
    with pytest.raises(ValueError, match="'err'"):
        evaluation.delta_m(new, base)


def test_delta_m_metric_selection():
    base = {"a": {"loss": 1.0, "accuracy": 0.5}, "b": {"loss": 2.0}}
    mtl = {"a": {"loss": 0.5, "accuracy": 0.6}, "b": {"loss": 1.0}}
    # Default: a's loss is left out (it has a metric), b's loss counts.
    assert evaluation.delta_m(mtl, base) == pytest.approx(100 * (0.2 + 0.5) / 2)
    assert evaluation.delta_m(mtl, base, metrics="all") == pytest.approx(
        100 * (0.5 + 0.2 + 0.5) / 3
    )
    assert evaluation.delta_m(mtl, base, metrics="loss") == pytest.approx(50.0)
    assert evaluation.delta_m(
        mtl, base, metrics={"a": "accuracy"}
    ) == pytest.approx(20.0)


def test_metric_directions():
    higher = [
        "accuracy",
        "sparse_categorical_accuracy",
        "auc",
        "precision",
        "f1_score",
        "mean_io_u",
    ]
    lower = [
        "loss",
        "mae",
        "mean_squared_error",
        "root_mean_squared_error",
        "binary_crossentropy",
        "false_negatives",
    ]
    for name in higher:
        assert evaluation.metric_higher_is_better(name) is True, name
    for name in lower:
        assert evaluation.metric_higher_is_better(name) is False, name
    with pytest.raises(ValueError, match="'speed'.*higher_is_better"):
        evaluation.metric_higher_is_better("speed")


def _one(value):
    return {"a": {"mae": value}}


@pytest.mark.parametrize(
    "mtl, base, kwargs, error, match",
    [
        ({"a": 1.0}, {"a": 1.0}, {}, ValueError, "unnamed metric"),
        ({"a": {"speed": 1}}, {"a": {"speed": 2}}, {}, ValueError, "speed"),
        ({"b": {"mae": 1.0}}, _one(1.0), {}, ValueError, "no task 'a'"),
        ({"a": {"mse": 1.0}}, _one(1.0), {}, ValueError, "no metric 'mae'"),
        (_one(1.0), _one(0.0), {}, ValueError, "non-zero"),
        (_one(1.0), _one(1.0), {"average": "median"}, ValueError, "average"),
        (_one(1.0), _one(1.0), {"metrics": {"b": "x"}}, ValueError, "'b'"),
        (_one(1.0), _one(1.0), {"higher_is_better": "no"}, TypeError, "higher"),
        (_one("x"), _one(1.0), {}, TypeError, "'mae' must be a number"),
        ([1.0], _one(1.0), {}, TypeError, "mtl_results"),
    ],
)
def test_delta_m_bad_input(mtl, base, kwargs, error, match):
    with pytest.raises(error, match=match):
        evaluation.delta_m(mtl, base, **kwargs)


def test_results_table_text_and_dataframe():
    text = evaluation.results_table(EQUAL, SINGLE_TASK)
    lines = text.splitlines()
    assert lines[0].split() == [
        "task",
        "metric",
        "better",
        "single-task",
        "multi-task",
        "multi-task",
        "change",
        "%",
    ]
    left = lines[2].split()
    assert left[:3] == ["left", "accuracy", "higher"]
    assert [float(v) for v in left[3:]] == pytest.approx(
        [97.23, 96.46, -0.79], abs=1e-2
    )
    assert lines[-1].split()[0] == "Delta_m%"
    assert float(lines[-1].split()[-1]) == pytest.approx(-0.87, abs=1e-2)

    table = evaluation.results_table(
        {"equal": EQUAL, "mgda_ub": MGDA_UB},
        SINGLE_TASK,
        as_dataframe=True,
    )
    assert list(table.columns) == [
        "task",
        "metric",
        "better",
        "single-task",
        "equal",
        "equal change %",
        "mgda_ub",
        "mgda_ub change %",
    ]
    assert list(table["task"]) == ["left", "right", "Delta_m%"]
    assert table["equal"][1] == pytest.approx(94.99)
    assert table["equal change %"][2] == pytest.approx(
        evaluation.delta_m(EQUAL, SINGLE_TASK)
    )
    assert table["mgda_ub change %"][2] == pytest.approx(50 * 0.03 / 97.23)
    with pytest.raises(ValueError, match="every task"):
        evaluation.results_table({"left": {"accuracy": 1.0}}, SINGLE_TASK)


def test_results_table_without_pandas(monkeypatch):
    monkeypatch.setitem(sys.modules, "pandas", None)
    assert "Delta_m%" in evaluation.results_table(EQUAL, SINGLE_TASK)
    with pytest.raises(ImportError, match="needs pandas"):
        evaluation.results_table(EQUAL, SINGLE_TASK, as_dataframe=True)


def test_mean_log_metric_numbers():
    results = {"a": {"accuracy": 0.5, "loss": 3.0}, "b": {"mae": 2.0}}
    expected = 50 * (np.log(0.5) - np.log(2.0))
    assert evaluation.mean_log_metric(results) == pytest.approx(expected)
    assert expected == pytest.approx(-69.3147, abs=1e-4)
    by_tasks = 100 * ((np.log(0.5) - np.log(3.0)) / 2 - np.log(2.0)) / 2
    assert evaluation.mean_log_metric(
        results, metrics="all", average="tasks"
    ) == pytest.approx(by_tasks)
    # Scaling one task's metric shifts the score by a constant.
    scaled = {"a": {"accuracy": 0.5}, "b": {"mae": 200.0}}
    assert evaluation.mean_log_metric(scaled) - expected == pytest.approx(
        -50 * np.log(100)
    )
    # A zero accuracy counts as 1e-12: finite.
    assert evaluation.mean_log_metric(
        {"a": {"accuracy": 0.0}}
    ) == pytest.approx(100 * np.log(1e-12))
    assert evaluation.mean_log_metric(
        {"a": 2.0}, higher_is_better=True
    ) == pytest.approx(100 * np.log(2.0))
    with pytest.raises(ValueError, match="no metric 'mae' for task 'a'"):
        evaluation.mean_log_metric(results, metrics={"a": "mae"})
    with pytest.raises(ValueError, match="`metrics` names tasks \\['c'\\]"):
        evaluation.mean_log_metric(results, metrics={"c": "mae"})
    with pytest.raises(ValueError, match="average"):
        evaluation.mean_log_metric(results, average="median")


def test_package_surface():
    # The names of the module the package replaced, and what they are.
    old = [
        "AVERAGES",
        "delta_m",
        "evaluate_tasks",
        "gradient_cosine_similarity",
        "metric_higher_is_better",
        "relative_changes",
        "results_table",
        "task_results_from_logs",
        "train_single_task_baselines",
    ]
    new = {
        "ModelSpec",
        "mean_log_metric",
        "task_affinity",
        "group_tasks",
        "GradientConflict",
        "ExpertUtilization",
    }
    assert set(old) | new == set(evaluation.__all__)
    for name in evaluation.__all__:
        assert not name.startswith("_")
        assert getattr(keras_mtl.evaluation, name) is getattr(evaluation, name)
    # The function, not the module of the same name.
    assert callable(keras_mtl.evaluation.delta_m)
    assert evaluation.AVERAGES == ("metrics", "tasks")


def test_task_results_from_logs():
    logs = {
        "loss": 3.0,
        "a_loss": 1.0,
        "a_accuracy": 0.5,
        "a_b_loss": 2.0,
        "a_weight": 0.3,
        "val_a_loss": 1.5,
        "val_a_b_loss": 2.5,
    }
    assert evaluation.task_results_from_logs(logs, ["a", "a_b"]) == {
        "a": {"loss": 1.0, "accuracy": 0.5},
        "a_b": {"loss": 2.0},
    }
    assert evaluation.task_results_from_logs(
        logs, ["a", "a_b"], prefix="val_"
    ) == {"a": {"loss": 1.5}, "a_b": {"loss": 2.5}}
    assert evaluation.task_results_from_logs(
        {"loss": 1.0, "reg_mae": 0.5, "reg_loss": 1.0}, ["reg"]
    ) == {"reg": {"loss": 1.0, "mae": 0.5}}


def _linear_trunk_model():
    """Trunk h = x w (w shared, 2 -> 1); heads y_t = h (kernel 1, bias 0)."""
    inputs = keras.Input((2,))
    tasks = [keras_mtl.Task(n) for n in ("a", "b", "c", "d")]
    trunk = keras.layers.Dense(1, use_bias=False, kernel_initializer="ones")
    model = keras_mtl.build_mtl_model(inputs, tasks, trunk=trunk)
    for name in model.task_names:
        model.get_layer(name).set_weights([np.ones((1, 1)), np.zeros(1)])
    model.compile(optimizer="sgd")
    return model


def test_gradient_cosine_similarity_by_hand():
    # With x = I, prediction p = (1, 1) and residuals r_t = p - y_t, the
    # gradient of task t's MSE on w is (2/2) * r_t: residuals (1, 0), (0, 1),
    # (1, 1) and (-1, 0) give cosines 0, 1/sqrt(2), -1, ...
    model = _linear_trunk_model()
    assert len(model.shared_variables) == 1
    x = np.eye(2, dtype="float32")
    residuals = {"a": [1, 0], "b": [0, 1], "c": [1, 1], "d": [-1, 0]}
    y = {
        n: (1.0 - np.array(r, "float32"))[:, None] for n, r in residuals.items()
    }
    similarity = evaluation.gradient_cosine_similarity(model, x, y)
    s = 1 / np.sqrt(2)
    expected = [
        [1, 0, s, -1],
        [0, 1, s, 0],
        [s, s, 1, -s],
        [-1, 0, -s, 1],
    ]
    testing.assert_allclose(similarity, expected, atol=1e-6)
    # Batches of one example: on x = e1 the gradients are (1, 0), 0, (1, 0),
    # (-1, 0); on x = e2 they are 0, (0, 1), (0, 1), 0. A zero gradient
    # scores 0, and the result is the mean of the per-batch cosines.
    per_batch = evaluation.gradient_cosine_similarity(model, x, y, batch_size=1)
    testing.assert_allclose(per_batch[0], [0.5, 0.0, 0.5, -0.5], atol=1e-6)
    testing.assert_allclose(per_batch[1, 2], 0.5, atol=1e-6)
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(2)
    testing.assert_allclose(
        evaluation.gradient_cosine_similarity(model, dataset), expected, 1e-6
    )


def test_gradient_cosine_similarity_needs_shared_variables():
    inputs = keras.Input((2,))
    model = keras_mtl.build_mtl_model(
        inputs, [keras_mtl.Task("a"), keras_mtl.Task("b")]
    )
    model.compile(optimizer="sgd")
    x, y = np.ones((2, 2)), {"a": np.ones((2, 1)), "b": np.ones((2, 1))}
    with pytest.raises(ValueError, match="no shared variables"):
        evaluation.gradient_cosine_similarity(model, x, y)


def test_single_task_baselines_same_trunk_and_budget():
    x, y = testing.tiny_data(n=48)
    x_val, y_val = testing.tiny_data(n=32, seed=1)
    tasks = testing.tiny_tasks()
    trunk = keras.layers.Dense(8, activation="relu", name="trunk")
    results, models = evaluation.train_single_task_baselines(
        tasks,
        x,
        y,
        inputs=keras.Input((8,), name="x"),
        trunk=trunk,
        validation_data=(x_val, y_val),
        epochs=2,
        batch_size=16,
        compile_kwargs={"run_eagerly": True},
        return_models=True,
    )
    assert sorted(results) == sorted(models) == ["binary", "multi", "reg"]
    assert sorted(results["reg"]) == ["loss", "mae"]
    assert sorted(results["multi"]) == ["accuracy", "loss"]
    kernels = []
    for name, model in models.items():
        assert model.task_names == [name]
        # Same budget: 2 epochs of 3 batches each.
        assert int(model.optimizer.iterations) == 6
        assert model.get_layer("trunk").units == 8
        kernels.append(model.get_layer("trunk").kernel)
        again = evaluation.evaluate_tasks(model, x_val, {name: y_val[name]})
        for metric, value in results[name].items():
            assert again[name][metric] == pytest.approx(value, rel=1e-5)
    # Each baseline has its own trunk, trained on its own task.
    assert len({id(k) for k in kernels}) == 3
    assert not np.allclose(kernels[0].numpy(), kernels[1].numpy())


def test_single_task_baselines_from_build_fn_and_dataset():
    x, y = testing.tiny_data(n=32)
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(8)
    built = []

    def build_fn(tasks):
        built.append([t.name for t in tasks])
        model = keras_mtl.build_mtl_model(keras.Input((8,)), tasks, [4])
        model.compile(optimizer=keras.optimizers.SGD(0.01))
        return model

    results, models = evaluation.train_single_task_baselines(
        testing.tiny_tasks()[:2], dataset, build_fn=build_fn, return_models=True
    )
    assert built == [["reg"], ["binary"]]
    assert sorted(results) == ["binary", "reg"]
    for name, model in models.items():
        # One epoch of 4 batches, with the optimizer `build_fn` chose.
        assert int(model.optimizer.iterations) == 4
        assert float(model.optimizer.learning_rate) == pytest.approx(0.01)
        # Evaluated on the training data, this task's labels only.
        own = dataset.map(lambda x, y, name=name: (x, {name: y[name]}))
        again = evaluation.evaluate_tasks(model, own)[name]
        assert again == pytest.approx(results[name], rel=1e-5)
    predictions = models["reg"].predict(x, verbose=0)["reg"]
    assert results["reg"]["mae"] == pytest.approx(
        np.mean(np.abs(predictions - y["reg"])), rel=1e-5
    )


def test_single_task_baselines_are_the_spec_cut_to_one_task():
    x, y = testing.tiny_data(n=48)
    x_val, y_val = testing.tiny_data(n=32, seed=1)
    tasks = testing.tiny_tasks()
    # The multi-task spec's weighting is not used: one task needs none.
    spec = evaluation.ModelSpec(
        keras.Input((8,), name="x"),
        trunk=[8],
        weighting="uncertainty",
        optimizer=keras.optimizers.SGD(0.05),
    )
    budget = dict(epochs=2, batch_size=16, shuffle=False)
    keras.utils.set_random_seed(1337)
    results, models = evaluation.train_single_task_baselines(
        tasks[:1],
        x,
        y,
        spec=spec,
        validation_data=(x_val, y_val),
        return_models=True,
        **budget,
    )
    assert isinstance(
        models["reg"].weighting, keras_mtl.weighting.EqualWeighting
    )
    assert int(models["reg"].optimizer.iterations) == 6
    keras.utils.set_random_seed(1337)
    model = spec.build(tasks[:1], weighting="equal")
    model.fit(x, {"reg": y["reg"]}, verbose=0, **budget)
    expected = model.evaluate(
        x_val, {"reg": y_val["reg"]}, return_dict=True, verbose=0
    )
    assert results["reg"]["mae"] == pytest.approx(expected["reg_mae"], 1e-6)
    assert results["reg"]["loss"] == pytest.approx(expected["reg_loss"], 1e-6)


class _LogReader(keras.callbacks.Callback):
    """Reads one log each epoch, as a callback written for one task does."""

    def __init__(self, key):
        super().__init__()
        self.key = key
        self.values = []

    def on_epoch_end(self, epoch, logs=None):
        self.values.append(logs[self.key])


def _two_baselines(**kwargs):
    x, y = testing.tiny_data(n=48)
    x_val, y_val = testing.tiny_data(n=32, seed=1)
    kwargs.setdefault("optimizer", keras.optimizers.Adam(0.3))
    kwargs.setdefault("validation_data", (x_val, y_val))
    kwargs.setdefault("epochs", 3)
    return evaluation.train_single_task_baselines(
        testing.tiny_tasks()[:2],
        x,
        y,
        inputs=keras.Input((8,), name="x"),
        trunk=[8],
        batch_size=16,
        compile_kwargs={"run_eagerly": True},
        return_models=True,
        **kwargs,
    )


def test_single_task_baselines_give_each_fit_its_own_callbacks():
    readers = {
        "reg": [_LogReader("val_reg_loss")],
        "binary": [_LogReader("val_binary_accuracy")],
    }
    _, models = _two_baselines(callbacks=readers)
    for name, (reader,) in readers.items():
        assert reader.model is models[name]
        assert reader.values == models[name].history.history[reader.key]
        assert len(reader.values) == 3

    made = []

    def make(task):
        made.append(task)
        return [_LogReader(f"val_{task}_loss")]

    _two_baselines(callbacks=make, epochs=1)
    assert made == ["reg", "binary"]

    # A list is copied for each fit; what was passed is left untouched.
    trained = []

    class Reader(_LogReader):
        def on_train_begin(self, logs=None):
            trained.append(self)

    reader = Reader("val_loss")
    _, models = _two_baselines(callbacks=[reader], epochs=1)
    assert reader.model is None and reader.values == []
    assert [c.model for c in trained] == list(models.values())
    for copied, model in zip(trained, models.values()):
        assert copied.values == model.history.history["val_loss"]
        assert len(copied.values) == 1


def test_single_task_baselines_restore_best_epoch():
    keras.utils.set_random_seed(1337)
    results, models = _two_baselines(
        restore_best=True, monitor={"reg": "mae", "binary": "accuracy"}
    )
    reg = models["reg"].history.history
    binary = models["binary"].history.history
    # Adam(0.3) overshoots: reg's MAE is best at epoch 1 of 0-2, lower is
    # better; binary's accuracy is best (highest) at the last epoch.
    assert int(np.argmin(reg["val_reg_mae"])) == 1
    assert int(np.argmax(binary["val_binary_accuracy"])) == 2
    assert results["reg"] == pytest.approx(
        {"loss": reg["val_reg_loss"][1], "mae": reg["val_reg_mae"][1]},
        rel=1e-5,
    )
    assert results["binary"] == pytest.approx(
        {
            "loss": binary["val_binary_loss"][2],
            "accuracy": binary["val_binary_accuracy"][2],
        },
        rel=1e-5,
    )
    # The returned models hold those epochs' weights.
    x_val, y_val = testing.tiny_data(n=32, seed=1)
    again = evaluation.evaluate_tasks(
        models["reg"], x_val, {"reg": y_val["reg"]}
    )
    assert again["reg"] == pytest.approx(results["reg"], rel=1e-5)

    # The same run scored at its last epoch.
    keras.utils.set_random_seed(1337)
    last, _ = _two_baselines()
    assert last["reg"]["mae"] == pytest.approx(reg["val_reg_mae"][2], 1e-5)
    assert last["reg"]["mae"] > results["reg"]["mae"]


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (
            {"callbacks": [keras.callbacks.EarlyStopping("val_reg_loss")]},
            ValueError,
            "monitors `val_reg_loss`, a log of task 'reg' only",
        ),
        (
            {"callbacks": {"reg": [_LogReader("x")], "c": []}},
            ValueError,
            r"unknown tasks \['c'\]",
        ),
        (
            {"callbacks": lambda task: [_SHARED]},
            ValueError,
            "of tasks 'reg' and 'binary'",
        ),
        ({"callbacks": {"reg": ["stop"]}}, TypeError, "of task 'reg' must"),
        ({"callbacks": 3}, TypeError, "`callbacks` must be"),
        ({"monitor": "mae"}, ValueError, "goes with `restore_best=True`"),
        (
            {"restore_best": True, "validation_data": None},
            ValueError,
            "pass `validation_data`",
        ),
        (
            {"restore_best": True, "monitor": {"c": "mae"}},
            ValueError,
            r"`monitor` names unknown tasks \['c'\]",
        ),
        (
            {"restore_best": True, "monitor": "val_reg_mae"},
            ValueError,
            "lack `val_reg_val_reg_mae`",
        ),
    ],
)
def test_single_task_baselines_bad_callbacks_and_monitor(kwargs, error, match):
    with pytest.raises(error, match=match):
        _two_baselines(**kwargs)


_SHARED = _LogReader("val_loss")


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({}, ValueError, "`build_fn` or `inputs`"),
        ({"spec": "spec", "inputs": "x"}, ValueError, "exactly one of"),
        ({"build_fn": len, "trunk": [4]}, ValueError, "`trunk` and `sharing`"),
        ({"spec": "spec", "optimizer": "sgd"}, ValueError, "has its own"),
        ({"spec": {"inputs": None}}, TypeError, "ModelSpec"),
        ({"build_fn": 3}, TypeError, "`build_fn` must be callable"),
        ({"build_fn": lambda tasks: None}, TypeError, "with that one task"),
    ],
)
def test_single_task_baselines_bad_arguments(kwargs, error, match):
    x, y = testing.tiny_data(n=8)
    if kwargs.get("spec") == "spec":
        kwargs["spec"] = evaluation.ModelSpec(keras.Input((8,)))
    if kwargs.get("inputs") == "x":
        kwargs["inputs"] = keras.Input((8,))
    with pytest.raises(error, match=match):
        evaluation.train_single_task_baselines(
            testing.tiny_tasks(), x, y, **kwargs
        )
