import itertools

import keras
import numpy as np
import pytest

from keras_mtl import testing
from keras_mtl.layers import CGC
from keras_mtl.layers import CrossStitch
from keras_mtl.layers import MMoE
from keras_mtl.layers import SoftShared


def _relu(x):
    return np.maximum(x, 0.0)


def _softmax(z):
    z = np.exp(z - z.max(-1, keepdims=True))
    return z / z.sum(-1, keepdims=True)


@pytest.mark.parametrize(
    "layer_cls, kwargs, input_shape, output_shape, num_weights",
    [
        (CrossStitch, {}, [(4, 5), (4, 5)], [(4, 5), (4, 5)], 1),
        (
            CrossStitch,
            {"per_channel": True, "learning_rate_multiplier": 10.0},
            [(2, 3, 3, 4)] * 3,
            [(2, 3, 3, 4)] * 3,
            1,
        ),
        (
            SoftShared,
            {"layer": keras.layers.Dense(3), "num_tasks": 2},
            (4, 5),
            [(4, 3), (4, 3)],
            4,
        ),
        (
            MMoE,
            {"num_tasks": 2, "num_experts": 3, "expert": [4]},
            (4, 6),
            [(4, 4), (4, 4)],
            3 * 2 + 2,
        ),
        (
            MMoE,
            {
                "num_tasks": 2,
                "num_experts": 2,
                "expert": keras.layers.Dense(3, activation="tanh"),
                "return_gates": True,
            },
            (4, 6),
            ([(4, 3), (4, 3)], [(4, 2), (4, 2)]),
            2 * 2 + 2,
        ),
        (
            CGC,
            {
                "num_tasks": 2,
                "num_task_experts": 1,
                "num_shared_experts": 1,
                "expert": [4],
                "shared_output": True,
            },
            (4, 6),
            [(4, 4)] * 3,
            3 * 2 + 3,
        ),
    ],
)
def test_layer_basics(
    layer_cls, kwargs, input_shape, output_shape, num_weights
):
    testing.run_layer_test(
        layer_cls,
        kwargs,
        input_shape,
        output_shape,
        expected_num_trainable_weights=num_weights,
        expected_num_non_trainable_weights=0,
    )


def _saving_roundtrip(inputs, outputs, arrays, tmp_path):
    model = keras.Model(inputs, outputs)
    model.save(tmp_path / "layer.keras")
    loaded = keras.models.load_model(tmp_path / "layer.keras")
    expected = model.predict(arrays, verbose=0)
    actual = loaded.predict(arrays, verbose=0)
    for a, b in zip(keras.tree.flatten(expected), keras.tree.flatten(actual)):
        testing.assert_allclose(a, b, atol=1e-6)
    return loaded


def test_layers_survive_keras_saving(tmp_path):
    rng = np.random.default_rng(0)
    x = keras.Input((6,))
    tied = SoftShared(keras.layers.Dense(4, activation="relu"), 2, 0.1)
    a, b = tied(x)
    a, b = CrossStitch(per_channel=True, learning_rate_multiplier=5.0)([a, b])
    gated, _ = MMoE(2, 2, keras.Sequential([keras.layers.Dense(3)]), True)(a)
    levels = CGC(2, 1, 2, [3], shared_output=True)(b)
    top = CGC(2, 1, 1, [2])(levels)
    outputs = gated + top
    arrays = rng.normal(size=(5, 6)).astype("float32")
    loaded = _saving_roundtrip(x, outputs, arrays, tmp_path)
    loaded(arrays)
    testing.assert_allclose(loaded.losses[0], tied.penalty(), atol=1e-6)


def test_cross_stitch_identity_is_a_no_op():
    rng = np.random.default_rng(1)
    xs = [rng.normal(size=(3, 4)).astype("float32") for _ in range(3)]
    outputs = CrossStitch(diagonal=1.0)(xs)
    for x, out in zip(xs, outputs):
        testing.assert_allclose(out, x)


