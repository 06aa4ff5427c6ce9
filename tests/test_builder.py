"""`build_mtl_model`'s guards against silent traps, and clone seeding."""

import inspect
import itertools
import re
import warnings

import keras
import numpy as np
import pytest

import keras_mtl
from keras_mtl.layers import towers


def _tasks():
    return [
        keras_mtl.Task("a", loss="mse"),
        keras_mtl.Task("b", loss="binary_crossentropy", activation="sigmoid"),
    ]


def _examples(obj):
    doc = inspect.cleandoc(obj.__doc__)
    return re.findall(r"```python\n(.*?)```", doc, flags=re.DOTALL)


class _RecordingSharing(keras_mtl.sharing.HardSharing):
    calls = 0

    def build(self, inputs, trunk, task_names):
        type(self).calls += 1
        return super().build(inputs, trunk, task_names)


# 1. Inputs that are not `keras.Input`s.


def _embedded():
    ids = keras.Input((3,), dtype="int32", name="ids")
    return keras.layers.Embedding(10, 4)(ids)


def _dense():
    return keras.layers.Dense(4)(keras.Input((5,), name="x"))


@pytest.mark.parametrize(
    "make_inputs, name",
    [
        (_embedded, None),
        (_dense, None),
        (lambda: {"x": keras.Input((5,), name="x"), "e": _dense()}, "e"),
        (lambda: [keras.Input((5,), name="x"), _embedded()], "inputs[1]"),
    ],
    ids=["embedding", "dense", "dict", "list"],
)
def test_layer_output_as_inputs_raises_before_building(make_inputs, name):
    inputs = make_inputs()
    _RecordingSharing.calls = 0
    with pytest.raises(ValueError, match="keras.Input") as info:
        keras_mtl.build_mtl_model(
            inputs, _tasks(), trunk=[4], sharing=_RecordingSharing()
        )
    message = str(info.value)
    assert "trunk" in message and "embedding" in message
    if name is not None:
        assert repr(name) in message
    assert _RecordingSharing.calls == 0


def test_inputs_of_every_structure_still_accepted():
    x = keras.Input((5,), name="x")
    y = keras.Input((2,), name="y")
    for inputs in (x, [x, y], {"x": x, "y": y}):
        model = keras_mtl.build_mtl_model(inputs, _tasks(), trunk=[4])
        model_inputs = keras.tree.flatten(model.inputs)
        for tensor in keras.tree.flatten(inputs):
            assert any(tensor is x for x in model_inputs)


# 2. Layers cloned into experts and towers get seeds of their own.


def _seeded_dense(units=7):
    return keras.layers.Dense(
        units,
        kernel_initializer=keras.initializers.GlorotUniform(seed=1),
        bias_initializer=keras.initializers.RandomNormal(seed=2),
    )


SCHEMES = {
    "mmoe": lambda: keras_mtl.sharing.MMoESharing(num_experts=8),
    "ple": lambda: keras_mtl.sharing.PLESharing(
        num_levels=1, num_task_experts=2, num_shared_experts=2
    ),
    "cross_stitch": lambda: "cross_stitch",
    "soft": lambda: "soft",
}


def _first_level_kernels(model):
    """The kernels of the clones that read the (5-feature) inputs."""
    return [
        w.numpy()
        for w in model.weights
        if w.name == "kernel" and tuple(w.shape) == (5, 7)
    ]


@pytest.mark.parametrize("scheme", sorted(SCHEMES))
def test_seeded_layer_clones_differ(scheme):
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        model = keras_mtl.build_mtl_model(
            keras.Input((5,)),
            _tasks(),
            trunk=_seeded_dense(),
            sharing=SCHEMES[scheme](),
        )
    assert not [w for w in record if "identical" in str(w.message)]
    kernels = _first_level_kernels(model)
    assert len(kernels) >= 2
    for a, b in itertools.combinations(kernels, 2):
        assert not np.allclose(a, b)


def test_seeded_mmoe_is_reproducible():
    def build():
        keras.utils.set_random_seed(7)
        return keras_mtl.build_mtl_model(
            keras.Input((5,)),
            _tasks(),
            trunk=_seeded_dense(),
            sharing=keras_mtl.sharing.MMoESharing(num_experts=8),
        )

    first = [w.numpy() for w in build().weights]
    keras.backend.clear_session()
    second = [w.numpy() for w in build().weights]
    assert len(first) == len(second)
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a, b)


def test_clone_layer_reseeds_every_seed():
    layer = keras.Sequential(
        [
            _seeded_dense(),
            keras.layers.Dropout(0.5, seed=3),
            keras.layers.Dense(2),
        ]
    )
    configs = {
        name: keras.layers.serialize(towers.clone_layer(layer, name))
        for name in ("expert_0", "expert_1")
    }
    seeds = {}
    for name, config in configs.items():
        found = re.findall(r"'seed': (\w+)", str(config))
        seeds[name] = found
        assert found.count("None") == 1  # the unseeded kernel stays so
        assert len(found) == 4
    assert seeds["expert_0"] != seeds["expert_1"]
    again = keras.layers.serialize(towers.clone_layer(layer, "expert_0"))
    assert re.findall(r"'seed': (\w+)", str(again)) == seeds["expert_0"]


