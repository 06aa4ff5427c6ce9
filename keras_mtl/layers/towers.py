"""Builds the sub-networks (towers, experts) that sharing layers hold."""

import zlib

import keras
from keras import ops


def is_hidden_sizes(spec):
    """Whether `spec` is a list (or tuple) of ints >= 1, possibly empty."""
    return isinstance(spec, (list, tuple)) and all(
        isinstance(u, int) and not isinstance(u, bool) and u >= 1 for u in spec
    )


def dense_stack(units, name, activation="relu"):
    """Fresh `Dense` layers, one per hidden size, named `{name}_{i}`.

    The one place where a list of hidden sizes becomes layers: trunks,
    towers, experts and task heads all use it, so their layer names (and
    so the weights of saved models) follow one rule.

    Args:
        units: list of int. Hidden sizes, each >= 1; may be empty.
        name: str. Prefix of the layer names: layer `i` is `{name}_{i}`.
        activation: str or callable. Activation of every layer. Defaults to
            `"relu"`.

    Returns:
        A list of unbuilt `keras.layers.Dense`, one per entry of `units`.

    Example:

    ```python
    layers = keras_mtl.sharing.dense_stack([64, 32], "price_hidden")
    [layer.name for layer in layers]  # ["price_hidden_0", "price_hidden_1"]
    ```
    """
    if not is_hidden_sizes(units):
        raise TypeError(
            "`units` must be a list of hidden sizes (ints >= 1). "
            f"Received: units={units!r}"
        )
    if not isinstance(name, str) or not name:
        raise TypeError(
            f"`name` must be a non-empty string. Received: name={name!r}"
        )
    return [
        keras.layers.Dense(size, activation=activation, name=f"{name}_{i}")
        for i, size in enumerate(units)
    ]


def check_tower_spec(spec, argument):
    """Raises unless `spec` is a list of hidden sizes or a Keras layer."""
    if isinstance(spec, keras.layers.Layer):
        return spec
    if spec and is_hidden_sizes(spec):
        return list(spec)
    raise TypeError(
        f"`{argument}` must be a non-empty list of hidden sizes (ints >= 1) "
        f"or a keras Layer. Received: {argument}={spec!r}"
    )


def plain_config(config):
    """A copy of a serialized config with no object-sharing marks.

    Inside `.keras` loading, Keras marks objects serialized twice as one
    shared object; clones must stay distinct, so the marks go.
    """
    if isinstance(config, dict):
        return {
            k: plain_config(v)
            for k, v in config.items()
            if k not in ("shared_object_id", "build_config")
        }
    if isinstance(config, (list, tuple)):
        return type(config)(plain_config(v) for v in config)
    return config


def clone_seed(seed, name):
    """The seed of clone `name` of something seeded with `seed`.

    Deterministic (the same seed and name give the same seed in every
    process) and different for the clones of one layer, whose names
    differ.
    """
    return (seed * 1_000_003 + zlib.crc32(name.encode("utf-8"))) % (2**31 - 1)


def reseed_config(config, name):
    """A copy of a serialized config with every int `seed` made `name`'s.

    Covers the seeds of initializers, of random layers (`Dropout`) and of
    nested layers (`Sequential` towers); `None` seeds stay `None`.
    """
    if isinstance(config, dict):
        return {
            k: (
                clone_seed(v, name)
                if k == "seed"
                and isinstance(v, int)
                and not isinstance(v, bool)
                else reseed_config(v, name)
            )
            for k, v in config.items()
        }
    if isinstance(config, (list, tuple)):
        return type(config)(reseed_config(v, name) for v in config)
    return config


def clone_layer(layer, name):
    """A fresh, unbuilt copy of `layer` (a layer or its config) named `name`.

    A seeded initializer (or random layer) would make every clone start
    from the same weights, so each clone gets seeds of its own, derived
    from the original seeds and `name` (see `clone_seed`): a seeded model
    stays reproducible and its experts or towers still differ.
    """
    if isinstance(layer, keras.layers.Layer):
        layer = keras.layers.serialize(layer)
    config = reseed_config(plain_config(layer), name)
    config["config"] = dict(config["config"], name=name)
    return keras.layers.deserialize(config)


def make_tower(spec, name):
    """A fresh tower from a spec: ReLU `Dense` sizes, or a layer to clone."""
    if isinstance(spec, (keras.layers.Layer, dict)):
        return clone_layer(spec, name)
    return keras.Sequential(dense_stack(spec, "dense"), name=name)


def serialize_tower_spec(spec):
    if isinstance(spec, keras.layers.Layer):
        return plain_config(keras.layers.serialize(spec))
    return list(spec)


def deserialize_tower_spec(spec):
    if isinstance(spec, dict):
        return keras.layers.deserialize(spec)
    return spec


def check_count(value, argument, minimum):
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ValueError(
            f"`{argument}` must be an int >= {minimum}. "
            f"Received: {argument}={value!r}"
        )
    return value


def flat_size(shape, layer_name):
    """Number of features per example of `shape`; raises if unknown."""
    size = 1
    for dim in shape[1:]:
        if dim is None:
            raise ValueError(
                f"{layer_name} gates need inputs of known shape apart from "
                f"the batch axis. Received input shape: {tuple(shape)}"
            )
        size *= dim
    return size


def gate_and_mix(gate_input, kernel, expert_outputs):
    """Softmax gate on `gate_input`; mixes stacked `(batch, E, ...)` experts.

    Returns `(mixture, gates)` with `gates` of shape `(batch, E)`.
    """
    flat = ops.reshape(gate_input, (ops.shape(gate_input)[0], -1))
    gates = ops.softmax(ops.matmul(flat, ops.cast(kernel, flat.dtype)), -1)
    gates = ops.cast(gates, expert_outputs.dtype)
    # A batched matmul: einsum with an ellipsis is several times slower.
    shape = ops.shape(expert_outputs)
    experts = ops.reshape(expert_outputs, (shape[0], shape[1], -1))
    mixture = ops.matmul(ops.expand_dims(gates, 1), experts)[:, 0]
    return ops.reshape(mixture, (shape[0],) + tuple(shape[2:])), gates