def test_cross_stitch_initial_matrix_is_convex():
    layer = CrossStitch(learning_rate_multiplier=100.0)
    layer.build([(None, 2)] * 3)
    expected = np.full((3, 3), 0.05)
    np.fill_diagonal(expected, 0.9)
    testing.assert_allclose(layer.mixing_matrix, expected, atol=1e-6)
    testing.assert_allclose(layer.stitch, expected / 100.0, atol=1e-8)


@pytest.mark.parametrize("multiplier", [1.0, 4.0])
def test_cross_stitch_known_matrix_gives_known_mix(multiplier):
    rng = np.random.default_rng(2)
    a = rng.normal(size=(2, 3)).astype("float32")
    b = rng.normal(size=(2, 3)).astype("float32")
    layer = CrossStitch(learning_rate_multiplier=multiplier)
    layer.build([a.shape, b.shape])
    matrix = np.array([[0.7, 0.3], [-0.2, 1.5]], "float32")
    layer.stitch.assign(matrix / multiplier)
    out_a, out_b = layer([a, b])
    testing.assert_allclose(out_a, 0.7 * a + 0.3 * b, atol=1e-6)
    testing.assert_allclose(out_b, -0.2 * a + 1.5 * b, atol=1e-6)


def test_cross_stitch_per_channel_on_conv_features():
    rng = np.random.default_rng(3)
    a = rng.normal(size=(2, 3, 3, 2)).astype("float32")
    b = rng.normal(size=(2, 3, 3, 2)).astype("float32")
    layer = CrossStitch(per_channel=True)
    layer.build([a.shape, b.shape])
    matrix = rng.uniform(size=(2, 2, 2)).astype("float32")
    layer.stitch.assign(matrix)
    out_a, out_b = layer([a, b])
    for c in range(2):
        testing.assert_allclose(
            out_a[..., c],
            matrix[0, 0, c] * a[..., c] + matrix[0, 1, c] * b[..., c],
            atol=1e-6,
        )
        testing.assert_allclose(
            out_b[..., c],
            matrix[1, 0, c] * a[..., c] + matrix[1, 1, c] * b[..., c],
            atol=1e-6,
        )


def _mixing_step(multiplier, optimizer):
    """How far one training step moves the mixing matrix."""
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(4)
    a, b = keras.Input((3,)), keras.Input((3,))
    layer = CrossStitch(learning_rate_multiplier=multiplier)
    model = keras.Model([a, b], keras.layers.Concatenate()(layer([a, b])))
    model.compile(optimizer=optimizer, loss="mse")
    xs = [rng.normal(size=(8, 3)).astype("float32") for _ in range(2)]
    y = rng.normal(size=(8, 6)).astype("float32")
    before = keras.ops.convert_to_numpy(layer.mixing_matrix)
    model.train_on_batch(xs, y)
    return keras.ops.convert_to_numpy(layer.mixing_matrix) - before


@pytest.mark.parametrize(
    "optimizer", [keras.optimizers.SGD, keras.optimizers.Adam]
)
def test_cross_stitch_multiplier_speeds_learning(optimizer):
    slow = _mixing_step(1.0, optimizer(learning_rate=1e-3))
    fast = _mixing_step(10.0, optimizer(learning_rate=1e-3))
    assert np.all(np.abs(slow) > 0)
    testing.assert_allclose(fast, 10.0 * slow, rtol=1e-3, atol=1e-8)
    if optimizer is keras.optimizers.Adam:
        # Adam's first step is lr * sign(gradient): 10x only if the
        # multiplier survives Adam's normalisation.
        testing.assert_allclose(np.abs(fast), 1e-2, rtol=1e-3)


def test_soft_shared_penalty_by_hand():
    rng = np.random.default_rng(5)
    layer = SoftShared(keras.layers.Dense(2), num_tasks=3, strength=0.5)
    layer.build((None, 3))
    kernels = [rng.normal(size=(3, 2)).astype("float32") for _ in range(3)]
    for tower, kernel in zip(layer.towers, kernels):
        tower.kernel.assign(kernel)
        tower.bias.assign(rng.normal(size=(2,)).astype("float32"))
    expected = 0.5 * sum(
        np.sum((ki - kj) ** 2) for ki, kj in itertools.combinations(kernels, 2)
    )
    testing.assert_allclose(layer.penalty(), expected, rtol=1e-6)
    x = rng.normal(size=(4, 3)).astype("float32")
    outputs = layer(x)
    testing.assert_allclose(layer.losses[0], expected, rtol=1e-6)
    for tower, out in zip(layer.towers, outputs):
        manual = x @ tower.kernel.numpy() + tower.bias.numpy()
        testing.assert_allclose(out, manual, atol=1e-6)


