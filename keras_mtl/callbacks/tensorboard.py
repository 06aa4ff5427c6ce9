"""TensorBoard summaries of a multi-task model, grouped by task."""

import io
import numbers
import os
import warnings

import keras
import numpy as np
import tensorflow as tf

from keras_mtl.logs import monitor_modes
from keras_mtl.model import MTLModel

__all__ = ["MTLTensorBoard"]


def _exact_tags(names):
    """`{log key: tag}` for the keys built from task names, which a prefix
    match cannot split (`conflict_cos_a_b_c`: tasks `a` and `b_c`?)."""
    tags = {"conflict_fraction": "conflict/fraction"}
    for i, a in enumerate(names):
        tags[f"{a}_grad_norm"] = f"conflict/grad_norm/{a}"
        tags[f"{a}_weight"] = f"weights/{a}"
        for j, b in enumerate(names):
            tags[f"affinity_{a}_{b}"] = f"affinity/{a}->{b}"
            if i < j:
                tags[f"conflict_cos_{a}_{b}"] = f"conflict/cosine/{a}-{b}"
                tags[f"conflict_magnitude_{a}_{b}"] = (
                    f"conflict/magnitude/{a}-{b}"
                )
    return tags


def _tag(key, names, exact, metrics=()):
    """The TensorBoard tag of the log `key` (without `val_`); `metrics`:
    the compiled metrics' `<task>_<metric>` keys."""
    if key in exact:
        return exact[key]
    if "/" in key:  # ExpertUtilization's `<layer>/<task>/expert_<e>`
        last = key.rsplit("/", 1)[-1]
        return f"experts/{key}" if last.startswith("expert_") else key
    # A sampling schedule's `<source>_rate`: a source may be named after
    # a task ("ctr_clicks" of task "ctr"), a metric rarely ends in `_rate`.
    if key.endswith("_rate") and key not in metrics:
        return f"rates/{key[: -len('_rate')]}"
    # The longest name first: task "a_b" wins over task "a".
    for name in sorted(names, key=len, reverse=True):
        if key.startswith(f"{name}_"):
            return f"tasks/{name}/{key[len(name) + 1 :]}"
    return f"model/{key}"


def _matrix(logs, names, key):
    """The `(T, T)` matrix of the logs `key(a, b)`, or `None` if one is
    missing."""
    keys = [[key(a, b) for b in names] for a in names]
    if not all(k is None or k in logs for row in keys for k in row):
        return None
    return np.array(
        [[1.0 if k is None else float(logs[k]) for k in row] for row in keys]
    )


def _conflict_matrices(logs, names):
    """`GradientConflict`'s epoch means as `(T, T)` matrices, rebuilt from
    its pairwise logs (each pair logged once; 1 on the diagonal, NaN for a
    task with no defined gradient)."""
    matrices = {}
    for kind, prefix in (
        ("cosine", "conflict_cos"),
        ("magnitude", "conflict_magnitude"),
    ):
        index = {n: i for i, n in enumerate(names)}

        def key(a, b, prefix=prefix):
            if a == b:
                return None
            first, second = sorted((a, b), key=index.get)
            return f"{prefix}_{first}_{second}"

        matrix = _matrix(logs, names, key)
        if matrix is None:
            continue
        for i, name in enumerate(names):
            norm = logs.get(f"{name}_grad_norm")
            if norm is not None and not float(norm) > 0:
                matrix[i, i] = np.nan
        matrices[kind] = matrix
    return matrices


def _affinity_picture(affinity):
    """`(matrix shown, title, vmin, vmax)` of an affinity matrix: scaled by
    a power of ten so the entries read in the cells (affinities are a
    fraction of a percent), colours to the largest off-diagonal entry."""
    finite = np.abs(affinity[np.isfinite(affinity)])
    top = float(finite.max()) if finite.size else 0.0
    power = int(np.floor(np.log10(top))) if top > 0 else 0
    power = min(power, 0)
    shown = affinity * 10.0**-power
    off = shown[~np.eye(len(shown), dtype=bool)]
    off = np.abs(off[np.isfinite(off)])
    limit = float(off.max()) if off.size and off.max() > 0 else None
    title = "affinity" if power == 0 else f"affinity x 1e{-power}"
    return shown, title, None if limit is None else -limit, limit


def _png(matrix, names, title, vmin, vmax, labels=None):
    """`matrix` drawn by `keras_mtl.plotting.heatmap`, as a `(1, H, W, 4)`
    uint8 image tensor; `labels`: `(x label, y label)`. Raises
    `ImportError` without matplotlib."""
    from keras_mtl import plotting

    figure = plotting.heatmap(matrix, names, title=title, vmin=vmin, vmax=vmax)
    buffer = io.BytesIO()
    try:
        if labels:
            figure.axes[0].set_xlabel(labels[0])
            figure.axes[0].set_ylabel(labels[1])
            figure.tight_layout()
        figure.savefig(buffer, format="png", dpi=100)
    finally:
        import matplotlib.pyplot as plt

        plt.close(figure)
    return tf.image.decode_png(buffer.getvalue(), channels=4)[None]


