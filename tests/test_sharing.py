import itertools

import keras
import numpy as np
import pytest

import keras_mtl
from keras_mtl import testing
from keras_mtl.layers import SoftShared

MODES = ["cross_stitch", "soft", "mmoe", "ple"]


def _manual_losses(model, x, y):
    """Each task's loss over its labelled examples, by hand from predictions."""
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


def _soft_penalty(model):
    """strength * sum over layers and task pairs of ||W_i - W_j||^2, by hand."""
    total = 0.0
    for layer in model.layers:
        if isinstance(layer, SoftShared):
            kernels = [t.kernel.numpy() for t in layer.towers]
            total += layer.strength * sum(
                np.sum((a - b) ** 2)
                for a, b in itertools.combinations(kernels, 2)
            )
    return total


@pytest.mark.parametrize("mode", MODES)
def test_sharing_mode_keeps_the_model_contract(mode, tmp_path):
    model = testing.tiny_model(sharing=mode, trunk=(6,))
    x, y = testing.tiny_data(n=32)
    y["reg"][::3] = np.nan
    y["multi"][1::4] = -1
    logs = model.evaluate(x, y, batch_size=32, return_dict=True, verbose=0)
    manual = _manual_losses(model, x, y)
    for name, value in manual.items():
        assert logs[f"{name}_loss"] == pytest.approx(value, rel=1e-5)
    penalty = _soft_penalty(model)
    assert (penalty > 0) == (mode == "soft")
    assert logs["loss"] == pytest.approx(
        sum(manual.values()) + penalty, rel=1e-5
    )
    history = model.fit(x, y, epochs=1, batch_size=16, verbose=0)
    assert {"loss", "reg_loss", "binary_accuracy", "multi_accuracy"} <= set(
        history.history
    )
    assert np.all(np.isfinite(history.history["loss"]))
    assert model.shared_variables
    testing.run_model_saving_test(model, x, tmp_path / f"{mode}.keras")


def test_cross_stitch_towers_and_units():
    inputs = keras.Input((8,), name="x")
    scheme = keras_mtl.sharing.CrossStitchSharing(
        learning_rate_multiplier=10.0, stitch_after=[0]
    )
    model = keras_mtl.build_mtl_model(
        inputs, testing.tiny_tasks(), trunk=[8, 6], sharing=scheme
    )
    names = [layer.name for layer in model.layers]
    assert "cross_stitch_0" in names and "cross_stitch_1" not in names
    unit = model.get_layer("cross_stitch_0")
    assert unit.learning_rate_multiplier == 10.0
    expected = np.full((3, 3), 0.05)
    np.fill_diagonal(expected, 0.9)
    testing.assert_allclose(unit.mixing_matrix, expected, atol=1e-6)
    for task in ("reg", "binary", "multi"):
        assert model.get_layer(f"{task}_dense_0").units == 8
    own = {k: [v.path for v in vs] for k, vs in model.task_variables.items()}
    assert "reg_dense_1/kernel" in own["reg"]
    shared = [v.path for v in model.shared_variables]
    assert "reg_dense_0/kernel" in shared and "cross_stitch_0/stitch" in shared


def test_cross_stitch_per_channel_on_a_conv_trunk():
    inputs = keras.Input((6, 6, 1), name="image")
    trunk = keras.Sequential(
        [
            keras.layers.Conv2D(4, 3, activation="relu", name="conv"),
            keras.layers.MaxPooling2D(name="pool"),
            keras.layers.Flatten(name="flat"),
        ]
    )
    scheme = keras_mtl.sharing.CrossStitchSharing(
        per_channel=True, stitch_after=[1]
    )
    tasks = [keras_mtl.Task("a"), keras_mtl.Task("b")]
    model = keras_mtl.build_mtl_model(inputs, tasks, trunk, sharing=scheme)
    assert tuple(model.get_layer("cross_stitch_1").stitch.shape) == (2, 2, 4)
    assert model.get_layer("a_conv") is not model.get_layer("b_conv")
    pred = model.predict(np.ones((2, 6, 6, 1), "float32"), verbose=0)
    assert pred["a"].shape == (2, 1)


def test_soft_sharing_penalty_pulls_towers_together():
    x, y = testing.tiny_data(n=32)

    def distance_after_training(strength):
        keras.utils.set_random_seed(3)
        model = keras_mtl.build_mtl_model(
            keras.Input((8,)),
            testing.tiny_tasks(),
            trunk=[8],
            sharing=keras_mtl.sharing.SoftSharing(strength=strength),
        )
        model.compile(optimizer=keras.optimizers.SGD(0.05), run_eagerly=True)
        model.fit(x, y, epochs=5, batch_size=32, verbose=0)
        layer = model.get_layer("soft_shared_0")
        kernels = [t.kernel.numpy() for t in layer.towers]
        return sum(
            np.sum((a - b) ** 2) for a, b in itertools.combinations(kernels, 2)
        )

    assert distance_after_training(1.0) < 0.5 * distance_after_training(0.0)


