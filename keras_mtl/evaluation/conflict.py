"""Gradient conflict between tasks, measured on a probe batch in training."""

import keras
import numpy as np
import tensorflow as tf

from keras_mtl import gradients
from keras_mtl.model import MTLModel
from keras_mtl.weighting.gradient_base import GradientWeighting

__all__ = ["GradientConflict"]


def _probe(x, y, sample_weight):
    """The probe batch `(x, y, sample_weight)` as tensors."""
    if isinstance(x, tf.data.Dataset):
        if y is not None or sample_weight is not None:
            raise ValueError(
                "With a `tf.data.Dataset` as `x`, its first batch gives the "
                "labels and sample weights: pass `y=None` and "
                f"`sample_weight=None`. Received: y={type(y).__name__}, "
                f"sample_weight={type(sample_weight).__name__}"
            )
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(
            next(iter(x))
        )
    if not isinstance(y, dict):
        raise ValueError(
            "`y` must be the labels of the probe batch, a dict "
            f"`{{task: labels}}`. Received: y={type(y).__name__}"
        )
    return keras.tree.map_structure(
        lambda a: None if a is None else tf.convert_to_tensor(a),
        (x, y, sample_weight),
    )


def _gram_function(model, shared):
    """A `tf.function` of the probe: the `(T, T)` Gram matrix of the tasks'
    gradients at the shared variables, and the `(T,)` labelled counts."""

    @tf.function
    def gram(x, y, sample_weight):
        with tf.GradientTape(persistent=True) as tape:
            y_pred = model(x, training=False)
            # One scalar per task: each gradient reaches its own head only.
            # The counts say which tasks the probe labels.
            losses, counts = model.compute_task_losses(
                y, y_pred, sample_weight, return_counts=True
            )
        per_task = []
        for loss in losses:
            grads = tape.gradient(loss, shared)
            per_task.append(
                [
                    tf.zeros_like(v) if g is None else g
                    for v, g in zip(shared, grads)
                ]
            )
        del tape
        stacked = [tf.stack(list(column)) for column in zip(*per_task)]
        return gradients.flat_gram(stacked), counts

    return gram


class GramRecord:
    """The Gram matrix of the task gradients and the presence of the tasks
    at the last training step, in two (unsaved) variables that the step of
    a gradient-level method assigns (`method.gram_record`)."""

    def __init__(self, num_tasks):
        only_first = tf.VariableAggregation.ONLY_FIRST_REPLICA
        self.gram = tf.Variable(
            tf.fill((num_tasks, num_tasks), np.nan),
            trainable=False,
            aggregation=only_first,
            name="recorded_gram",
        )
        self.present = tf.Variable(
            tf.zeros((num_tasks,), "bool"),
            trainable=False,
            aggregation=only_first,
            name="recorded_present",
        )

    def assign(self, gram, present):
        self.gram.assign(tf.cast(gram, "float32"))
        self.present.assign(present)


def _statistics(gram, present):
    """Cosines, magnitude similarities, norms and the conflicting fraction
    of the gradients whose `(T, T)` Gram matrix is `gram`.

    A task not `present` has NaN rows; so has the cosine of a zero
    gradient (undefined), and the magnitude similarity of two.
    """
    gram = np.asarray(gram, "float64")
    norms = np.sqrt(np.maximum(np.diag(gram), 0.0))
    norms = np.where(np.asarray(present, bool), norms, np.nan)
    outer = np.outer(norms, norms)
    squares = norms[:, None] ** 2 + norms[None, :] ** 2
    with np.errstate(invalid="ignore", divide="ignore"):
        cosine = np.where(outer > 0, gram / outer, np.nan)
        magnitude = np.where(squares > 0, 2.0 * outer / squares, np.nan)
    cosine = np.clip(cosine, -1.0, 1.0)
    pairs = cosine[np.triu_indices(len(norms), k=1)]
    defined = pairs[np.isfinite(pairs)]
    fraction = np.mean(defined < 0) if defined.size else np.nan
    return dict(
        cosine=cosine,
        magnitude=magnitude,
        grad_norm=norms,
        conflict_fraction=float(fraction),
    )


