import keras

from keras_mtl.layers.cgc import CGC
from keras_mtl.layers.mmoe import MMoE


def gate_model(model):
    """A model from `model`'s inputs to the gate values of its expert layers.

    Works on any model built with `sharing="mmoe"` or `"ple"` (or holding
    `keras_mtl.layers.MMoE`/`CGC` layers with `return_gates=True`), also
    after `.keras` loading.

    Args:
        model: a functional `keras.Model`, e.g. from `build_mtl_model`.

    Returns:
        A `keras.Model` whose outputs are a dict
        `{"{layer}/{task}": (batch, experts)}` (`"{layer}/shared"` for a PLE
        level's shared gate).

    Example:

    ```python
    model = keras_mtl.build_mtl_model(inputs, tasks, trunk=[16],
                                      sharing="mmoe")
    gates = keras_mtl.sharing.gate_model(model).predict(x)
    gates["mmoe/price"]  # (batch, 4), rows sum to 1
    ```
    """
    names = getattr(model, "task_names", None)
    outputs = {}
    for layer in model.layers:
        if not isinstance(layer, (MMoE, CGC)) or not layer.return_gates:
            continue
        # Keras flattens a layer's output structure: outputs, then gates.
        flat = keras.tree.flatten(layer.output)
        gates = flat[len(flat) // 2 :]
        labels = list(names or range(layer.num_tasks))
        if len(gates) > layer.num_tasks:
            labels.append("shared")
        for label, gate in zip(labels, gates):
            outputs[f"{layer.name}/{label}"] = gate
    if not outputs:
        raise ValueError(
            f"Model '{model.name}' has no MMoE or CGC layer that returns its "
            "gates. Build it with sharing='mmoe' or sharing='ple'."
        )
    return keras.Model(model.inputs, outputs, name=f"{model.name}_gates")
