"""Tasks absent from a batch sit out, for every registered method.

A batch with no label of a task (what per-task datasets produce) gives the
task weight 0 and leaves its own state alone; the combination is that of the
present tasks, never NaN, and never a zero update because the absent task's
zero gradient won a min-norm problem.
"""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_mtl
from keras_mtl import testing

METHODS = keras_mtl.weighting.registry.names()
# Methods needing constructor arguments are made here.
FACTORIES = {
    "fixed": lambda: {"reg": 1.0, "binary": 0.5, "multi": 2.0},
    "krum": lambda: keras_mtl.weighting.Krum(n_byzantine=0),
}
GRADIENT_METHODS = [
    name
    for name in METHODS
    if issubclass(
        keras_mtl.weighting.registry[name],
        keras_mtl.weighting.GradientWeighting,
    )
]


def _make(name):
    return keras_mtl.weighting.get(FACTORIES.get(name, lambda: name)())


def _without(y, absent):
    y = dict(y)
    for name in absent:
        missing = -1 if name == "multi" else np.nan
        y[name] = np.full_like(y[name], missing)
    return y


def _state(weighting):
    return {v.path: v.numpy().copy() for v in weighting.variables}


def _fit(model, x, y, epochs=2):
    return model.fit(
        x, y, batch_size=16, epochs=epochs, shuffle=False, verbose=0
    ).history


@pytest.mark.parametrize("name", METHODS)
def test_absent_tasks_and_batches_with_one_task(name):
    # Task `binary` is never labelled; of the three batches, the first has
    # `reg` and `multi`, the second only `reg`, the third only `multi`.
    x, y = testing.tiny_data(n=48)
    y = _without(y, ["binary"])
    y["multi"][16:32] = -1
    y["reg"][32:] = np.nan
    model = testing.tiny_model(weighting=_make(name))
    head = [v.numpy().copy() for v in model.task_variables["binary"]]
    trunk = [v.numpy().copy() for v in model.shared_variables]
    history = _fit(model, x, y)
    for v in model.trainable_variables + model.weighting.variables:
        assert np.all(np.isfinite(v.numpy())), (name, v.path)
    # Its head gets no gradient; the shared layers do move.
    for before, v in zip(head, model.task_variables["binary"]):
        testing.assert_allclose(v, before, atol=0, rtol=0, msg=v.path)
    moved = max(
        np.abs(v.numpy() - before).max()
        for before, v in zip(trunk, model.shared_variables)
    )
    assert moved > 1e-3, (name, moved)
    assert np.isfinite(history["loss"]).all(), history["loss"]
    # Never labelled: its loss, weight and metrics are NaN (the mean of
    # nothing), its count 0; the others' are numbers.
    unlabelled = [k for k in history if k.startswith("binary_")]
    assert "binary_loss" in unlabelled and len(unlabelled) >= 3, unlabelled
    for key in unlabelled:
        if key == "binary_examples":
            assert history[key] == [0.0, 0.0]
        else:
            assert np.isnan(history[key]).all(), (key, history[key])
    for key in history:
        if key.startswith(("reg_", "multi_")):
            assert np.isfinite(history[key]).all(), (key, history[key])
    assert min(history["reg_loss"]) > 0 and min(history["multi_loss"]) > 0
    if model.weighting.log_weights:
        assert "binary_weight" in unlabelled
        assert all(w > 0 for w in history["reg_weight"]), history
    # Each task's logged loss is its mean over its own labelled examples.
    only_reg = {k: v[16:32] for k, v in y.items()}
    logs = model.evaluate(x[16:32], only_reg, verbose=0, return_dict=True)
    assert np.isnan(logs["multi_loss"]) and logs["reg_loss"] > 0.0
    assert np.isnan(logs["multi_accuracy"]), logs