def test_soft_shared_penalty_of_sequential_towers():
    tower = keras.Sequential(
        [keras.layers.Dense(4, activation="relu"), keras.layers.Dense(2)]
    )
    layer = SoftShared(tower, num_tasks=2, strength=2.0)
    layer.build((None, 3))
    kernels = [
        [w.numpy() for w in t.trainable_weights if w.path.endswith("kernel")]
        for t in layer.towers
    ]
    assert [k.shape for k in kernels[0]] == [(3, 4), (4, 2)]
    expected = 2.0 * sum(
        np.sum((a - b) ** 2) for a, b in zip(kernels[0], kernels[1])
    )
    testing.assert_allclose(layer.penalty(), expected, rtol=1e-6)


def test_mmoe_by_hand():
    rng = np.random.default_rng(6)
    x = rng.normal(size=(5, 4)).astype("float32")
    layer = MMoE(num_tasks=2, num_experts=3, expert=[2], return_gates=True)
    (out_0, out_1), (gate_0, gate_1) = layer(x)
    experts = np.stack(
        [
            _relu(x @ e.layers[0].kernel.numpy() + e.layers[0].bias.numpy())
            for e in layer.experts
        ],
        axis=1,
    )
    for kernel, out, gate in zip(
        layer.gate_kernels, (out_0, out_1), (gate_0, gate_1)
    ):
        gates = _softmax(x @ kernel.numpy())
        testing.assert_allclose(gate, gates, atol=1e-6)
        testing.assert_allclose(
            out, np.einsum("be,beu->bu", gates, experts), atol=1e-6
        )
    testing.assert_allclose(np.sum(gate_0, -1), np.ones(5), atol=1e-6)


@pytest.mark.filterwarnings("ignore:You are using a softmax")
def test_mmoe_with_one_expert_is_that_expert():
    rng = np.random.default_rng(7)
    x = rng.normal(size=(3, 4)).astype("float32")
    layer = MMoE(num_tasks=3, num_experts=1, expert=[5])
    outputs = layer(x)
    expected = layer.experts[0](x)
    for out in outputs:
        testing.assert_allclose(out, expected, atol=1e-6)


def test_cgc_by_hand():
    rng = np.random.default_rng(8)
    inputs = [rng.normal(size=(4, 3)).astype("float32") for _ in range(3)]
    layer = CGC(
        num_tasks=2,
        num_task_experts=2,
        num_shared_experts=1,
        expert=[2],
        shared_output=True,
        return_gates=True,
    )
    outputs, gates = layer(inputs)

    def run(expert, x):
        dense = expert.layers[0]
        return _relu(x @ dense.kernel.numpy() + dense.bias.numpy())

    shared = [run(e, inputs[2]) for e in layer.shared_experts]
    own = [[run(e, inputs[k]) for e in layer.task_experts[k]] for k in range(2)]
    for k in range(2):
        g = _softmax(inputs[k] @ layer.gate_kernels[k].numpy())
        mix = np.einsum("be,beu->bu", g, np.stack(own[k] + shared, 1))
        testing.assert_allclose(gates[k], g, atol=1e-6)
        testing.assert_allclose(outputs[k], mix, atol=1e-6)
    g = _softmax(inputs[2] @ layer.shared_gate_kernel.numpy())
    every = np.stack(own[0] + own[1] + shared, 1)
    assert g.shape == (4, 5)
    testing.assert_allclose(outputs[2], np.einsum("be,beu->bu", g, every), 1e-6)


