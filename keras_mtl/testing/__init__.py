"""Test helpers for keras-mtl and for code built on it.

In the spirit of Keras's `testing.TestCase`: one call checks what every
layer, weighting method or model of the package must do (config round
trips, `.keras` save/load with all state, a fit step).
"""

import json
import os
import socket
import subprocess
import sys
import textwrap

import keras
import numpy as np

import keras_mtl


def tiny_tasks():
    """Three small tasks: regression, binary and 4-class classification."""
    return [
        keras_mtl.Task("reg", loss="mse", metrics=["mae"]),
        keras_mtl.Task(
            "binary",
            loss="binary_crossentropy",
            metrics=["accuracy"],
            activation="sigmoid",
            head=[4],
        ),
        keras_mtl.Task(
            "multi",
            loss="sparse_categorical_crossentropy",
            metrics=["accuracy"],
            units=4,
            activation="softmax",
            missing_label=-1,
        ),
    ]


def tiny_data(n=64, dim=8, seed=0):
    """Inputs and labels for `tiny_tasks`, learnable from the inputs."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, dim)).astype("float32")
    y = {
        "reg": (x[:, :1] * 2.0 - x[:, 1:2]).astype("float32"),
        "binary": (x[:, 2:3] > 0).astype("float32"),
        "multi": (np.argmax(x[:, 3:7], axis=1)).astype("int32"),
    }
    return x, y


def tiny_model(weighting="equal", sharing="hard", trunk=(8,), dim=8):
    """A compiled `MTLModel` on `tiny_tasks`."""
    inputs = keras.Input((dim,), name="x")
    model = keras_mtl.build_mtl_model(
        inputs,
        tiny_tasks(),
        trunk=list(trunk),
        sharing=sharing,
        weighting=weighting,
    )
    model.compile(optimizer=keras.optimizers.Adam(0.01))
    return model


def assert_allclose(a, b, atol=1e-6, rtol=1e-6, msg=""):
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(a),
        keras.ops.convert_to_numpy(b),
        atol=atol,
        rtol=rtol,
        err_msg=msg,
    )


def run_serialization_test(obj):
    """Serializes and revives `obj`; checks the class and config survive."""
    config = keras.saving.serialize_keras_object(obj)
    revived = keras.saving.deserialize_keras_object(config)
    assert type(revived) is type(obj), (type(revived), type(obj))
    assert keras.saving.serialize_keras_object(revived) == config
    return revived


def run_layer_test(
    layer_cls,
    init_kwargs,
    input_shape,
    expected_output_shape,
    expected_num_trainable_weights=None,
    expected_num_non_trainable_weights=None,
):
    """Checks a layer: config round trip, weights, symbolic/eager call, fit.

    `input_shape` is one shape or a list of shapes (batch axis included);
    `expected_output_shape` likewise (or a dict of them).
    """
    layer = layer_cls(**init_kwargs)
    revived = layer_cls.from_config(layer.get_config())
    assert revived.get_config() == layer.get_config()
    run_serialization_test(layer)

    many = isinstance(input_shape, list)
    shapes = input_shape if many else [input_shape]
    rng = np.random.default_rng(0)
    arrays = [rng.normal(size=s).astype("float32") for s in shapes]
    symbolic = [keras.Input(s[1:]) for s in shapes]
    outputs = layer(symbolic if many else symbolic[0])
    if expected_num_trainable_weights is not None:
        assert len(layer.trainable_weights) == expected_num_trainable_weights
    if expected_num_non_trainable_weights is not None:
        assert (
            len(layer.non_trainable_weights)
            == expected_num_non_trainable_weights
        )

    def shapes_of(x):
        return keras.tree.map_structure(lambda t: tuple(t.shape), x)

    def batchless(shapes):
        return keras.tree.map_shape_structure(
            lambda s: (None,) + tuple(s[1:]), shapes
        )

    expected = keras.tree.map_shape_structure(tuple, expected_output_shape)
    assert batchless(shapes_of(outputs)) == batchless(expected), (
        shapes_of(outputs),
        expected,
    )
    eager = layer(arrays if many else arrays[0])
    assert shapes_of(eager) == expected, (shapes_of(eager), expected)

    model = keras.Model(symbolic if many else symbolic[0], outputs)
    model.compile(optimizer="sgd", loss="mse")
    targets = keras.tree.map_structure(keras.ops.convert_to_numpy, eager)
    model.fit(arrays if many else arrays[0], targets, epochs=1, verbose=0)
    return layer


def run_model_saving_test(model, x, path):
    """Saves `model` to `path` (.keras) and checks what comes back.

    Class, task specs, weighting config and state, predictions, and
    optimizer state must survive. Returns the loaded model.
    """
    model.save(path)
    loaded = keras.models.load_model(path)
    assert type(loaded) is type(model)
    assert [t.get_config() for t in loaded.tasks] == [
        t.get_config() for t in model.tasks
    ]
    assert loaded.weighting.get_config() == model.weighting.get_config()
    for a, b in zip(model.weighting.variables, loaded.weighting.variables):
        assert_allclose(a, b, msg=f"weighting variable {a.path}")
    expected = model.predict(x, verbose=0)
    actual = loaded.predict(x, verbose=0)
    for name in expected:
        assert_allclose(expected[name], actual[name], atol=1e-5)
    if model.optimizer is not None and model.optimizer.built:
        assert loaded.optimizer is not None
        assert len(loaded.optimizer.variables) == len(model.optimizer.variables)
        for a, b in zip(model.optimizer.variables, loaded.optimizer.variables):
            assert_allclose(a, b, msg=f"optimizer variable {a.path}")
    return loaded


def run_weighting_test(weighting, task_losses, expected_total, task_names=None):
    """Binds `weighting` to tasks and checks its total on fixed losses."""
    losses = keras.ops.convert_to_tensor(task_losses, "float32")
    names = task_names or [f"t{i}" for i in range(losses.shape[0])]
    weighting.set_tasks(names)
    total, weights = weighting(losses, training=True)
    assert tuple(weights.shape) == tuple(losses.shape)
    assert_allclose(total, expected_total, atol=1e-5)
    run_serialization_test(weighting)
    return weights


def run_with_devices(code, num_devices=2, timeout=300):
    """Runs `code` in a fresh Python with `num_devices` logical CPUs.

    The code starts after the devices are configured and TensorFlow is
    imported as `tf`; what it prints is returned. Used for
    `tf.distribute` tests, which need the devices set before TensorFlow
    starts.
    """
    prelude = textwrap.dedent(
        f"""
        import os
        os.environ.setdefault("KERAS_BACKEND", "tensorflow")
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
        import tensorflow as tf
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * {num_devices})
        """
    )
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    result = subprocess.run(
        [sys.executable, "-c", prelude + textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )
    if result.returncode != 0:
        raise AssertionError(
            f"Subprocess failed ({result.returncode}):\n{result.stderr[-4000:]}"
        )
    return result.stdout


def _free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def run_multi_worker(code, num_workers=2, timeout=240):
    """Runs `code` in `num_workers` processes of one local TF cluster.

    Each process gets `TF_CONFIG` for worker `i` of a cluster on free ports
    of 127.0.0.1, so `tf.distribute.MultiWorkerMirroredStrategy()` in
    `code` spans all of them. Every process is killed after `timeout`
    seconds. Returns what each worker printed, in worker order.
    """
    ports = [_free_port() for _ in range(num_workers)]
    cluster = {"worker": [f"127.0.0.1:{port}" for port in ports]}
    pythonpath = os.pathsep.join(sys.path)
    processes = []
    for index in range(num_workers):
        config = {
            "cluster": cluster,
            "task": {"type": "worker", "index": index},
        }
        env = dict(
            os.environ,
            PYTHONPATH=pythonpath,
            TF_CONFIG=json.dumps(config),
            TF_CPP_MIN_LOG_LEVEL="3",
            KERAS_BACKEND="tensorflow",
        )
        processes.append(
            subprocess.Popen(
                [sys.executable, "-c", textwrap.dedent(code)],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env=env,
            )
        )
    outputs, failures = [], []
    try:
        for index, process in enumerate(processes):
            stdout, stderr = process.communicate(timeout=timeout)
            outputs.append(stdout)
            if process.returncode != 0:
                failures.append(f"worker {index}:\n{stderr[-3000:]}")
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.communicate()
    if failures:
        raise AssertionError("\n".join(failures))
    return outputs
