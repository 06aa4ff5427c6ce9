"""Task affinity (TAG) measured while a model trains."""

import math
import numbers

import keras
import numpy as np

from keras_mtl.evaluation.affinity import task_affinity
from keras_mtl.evaluation.conflict import _probe
from keras_mtl.model import MTLModel

__all__ = ["TaskAffinity"]


class TaskAffinity(keras.callbacks.Callback):
    """Logs TAG's inter-task affinities while a model trains.

    Every `every` training batches, and at each epoch end (unless the
    epoch's last batch was just measured), the callback calls
    `keras_mtl.evaluation.task_affinity` on a fixed probe batch: for each
    task i, a lookahead step of plain SGD on task i's loss alone moves the
    shared variables, every task's loss is measured again on the same
    batch, and the weights are put back exactly. The affinity of i onto j
    is `Z[i, j] = 1 - L_j(theta_s|i) / L_j(theta_s)` (not divided by the
    learning rate), positive when a step for i helps j. TAG measures on
    each training batch; a Keras callback does not see it, so the probe is
    data given to the callback, for instance a sample of the training
    data.

    The epoch means of the measurements go into the epoch's logs as
    `affinity_<i>_<j>`, every ordered pair in `model.task_names` order,
    the diagonal included (a task's own step: far larger than the rest).
    `MTLTensorBoard` writes them under `affinity/<i>-><j>` and draws the
    matrix. `history` keeps every measurement; `mean_affinity()` is their
    mean, the matrix to give `keras_mtl.evaluation.group_tasks`.

    Cost: each measurement is one forward pass, T backward passes (one
    per task, to the shared variables) and T more forward passes on the
    probe, plus 2T assignments of the shared variables: about T training
    steps of compute, run eagerly (not compiled, so slower per operation
    than the training step), once every `every` steps.

    Where the tasks are fitted within a few epochs (as in
    `recipes/task_affinity.py`), later measurements are noise around 0:
    average the early ones, the `history` entries by `step`.

    Args:
        x: inputs of the probe batch (all of it is one batch), or a
            `tf.data.Dataset` of `(x, y[, sample_weight])` batches, whose
            first batch is the probe.
        y: dict `{task: labels}` of the probe batch, with every task; `None`
            with a dataset.
        every: int. Measure after every `every` training batches (and at
            each epoch end). Defaults to `50`.
        sample_weight: array, or dict by task, of the probe's sample
            weights. Defaults to `None`.
        learning_rate: float. Step size of the lookahead. Defaults to
            `None`: the optimizer's learning rate at each measurement.

    Attributes:
        history: list of dicts, one per measurement: `step` (training
            batches seen), `epoch` and `affinity`, a `(T, T)` array.

    Example:

    ```python
    affinity = keras_mtl.callbacks.TaskAffinity(
        x[:512], {task: labels[:512] for task, labels in y.items()},
        every=20)
    model.fit(x, y, epochs=3, callbacks=[affinity])
    keras_mtl.evaluation.group_tasks(
        affinity.mean_affinity(), num_groups=2, task_names=model.task_names)
    ```

    References:
        - [Fifty et al., 2021](https://arxiv.org/abs/2109.04617),
          "Efficiently identifying task groupings for multi-task learning"
          (TAG).
    """

    def __init__(
        self, x, y=None, every=50, sample_weight=None, learning_rate=None
    ):
        super().__init__()
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise ValueError(
                f"`every` must be an integer >= 1. Received: every={every!r}"
            )
        if learning_rate is not None and (
            isinstance(learning_rate, bool)
            or not isinstance(learning_rate, numbers.Real)
            or not math.isfinite(learning_rate)
            or learning_rate <= 0
        ):
            raise ValueError(
                "`learning_rate` must be None or a finite number > 0. "
                f"Received: learning_rate={learning_rate!r}"
            )
        self.x, self.y = x, y
        self.sample_weight = sample_weight
        self.every = every
        self.learning_rate = learning_rate
        self._probe = _probe(x, y, sample_weight)
        self.history = []
        self._step = 0
        self._epoch = 0
        self._epoch_start = 0
        self._epoch_measurements = []

    def on_train_begin(self, logs=None):
        model = self.model
        if not isinstance(model, MTLModel):
            raise TypeError(
                "TaskAffinity needs a keras_mtl.MTLModel. "
                f"Received: {type(model).__name__}"
            )
        names = model.task_names
        if len(names) < 2:
            raise ValueError(
                "TaskAffinity compares tasks: the model needs at least 2. "
                f"Received a model with tasks {names}"
            )
        given = self._probe[1]
        missing = [n for n in names if given.get(n) is None]
        unknown = sorted(k for k in given if k not in names)
        if missing or unknown:
            raise ValueError(
                f"`y` must hold the probe's labels of every task {names}. "
                f"Missing: {missing}; unknown keys: {unknown}."
            )
        if not model.shared_variables:
            raise ValueError(
                "The model has no shared variables: no task's step can move "
                "another's loss."
            )

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch
        self._epoch_start = self._step
        self._epoch_measurements = []

    def on_train_batch_end(self, batch, logs=None):
        before, self._step = self._step, self._epoch_start + batch + 1
        if self._step // self.every > before // self.every:
            self._measure()

    def on_epoch_end(self, epoch, logs=None):
        done = self._epoch_measurements
        if not done or done[-1]["step"] != self._step:
            self._measure()
        if logs is None:
            return
        mean = np.mean([m["affinity"] for m in self._epoch_measurements], 0)
        names = self.model.task_names
        for i, a in enumerate(names):
            for j, b in enumerate(names):
                logs[f"affinity_{a}_{b}"] = float(mean[i, j])

    def mean_affinity(self):
        """The `(T, T)` mean of every measurement so far (NaN where a pair
        was never defined)."""
        if not self.history:
            raise ValueError("No affinity measured yet: call `fit` first.")
        stacked = np.stack([m["affinity"] for m in self.history])
        counts = np.isfinite(stacked).sum(axis=0)
        totals = np.where(np.isfinite(stacked), stacked, 0.0).sum(axis=0)
        return np.divide(
            totals, counts, out=np.full_like(totals, np.nan), where=counts > 0
        )

    def _measure(self):
        x, y, sample_weight = self._probe
        rows = len(keras.tree.flatten(x)[0])
        affinity = task_affinity(
            self.model,
            x,
            y,
            sample_weight=sample_weight,
            batch_size=rows,
            steps=1,
            learning_rate=self.learning_rate,
        )
        measurement = dict(
            step=self._step, epoch=self._epoch, affinity=affinity
        )
        self.history.append(measurement)
        self._epoch_measurements.append(measurement)
