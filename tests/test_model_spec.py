import json

import keras
import numpy as np
import pytest

import keras_mtl
from keras_mtl import testing
from keras_mtl.evaluation import ModelSpec


def _spec(**kwargs):
    kwargs.setdefault("trunk", keras.layers.Dense(8, name="trunk"))
    kwargs.setdefault("weighting", "uncertainty")
    kwargs.setdefault("optimizer", keras.optimizers.SGD(0.1))
    return ModelSpec(keras.Input((8,), name="x"), **kwargs)


def _architecture(model):
    return [
        (layer.name, type(layer).__name__, [w.shape for w in layer.weights])
        for layer in model.layers
    ]


def test_builds_independent_models_of_one_architecture():
    spec = _spec()
    first = spec.build(testing.tiny_tasks())
    second = spec.build(testing.tiny_tasks())
    assert _architecture(first) == _architecture(second)
    assert len(first.weights) == len(second.weights) > 0
    assert {id(v) for v in first.weights}.isdisjoint(
        id(v) for v in second.weights
    )
    # The spec's own layer is a template: cloned, never used.
    assert spec.trunk not in first.layers and not spec.trunk.built
    assert first.get_layer("trunk").units == 8
    assert first.input.name == second.input.name == "x"
    assert first.tasks[0] is not second.tasks[0]

    # Same weights in, same predictions out: the architectures agree.
    second.set_weights(first.get_weights())
    x, y = testing.tiny_data(n=16)
    expected = first.predict(x, verbose=0)
    actual = second.predict(x, verbose=0)
    for name in expected:
        testing.assert_allclose(actual[name], expected[name], atol=1e-6)

    # Training one moves neither the other's weights nor its state.
    before = [w.numpy() for w in second.weights]
    first.fit(x, y, epochs=1, batch_size=16, verbose=0)
    assert int(first.optimizer.iterations) == 1
    assert int(second.optimizer.iterations) == 0
    assert first.optimizer is not second.optimizer
    assert float(second.optimizer.learning_rate) == pytest.approx(0.1)
    for weight, value in zip(second.weights, before):
        testing.assert_allclose(weight, value, atol=0.0)
    assert not np.allclose(
        first.get_layer("trunk").kernel.numpy(),
        second.get_layer("trunk").kernel.numpy(),
    )


def test_fresh_weighting_state_and_optimizer():
    method = keras_mtl.weighting.UncertaintyWeighting()
    optimizer = keras.optimizers.SGD(0.1)
    spec = _spec(weighting=method, optimizer=optimizer)
    first = spec.build(testing.tiny_tasks())
    second = spec.build(testing.tiny_tasks())
    assert type(first.weighting) is keras_mtl.weighting.UncertaintyWeighting
    assert first.weighting is not method
    assert first.weighting is not second.weighting
    # The spec's instance stays unbound and unbuilt: a template.
    assert method.task_names is None and not method.built
    assert first.optimizer is not optimizer
    assert int(optimizer.iterations) == 0
    state = first.weighting.weights
    assert len(state) == len(second.weighting.weights) == 1
    state[0].assign(state[0] + 1.0)
    testing.assert_allclose(state[0], np.ones(3), atol=0.0)
    testing.assert_allclose(second.weighting.weights[0], np.zeros(3), atol=0.0)


def test_build_overrides_and_compile():
    spec = _spec(trunk=[8], weighting="equal", optimizer="adam")
    model = spec.build(
        testing.tiny_tasks(),
        sharing="mmoe",
        weighting=keras_mtl.weighting.CAGrad(c=0.7),
        compile_kwargs={"run_eagerly": True},
    )
    assert isinstance(model.weighting, keras_mtl.weighting.CAGrad)
    assert model.weighting.c == pytest.approx(0.7)
    assert model.get_layer("mmoe").num_experts == 4
    assert model.run_eagerly
    assert isinstance(model.optimizer, keras.optimizers.Adam)
    uncompiled = spec.build(testing.tiny_tasks(), compile=False)
    assert not uncompiled.compiled
    assert isinstance(uncompiled.weighting, keras_mtl.weighting.EqualWeighting)
    with pytest.raises(ValueError, match="`compile_kwargs` needs"):
        spec.build(
            testing.tiny_tasks(),
            compile=False,
            compile_kwargs={"run_eagerly": True},
        )


