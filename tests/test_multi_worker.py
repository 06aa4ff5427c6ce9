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
print(json.dumps(report))
"""


def _single_process(name):
    x, y = testing.tiny_data(n=64)
    keras.utils.set_random_seed(3)
    model = testing.tiny_model(weighting=name)
    model.compile(optimizer=keras.optimizers.SGD(0.1))
    history = model.fit(x, y, batch_size=32, epochs=2, shuffle=False, verbose=0)
    return model.trainable_variables, history.history["loss"]


def _check(names):
    code = f"WEIGHTINGS = {names!r}\n" + WORKER
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


def test_two_workers_match_one_process():
    _check(["pcgrad"])


@pytest.mark.slow
def test_two_workers_match_one_process_every_method():
    _check(["equal", "mgda", "cagrad", "imtl_g", "nash_mtl", "aligned_mtl"])
