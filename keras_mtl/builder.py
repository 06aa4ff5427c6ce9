import warnings

import keras
import numpy as np

from keras_mtl import layers as mtl_layers
from keras_mtl import sharing as sharing_module
from keras_mtl.layers.towers import is_hidden_sizes
from keras_mtl.model import MTLModel
from keras_mtl.structure import check_tasks


def _named_inputs(inputs):
    """`[(name, tensor)]`: dict keys, list positions or the tensor's name."""
    if isinstance(inputs, dict):
        return list(inputs.items())
    if isinstance(inputs, (list, tuple)):
        return [(f"inputs[{i}]", x) for i, x in enumerate(inputs)]
    return [(getattr(inputs, "name", None), inputs)]


def _is_model_input(tensor):
    """Whether `tensor` is a `keras.Input`, by public API alone.

    A functional model keeps a `keras.Input` as its input; any other tensor
    it replaces by a fresh input (dropping the layers that made it) or
    rejects as not connected.
    """
    try:
        probe = keras.Model(tensor, tensor, name="input_probe")
    except ValueError:
        return False
    return probe.inputs[0] is tensor


def _check_inputs(inputs):
    named = _named_inputs(inputs)
    if not named or not all(isinstance(x, keras.KerasTensor) for _, x in named):
        raise TypeError(
            "`inputs` must be a `keras.Input` or a dict/list of them. "
            f"Received: inputs={inputs!r}"
        )
    for name, tensor in named:
        if not _is_model_input(tensor):
            raise ValueError(
                f"`inputs` must be `keras.Input` tensors, but input {name!r} "
                f"is the output of a layer ({tensor!r}); the layers before "
                "it would silently be left out of the model. Pass the "
                "`keras.Input` itself and put the embedding or preprocessing "
                "in the trunk, e.g. `trunk=` a layer or `keras.Model` taking "
                "the inputs."
            )
    return [x.name for _, x in named]


# The schemes that turn a list trunk into `Dense` layers on the inputs.
_DENSE_TRUNK_SCHEMES = (
    sharing_module.HardSharing,
    sharing_module.MMoESharing,
    sharing_module.PLESharing,
    sharing_module.CrossStitchSharing,
    sharing_module.SoftSharing,
)


def _warn_integer_inputs(inputs, trunk, scheme, tasks):
    """Warns when integer inputs would go straight into `Dense` layers.

    A warning, not an error: integer counts are fine as numbers; ids and
    categories are not, and nothing in a dtype tells them apart.
    """
    if not isinstance(scheme, _DENSE_TRUNK_SCHEMES):
        return
    if trunk is None:
        if all(isinstance(t.head, keras.layers.Layer) for t in tasks):
            return
        into = "the task heads (`trunk=None`)"
    elif is_hidden_sizes(trunk):
        into = f"the `Dense` layers of `trunk={list(trunk)!r}`"
    else:
        return
    for name, tensor in _named_inputs(inputs):
        dtype = keras.backend.standardize_dtype(tensor.dtype)
        if dtype.startswith(("int", "uint")):
            warnings.warn(
                f"Input {name!r} has dtype {dtype} and goes straight into "
                f"{into}, which read integer ids as magnitudes. If they are "
                "ids or categories, embed them: pass `trunk=` a layer or "
                "`keras.Model` with a `keras.layers.Embedding`, or encode "
                "them with `keras.utils.FeatureSpace`. If they are counts, "
                "give the input a float dtype to silence this warning.",
                UserWarning,
                stacklevel=3,
            )


def _clone_groups(layer):
    """The lists of clones (experts, towers) inside a sharing layer."""
    if isinstance(layer, mtl_layers.MMoE):
        return [layer.experts]
    if isinstance(layer, mtl_layers.CGC):
        return [layer.shared_experts + sum(layer.task_experts, [])]
    if isinstance(layer, mtl_layers.SoftShared):
        return [layer.towers]
    return []