@keras.saving.register_keras_serializable(package="keras_mtl")
class MTLTensorBoard(keras.callbacks.Callback):
    """Writes a multi-task model's logs to TensorBoard, grouped by task.

    At each epoch end, every numeric entry of the epoch's logs becomes a
    scalar under a tag that says what it is, in `log_dir/train` (and
    `log_dir/validation` for the `val_` entries, under the same tags, so
    TensorBoard draws training and validation on one chart). The step is
    the epoch index, as `keras.callbacks.TensorBoard` has it.

    - `<task>_<metric>` (`_loss`, `_mae`, `_examples`, ...):
      `tasks/<task>/<metric>`;
    - `<task>_weight` (the weighting method's): `weights/<task>`;
    - `<source>_rate` (`keras_mtl.scheduling`): `rates/<source>`;
    - `conflict_cos_<a>_<b>`, `conflict_magnitude_<a>_<b>`,
      `<task>_grad_norm`, `conflict_fraction` (`GradientConflict`):
      `conflict/cosine/<a>-<b>`, `conflict/magnitude/<a>-<b>`,
      `conflict/grad_norm/<task>`, `conflict/fraction`;
    - `affinity_<i>_<j>` (`TaskAffinity`): `affinity/<i>-><j>`;
    - `<layer>/<task>/expert_<e>` (`ExpertUtilization`):
      `experts/<layer>/<task>/expert_<e>`;
    - anything else (`loss`, `weighted_loss`, `delta_m`, ...):
      `model/<key>`.

    Task names are matched exactly, so `conflict_cos_a_b_c` of tasks `a`
    and `b_c` is `conflict/cosine/a-b_c`. When the epoch's training logs
    hold every pair of a `GradientConflict` (or every affinity of a
    `TaskAffinity`), the matrices are also drawn as heatmap images
    (`keras_mtl.plotting.heatmap`): `conflict/cosine` (colours from -1 to
    1), `conflict/magnitude` (0 to 1) and `affinity` (row: the task
    stepped on; colours scaled to the largest off-diagonal entry, so the
    self-affinities saturate and the transfer between tasks shows). The
    images need matplotlib (the `plot` extra): without it they are left
    out, with one warning, and the scalars are still written.

    With `update_freq` an int, the training logs of every `update_freq`-th
    batch are written too, under `batch/<tag>`, the step counting the
    training batches (`optimizer.iterations`); Keras's batch logs are
    the running means of the epoch so far.

    This callback reads the logs, so put it after the callbacks that add
    to them (`GradientConflict`, `TaskAffinity`, `ExpertUtilization`,
    `DeltaMLog`, `CombinedMetric`, the sampling schedules); the model's
    own logs are always there.

    It works next to `keras.callbacks.TensorBoard`, which writes every log
    key as a flat `epoch_<key>` scalar (and the graph, histograms,
    profiles); give both the same `log_dir` and TensorBoard shows both
    sets of tags in the same `train` and `validation` runs. This callback
    writes with its own `tf.summary` writers and records whatever
    `tf.summary.record_if` Keras's callback has set. Under `tf.distribute`
    only the worker that should save summaries (the chief of a
    `MultiWorkerMirroredStrategy`, per
    `strategy.extended.should_save_summary`) writes; the others write
    nothing.

    Args:
        log_dir: str or path. Directory of the `train` and `validation`
            runs. Defaults to `"logs"`.
        update_freq: `"epoch"` or int >= 1. Also write the batch logs
            every `update_freq` training batches. Defaults to `"epoch"`.
        images: bool. Draw the conflict and affinity matrices as images
            when the logs hold them. Defaults to `True`.

    Example:

    ```python
    conflict = keras_mtl.callbacks.GradientConflict(x_probe, y_probe)
    board = keras_mtl.callbacks.MTLTensorBoard("logs/run1")
    model.fit(x, y, validation_data=(x_val, y_val), epochs=10,
              callbacks=[conflict, board,
                         keras.callbacks.TensorBoard("logs/run1")])
    # tensorboard --logdir logs
    ```
    """

    def __init__(self, log_dir="logs", update_freq="epoch", images=True):
        super().__init__()
        if not isinstance(log_dir, (str, os.PathLike)) or not str(log_dir):
            raise TypeError(
                "`log_dir` must be a non-empty str or path. "
                f"Received: log_dir={log_dir!r}"
            )
        if update_freq != "epoch" and (
            isinstance(update_freq, bool)
            or not isinstance(update_freq, numbers.Integral)
            or update_freq < 1
        ):
            raise ValueError(
                "`update_freq` must be 'epoch' or an int >= 1. "
                f"Received: update_freq={update_freq!r}"
            )
        if not isinstance(images, bool):
            raise TypeError(
                f"`images` must be a bool. Received: images={images!r}"
            )
        self.log_dir = os.fspath(log_dir)
        self.update_freq = update_freq
        self.images = images
        # Keras may run batch hooks in a thread when every callback allows
        # it; with `update_freq="epoch"` this one does nothing per batch.
        self.async_safe = update_freq == "epoch"
        self._writers = {}
        self._names = []
        self._exact = {}
        self._chief = True
        self._step = 0
        self._epoch_start = 0
        self._can_draw = True

    def on_train_begin(self, logs=None):
        model = self.model
        if not isinstance(model, MTLModel):
            raise TypeError(
                "MTLTensorBoard needs a keras_mtl.MTLModel (its tags name "
                f"the tasks). Received: {type(model).__name__}; use "
                "keras.callbacks.TensorBoard for other models."
            )
        self._names = list(model.task_names)
        self._exact = _exact_tags(self._names)
        strategy = model.distribute_strategy
        self._chief = bool(strategy.extended.should_save_summary)
        optimizer = getattr(model, "optimizer", None)
        iterations = getattr(optimizer, "iterations", None)
        self._step = (
            0
            if iterations is None
            else int(keras.ops.convert_to_numpy(iterations))
        )
        self._epoch_start = self._step

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch_start = self._step

    def on_train_batch_end(self, batch, logs=None):
        if self.update_freq == "epoch":
            return
        before, self._step = self._step, self._epoch_start + batch + 1
        if not self._chief or not logs:
            return
        if self._step // self.update_freq > before // self.update_freq:
            self._write("train", logs, self._step, prefix="batch/")

    def on_epoch_end(self, epoch, logs=None):
        if not self._chief or not logs:
            return
        train = {k: v for k, v in logs.items() if not k.startswith("val_")}
        validation = {
            k[len("val_") :]: v for k, v in logs.items() if k.startswith("val_")
        }
        self._write("train", train, epoch)
        if validation:
            self._write("validation", validation, epoch)
        if self.images and self._can_draw:
            self._draw(train, epoch)
        for writer in self._writers.values():
            writer.flush()

    def on_train_end(self, logs=None):
        for writer in self._writers.values():
            writer.close()
        self._writers = {}

    def writer(self, run):
        """The `tf.summary` writer of `run` (`"train"` or `"validation"`),
        created on first use under `log_dir/<run>`: to add summaries of
        your own to the same runs."""
        if run not in self._writers:
            self._writers[run] = tf.summary.create_file_writer(
                os.path.join(self.log_dir, run)
            )
        return self._writers[run]

    def _write(self, run, logs, step, prefix=""):
        metrics = set(monitor_modes(self.model))
        with self.writer(run).as_default(), tf.summary.record_if(True):
            for key, value in logs.items():
                if isinstance(value, bool) or not isinstance(
                    value, (numbers.Real, np.number)
                ):
                    continue
                tag = prefix + _tag(key, self._names, self._exact, metrics)
                tf.summary.scalar(tag, float(value), step=step)

    def _draw(self, logs, epoch):
        names = self._names
        pictures = []  # (tag, matrix, title, vmin, vmax, axis labels)
        conflict = _conflict_matrices(logs, names)
        if "cosine" in conflict:
            matrix = conflict["cosine"]
            pictures.append(("conflict/cosine", matrix, "cosine", -1, 1, None))
        if "magnitude" in conflict:
            matrix = conflict["magnitude"]
            pictures.append(
                ("conflict/magnitude", matrix, "magnitude sim.", 0, 1, None)
            )
        affinity = _matrix(logs, names, lambda a, b: f"affinity_{a}_{b}")
        if affinity is not None:
            labels = ("loss of task", "step on task")
            pictures.append(("affinity", *_affinity_picture(affinity), labels))
        if not pictures:
            return
        try:
            images = [
                (tag, _png(matrix, names, title, low, high, labels))
                for tag, matrix, title, low, high, labels in pictures
            ]
        except ImportError:
            self._can_draw = False
            warnings.warn(
                "MTLTensorBoard draws the conflict and affinity matrices "
                "with matplotlib, which is not installed: the images are "
                "left out (the scalars are written). Install it with "
                "`pip install 'keras-mtl[plot]'`, or pass `images=False`.",
                stacklevel=2,
            )
            return
        with self.writer("train").as_default(), tf.summary.record_if(True):
            for tag, image in images:
                tf.summary.image(tag, image, step=epoch)

    def get_config(self):
        return {
            "log_dir": self.log_dir,
            "update_freq": self.update_freq,
            "images": self.images,
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)
