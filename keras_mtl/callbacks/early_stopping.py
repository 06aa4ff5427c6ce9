import math

import keras
import numpy as np

from keras_mtl import logs as logs_module


@keras.saving.register_keras_serializable(package="keras_mtl")
class PerTaskEarlyStopping(keras.callbacks.Callback):
    """Stops each task on its own metric; training ends when all stopped.

    At each epoch end, every task still training compares its monitored
    log with its best so far. A task that has not improved for `patience`
    epochs leaves training (`MTLModel.set_training_tasks`): weight 0 from
    then on, its own variables no longer updated, while the other tasks
    and the shared layers go on. When every task has stopped, training
    ends (`model.stop_training`). With `restore_best_weights`, each task's
    own variables (its head: `MTLModel.task_variables`) are set back, at
    the end of training, to those of its best epoch; the shared variables
    keep their last values, which the heads still training were fitted
    to.

    A NaN value (a task with no label in the validation data of the epoch)
    neither improves nor counts against the patience. The tasks all train
    again when the next `fit` begins; the state of this callback is not
    saved by `BackupAndRestore` (as for `keras.callbacks.EarlyStopping`).

    Args:
        monitor: str or dict. The log each task monitors: a template with
            `{task}` (`"val_{task}_loss"`, `"val_{task}_auc"`), or a dict
            `{task: log}` for some of the tasks (the others train to the
            end). Defaults to `"val_{task}_loss"`.
        min_delta: float >= 0. The least change that counts as an
            improvement. Defaults to `0.0`.
        patience: int >= 0. Epochs without improvement after which a task
            stops (0 and 1 both stop it at the first, as in
            `keras.callbacks.EarlyStopping`). Defaults to `0`.
        mode: str. `"auto"`, `"min"` or `"max"`: `"auto"` takes each log's
            direction from the model (`min` for losses, the compiled
            metric's own, such as `max` for AUC and accuracy). Defaults to
            `"auto"`.
        restore_best_weights: bool. Whether each task's own variables are
            set back to those of its best epoch at the end of training.
            Defaults to `True`.
        start_from_epoch: int >= 0. Epochs to wait before monitoring
            begins (as for `keras.callbacks.EarlyStopping`). Defaults to
            `0`.
        verbose: int. 1 prints a line when a task stops. Defaults to `0`.

    Attributes:
        stopped_epochs: `{task: epoch}` (0-based) at whose end each stopped
            task left training.
        best: `{task: value}`, the best monitored value of each task.
        best_epochs: `{task: epoch}` of those values.

    Example:

    ```python
    stopping = keras_mtl.callbacks.PerTaskEarlyStopping(
        monitor="val_{task}_loss", patience=2)
    model.fit(x, y, validation_data=(x_val, y_val), epochs=50,
              callbacks=[stopping])
    stopping.stopped_epochs  # {"churn": 6, "price": 11}
    ```

    References:
        - [Prechelt, 1998](https://doi.org/10.1007/3-540-49430-8_3),
          Early Stopping — But When?
    """

    def __init__(
        self,
        monitor="val_{task}_loss",
        min_delta=0.0,
        patience=0,
        mode="auto",
        restore_best_weights=True,
        start_from_epoch=0,
        verbose=0,
    ):
        super().__init__()
        if isinstance(monitor, str):
            if "{task}" not in monitor:
                raise ValueError(
                    "`monitor` must be a template with `{task}`, such as "
                    "'val_{task}_loss', or a {task: log} dict. "
                    f"Received: monitor={monitor!r}"
                )
        elif not (
            isinstance(monitor, dict)
            and monitor
            and all(
                isinstance(k, str) and isinstance(v, str)
                for k, v in monitor.items()
            )
        ):
            raise TypeError(
                "`monitor` must be a str template with `{task}` or a "
                f"non-empty {{task: log}} dict. Received: monitor={monitor!r}"
            )
        for name, value in (
            ("patience", patience),
            ("start_from_epoch", start_from_epoch),
        ):
            if not isinstance(value, int) or isinstance(value, bool):
                raise TypeError(
                    f"`{name}` must be an int >= 0. Received: {name}={value!r}"
                )
            if value < 0:
                raise ValueError(
                    f"`{name}` must be an int >= 0. Received: {name}={value!r}"
                )
        if not isinstance(min_delta, (int, float)) or min_delta < 0:
            raise ValueError(
                "`min_delta` must be a number >= 0. "
                f"Received: min_delta={min_delta!r}"
            )
        if mode not in ("auto", "min", "max"):
            raise ValueError(
                "`mode` must be 'auto', 'min' or 'max'. "
                f"Received: mode={mode!r}"
            )
        self.monitor = monitor
        self.min_delta = float(min_delta)
        self.patience = patience
        self.mode = mode
        self.restore_best_weights = bool(restore_best_weights)
        self.start_from_epoch = start_from_epoch
        self.verbose = verbose
        self.stopped_epochs = {}
        self.best = {}
        self.best_epochs = {}
        self._keys = None
        self._modes = None
        self._waits = {}
        self._best_weights = {}

    def on_train_begin(self, logs=None):
        model = self.model
        if not hasattr(model, "set_training_tasks"):
            raise TypeError(
                "PerTaskEarlyStopping needs a keras_mtl.MTLModel. Received: "
                f"{type(model).__name__}"
            )
        names = model.task_names
        if isinstance(self.monitor, str):
            self._keys = {n: self.monitor.format(task=n) for n in names}
        else:
            unknown = sorted(set(self.monitor) - set(names))
            if unknown:
                raise ValueError(
                    f"`monitor` names unknown tasks {unknown}; the model's "
                    f"tasks are {names}."
                )
            self._keys = dict(self.monitor)
        model.set_training_tasks()
        self.stopped_epochs, self.best, self.best_epochs = {}, {}, {}
        self._waits = {n: 0 for n in self._keys}
        self._best_weights = {}
        self._modes = None

    def _resolve_modes(self, logs):
        missing = {t: k for t, k in self._keys.items() if k not in logs}
        if missing:
            raise ValueError(
                f"PerTaskEarlyStopping monitors logs that are not in the "
                f"epoch's logs: {missing}. Available: {sorted(logs)}"
            )
        if self.mode != "auto":
            return {t: self.mode for t in self._keys}
        known = logs_module.monitor_modes(self.model)
        modes = {}
        for task, key in self._keys.items():
            mode = known.get(key.removeprefix("val_"))
            if mode is None:
                raise ValueError(
                    f"PerTaskEarlyStopping cannot tell whether {key!r} (task "
                    f"{task!r}) should go up or down: pass mode='min' or "
                    "'max'."
                )
            modes[task] = mode
        return modes

    def _improved(self, task, value):
        if task not in self.best:
            return True
        if self._modes[task] == "min":
            return value < self.best[task] - self.min_delta
        return value > self.best[task] + self.min_delta

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        if self._modes is None:
            self._modes = self._resolve_modes(logs)
        if epoch < self.start_from_epoch:
            return
        model = self.model
        stopping = []
        for task, key in self._keys.items():
            if task in self.stopped_epochs:
                continue
            value = float(logs[key])
            if math.isnan(value):
                continue
            if self._improved(task, value):
                self.best[task] = value
                self.best_epochs[task] = epoch
                self._waits[task] = 0
                if self.restore_best_weights:
                    self._best_weights[task] = [
                        np.array(v) for v in model.task_variables[task]
                    ]
                continue
            self._waits[task] += 1
            if self._waits[task] >= self.patience:
                stopping.append(task)
        for task in stopping:
            self.stopped_epochs[task] = epoch
            if self.verbose:
                print(
                    f"Epoch {epoch + 1}: task {task!r} stops "
                    f"({self._keys[task]}: best {self.best[task]:.6g} at "
                    f"epoch {self.best_epochs[task] + 1})."
                )
        if stopping:
            model.set_training_tasks(
                [n for n in model.task_names if n not in self.stopped_epochs]
            )
            if all(t in self.stopped_epochs for t in self._keys) and (
                len(self._keys) == len(model.task_names)
            ):
                model.stop_training = True

    def on_train_end(self, logs=None):
        if self.restore_best_weights:
            own = self.model.task_variables
            for task, values in self._best_weights.items():
                for variable, value in zip(own[task], values):
                    variable.assign(value)
        self.model.set_training_tasks()

    def get_config(self):
        return dict(
            monitor=self.monitor,
            min_delta=self.min_delta,
            patience=self.patience,
            mode=self.mode,
            restore_best_weights=self.restore_best_weights,
            start_from_epoch=self.start_from_epoch,
            verbose=self.verbose,
        )
