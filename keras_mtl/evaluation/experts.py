"""Expert utilisation of MMoE and PLE models: each task's mean gate."""

import keras
import numpy as np

from keras_mtl.sharing.gates import gate_model


class ExpertUtilization(keras.callbacks.Callback):
    """Logs each task's mean gate weight per expert at every epoch end.

    For every gate of the model's `keras_mtl.layers.MMoE` and `CGC` layers
    (see `keras_mtl.sharing.gate_model`), the mean over the probe inputs
    `x` of the gate's softmax weights: how much each task draws on each
    expert. A task whose gate puts nearly all its weight on one expert, or
    experts that no gate uses, are the collapse MMoE's authors warn of.
    The values go into the epoch logs as `<layer>/<task>/expert_<e>`
    (`<layer>/shared/...` for a PLE level's shared gate), so `History`,
    `CSVLogger` and TensorBoard (which groups the tags by layer and task)
    see them; `history` keeps one `{gate: (experts,) array}` per epoch.
    Cost: one forward pass over `x` per epoch, outside the training step.

    Args:
        x: inputs of the probe (an array, or a dict/list as the model takes),
            e.g. a sample of the validation inputs.
        batch_size: int. Batch size of the forward pass. Defaults to `256`.

    Example:

    ```python
    model = keras_mtl.build_mtl_model(inputs, tasks, trunk=[16],
                                      sharing="mmoe")
    model.compile(optimizer="adam")
    usage = keras_mtl.evaluation.ExpertUtilization(x[:512])
    model.fit(x, y, epochs=3, callbacks=[usage])
    usage.history[-1]["mmoe/price"]  # (4,), sums to 1
    ```

    References:
        - [Ma et al., 2018](https://doi.org/10.1145/3219819.3220007),
          Multi-gate Mixture-of-Experts.
        - [Tang et al., 2020](https://doi.org/10.1145/3383313.3412236),
          Progressive Layered Extraction (expert utilisation, Fig. 7).
    """

    def __init__(self, x, batch_size=256):
        super().__init__()
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(
                f"`batch_size` must be an int >= 1. Received: {batch_size!r}"
            )
        self.x = x
        self.batch_size = batch_size
        self.history = []
        self._gates = None

    def set_model(self, model):
        super().set_model(model)
        self._gates = gate_model(model)  # raises without MMoE/CGC layers

    def utilization(self):
        """`{gate: (experts,) array}`: the mean gate weights, now."""
        gates = self._gates.predict(
            self.x, batch_size=self.batch_size, verbose=0
        )
        return {
            name: np.asarray(values, "float64").mean(axis=0)
            for name, values in gates.items()
        }

    def on_epoch_end(self, epoch, logs=None):
        means = self.utilization()
        self.history.append(means)
        if logs is not None:
            for name, values in means.items():
                for expert, value in enumerate(values):
                    logs[f"{name}/expert_{expert}"] = float(value)
