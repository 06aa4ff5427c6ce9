"""`MTLModel.fit` under MultiWorkerMirroredStrategy, 2 local workers."""

import json

import keras
import numpy as np
import pytest

from keras_mtl import testing

WORKER = """
import json
import keras
import numpy as np
import tensorflow as tf
from keras_mtl import testing

strategy = tf.distribute.MultiWorkerMirroredStrategy()
x, y = testing.tiny_data(n=64)
report = {}
for name in WEIGHTINGS:
    keras.utils.set_random_seed(3)
    with strategy.scope():
        model = testing.tiny_model(weighting=name)
        model.compile(optimizer=keras.optimizers.SGD(0.1))
    history = model.fit(x, y, batch_size=32, epochs=2, shuffle=False,
                        verbose=0)
    report[name] = {
        "weights": [v.numpy().tolist() for v in model.trainable_variables],
        "loss": history.history["loss"],
    }
if MIXTURE:
    # Two per-task sources, every example once per epoch: sharded over the
    # workers, the global batches hold each example once.
    import keras_mtl
    tasks = testing.tiny_tasks()
    sources = []
    for name, size in (("reg", 48), ("binary", 8), ("multi", 24)):
        labels = {k: v[:size] for k, v in y.items() if k == name}
        dataset = tf.data.Dataset.from_tensor_slices((x[:size], labels))
        sources.append(keras_mtl.data.Source(dataset, name=name))
    mixture = keras_mtl.data.mix(
        sources, tasks, batch_size=16, exhaustion="once", seed=4
    )
    with strategy.scope():
        model = testing.tiny_model()
        model.compile(optimizer=keras.optimizers.SGD(0.1))
    history = model.fit(mixture, epochs=2, verbose=0).history
    report["mixture"] = {
        "weights": [v.numpy().tolist() for v in model.trainable_variables],
        "examples": [history[f"{t.name}_examples"] for t in tasks],
        "loss": history["loss"],
    }
print(json.dumps(report))
"""


def _single_process(name):
    x, y = testing.tiny_data(n=64)
    keras.utils.set_random_seed(3)
    model = testing.tiny_model(weighting=name)
    model.compile(optimizer=keras.optimizers.SGD(0.1))
    history = model.fit(x, y, batch_size=32, epochs=2, shuffle=False, verbose=0)
    return model.trainable_variables, history.history["loss"]


def _check(names, mixture=False):
    code = f"WEIGHTINGS = {names!r}\nMIXTURE = {mixture}\n" + WORKER
    reports = [
        json.loads(out.strip().splitlines()[-1])
        for out in testing.run_multi_worker(code, num_workers=2)
    ]
    for name in names:
        expected, loss = _single_process(name)
        first, second = (r[name] for r in reports)
        for a, b, c in zip(first["weights"], second["weights"], expected):
            testing.assert_allclose(a, b, atol=0, rtol=0, msg=name)
            testing.assert_allclose(a, c, atol=1e-6, rtol=1e-5, msg=name)
        # Logs are averaged over workers: the loss of the global batches.
        np.testing.assert_allclose(first["loss"], loss, rtol=1e-5)
    return reports


def test_two_workers_match_one_process():
    reports = _check(["pcgrad"], mixture=True)
    first, second = (r["mixture"] for r in reports)
    for a, b in zip(first["weights"], second["weights"]):
        testing.assert_allclose(a, b, atol=0, rtol=0, msg="mixture")
    # Each source's examples once per epoch in the global batches: the
    # workers read disjoint shards.
    assert first["examples"] == [[48.0, 48.0], [8.0, 8.0], [24.0, 24.0]]
    assert np.isfinite(first["loss"]).all()


@pytest.mark.slow
def test_two_workers_match_one_process_every_method():
    _check(["equal", "mgda", "cagrad", "imtl_g", "nash_mtl", "aligned_mtl"])
