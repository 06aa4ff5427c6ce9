import keras

from keras_mtl import sharing as sharing_module
from keras_mtl.model import MTLModel
from keras_mtl.structure import check_tasks


def _check_inputs(inputs):
    flat = list(inputs.values()) if isinstance(inputs, dict) else inputs
    flat = flat if isinstance(flat, (list, tuple)) else [flat]
    if not flat or not all(isinstance(x, keras.KerasTensor) for x in flat):
        raise TypeError(
            "`inputs` must be a `keras.Input` or a dict/list of them. "
            f"Received: inputs={inputs!r}"
        )
    return [x.name for x in flat]


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

    Args:
        inputs: `keras.Input`, or a dict or list of them.
        tasks: list of `keras_mtl.Task`. Each gets an output layer named
            after it, on top of its optional `head` layers.
        trunk: list of int, `keras.layers.Layer` or `None`. The shared
            network: hidden sizes of ReLU `Dense` layers, or a layer/model
            called on the inputs. Defaults to `None` (heads on the inputs).
        sharing: str or `keras_mtl.sharing.Sharing`. How tasks share the
            trunk: `"hard"` (one trunk for all tasks), `"cross_stitch"`,
            `"soft"`, `"mmoe"`, `"ple"`, or an instance such as
            `keras_mtl.sharing.MMoESharing(num_experts=8)` for other
            arguments. Defaults to `"hard"`.
        weighting: str, `{task: weight}` dict or
            `keras_mtl.weighting.Weighting`. How the task losses are combined
            in training. Defaults to `"equal"`: their sum.
        name: str. The model's name. Defaults to `"mtl_model"`.

    Returns:
        A `keras_mtl.MTLModel` whose outputs are a dict by task name.

    Example:

    ```python
    inputs = keras.Input((32,), name="features")
    tasks = [
        keras_mtl.Task("price", loss="mse", metrics=["mae"]),
        keras_mtl.Task("churn", loss="binary_crossentropy", metrics=["auc"],
                       activation="sigmoid", head=[16]),
    ]
    model = keras_mtl.build_mtl_model(inputs, tasks, trunk=[64, 64])
    model.compile(optimizer="adam")
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
    features = scheme.build(inputs, trunk, [t.name for t in tasks])
    outputs = {t.name: _head(t, features[t.name]) for t in tasks}
    return MTLModel(
        inputs=inputs,
        outputs=outputs,
        tasks=tasks,
        weighting=weighting,
        shared_representation=_representation_layer(inputs, features),
        name=name,
    )


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