@pytest.mark.parametrize(
    "make, error, match",
    [
        (
            lambda: CrossStitch()([np.ones((2, 3))] * 1),
            ValueError,
            "at least 2",
        ),
        (
            lambda: CrossStitch()([np.ones((2, 3)), np.ones((2, 4))]),
            ValueError,
            "same shape",
        ),
        (lambda: CrossStitch(diagonal=1.5), ValueError, "diagonal"),
        (
            lambda: CrossStitch(learning_rate_multiplier=0),
            ValueError,
            "learning_rate_multiplier",
        ),
        (lambda: MMoE(2, 0, [4]), ValueError, "num_experts"),
        (lambda: MMoE(2, 2, "big"), TypeError, "expert"),
        (lambda: CGC(2, 0, 0, [4]), ValueError, "at least one expert"),
        (lambda: CGC(2, 1, 1, [4])([np.ones((2, 3))] * 2), ValueError, "3"),
        (
            lambda: SoftShared(keras.layers.Dense(2), num_tasks=1),
            ValueError,
            "num_tasks",
        ),
        (lambda: SoftShared("dense", num_tasks=2), TypeError, "layer"),
        (
            lambda: SoftShared(keras.layers.ReLU(), 2)(np.ones((2, 3))),
            ValueError,
            "kernel",
        ),
        (
            lambda: SoftShared(keras.layers.Dense(2), 2, strength=-1.0),
            ValueError,
            "strength",
        ),
    ],
)
def test_bad_arguments_raise_clear_errors(make, error, match):
    with pytest.raises(error, match=match):
        make()


def test_layers_fit_under_mirrored_strategy():
    output = testing.run_with_devices(
        """
        import keras
        import numpy as np
        from keras_mtl.layers import CGC, CrossStitch, MMoE, SoftShared

        strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
        rng = np.random.default_rng(0)
        x = rng.normal(size=(16, 6)).astype("float32")
        y = rng.normal(size=(16, 1)).astype("float32")
        with strategy.scope():
            inputs = keras.Input((6,))
            tied = SoftShared(keras.layers.Dense(4, activation="relu"), 2, 0.1)
            a, b = CrossStitch(learning_rate_multiplier=3.0)(tied(inputs))
            every = MMoE(2, 2, [4])(a) + CGC(2, 1, 1, [4], True)(b)
            out = keras.layers.Dense(1)(keras.layers.Concatenate()(every))
            model = keras.Model(inputs, out)
            model.compile(optimizer="adam", loss="mse")
        before = [v.numpy().copy() for v in model.trainable_variables]
        loss = model.evaluate(x, y, batch_size=16, verbose=0)
        pred = model(x).numpy()
        expected = np.mean((pred - y) ** 2) + float(tied.penalty())
        model.fit(x, y, batch_size=8, epochs=1, verbose=0)
        moved = [
            not np.allclose(b, v.numpy())
            for b, v in zip(before, model.trainable_variables)
        ]
        print(repr((loss, expected, sum(moved), len(moved))))

        # In an MTLModel the penalty is added once, not once per replica.
        import itertools
        import keras_mtl
        from keras_mtl import testing
        x, y = testing.tiny_data(n=32)
        with strategy.scope():
            model = testing.tiny_model(sharing="soft", trunk=(6,))
        logs = model.evaluate(x, y, batch_size=16, return_dict=True, verbose=0)
        towers = model.get_layer("soft_shared_0").towers
        penalty = 1e-3 * sum(
            np.sum((a.kernel.numpy() - b.kernel.numpy()) ** 2)
            for a, b in itertools.combinations(towers, 2))
        tasks = logs["reg_loss"] + logs["binary_loss"] + logs["multi_loss"]
        model.fit(x, y, batch_size=16, epochs=1, verbose=0)
        print(repr((logs["loss"], tasks + penalty, penalty)))
        """
    )
    lines = output.strip().splitlines()
    loss, expected, moved, total = eval(lines[-2])
    assert loss == pytest.approx(expected, rel=1e-5)
    assert moved == total
    loss, expected, penalty = eval(lines[-1])
    assert penalty > 0
    assert loss == pytest.approx(expected, rel=1e-5)