@keras.saving.register_keras_serializable(package="test_builder")
class _SelfSeeded(keras.layers.Layer):
    """Seeds its kernel where its config cannot show it."""

    def build(self, input_shape):
        self.kernel = self.add_weight(
            name="kernel",
            shape=(input_shape[-1], 7),
            initializer=keras.initializers.GlorotUniform(seed=5),
        )

    def call(self, inputs):
        return keras.ops.matmul(inputs, self.kernel)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], 7)


@pytest.mark.parametrize("sharing", ["mmoe", "ple", "soft"])
def test_clones_seeded_out_of_sight_warn(sharing):
    with pytest.warns(UserWarning, match="identical weights"):
        keras_mtl.build_mtl_model(
            keras.Input((5,)), _tasks(), trunk=_SelfSeeded(), sharing=sharing
        )


# 3. What `trunk` and a scheme's name mean, and where options go.


def test_build_mtl_model_docstring_says_what_trunk_means():
    doc = keras_mtl.build_mtl_model.__doc__
    assert "MMoESharing(num_experts=4)" in doc
    assert "4 experts, each a `Dense(128)`" in doc
    assert "num_experts" in keras_mtl.sharing.MMoESharing.__doc__
    assert "4 experts" in keras_mtl.sharing.MMoESharing.__doc__
    assert "*each expert*" in keras_mtl.sharing.PLESharing.__doc__


def test_build_mtl_model_example_runs_as_written():
    (example,) = _examples(keras_mtl.build_mtl_model)
    namespace = {}
    exec(example, namespace)
    mmoe = namespace["mmoe"].get_layer("mmoe")
    assert len(mmoe.experts) == 8
    assert namespace["from_ids"].count_params() > 0


@pytest.mark.parametrize(
    "scheme", [keras_mtl.sharing.MMoESharing, keras_mtl.sharing.PLESharing]
)
def test_scheme_examples_run(scheme):
    for example in _examples(scheme):
        exec(example, {"keras": keras, "keras_mtl": keras_mtl})


def test_default_mmoe_has_four_experts_of_the_trunk():
    inputs = keras.Input((5,))
    hard = keras_mtl.build_mtl_model(inputs, _tasks(), trunk=[16])
    mmoe = keras_mtl.build_mtl_model(
        inputs, _tasks(), trunk=[16], sharing="mmoe"
    )
    layer = mmoe.get_layer("mmoe")
    assert len(layer.experts) == 4
    assert (
        layer.experts[0].count_params()
        == hard.get_layer("trunk_dense_0").count_params()
    )


def test_option_dict_without_class_name_points_to_the_instance():
    with pytest.raises(
        TypeError, match=re.escape("MMoESharing(num_experts=8)")
    ):
        keras_mtl.build_mtl_model(
            keras.Input((5,)),
            _tasks(),
            trunk=[4],
            sharing={"name": "mmoe", "num_experts": 8},
        )


# 4. Integer ids straight into `Dense`.


@pytest.mark.parametrize("dtype", ["int32", "int64"])
@pytest.mark.parametrize("trunk", [[8], None])
def test_integer_inputs_into_dense_warn(dtype, trunk):
    inputs = {
        "ids": keras.Input((3,), dtype=dtype, name="ids"),
        "x": keras.Input((2,), name="x"),
    }
    with pytest.warns(UserWarning, match="Embedding") as record:
        keras_mtl.build_mtl_model(inputs, _tasks(), trunk=trunk)
    messages = [str(w.message) for w in record if "Embedding" in str(w.message)]
    assert len(messages) == 1
    assert "'ids'" in messages[0] and dtype in messages[0]
    assert "FeatureSpace" in messages[0]


@pytest.mark.parametrize("sharing", ["mmoe", "cross_stitch"])
def test_integer_inputs_into_experts_warn(sharing):
    ids = keras.Input((3,), dtype="int32", name="ids")
    with pytest.warns(UserWarning, match="'ids'"):
        keras_mtl.build_mtl_model(ids, _tasks(), trunk=[8], sharing=sharing)


def test_float_or_embedded_inputs_do_not_warn():
    ids = keras.Input((3,), dtype="int32", name="ids")
    embed = keras.Sequential(
        [keras.layers.Embedding(10, 4), keras.layers.Flatten()]
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        keras_mtl.build_mtl_model(keras.Input((3,)), _tasks(), trunk=[8])
        keras_mtl.build_mtl_model(ids, _tasks(), trunk=embed)
