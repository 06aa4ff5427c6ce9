import math

import keras
import numpy as np
from keras import ops

from keras_mtl.weighting.base import Weighting

_DEFAULT_KPI = "{task}_accuracy"
_DEFAULT_GAMMA = 2.0


def _check_number(name, value, low, high=None):
    if (
        not isinstance(value, (int, float))
        or isinstance(value, bool)
        or not value >= low
        or (high is not None and not value <= high)
    ):
        bounds = f"in [{low}, {high}]" if high is not None else f">= {low}"
        raise ValueError(
            f"`{name}` must be a number {bounds}. Received: {name}={value!r}"
        )
    return float(value)


@keras.saving.register_keras_serializable(package="keras_mtl")
class DynamicTaskPrioritization(Weighting):
    """Weights each task by how poorly it does on a KPI: hard tasks first.

    Dynamic Task Prioritization (DTP), at the task level. Each task `i` has
    a key performance indicator `k_i` in `[0, 1]` (accuracy, average
    precision, ...), read from the epoch's logs after each training epoch
    and smoothed:

    `k_bar_i <- smoothing * k_i + (1 - smoothing) * k_bar_i`

    (the first KPI of a task is taken as it is). The weight of task `i` is
    the focal-loss priority of its smoothed KPI, clipped to
    `[epsilon, 1 - epsilon]`:

    `w_i = FL(k_bar_i) = -(1 - k_bar_i)^gamma_i * log(k_bar_i)`,

    so the objective is `sum_i FL(k_bar_i) L_i`: a task with a low KPI gets
    a large weight, one that is mastered a weight near 0. The weights are
    not renormalised (the paper's form): with `gamma = 2`, a KPI of 0.5
    gives 0.173 and one of 0.9 gives 0.00105, so the effective learning
    rate is lower than with equal weights. Before a task's first KPI is
    known (the first epoch), its weight is 1. The weights stay constant
    within an epoch.

    KPIs come from the logs `MTLModel.fit` passes to `on_epoch_end(logs)`:
    `<task>_<metric>` (training) and `val_<task>_<metric>` (validation,
    with `validation_data`). A task's KPI is only read after an epoch with
    at least one training batch that labels it: a task absent all epoch
    keeps its smoothed KPI (its metrics are then those of no example). A
    key of `kpi` missing from the logs is a `ValueError` naming the task
    and the key, and listing the keys there are. In a custom training loop,
    call `model.weighting.on_epoch_end(logs)` with a dict of the KPIs after
    each epoch. The smoothed KPIs are variables, saved in `.keras` files and
    restored by `keras.callbacks.BackupAndRestore`.

    Defaults, and their sources: the formulas are the paper's (Guo et al.,
    2018), `FL(k; gamma) = -(1 - k)^gamma log(k)` with a task-level
    focusing parameter `gamma_i >= 0`, and the moving average
    `k_bar = a * k + (1 - a) * k_bar_prev`, `a` in `[0, 1]`. The values of
    `gamma_i` and `a` used in the paper's experiments could not be checked
    (its full text was not available when this was written, and we know
    of no code by the authors), so they are choices:
    `gamma = 2.0` is the focal loss's recommended value (Lin et al., 2017,
    whose form DTP borrows), and `smoothing = 0.9` weights the new KPI
    heavily, since a KPI here is already the mean over a whole epoch (the
    paper smooths KPIs measured during training, not once per epoch).
    Both are arguments; `gamma` may differ per task. `epsilon = 1e-3`
    bounds a weight by `-log(1e-3) = 6.9`.

    Args:
        kpi: `None`, str or dict. Which log key is each task's KPI. A str
            is a pattern in which `{task}` stands for the task's name
            (`"val_{task}_accuracy"`); a dict maps task names to keys or
            patterns (`{"digit": "val_digit_accuracy"}`), and the tasks it
            leaves out keep weight 1. Defaults to `None`: `{task}_accuracy`
            (the training accuracy) for every task that logs it; the others
            keep weight 1, and only explicit keys are checked.
        gamma: float >= 0, or a dict of task name to float (tasks it
            leaves out get `2.0`). The focusing parameter `gamma_i`; `0`
            gives `-log(k_bar_i)`. Defaults to `2.0` (see above).
        smoothing: float in `(0, 1]`. Weight of the new KPI in the moving
            average; `1` uses the last epoch's KPI only. Defaults to `0.9`
            (see above).
        epsilon: float in `(0, 0.5)`. KPIs are clipped to
            `[epsilon, 1 - epsilon]` before `FL`. Defaults to `1e-3`.
        log_weights: bool. Whether to log `<task>_weight`. Defaults to
            `True`.
        **kwargs: Base layer keyword arguments.

    Returns:
        From `compute_weights`: the `(T,)` float32 weights `FL(k_bar_i)`
        (1 while task `i` has no KPI), 0 for tasks absent from the batch.

    Example:

    ```python
    import keras
    import numpy as np
    import keras_mtl

    inputs = keras.Input((8,))
    tasks = [
        keras_mtl.Task("even", loss="binary_crossentropy",
                       activation="sigmoid", metrics=["accuracy"]),
        keras_mtl.Task("big", loss="binary_crossentropy",
                       activation="sigmoid", metrics=["accuracy"]),
    ]
    method = keras_mtl.weighting.DynamicTaskPrioritization(
        kpi="val_{task}_accuracy", gamma=2.0)
    model = keras_mtl.build_mtl_model(
        inputs, tasks, trunk=[16], weighting=method)
    model.compile(optimizer="adam")
    x = np.random.normal(size=(64, 8)).astype("float32")
    y = {"even": (x[:, :1] > 0).astype("float32"),
         "big": (x[:, 1:2] > 1).astype("float32")}
    model.fit(x, y, validation_data=(x, y), epochs=2, verbose=0)
    method.kpis  # the smoothed validation accuracies
    ```

    References:
        - [Guo et al., 2018](https://doi.org/10.1007/978-3-030-01270-0_17),
          Dynamic Task Prioritization for Multitask Learning (ECCV).
        - [Lin et al., 2017](https://arxiv.org/abs/1708.02002), the focal
          loss.
    """

    # Ranges of the arguments for keras_mtl.tuner (see `search_space`).
    search_space = {
        "gamma": {"min_value": 0.5, "max_value": 5.0, "default": 2.0},
        "smoothing": {"min_value": 0.1, "max_value": 1.0, "default": 0.9},
    }

    def __init__(
        self,
        kpi=None,
        gamma=2.0,
        smoothing=0.9,
        epsilon=1e-3,
        log_weights=True,
        **kwargs,
    ):
        super().__init__(log_weights=log_weights, **kwargs)
        if kpi is not None and not isinstance(kpi, (str, dict)):
            raise TypeError(
                "`kpi` must be None, a log key pattern such as "
                "'val_{task}_accuracy', or a {task: key} dict. "
                f"Received: kpi={kpi!r}"
            )
        if isinstance(kpi, str) and "{task}" not in kpi:
            raise ValueError(
                "A `kpi` string is a pattern and must contain '{task}' "
                "(for one key per task, pass a {task: key} dict). "
                f"Received: kpi={kpi!r}"
            )
        if isinstance(kpi, dict):
            kpi = dict(kpi)
            for task, key in kpi.items():
                if not isinstance(key, str):
                    raise TypeError(
                        f"`kpi` of task {task!r} must be a log key (str). "
                        f"Received: {key!r}"
                    )
        self.kpi = kpi
        if isinstance(gamma, dict):
            gamma = {
                task: _check_number(f"gamma[{task!r}]", value, 0.0)
                for task, value in gamma.items()
            }
        else:
            gamma = _check_number("gamma", gamma, 0.0)
        self.gamma = gamma
        self.smoothing = _check_number("smoothing", smoothing, 0.0, 1.0)
        if self.smoothing == 0.0:
            raise ValueError(
                "`smoothing` must be > 0, or no KPI would ever count. "
                f"Received: smoothing={smoothing!r}"
            )
        self.epsilon = _check_number("epsilon", epsilon, 0.0, 0.5)
        if not 0.0 < self.epsilon < 0.5:
            raise ValueError(
                f"`epsilon` must be in (0, 0.5). Received: epsilon={epsilon!r}"
            )

    def set_tasks(self, task_names):
        task_names = list(task_names)
        for argument in ("kpi", "gamma"):
            value = getattr(self, argument)
            unknown = (
                sorted(set(value) - set(task_names))
                if isinstance(value, dict)
                else []
            )
            if unknown:
                raise ValueError(
                    f"DynamicTaskPrioritization: `{argument}` names unknown "
                    f"tasks {unknown}; the model's tasks are {task_names}."
                )
        super().set_tasks(task_names)

    def build(self, input_shape):
        num_tasks = input_shape[0]
        options = dict(
            initializer="zeros",
            trainable=False,
            aggregation="only_first_replica",
        )
        # k_bar_i, and whether task i has had a KPI yet (1.0) or not (0.0).
        self.kpis = self.add_weight(shape=(num_tasks,), name="kpis", **options)
        self.kpis_known = self.add_weight(
            shape=(num_tasks,), name="kpis_known", **options
        )
        # Per task: the training steps of this epoch in which it was present.
        self.epoch_steps = self.add_weight(
            shape=(num_tasks,), name="epoch_steps", **options
        )
        self.built = True

    def kpi_keys(self):
        """The log key of each task's KPI (`None`: weight 1 throughout)."""
        if isinstance(self.kpi, dict):
            patterns = [self.kpi.get(name) for name in self.task_names]
        else:
            patterns = [self.kpi or _DEFAULT_KPI] * self.num_tasks
        return [
            None if p is None else p.replace("{task}", name)
            for p, name in zip(patterns, self.task_names)
        ]

    def gammas(self):
        """The `(T,)` focusing parameters `gamma_i`."""
        if isinstance(self.gamma, dict):
            return [
                self.gamma.get(name, _DEFAULT_GAMMA) for name in self.task_names
            ]
        return [self.gamma] * self.num_tasks

    def priorities(self, kpis):
        """`FL(k) = -(1 - k)^gamma_i log(k)` of `(T,)` KPIs, clipped."""
        kpis = ops.clip(
            ops.cast(kpis, "float32"), self.epsilon, 1.0 - self.epsilon
        )
        gammas = ops.convert_to_tensor(self.gammas(), "float32")
        return -ops.power(1.0 - kpis, gammas) * ops.log(kpis)

    def compute_weights(self, task_losses, present, training=False):
        if training:
            self.epoch_steps.assign_add(ops.cast(present, "float32"))
        known = ops.greater(self.kpis_known, 0.0)
        priorities = self.priorities(self.kpis)
        return ops.where(known, priorities, ops.ones_like(priorities))

    def on_epoch_end(self, logs=None):
        logs = dict(logs or {})
        steps = ops.convert_to_numpy(self.epoch_steps)
        kpis = ops.convert_to_numpy(self.kpis).copy()
        known = ops.convert_to_numpy(self.kpis_known).copy()
        for i, (name, key) in enumerate(zip(self.task_names, self.kpi_keys())):
            if key is None:
                continue
            if key not in logs:
                if self.kpi is None:
                    continue  # the default: tasks that log no accuracy
                raise ValueError(
                    f"DynamicTaskPrioritization: the KPI of task {name!r} is "
                    f"the log key {key!r}, which is not in the epoch's logs. "
                    f"Keys there: {sorted(logs)}. (`val_` keys need "
                    "`validation_data` in `fit`.)"
                )
            if steps[i] == 0:
                continue  # absent all epoch: its metrics measure nothing
            value = float(logs[key])
            if math.isnan(value):
                continue  # no label of the task where the KPI is measured
            if not (math.isfinite(value) and 0.0 <= value <= 1.0):
                raise ValueError(
                    f"DynamicTaskPrioritization: the KPI of task {name!r} "
                    f"({key!r}) must be in [0, 1]. Received: {value!r}"
                )
            if known[i]:
                value = self.smoothing * value + (1 - self.smoothing) * kpis[i]
            kpis[i], known[i] = value, 1.0
        self.kpis.assign(kpis.astype("float32"))
        self.kpis_known.assign(known.astype("float32"))
        self.epoch_steps.assign(np.zeros_like(steps))

    def get_config(self):
        config = super().get_config()
        config.update(
            kpi=self.kpi,
            gamma=self.gamma,
            smoothing=self.smoothing,
            epsilon=self.epsilon,
        )
        return config
