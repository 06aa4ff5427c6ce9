import keras
import numpy as np
import pytest

import keras_mtl
from keras_mtl import testing
from keras_mtl.sharing import dense_stack

SCHEMES = {
    "hard": keras_mtl.sharing.HardSharing(),
    "cross_stitch": keras_mtl.sharing.CrossStitchSharing(
        per_channel=True,
        diagonal=0.7,
        learning_rate_multiplier=5.0,
        stitch_after=[0],
    ),
    "soft": keras_mtl.sharing.SoftSharing(strength=0.05),
    "mmoe": keras_mtl.sharing.MMoESharing(num_experts=3),
    "ple": keras_mtl.sharing.PLESharing(
        num_levels=3, num_task_experts=2, num_shared_experts=0
    ),
}


class ProjectedSharing(keras_mtl.sharing.Sharing):
    """A user scheme with a layer argument: one projection, then split."""

    def __init__(self, projection, scale=1.0):
        self.projection = projection
        self.scale = scale

    def build(self, inputs, trunk, task_names):
        features = self.projection(inputs) * self.scale
        return {name: features for name in task_names}

    def get_config(self):
        return {
            "projection": keras.saving.serialize_keras_object(self.projection),
            "scale": self.scale,
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["projection"] = keras.saving.deserialize_keras_object(
            config["projection"]
        )
        return cls(**config)


class NoConfigSharing(keras_mtl.sharing.Sharing):
    def __init__(self, width):
        self.width = width

    def build(self, inputs, trunk, task_names):
        return {name: inputs for name in task_names}


@pytest.fixture
def registry():
    """The sharing registry, restored after the test registered schemes."""
    registry = keras_mtl.sharing.registry
    # Other tests (the tuner's "all") read the registry: leave it as found.
    classes, canonical = dict(registry._classes), list(registry._canonical)
    yield registry
    registry._classes.clear()
    registry._classes.update(classes)
    registry._canonical[:] = canonical


def test_builtin_names_and_class_names():
    registry = keras_mtl.sharing.registry
    assert registry.names() == list(SCHEMES)
    for name, scheme in SCHEMES.items():
        cls = type(scheme)
        assert registry.name_of(cls) == name
        assert registry[name] is cls and registry[cls.__name__] is cls
        assert keras_mtl.sharing.ALL_OBJECTS_DICT[name] is cls
    # The derived name would be "m_mo_e": MMoE is registered by hand.
    assert "m_mo_e" not in registry


def test_register_a_user_scheme_with_aliases(registry):
    registered = keras_mtl.sharing.register(
        ProjectedSharing, name="projected", aliases=["proj"]
    )
    assert registered is ProjectedSharing
    assert registry.names()[-1] == "projected"
    # The module dict is a live view: the tuner sees the new scheme.
    assert keras_mtl.sharing.ALL_OBJECTS_DICT["proj"] is ProjectedSharing
    with pytest.raises(TypeError, match="projection"):
        keras_mtl.sharing.get("proj")  # its argument has no default

    scheme = ProjectedSharing(keras.layers.Dense(3, name="proj"), scale=0.5)
    config = keras_mtl.sharing.serialize(scheme)
    assert config["registered_name"] == "keras_mtl>ProjectedSharing"
    revived = keras_mtl.sharing.get(config)
    assert isinstance(revived, ProjectedSharing) and revived.scale == 0.5
    assert revived.projection.units == 3
    assert revived.projection is not scheme.projection

    tasks = [keras_mtl.Task("a"), keras_mtl.Task("b")]
    model = keras_mtl.build_mtl_model(
        keras.Input((4,), name="x"), tasks, sharing=revived
    )
    x = np.ones((2, 4), "float32")
    kernel, bias = model.get_layer("proj").get_weights()
    features = 0.5 * (x @ kernel + bias)
    a_kernel, a_bias = model.get_layer("a").get_weights()
    testing.assert_allclose(
        model.predict(x, verbose=0)["a"], features @ a_kernel + a_bias
    )


def test_register_as_a_decorator_derives_the_name(registry):
    @keras_mtl.sharing.register
    class TwoTowerSharing(keras_mtl.sharing.Sharing):
        def build(self, inputs, trunk, task_names):
            return {name: inputs for name in task_names}

    assert registry.name_of(TwoTowerSharing) == "two_tower"
    assert isinstance(keras_mtl.sharing.get("two_tower"), TwoTowerSharing)


@pytest.mark.parametrize(
    "features, error, match",
    [
        (lambda x, names: {names[0]: x}, ValueError, r"Missing: \['b'\]"),
        (
            lambda x, names: {**dict.fromkeys(names, x), "c": x},
            ValueError,
            r"unknown keys: \['c'\]",
        ),
        (lambda x, names: [x, x], TypeError, "must return a dict"),
        (lambda x, names: dict.fromkeys(names, 3), TypeError, "task 'a'"),
    ],
)
def test_a_scheme_that_leaves_out_a_task_is_named(features, error, match):
    class Partial(keras_mtl.sharing.Sharing):
        def build(self, inputs, trunk, task_names):
            return features(inputs, task_names)

    tasks = [keras_mtl.Task("a"), keras_mtl.Task("b")]
    with pytest.raises(error, match=f"Partial.build.*{match}"):
        keras_mtl.build_mtl_model(
            keras.Input((4,), name="x"), tasks, sharing=Partial()
        )


def test_registering_a_taken_name_or_a_non_sharing_class_raises(registry):
    with pytest.raises(ValueError, match="'hard' is already taken"):
        keras_mtl.sharing.register(ProjectedSharing, name="hard")
    with pytest.raises(TypeError, match="Only subclasses of Sharing"):
        keras_mtl.sharing.register(keras.layers.Dense, name="dense")
    with pytest.raises(TypeError, match="Only subclasses of Sharing"):
        keras_mtl.sharing.register(keras_mtl.sharing.HardSharing())
    assert "dense" not in registry


@pytest.mark.parametrize("name", list(SCHEMES))
def test_get_from_name_config_and_instance(name):
    scheme = SCHEMES[name]
    cls = type(scheme)
    assert keras_mtl.sharing.get(scheme) is scheme
    by_name = keras_mtl.sharing.get(name)
    assert type(by_name) is cls
    assert by_name.get_config() == cls().get_config()
    by_config = keras_mtl.sharing.get(keras_mtl.sharing.serialize(scheme))
    assert type(by_config) is cls and by_config is not scheme
    assert by_config.get_config() == scheme.get_config()
    # A bare {"class_name", "config"} dict works too.
    plain = {"class_name": cls.__name__, "config": scheme.get_config()}
    assert keras_mtl.sharing.get(plain).get_config() == scheme.get_config()


@pytest.mark.parametrize("name", list(SCHEMES))
def test_serialize_deserialize_round_trip_keeps_the_arguments(name):
    scheme = SCHEMES[name]
    revived = keras_mtl.sharing.deserialize(keras_mtl.sharing.serialize(scheme))
    assert type(revived) is type(scheme)
    assert vars(revived) == vars(scheme)
    assert repr(revived) == repr(scheme)
    testing.run_serialization_test(scheme)
    assert isinstance(type(scheme).search_space, dict)


def test_scheme_config_values():
    assert SCHEMES["hard"].get_config() == {}
    assert SCHEMES["cross_stitch"].get_config() == {
        "per_channel": True,
        "diagonal": 0.7,
        "learning_rate_multiplier": 5.0,
        "stitch_after": [0],
    }
    assert SCHEMES["soft"].get_config() == {"strength": 0.05}
    assert SCHEMES["mmoe"].get_config() == {"num_experts": 3}
    assert SCHEMES["ple"].get_config() == {
        "num_levels": 3,
        "num_task_experts": 2,
        "num_shared_experts": 0,
    }
    assert repr(SCHEMES["mmoe"]) == "MMoESharing(num_experts=3)"
    assert keras_mtl.sharing.Sharing.search_space == {}


def test_deserialize_an_unregistered_scheme_with_custom_objects():
    projection = keras.saving.serialize_keras_object(keras.layers.Dense(2))
    config = {
        "class_name": "ProjectedSharing",
        "config": {"projection": projection, "scale": 2.0},
    }
    revived = keras_mtl.sharing.deserialize(
        config, custom_objects={"ProjectedSharing": ProjectedSharing}
    )
    assert isinstance(revived, ProjectedSharing) and revived.scale == 2.0
    assert revived.projection.units == 2


def test_a_scheme_with_arguments_must_override_get_config():
    scheme = NoConfigSharing(3)
    with pytest.raises(NotImplementedError, match=r"\['width'\]"):
        scheme.get_config()
    assert "NoConfigSharing object" in repr(scheme)


@pytest.mark.parametrize(
    "identifier, error, match",
    [
        ("nope", ValueError, r"Unknown sharing 'nope'.*'hard'.*'ple'"),
        ("m_mo_e", ValueError, "Unknown sharing"),
        (None, TypeError, "`sharing` must be"),
        (3, TypeError, "`sharing` must be"),
        ({"num_experts": 2}, TypeError, "`sharing` must be"),
        (keras_mtl.sharing.HardSharing, TypeError, "`sharing` must be"),
    ],
)
def test_get_rejects_unknown_identifiers(identifier, error, match):
    with pytest.raises(error, match=match):
        keras_mtl.sharing.get(identifier)


def test_serialize_and_deserialize_reject_other_objects():
    with pytest.raises(TypeError, match="`sharing` must be"):
        keras_mtl.sharing.serialize("hard")
    config = keras.saving.serialize_keras_object(keras.layers.Dense(2))
    with pytest.raises(TypeError, match="`config` must describe"):
        keras_mtl.sharing.deserialize(config)


def test_dense_stack_names_and_values():
    layers = dense_stack([4, 2], "price_hidden")
    assert [layer.name for layer in layers] == [
        "price_hidden_0",
        "price_hidden_1",
    ]
    assert [layer.units for layer in layers] == [4, 2]
    assert all(layer.activation is keras.activations.relu for layer in layers)
    assert dense_stack((), "empty") == []
    linear = dense_stack([3], "linear", activation=None)[0]
    x = np.array([[1.0, -2.0]], "float32")
    out = linear(x)
    kernel, bias = linear.get_weights()
    testing.assert_allclose(out, x @ kernel + bias)
    assert np.any(keras.ops.convert_to_numpy(out) != 0)
    relu = dense_stack([3], "relu")[0]
    out = keras.ops.convert_to_numpy(relu(x))
    kernel, bias = relu.get_weights()
    testing.assert_allclose(out, np.maximum(x @ kernel + bias, 0.0))


@pytest.mark.parametrize(
    "units, name, match",
    [
        ([0], "a", "`units`"),
        ([4, -1], "a", "`units`"),
        ([2.0], "a", "`units`"),
        ([True], "a", "`units`"),
        (8, "a", "`units`"),
        ("8", "a", "`units`"),
        (None, "a", "`units`"),
        ([4], "", "`name`"),
        ([4], None, "`name`"),
    ],
)
def test_dense_stack_rejects_bad_arguments(units, name, match):
    with pytest.raises(TypeError, match=match):
        dense_stack(units, name)


@pytest.mark.parametrize(
    "sharing, expected",
    [
        ("hard", ["trunk_dense_0/kernel", "trunk_dense_1/kernel"]),
        (
            "cross_stitch",
            ["a_dense_0/kernel", "b_dense_1/kernel", "cross_stitch_1/stitch"],
        ),
        ("soft", ["soft_shared_0/dense_0_0/kernel"]),
        ("mmoe", ["mmoe/expert_0/dense_0/kernel", "mmoe/gate_1_kernel"]),
        (
            "ple",
            [
                "cgc_0/task_1_expert_0/dense_1/kernel",
                "cgc_1/shared_expert_0/dense_0/kernel",
            ],
        ),
    ],
)
def test_layer_names_of_hidden_sizes_stay_as_saved(sharing, expected):
    # Saved `.keras` files match weights by these names: they must not move.
    tasks = [keras_mtl.Task("a", head=[3]), keras_mtl.Task("b")]
    model = keras_mtl.build_mtl_model(
        keras.Input((5,), name="x"), tasks, trunk=[4, 2], sharing=sharing
    )
    paths = {v.path for v in model.weights}
    assert set(expected) <= paths, sorted(paths)
    assert "a_hidden_0/kernel" in paths