@pytest.mark.parametrize("name", METHODS)
def test_state_of_an_absent_task_does_not_move(name):
    x, y = testing.tiny_data(n=32)
    model = testing.tiny_model(weighting=_make(name))
    # Plain SGD: with Adam, the decaying momentum of earlier steps would
    # still move uncertainty's log-variances (trained by the model's
    # optimizer), though their gradient is 0.
    model.compile(optimizer=keras.optimizers.SGD(0.05))
    _fit(model, x, y, epochs=1)  # every task present: state moves
    before = _state(model.weighting)
    index = model.task_names.index("reg")
    _fit(model, x, _without(y, ["reg"]), epochs=3)
    after = _state(model.weighting)
    for path, value in before.items():
        if path.endswith(("steps", "draws", "epochs_seen", "task_weights")):
            continue  # counters, and the weights of the last step
        if value.ndim == 0:
            continue
        if path.endswith("epoch_losses"):
            # DWA: a task absent all epoch keeps its last average.
            testing.assert_allclose(after[path][:, index], value[0, index])
            continue
        testing.assert_allclose(
            after[path][..., index], value[..., index], atol=0, msg=path
        )


def test_gradnorm_keeps_an_absent_tasks_weight_and_the_others_sum():
    x, y = testing.tiny_data(n=32)
    model = testing.tiny_model(weighting="gradnorm")
    _fit(model, x, y, epochs=1)
    weights = model.weighting.task_weights.numpy().copy()
    _fit(model, x, _without(y, ["reg"]), epochs=2)
    after = model.weighting.task_weights.numpy()
    assert after[0] == weights[0]
    assert after[1:].sum() == pytest.approx(weights[1:].sum(), rel=1e-5)
    assert np.abs(after[1:] - weights[1:]).max() > 1e-4


def _gram(gradients):
    return tf.constant(gradients @ gradients.T, "float32")


@pytest.mark.parametrize("name", GRADIENT_METHODS)
@pytest.mark.parametrize(
    "present", [[True, False, True, True], [False, True, False, True]]
)
def test_combination_is_that_of_the_present_tasks(name, present):
    rng = np.random.default_rng(4)
    gradients = rng.normal(size=(4, 9)).astype("float32")
    gradients[1] = -gradients[3] + 0.3 * gradients[0]  # some conflict
    losses = rng.uniform(0.5, 2.0, 4).astype("float32")
    present = np.array(present)
    step = tf.constant(5, "int64")
    full = _make(name)
    full.set_tasks([f"t{i}" for i in range(4)])
    masked = np.where(present[:, None], gradients, 0.0)
    weights = full.gradient_weights(
        _gram(masked), tf.constant(losses * present), step, present
    ).numpy()
    if name == "krum" and present.sum() < 3:
        # Too few for a Krum of their own: each is scored by its only
        # neighbour, a tie, so the first present task is picked.
        testing.assert_allclose(weights, np.argmax(present) == np.arange(4))
        return
    subset = _make(name)
    subset.set_tasks([f"t{i}" for i in range(present.sum())])
    expected = subset.gradient_weights(
        _gram(gradients[present]),
        tf.constant(losses[present]),
        step,
        np.ones(present.sum(), bool),
    ).numpy()
    assert np.all(weights[~present] == 0.0), weights
    if name == "pcgrad" and present.sum() > 2:
        # Random orders of 3 among 4 tasks differ from those of 3 tasks.
        direction = weights @ masked
        assert np.linalg.norm(direction) > 0.1
        return
    # Frank-Wolfe and the simplex solver stop at a tolerance.
    testing.assert_allclose(weights[present], expected, atol=2e-4, rtol=2e-3)


