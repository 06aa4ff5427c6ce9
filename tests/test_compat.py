"""keras-team/keras#20585 in plain Keras, and `keras_mtl.compat` around it.

`test_plain_keras_has_the_bug_and_mtl_model_fits` expects the bug: once a
Keras release fixes it, that test fails. Then set `compat.FIXED_IN` to that
release (see `keras_mtl/compat.py`).
"""

import json
import math
import re

import pytest
import tensorflow as tf

from keras_mtl import compat
from keras_mtl import testing

WORKER = """
import json
import traceback

import keras
import tensorflow as tf

from keras_mtl import compat
from keras_mtl import testing

keras.config.disable_traceback_filtering()
strategy = tf.distribute.MultiWorkerMirroredStrategy()
x, y = testing.tiny_data(n=64)


def error_of(run):
    try:
        run()
    except Exception as error:
        frames = traceback.extract_tb(error.__traceback__)
        return {
            "type": type(error).__name__,
            "message": str(error),
            "frames": [frame.name for frame in frames],
        }
    return None


def plain_model():
    with strategy.scope():
        inputs = keras.Input((8,))
        model = keras.Model(inputs, keras.layers.Dense(1)(inputs))
        model.compile(optimizer="sgd", loss="mse")
    return model


report = {"keras": keras.version()}
report["needs_fix"] = compat.needs_multi_worker_fix(strategy)
compat.FIXED_IN = "3.0.0"
report["needs_fix_if_fixed_in_3.0.0"] = compat.needs_multi_worker_fix(strategy)
compat.FIXED_IN = None

report["fit"] = error_of(
    lambda: plain_model().fit(x, y["reg"], batch_size=32, verbose=0)
)
report["train_on_batch"] = error_of(
    lambda: plain_model().train_on_batch(x[:32], y["reg"][:32])
)

keras.utils.set_random_seed(3)
with strategy.scope():
    model = testing.tiny_model()
history = model.fit(
    x, y, batch_size=32, epochs=1, validation_data=(x, y), verbose=0
)
report["mtl_history"] = history.history
print(json.dumps(report))
"""

# `strategy.reduce("MEAN", first_batch, axis=None)` in
# `_maybe_symbolic_build`, on the `PerReplica` batch of each worker.
FIRST_BATCH_ERROR = re.compile(
    r"Attempt to convert a value \(PerReplica:\{.*\}\) with an unsupported "
    r"type \(<class 'tensorflow\.python\.distribute\.values\.PerReplica'>\) "
    r"to a Tensor\.",
    re.DOTALL,
)
# `strategy.reduce("MEAN", log, axis=0)` in `reduce_per_replica`, on the
# scalar logs of a step.
LOGS_ERROR = re.compile(
    r"Invalid reduction dimension 0 for input with 0 dimensions\. "
)


def _looks_fixed(report, call, expected):
    return (
        f"Plain `keras.Model.{call}` under 2 workers did not fail with "
        f"{expected}: keras-team/keras#20585 may be fixed in Keras "
        f"{report['keras']}. If so, set `compat.FIXED_IN`. Error: "
        f"{report[call] and report[call]['message'][:500]!r}"
    )


def _assert_first_batch_bug(report):
    error = report["fit"]
    message = _looks_fixed(report, "fit", "the first-batch `strategy.reduce`")
    assert error is not None, message
    assert error["type"] == "ValueError", message
    assert FIRST_BATCH_ERROR.fullmatch(error["message"]), message
    names = error["frames"]
    calls = list(zip(names, names[1:]))
    assert ("_maybe_symbolic_build", "reduce") in calls, (message, names)


def _assert_logs_bug(report):
    # `fit` fails on the first batch before any step, but `train_on_batch`
    # builds from its local batch and so reaches the logs of the step.
    error = report["train_on_batch"]
    message = _looks_fixed(report, "train_on_batch", "the logs' `axis=0`")
    assert error is not None, message
    assert error["type"] == "ValueError", message
    assert LOGS_ERROR.match(error["message"]), message
    assert "reduce_per_replica" in error["frames"], (message, error["frames"])


def test_plain_keras_has_the_bug_and_mtl_model_fits():
    reports = [
        json.loads(out.strip().splitlines()[-1])
        for out in testing.run_multi_worker(WORKER, num_workers=2)
    ]
    for report in reports:
        assert report["needs_fix"] is True
        assert report["needs_fix_if_fixed_in_3.0.0"] is False
        _assert_first_batch_bug(report)
        _assert_logs_bug(report)

    first, second = (r["mtl_history"] for r in reports)
    assert "val_loss" in first, sorted(first)
    # Logs are averaged over workers, so both see the same numbers.
    assert first == second
    for name, values in first.items():
        assert len(values) == 1 and math.isfinite(values[0]), (name, values)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("3.15.0", (3, 15, 0)),
        ("3.15.0.dev2024", (3, 15, 0)),
        ("3.16.0.dev2025052603", (3, 16, 0)),
        ("3.9.2", (3, 9, 2)),
    ],
)
def test_version(text, expected):
    assert compat._version(text) == expected


@pytest.mark.parametrize(
    "keras_version, fixed_in, expected",
    [
        ("3.15.1", None, True),
        ("3.15.1", "3.0.0", False),
        ("3.15.1", "3.15.0", False),
        ("3.15.0", "3.15.0", False),
        ("3.15.0.dev2024", "3.15.0", False),
        ("3.14.9", "3.15.0", True),
        # Numeric order: as strings, "3.9.0" >= "3.15.0".
        ("3.9.0", "3.15.0", True),
    ],
)
def test_needs_multi_worker_fix_under_multi_worker(
    monkeypatch, keras_version, fixed_in, expected
):
    monkeypatch.setattr(
        compat.distribute, "in_multi_worker_mode", lambda strategy: True
    )
    monkeypatch.setattr(compat.keras, "version", lambda: keras_version)
    monkeypatch.setattr(compat, "FIXED_IN", fixed_in)
    assert compat.needs_multi_worker_fix(None) is expected


@pytest.mark.parametrize("fixed_in", [None, "99.0.0"])
def test_needs_no_fix_on_one_worker(monkeypatch, fixed_in):
    monkeypatch.setattr(compat, "FIXED_IN", fixed_in)
    assert compat.needs_multi_worker_fix(tf.distribute.get_strategy()) is False
    mirrored = tf.distribute.MirroredStrategy(["/cpu:0"])
    assert compat.needs_multi_worker_fix(mirrored) is False