@pytest.mark.parametrize("mode", ["mmoe", "ple"])
def test_gate_model(mode):
    model = testing.tiny_model(sharing=mode, trunk=(4,))
    x, _ = testing.tiny_data(n=5)
    gates = keras_mtl.sharing.gate_model(model).predict(x, verbose=0)
    if mode == "mmoe":
        assert sorted(gates) == ["mmoe/binary", "mmoe/multi", "mmoe/reg"]
        assert gates["mmoe/reg"].shape == (5, 4)
    else:
        assert "cgc_0/shared" in gates and "cgc_1/shared" not in gates
        assert gates["cgc_1/reg"].shape == (5, 2)
        assert gates["cgc_0/shared"].shape == (5, 4)
    for value in gates.values():
        testing.assert_allclose(value.sum(-1), np.ones(5), atol=1e-5)


def test_sharing_by_name_and_instance():
    assert isinstance(
        keras_mtl.sharing.get("mmoe"), keras_mtl.sharing.MMoESharing
    )
    assert keras_mtl.sharing.get("mmoe").num_experts == 4
    scheme = keras_mtl.sharing.PLESharing(num_levels=3)
    assert keras_mtl.sharing.get(scheme) is scheme


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (
            {"sharing": "cross_stitch", "tasks": [keras_mtl.Task("a")]},
            ValueError,
            "at least 2 tasks",
        ),
        (
            {"sharing": "soft", "tasks": [keras_mtl.Task("a")]},
            ValueError,
            "at least 2 tasks",
        ),
        ({"sharing": "cross_stitch", "trunk": None}, ValueError, "trunk"),
        ({"sharing": "mmoe", "trunk": None}, ValueError, "trunk"),
        ({"sharing": "ple", "trunk": "big"}, TypeError, "`trunk` must"),
        (
            {"sharing": keras_mtl.sharing.CrossStitchSharing(stitch_after=[5])},
            ValueError,
            "stitch_after",
        ),
    ],
)
def test_bad_build_arguments_raise_clear_errors(kwargs, error, match):
    args = {
        "inputs": keras.Input((8,), name="x"),
        "tasks": [keras_mtl.Task("a"), keras_mtl.Task("b")],
        "trunk": [4],
    }
    args.update(kwargs)
    with pytest.raises(error, match=match):
        keras_mtl.build_mtl_model(**args)


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: keras_mtl.sharing.MMoESharing(num_experts=0), "num_experts"),
        (lambda: keras_mtl.sharing.PLESharing(num_levels=0), "num_levels"),
        (
            lambda: keras_mtl.sharing.PLESharing(1, 0, 0),
            "at least one expert",
        ),
        (lambda: keras_mtl.sharing.SoftSharing(strength=-1), "strength"),
        (lambda: keras_mtl.sharing.CrossStitchSharing(diagonal=2), "diagonal"),
    ],
)
def test_bad_scheme_arguments_raise_clear_errors(make, match):
    with pytest.raises(ValueError, match=match):
        make()


@pytest.mark.slow
def test_sharing_modes_fit_under_mirrored_strategy():
    output = testing.run_with_devices(
        """
        import itertools
        import numpy as np
        import keras
        import keras_mtl
        from keras_mtl import testing
        from keras_mtl.layers import SoftShared

        strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
        x, y = testing.tiny_data(n=32)
        y["reg"][::3] = np.nan
        for mode in ["cross_stitch", "soft", "mmoe", "ple"]:
            with strategy.scope():
                model = testing.tiny_model(sharing=mode, trunk=(6,))
            logs = model.evaluate(
                x, y, batch_size=16, return_dict=True, verbose=0)
            penalty = sum(
                layer.strength * sum(
                    np.sum((a.kernel.numpy() - b.kernel.numpy()) ** 2)
                    for a, b in itertools.combinations(layer.towers, 2))
                for layer in model.layers if isinstance(layer, SoftShared))
            tasks = logs["reg_loss"] + logs["binary_loss"] + logs["multi_loss"]
            history = model.fit(x, y, batch_size=16, epochs=2, verbose=0)
            print(mode, logs["loss"], tasks + penalty, penalty,
                  *history.history["loss"])
        """
    )
    lines = [line.split() for line in output.strip().splitlines()[-4:]]
    assert [line[0] for line in lines] == MODES
    for mode, loss, expected, penalty, *fit_losses in lines:
        assert float(loss) == pytest.approx(float(expected), rel=1e-5), mode
        assert (float(penalty) > 0) == (mode == "soft")
        assert all(np.isfinite(float(v)) for v in fit_losses)