def _warn_identical_clones(model):
    """Warns if clones of one layer start from the same weights.

    Cloning reseeds the seeds a layer's config shows; a layer that seeds
    its initializers out of sight of its config is still cloned alike.
    """
    for layer in model.layers:
        for clones in _clone_groups(layer):
            starts = [
                b"".join(np.asarray(w).tobytes() for w in c.trainable_weights)
                for c in clones
            ]
            starts = [start for start in starts if start]
            if len(set(starts)) < len(starts):
                warnings.warn(
                    f"Layer '{layer.name}' has clones (experts or towers) that "
                    "start from identical weights, so they learn alike: the "
                    "layer they are cloned from seeds its initializers in a "
                    "way its config does not show. Give it unseeded "
                    "initializers, or `seed` arguments in its config.",
                    UserWarning,
                    stacklevel=3,
                )


def _head(task, features):
    x = features
    if isinstance(task.head, keras.layers.Layer):
        x = task.head(x)
    elif task.head:
        for layer in sharing_module.dense_stack(
            task.head, f"{task.name}_hidden"
        ):
            x = layer(x)
    # Under mixed precision the outputs, and so the losses, stay float32.
    dtype = (
        "float32"
        if keras.config.dtype_policy().name.startswith("mixed")
        else None
    )
    return keras.layers.Dense(
        task.units, activation=task.activation, name=task.name, dtype=dtype
    )(x)