@pytest.mark.parametrize("name", GRADIENT_METHODS)
def test_one_present_task_gets_weight_one(name):
    method = _make(name)
    method.set_tasks(["a", "b", "c"])
    gradients = np.zeros((3, 5), "float32")
    gradients[2] = [1.0, -2.0, 0.5, 0.0, 3.0]
    weights = method.gradient_weights(
        _gram(gradients),
        tf.constant([0.0, 0.0, 1.3]),
        tf.constant(0, "int64"),
        np.array([False, False, True]),
    )
    testing.assert_allclose(weights, [0.0, 0.0, 1.0], atol=0)
    none = method.gradient_weights(
        _gram(np.zeros((3, 5), "float32")),
        tf.zeros(3),
        tf.constant(0, "int64"),
        np.array([False, False, False]),
    )
    testing.assert_allclose(none, [0.0, 0.0, 0.0], atol=0)


def test_uncertainty_does_not_raise_an_unlabelled_tasks_weight():
    # Measured before the redesign: exp(-s) of the never-labelled task grew
    # to 7.4 in 2000 steps. Now its log-variance gets no gradient.
    x, y = testing.tiny_data(n=64)
    model = testing.tiny_model(weighting="uncertainty")
    model.compile(optimizer=keras.optimizers.Adam(0.05))
    _fit(model, x, _without(y, ["multi"]), epochs=20)
    log_variances = model.weighting.log_variances.numpy()
    assert log_variances[2] == 0.0
    assert abs(log_variances[0]) > 0.05


TWO_REPLICAS = """
import json
import json

import keras
import numpy as np
from keras_mtl import testing

x, y = testing.tiny_data(n=16, seed=5)
# Task `binary` is labelled in the first half of the batch only: on two
# replicas, the second replica's half has none, yet the task is present.
y["binary"][8:] = np.nan
mirrored = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
report = {}
for name in NAMES:
    runs = []
    for strategy in (tf.distribute.get_strategy(), mirrored):
        keras.utils.set_random_seed(2)
        with strategy.scope():
            model = testing.tiny_model(weighting=name)
            model.compile(optimizer=keras.optimizers.SGD(0.1))
        history = model.fit(x, y, batch_size=16, epochs=3, shuffle=False,
                            verbose=0).history
        runs.append({
            "weights": [v.numpy().tolist() for v in model.trainable_variables],
            "binary_weight": history.get("binary_weight"),
            "binary_loss": history["binary_loss"],
        })
    report[name] = runs
print(json.dumps(report))
"""


def test_presence_is_decided_on_the_global_batch():
    names = ["mgda", "uncertainty", "famo"]
    out = testing.run_with_devices(f"NAMES = {names!r}\n" + TWO_REPLICAS)
    report = json.loads(out.strip().splitlines()[-1])
    for name in names:
        single, double = report[name]
        for a, b in zip(single["weights"], double["weights"]):
            testing.assert_allclose(a, b, atol=1e-5, rtol=1e-5, msg=name)
        np.testing.assert_allclose(
            single["binary_loss"], double["binary_loss"], rtol=1e-5
        )
        assert min(double["binary_weight"]) > 0, (name, double)


def test_a_one_task_model_trains_plainly_with_every_gradient_method():
    # One task: nothing to combine, so the step is the plain one (it used
    # to raise "needs shared variables", breaking single-task baselines).
    x, y = testing.tiny_data(n=32)
    tasks = [keras_mtl.Task("reg", loss="mse")]

    def train(weighting):
        keras.utils.set_random_seed(4)
        model = keras_mtl.build_mtl_model(
            keras.Input((x.shape[1],)), tasks, trunk=[4], weighting=weighting
        )
        model.compile(optimizer=keras.optimizers.SGD(0.05))
        history = _fit(model, x, {"reg": y["reg"]}, epochs=1)
        return [v.numpy() for v in model.trainable_variables], history

    expected, _ = train("equal")
    for name in [*GRADIENT_METHODS, "grad_norm"]:
        weights, history = train(_make(name))
        for a, b in zip(weights, expected):
            testing.assert_allclose(a, b, atol=1e-6, rtol=1e-6, msg=name)
        if "reg_weight" in history:
            assert history["reg_weight"] == [1.0], (name, history)