class GradientConflict(keras.callbacks.Callback):
    """Logs how much the tasks' gradients conflict while a model trains.

    Every `every` training batches, and at each epoch end, the callback
    computes each task's gradient `g_i` of its (unweighted) loss with
    respect to `model.shared_variables`, flattened into one vector, on a
    fixed probe batch: a Keras callback does not see the training batch,
    so the probe is data given to the callback, best held out and of the
    size of a training batch. The model runs in inference mode
    (`training=False`: no dropout), so two measurements at the same
    weights agree and changes over time come from training alone.

    Each measurement gives, per pair of tasks `a`, `b` (in
    `model.task_names` order), the cosine `conflict_cos_<a>_<b>` of `g_a`
    and `g_b` (negative: a step for one hurts the other) and the magnitude
    similarity `conflict_magnitude_<a>_<b>`,
    `2 |g_a| |g_b| / (|g_a|^2 + |g_b|^2)` (1 for equal norms, near 0 when
    one task dominates); per task, `<task>_grad_norm`, `|g_i|`; and
    `conflict_fraction`, the fraction of pairs with a negative cosine.
    Their means over the epoch's measurements are added to the epoch's
    `logs`, which `History`, `CSVLogger`, `TensorBoard` and
    `EarlyStopping` then see if they come after this callback in
    `callbacks` (`History` always does). Every measurement is also kept in
    `history`, for plots.

    A task with no label in the probe (all NaN or its `missing_label`)
    logs NaN: its norm and every entry with it. So does a cosine with a
    zero gradient (undefined), and `conflict_fraction` counts only the
    pairs with a defined cosine.

    The schedule counts the training batches the callback has seen, over
    all `fit` calls: with `every=50`, measurements follow batches 50, 100,
    ... (with `steps_per_execution > 1`, the first callback at or past
    each multiple), then one at each epoch end, unless the epoch's last
    batch was just measured (same weights, same numbers).

    Without a probe (`x=None`), with a gradient-level weighting method
    (`keras_mtl.weighting.GradientWeighting`), the callback reads instead
    the Gram matrix that the training step itself computed for the method,
    of the batch it trained on (in `training=True` mode, before the update):
    no extra pass at all. It is the Gram matrix of the gradients at the
    shared variables (`mode="param"`) or at the shared representation
    (`mode="rep"`), summed over replicas under `tf.distribute` before any
    cosine is taken, so N replicas measure what one device measures on the
    global batch; each task's gradient is divided by its static loss
    weight, so the norms are those of the unweighted loss as with a probe.
    A task absent from the measured batch, or sitting out
    (`MTLModel.set_training_tasks`), logs NaN. The step keeps the matrix
    (two variables, not saved) from the first `fit` with such a callback
    on.

    Cost: each measurement is one forward and T backward passes (one per
    task, through the trunk and the task's own head) on the probe batch,
    in one compiled `tf.function`, traced once: roughly
    `(1 + 2T) / 3` training steps of compute, paid once every `every`
    steps, plus a per-batch Python hook that keeps Keras from dispatching
    batch callbacks asynchronously. `benchmarks/conflict_overhead.py`
    measures the step-time ratio.

    Args:
        x: inputs of the probe batch (all of it is one batch), a
            `tf.data.Dataset` of `(x, y[, sample_weight])` batches, whose
            first batch is the probe, or `None` (the default): the
            training step's own gradients, with a gradient-level method.
        y: dict `{task: labels}` of the probe batch, with every task; `None`
            with a dataset.
        every: int. Measure after every `every` training batches (and at
            each epoch end). Defaults to `50`.
        sample_weight: array, or dict by task, of the probe's sample
            weights. Defaults to `None`.

    Attributes:
        history: list of dicts, one per measurement: `step` (training
            batches seen), `epoch`, `cosine` and `magnitude` (`(T, T)`
            arrays), `grad_norm` (`(T,)`) and `conflict_fraction`.

    Example:

    ```python
    conflict = keras_mtl.evaluation.GradientConflict(
        x_val[:64], {task: labels[:64] for task, labels in y_val.items()},
        every=50)
    history = model.fit(x, y, epochs=5, callbacks=[conflict])
    history.history["conflict_fraction"]  # one value per epoch
    steps = [m["step"] for m in conflict.history]
    ```

    References:
        - [Yu et al., 2020](https://arxiv.org/abs/2001.06782), "Gradient
          surgery for multi-task learning" (PCGrad): conflicting gradients
          and magnitude similarity.
        - [Wang et al., 2021](https://arxiv.org/abs/2010.05874), "Gradient
          vaccine" (GradVac): how cosines evolve in training.
    """

    def __init__(self, x=None, y=None, every=50, sample_weight=None):
        super().__init__()
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise ValueError(
                f"`every` must be an integer >= 1. Received: every={every!r}"
            )
        if x is None and (y is not None or sample_weight is not None):
            raise ValueError(
                "Without a probe `x`, the training step's own gradients are "
                "measured: pass `y=None` and `sample_weight=None`."
            )
        self.x, self.y = x, y
        self.sample_weight = sample_weight
        self.every = every
        self._probe = None if x is None else _probe(x, y, sample_weight)
        self.history = []
        self._step = 0
        self._epoch = 0
        self._epoch_start = 0
        self._epoch_measurements = []
        self._gram = None
        self._gram_key = None

    def on_train_begin(self, logs=None):
        model = self.model
        if not isinstance(model, MTLModel):
            raise TypeError(
                "GradientConflict needs a keras_mtl.MTLModel. "
                f"Received: {type(model).__name__}"
            )
        names = model.task_names
        if len(names) < 2:
            raise ValueError(
                "GradientConflict compares tasks: the model needs at least 2. "
                f"Received a model with tasks {names}"
            )
        shared = model.shared_variables
        if not shared:
            raise ValueError(
                "The model has no shared variables: no two tasks' outputs "
                "depend on the same trainable weights, so their gradients "
                "cannot conflict."
            )
        if self._probe is None:
            self._record_steps(model)
            return
        given = self._probe[1]
        missing = [n for n in names if given.get(n) is None]
        unknown = sorted(k for k in given if k not in names)
        if missing or unknown:
            raise ValueError(
                f"`y` must hold the probe's labels of every task {names}. "
                f"Missing: {missing}; unknown keys: {unknown}. Mark a task's "
                "missing labels with NaN or its `missing_label` instead (it "
                "then logs NaN)."
            )
        # Traced again only for another model or other shared variables
        # (a layer frozen between two `fit` calls).
        key = (model, tuple(id(v) for v in shared))
        if self._gram_key != key:
            self._gram, self._gram_key = _gram_function(model, shared), key

    def _record_steps(self, model):
        method = model.weighting
        if not isinstance(method, GradientWeighting):
            raise ValueError(
                "GradientConflict without a probe batch reads the Gram "
                "matrix of the training step, which only gradient-level "
                f"methods compute (the model's is {type(method).__name__}): "
                "pass a probe batch `x, y`."
            )
        if getattr(method, "gram_record", None) is None:
            with model.distribute_strategy.scope():
                method.gram_record = GramRecord(len(model.task_names))
            if model.train_function is not None:  # trace it with the record
                model.make_train_function(force=True)

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
        keys = self._epoch_measurements[0]["logs"]
        for key in keys:
            values = [m["logs"][key] for m in self._epoch_measurements]
            logs[key] = float(np.mean(values))

    def _measure(self):
        if self._probe is None:
            record = self.model.weighting.gram_record
            # The step's gradients are of the statically weighted losses.
            static = np.asarray(self.model.static_loss_weights, "float64")
            present = record.present.numpy() & (static != 0)
            static = np.where(static != 0, static, 1.0)
            gram = record.gram.numpy() / np.outer(static, static)
        else:
            gram, counts = self._gram(*self._probe)
            gram = keras.ops.convert_to_numpy(gram)
            present = keras.ops.convert_to_numpy(counts) > 0
        statistics = _statistics(gram, present)
        measurement = dict(step=self._step, epoch=self._epoch, **statistics)
        self.history.append(measurement)
        self._epoch_measurements.append(
            dict(step=self._step, logs=self._logs(statistics))
        )

    def _logs(self, statistics):
        names = self.model.task_names
        logs = {}
        for i, a in enumerate(names):
            for j in range(i + 1, len(names)):
                b = names[j]
                logs[f"conflict_cos_{a}_{b}"] = statistics["cosine"][i, j]
                logs[f"conflict_magnitude_{a}_{b}"] = statistics["magnitude"][
                    i, j
                ]
        for name, norm in zip(names, statistics["grad_norm"]):
            logs[f"{name}_grad_norm"] = norm
        logs["conflict_fraction"] = statistics["conflict_fraction"]
        return {k: float(v) for k, v in logs.items()}