def build_mtl_model(
    inputs,
    tasks,
    trunk=None,
    sharing="hard",
    weighting="equal",
    name="mtl_model",
):
    """Builds a multi-task model: shared layers, then one head per task.

    What `trunk` means depends on `sharing`. A list of hidden sizes is one
    ReLU `Dense` stack, and the schemes use it differently:

    | `sharing`        | what `trunk=[128]` builds                          |
    | ---------------- | -------------------------------------------------- |
    | `"hard"`         | one shared `Dense(128)` trunk for all tasks        |
    | `"cross_stitch"` | one `Dense(128)` tower per task, stitched together |
    | `"soft"`         | one `Dense(128)` tower per task, L2-tied           |
    | `"mmoe"`         | 4 experts, each a `Dense(128)`, one gate per task  |
    | `"ple"`          | 2 levels of 1 expert per task + 1 shared expert,   |
    |                  | each expert a `Dense(128)`                         |

    So the same `trunk` gives several times more parameters with `"mmoe"`
    or `"ple"` than with `"hard"`. A name is the scheme with its default
    arguments (`"mmoe"` is `MMoESharing(num_experts=4)`, `"ple"` is
    `PLESharing(num_levels=2, num_task_experts=1, num_shared_experts=1)`);
    to set them, pass the scheme's instance: that is the one place for a
    scheme's options. A layer trunk is called on the inputs by `"hard"`,
    and cloned (with fresh weights, and seeds of their own if it has
    seeded initializers) into each tower or expert by the other schemes.

    Args:
        inputs: `keras.Input`, or a dict or list of them. They must be the
            `keras.Input` tensors themselves, not outputs of layers (such as
            an `Embedding`): put such layers in the trunk. Integer inputs
            into a list trunk (or into the heads, without a trunk) trigger a
            warning: ids need an `Embedding` or `keras.utils.FeatureSpace`.
        tasks: list of `keras_mtl.Task`. Each gets an output layer named
            after it, on top of its optional `head` layers.
        trunk: list of int, `keras.layers.Layer` or `None`. The shared
            network, as in the table above: hidden sizes of ReLU `Dense`
            layers, or a layer/model called on (or cloned per tower or
            expert from) the inputs. `"mmoe"`, `"ple"`, `"cross_stitch"` and
            `"soft"` need one. Defaults to `None` (heads on the inputs).
        sharing: str or `keras_mtl.sharing.Sharing`. How tasks share the
            trunk: `"hard"` (one trunk for all tasks), `"cross_stitch"`,
            `"soft"`, `"mmoe"`, `"ple"` (each with its default arguments),
            or an instance with arguments of your choice, such as
            `keras_mtl.sharing.MMoESharing(num_experts=8)` or
            `keras_mtl.sharing.PLESharing(num_levels=1)`. Defaults to
            `"hard"`.
        weighting: str, `{task: weight}` dict or
            `keras_mtl.weighting.Weighting`. How the task losses are combined
            in training. Defaults to `"equal"`: their sum.
        name: str. The model's name. Defaults to `"mtl_model"`.

    Returns:
        A `keras_mtl.MTLModel` whose outputs are a dict by task name.

    Example:

    ```python
    import keras
    import keras_mtl

    inputs = keras.Input((32,), name="features")
    tasks = [
        keras_mtl.Task("price", loss="mse", metrics=["mae"]),
        keras_mtl.Task("churn", loss="binary_crossentropy", metrics=["auc"],
                       activation="sigmoid", head=[16]),
    ]
    model = keras_mtl.build_mtl_model(inputs, tasks, trunk=[64, 64])
    model.compile(optimizer="adam")

    # 8 experts of one Dense(16) each, instead of the default 4.
    mmoe = keras_mtl.build_mtl_model(
        inputs, tasks, trunk=[16],
        sharing=keras_mtl.sharing.MMoESharing(num_experts=8))

    # Integer ids: keep the `keras.Input`, embed them in the trunk.
    ids = keras.Input((3,), dtype="int32", name="ids")
    embed = keras.Sequential([
        keras.layers.Embedding(1000, 8),
        keras.layers.Flatten(),
        keras.layers.Dense(32, activation="relu"),
    ])
    from_ids = keras_mtl.build_mtl_model(ids, tasks, trunk=embed)
    ```

    References:
        - [Ruder, 2017](https://arxiv.org/abs/1706.05098), an overview of
          multi-task learning in deep networks.
    """
    input_names = _check_inputs(inputs)
    tasks = check_tasks(tasks)
    clashes = sorted({t.name for t in tasks} & set(input_names))
    if clashes:
        raise ValueError(
            f"Task names {clashes} are also input names; each names a layer, "
            "so they must differ."
        )
    scheme = sharing_module.get(sharing)
    _warn_integer_inputs(inputs, trunk, scheme, tasks)
    features = _check_features(
        scheme.build(inputs, trunk, [t.name for t in tasks]), scheme, tasks
    )
    outputs = {t.name: _head(t, features[t.name]) for t in tasks}
    model = MTLModel(
        inputs=inputs,
        outputs=outputs,
        tasks=tasks,
        weighting=weighting,
        shared_representation=_representation_layer(inputs, features),
        name=name,
    )
    _warn_identical_clones(model)
    return model


def _check_features(features, scheme, tasks):
    """`features` as a sharing scheme must return them: one per task."""
    names = [t.name for t in tasks]
    if not isinstance(features, dict):
        raise TypeError(
            f"{type(scheme).__name__}.build must return a dict "
            f"{{task_name: features}} for the tasks {names}. Received: "
            f"{type(features).__name__}"
        )
    missing = [n for n in names if n not in features]
    unknown = sorted(str(k) for k in features if k not in names)
    if missing or unknown:
        raise ValueError(
            f"{type(scheme).__name__}.build must return features for each "
            f"task {names}. Missing: {missing}; unknown keys: {unknown}."
        )
    for name in names:
        if not isinstance(features[name], keras.KerasTensor):
            raise TypeError(
                f"{type(scheme).__name__}.build returned "
                f"{type(features[name]).__name__} for task '{name}'; "
                "expected the symbolic tensor of its features."
            )
    return features


def _representation_layer(inputs, features):
    """The name of the layer whose output every head reads, or `None`."""
    tensors = list(features.values())
    if any(t is not tensors[0] for t in tensors):
        return None
    for layer in keras.Model(inputs, tensors[0]).layers:
        try:
            if layer.output is tensors[0]:
                return layer.name
        except (AttributeError, ValueError):
            continue  # a layer called more than once
    return None