def test_model_trunk_is_cloned():
    trunk = keras.Sequential(
        [keras.layers.Dense(6, name="hidden")], name="trunk_model"
    )
    trunk.build((None, 8))
    spec = ModelSpec(keras.Input((8,)), trunk=trunk)
    first = spec.build([keras_mtl.Task("t")])
    second = spec.build([keras_mtl.Task("t")])
    clones = [m.get_layer("trunk_model") for m in (first, second)]
    kernels = [c.get_layer("hidden").kernel for c in clones]
    assert trunk not in clones and clones[0] is not clones[1]
    assert len({id(k) for k in kernels + [trunk.layers[0].kernel]}) == 3
    assert [tuple(k.shape) for k in kernels] == [(8, 6), (8, 6)]


def test_dict_inputs():
    inputs = {
        "a": keras.Input((5,), name="a"),
        "b": keras.Input((3,), name="b"),
    }
    spec = ModelSpec(inputs, trunk=[4])
    fresh = spec.fresh_inputs()
    assert sorted(fresh) == ["a", "b"]
    assert fresh["a"] is not inputs["a"]
    assert [fresh["a"].name, fresh["b"].name] == ["a", "b"]
    assert tuple(fresh["b"].shape) == (None, 3)
    model = spec.build([keras_mtl.Task("t", head=[2])])
    model.set_weights([np.ones(w.shape) for w in model.get_weights()])
    x = {"a": np.ones((2, 5), "float32"), "b": np.ones((2, 3), "float32")}
    # All-ones weights: 8 inputs -> 4 units of 9 -> 2 units of 37 -> 75.
    testing.assert_allclose(
        model.predict(x, verbose=0)["t"], np.full((2, 1), 75.0), atol=1e-4
    )


def test_config_round_trip():
    spec = _spec(
        weighting=keras_mtl.weighting.DynamicWeightAverage(temperature=3.0)
    )
    config = spec.get_config()
    json.dumps(config)
    assert config["inputs"] == {
        "batch_shape": [None, 8],
        "dtype": "float32",
        "sparse": False,
        "ragged": False,
        "name": "x",
    }
    revived = ModelSpec.from_config(config)
    assert revived.get_config() == config
    assert revived.inputs.name == "x"
    assert revived.trunk.units == 8
    assert revived.weighting.temperature == 3.0
    assert float(revived.optimizer.learning_rate) == pytest.approx(0.1)
    serialized = keras.saving.serialize_keras_object(spec)
    again = keras.saving.deserialize_keras_object(serialized)
    assert isinstance(again, ModelSpec)
    assert again.get_config() == config
    model = again.build(testing.tiny_tasks())
    assert model.weighting.temperature == 3.0
    # Names and lists stay as they are.
    plain = ModelSpec(keras.Input((4,)), trunk=(4, 2), weighting={"t": 0.5})
    config = plain.get_config()
    assert config["trunk"] == [4, 2]
    assert config["weighting"] == {"t": 0.5}
    assert config["sharing"] == "hard" and config["optimizer"] == "adam"
    assert config["inputs"]["name"] is None
    assert ModelSpec.from_config(config).get_config() == config


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"inputs": None}, TypeError, "`inputs` must be a `keras.Input`"),
        ({"inputs": np.ones((2, 8))}, TypeError, "`inputs` must be"),
        ({"inputs": {}}, TypeError, "`inputs` must be"),
        ({"trunk": "big"}, TypeError, "`trunk` must be.*Received: trunk='big'"),
        ({"trunk": [8, 0]}, TypeError, "`trunk` must be"),
        ({"sharing": "nope"}, ValueError, "Unknown sharing 'nope'"),
        ({"weighting": "nope"}, ValueError, "'nope'"),
        ({"weighting": 3}, TypeError, "`weighting` must be"),
        ({"optimizer": "nope"}, ValueError, "nope"),
    ],
)
def test_bad_arguments(kwargs, error, match):
    kwargs.setdefault("inputs", keras.Input((8,)))
    with pytest.raises(error, match=match):
        ModelSpec(**kwargs)


def test_build_checks_tasks():
    spec = _spec()
    with pytest.raises(ValueError, match="non-empty list of keras_mtl.Task"):
        spec.build([])
    with pytest.raises(ValueError, match="unique"):
        spec.build([keras_mtl.Task("a"), keras_mtl.Task("a")])
