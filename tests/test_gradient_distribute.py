"""Gradient-level methods under tf.distribute: exact all-reduce."""

import json

import pytest

from keras_mtl import testing

METHODS = ["mgda", "pcgrad", "cagrad", "imtl_g", "nash_mtl", "aligned_mtl"]

TRAIN_BOTH = """
import json
import keras
import numpy as np
import keras_mtl
from keras_mtl import testing

x, y = testing.tiny_data(n=32)
x = np.concatenate([x, x[::-1] * 0.5])
y = {k: np.concatenate([v, v[::-1]]) for k, v in y.items()}


def train(name, mode, strategy, initial=None):
    keras.utils.set_random_seed(7)
    with strategy.scope():
        weighting = keras_mtl.weighting.get(name)
        weighting.mode = mode
        model = testing.tiny_model(weighting=weighting)
        model.compile(optimizer=keras.optimizers.SGD(0.1))
    if initial is not None:
        model.set_weights(initial)
    start = model.get_weights()
    model.fit(x, y, batch_size=64, epochs=1, shuffle=False, verbose=0)
    return start, model.get_weights(), model.weighting.task_weights.numpy()


mirrored = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
single = tf.distribute.OneDeviceStrategy("/cpu:0")
report = {}
for name, mode in CASES:
    start, one, one_weights = train(name, mode, single)
    _, two, two_weights = train(name, mode, mirrored, initial=start)
    moved = max(float(np.max(np.abs(a - b))) for a, b in zip(one, start))
    error = max(float(np.max(np.abs(a - b))) for a, b in zip(one, two))
    report[f"{name}-{mode}"] = {
        "moved": moved,
        "error": error,
        "weights": [one_weights.tolist(), two_weights.tolist()],
    }
print(json.dumps(report))
"""


def _check(cases):
    code = f"CASES = {cases!r}\n" + TRAIN_BOTH
    report = json.loads(testing.run_with_devices(code).strip().splitlines()[-1])
    for case, numbers in report.items():
        # One step moved the weights by far more than they differ.
        assert numbers["moved"] > 1e-3, (case, numbers)
        assert numbers["error"] < 1e-5 * numbers["moved"], (case, numbers)
        testing.assert_allclose(*numbers["weights"], atol=1e-5, msg=case)


def test_two_replicas_match_one_device():
    # The all-reduce is the base class's; these are the methods where it is
    # easiest to get wrong: random orders, a flat inner problem, rep mode.
    _check([("pcgrad", "param"), ("cagrad", "param"), ("mgda", "rep")])


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["param", "rep"])
def test_two_replicas_match_one_device_every_method(mode):
    _check([(name, mode) for name in METHODS])


PER_REPLICA = """
import json
import keras
import numpy as np
import keras_mtl
from keras_mtl import gradients
from keras_mtl import testing

x, y = testing.tiny_data(n=64, seed=3)
mirrored = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
keras.utils.set_random_seed(0)
with mirrored.scope():
    model = testing.tiny_model(weighting="pcgrad", trunk=(16,))
weighting = model.weighting
shared = model.shared_variables


def direction(jacobians, losses):
    flat = tf.concat(
        [tf.reshape(j, (weighting.num_tasks, -1)) for j in jacobians], 1
    )
    weights = weighting.combine(tf.matmul(flat, flat, transpose_b=True), losses)
    return tf.tensordot(weights, flat, 1)


def per_task(x, y):
    with tf.GradientTape(persistent=True) as tape:
        losses = tf.stack(model.compute_task_losses(y, model(x, training=True)))
    return gradients.jacobians(tape, losses, shared), losses


@tf.function
def replica_step(data):
    context = tf.distribute.get_replica_context()
    jacobians, losses = per_task(*data)
    exact = direction(context.all_reduce("SUM", jacobians), losses)
    # Each replica combines the gradients of its own half batch.
    own = direction([2.0 * j for j in jacobians], 2.0 * losses)
    return exact, context.all_reduce("MEAN", own)


dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(64)
batch = next(iter(mirrored.experimental_distribute_dataset(dataset)))
exact, averaged = mirrored.run(replica_step, args=(batch,))
exact = mirrored.experimental_local_results(exact)[0].numpy()
averaged = mirrored.experimental_local_results(averaged)[0].numpy()
jacobians, losses = per_task(x, y)
single = direction(jacobians, losses).numpy()
norm = np.linalg.norm(single)
print(json.dumps({
    "exact": float(np.linalg.norm(exact - single) / norm),
    "averaged": float(np.linalg.norm(averaged - single) / norm),
}))
"""


@pytest.mark.slow  # the premise of the exact all-reduce, not our code
def test_combining_per_replica_would_be_wrong():
    errors = json.loads(
        testing.run_with_devices(PER_REPLICA).strip().splitlines()[-1]
    )
    assert errors["exact"] < 1e-5, errors
    assert errors["averaged"] > 1e-3, errors
