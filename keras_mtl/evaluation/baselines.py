"""Single-task baselines: the reference a multi-task model must beat."""

import copy
import math

import keras
import tensorflow as tf

from keras_mtl.evaluation.directions import metric_higher_is_better
from keras_mtl.evaluation.model_spec import ModelSpec
from keras_mtl.evaluation.model_spec import exactly_one
from keras_mtl.evaluation.model_spec import fresh_optimizer
from keras_mtl.evaluation.report import task_results_from_logs
from keras_mtl.logs import monitor_modes
from keras_mtl.model import MTLModel
from keras_mtl.model import check_tasks
from keras_mtl.tasks import Task

__all__ = ["evaluate_tasks", "train_single_task_baselines"]


def evaluate_tasks(model, x=None, y=None, **kwargs):
    """Evaluates an `MTLModel` and groups its logs by task.

    Args:
        model: a compiled `keras_mtl.MTLModel`.
        x: inputs, or a `tf.data.Dataset` of `(x, y)`.
        y: labels `{task: y}`, or `None` with a dataset.
        **kwargs: passed to `model.evaluate` (`batch_size`, `steps`, ...).

    Returns:
        dict `{task: {metric: value}}`, with `"loss"` (the task's unweighted
        loss) and every compiled metric of the task.

    Example:

    ```python
    results = keras_mtl.evaluation.evaluate_tasks(model, x_test, y_test)
    results["left"]["accuracy"]
    ```
    """
    if not isinstance(model, MTLModel):
        raise TypeError(
            f"`model` must be a keras_mtl.MTLModel. Received: {type(model)}"
        )
    kwargs.setdefault("verbose", 0)
    logs = model.evaluate(x, y, return_dict=True, **kwargs)
    return task_results_from_logs(logs, model.task_names)


def _select_labels(data, name):
    """The labels (and sample weights) of one task from `x, y[, sw]`."""

    def pick(value):
        return {name: value[name]} if isinstance(value, dict) else value

    if isinstance(data, tf.data.Dataset):
        return data.map(lambda x, *rest: (x, *[pick(v) for v in rest]))
    data = tuple(data)
    return (data[0],) + tuple(pick(v) for v in data[1:])


def _model_builder(spec, build_fn, inputs, trunk, sharing, optimizer):
    """`build(task) -> MTLModel` (uncompiled models get `optimizer`)."""
    exactly_one(
        (("spec", spec), ("build_fn", build_fn), ("inputs", inputs)),
        "`spec`, `build_fn` or `inputs` (with `trunk` and `sharing`)",
    )
    if inputs is None and (trunk is not None or sharing is not None):
        raise ValueError(
            "`trunk` and `sharing` go with `inputs`; with `spec` or "
            "`build_fn` they are part of it."
        )
    if spec is not None and optimizer is not None:
        raise ValueError(
            "`optimizer` is for `inputs` or `build_fn`: a `spec` has its own."
        )
    if inputs is not None:
        spec = ModelSpec(
            inputs, trunk, sharing or "hard", optimizer=optimizer or "adam"
        )
    if spec is not None:
        if not isinstance(spec, ModelSpec):
            raise TypeError(
                "`spec` must be a keras_mtl.evaluation.ModelSpec. "
                f"Received: spec={spec!r}"
            )
        # One task needs no weighting method: each baseline minimises its
        # own loss, whatever method the multi-task spec names.
        return lambda task, compile_kwargs: spec.build(
            [task], weighting="equal", compile_kwargs=compile_kwargs
        )
    if not callable(build_fn):
        raise TypeError(f"`build_fn` must be callable. Received: {build_fn!r}")

    def build(task, compile_kwargs):
        model = build_fn([Task.from_config(task.get_config())])
        if not isinstance(model, MTLModel) or model.task_names != [task.name]:
            raise TypeError(
                "`build_fn([task])` must return a keras_mtl.MTLModel with that "
                f"one task. Received: {type(model).__name__} for task "
                f"'{task.name}'."
            )
        if not model.compiled:
            model.compile(
                optimizer=fresh_optimizer(optimizer or "adam"),
                **compile_kwargs,
            )
        return model

    return build


def _own_callbacks(callbacks, names):
    """`{task: [callbacks]}`, no callback object in two baselines' fits."""
    if callbacks is None:
        return {name: [] for name in names}
    if isinstance(callbacks, keras.callbacks.Callback):
        callbacks = [callbacks]
    if isinstance(callbacks, (list, tuple)):
        for callback in callbacks:
            monitor = str(getattr(callback, "monitor", "")).removeprefix("val_")
            task = next((n for n in names if monitor.startswith(f"{n}_")), None)
            if task is not None:
                raise ValueError(
                    f"The {type(callback).__name__} in `callbacks` monitors "
                    f"`{callback.monitor}`, a log of task '{task}' only. "
                    "Pass `callbacks={task: [callbacks]}` "
                    "(or a callable `task_name -> [callbacks]`)."
                )
        try:
            given = {name: copy.deepcopy(list(callbacks)) for name in names}
        except Exception as error:
            raise TypeError(
                "A `callbacks` list is deep-copied for each baseline, and "
                f"this one cannot be ({error}). Pass a callable "
                "`task_name -> [callbacks]` that makes new ones."
            ) from None
    elif isinstance(callbacks, dict):
        unknown = sorted(set(callbacks) - set(names))
        if unknown:
            raise ValueError(
                f"`callbacks` names unknown tasks {unknown}. Expected names "
                f"among {names}."
            )
        given = {name: callbacks.get(name) for name in names}
    elif callable(callbacks):
        given = {name: callbacks(name) for name in names}
    else:
        raise TypeError(
            "`callbacks` must be a list, a dict {task: [callbacks]} or a "
            f"callable `task_name -> [callbacks]`. Received: {callbacks!r}"
        )
    seen = {}
    for name in names:
        value = given[name]
        if isinstance(value, keras.callbacks.Callback):
            value = [value]
        given[name] = value = list(value or [])
        for callback in value:
            if not isinstance(callback, keras.callbacks.Callback):
                raise TypeError(
                    f"`callbacks` of task '{name}' must be keras callbacks. "
                    f"Received: {callback!r}"
                )
            if id(callback) in seen:
                raise ValueError(
                    f"The same {type(callback).__name__} is in the "
                    f"`callbacks` of tasks '{seen[id(callback)]}' and "
                    f"'{name}': each baseline's fit needs its own callbacks."
                )
            seen[id(callback)] = name
    return given


def _monitors(monitor, restore_best, names):
    """`{task: metric}` whose best validation epoch is kept, or `None`."""
    if not restore_best:
        if monitor is not None:
            raise ValueError("`monitor` goes with `restore_best=True`.")
        return None
    if monitor is None or isinstance(monitor, str):
        return dict.fromkeys(names, monitor or "loss")
    if not isinstance(monitor, dict) or not all(
        isinstance(m, str) for m in monitor.values()
    ):
        raise TypeError(
            "`monitor` must be a metric name or a dict {task: metric name}. "
            f"Received: monitor={monitor!r}"
        )
    unknown = sorted(set(monitor) - set(names))
    if unknown:
        raise ValueError(
            f"`monitor` names unknown tasks {unknown}. Expected names among "
            f"{names}."
        )
    return {name: monitor.get(name, "loss") for name in names}


class _BestEpoch(keras.callbacks.Callback):
    """Restores, at the end of training, the weights of the epoch with the
    best `val_<task>_<metric>`, in the direction of the compiled metric."""

    def __init__(self, task, metric):
        super().__init__()
        self.task = task
        self.metric = metric
        self.monitor = f"val_{task}_{metric}"
        self.higher_is_better = None if metric != "loss" else False
        self.best = None
        self.best_weights = None

    def _direction(self):
        mode = monitor_modes(self.model).get(f"{self.task}_{self.metric}")
        if mode is not None:
            return mode == "max"
        try:
            return metric_higher_is_better(self.metric)
        except ValueError:
            raise ValueError(
                f"`monitor` of task '{self.task}': cannot tell whether "
                f"higher or lower `{self.metric}` is better. Monitor "
                "`loss` or a metric that carries a direction."
            ) from None

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        if not any(key.startswith("val_") for key in logs):
            return  # No validation this epoch.
        if self.monitor not in logs:
            raise ValueError(
                f"`restore_best`: the logs of task '{self.task}' lack "
                f"`{self.monitor}`. They hold: {sorted(logs)}. Check "
                "`monitor`."
            )
        if self.higher_is_better is None:
            self.higher_is_better = self._direction()
        value = float(logs[self.monitor])
        if math.isnan(value):
            return
        if (
            self.best is None
            or (self.higher_is_better and value > self.best)
            or (not self.higher_is_better and value < self.best)
        ):
            self.best = value
            self.best_weights = self.model.get_weights()

    def on_train_end(self, logs=None):
        if self.best_weights is not None:
            self.model.set_weights(self.best_weights)


def train_single_task_baselines(
    tasks,
    x,
    y=None,
    *,
    spec=None,
    build_fn=None,
    inputs=None,
    trunk=None,
    sharing=None,
    optimizer=None,
    compile_kwargs=None,
    validation_data=None,
    epochs=1,
    batch_size=None,
    sample_weight=None,
    callbacks=None,
    restore_best=False,
    monitor=None,
    verbose=0,
    return_models=False,
    **fit_kwargs,
):
    """Trains one model per task, with the same trunk and budget.

    Each baseline is the multi-task architecture cut down to one task: the
    same `spec` (or `build_fn`, or `inputs`, `trunk` and `sharing`), a
    fresh optimizer of the same config, the same epochs, batch size and
    data, but only its task's head and loss, minimised as is (a spec's
    weighting method is not used: one task needs none). It is evaluated on
    `validation_data` if given, else on the training data: after the last
    epoch, or with `restore_best=True` with the weights of its best
    validation epoch.

    Args:
        tasks: list of `keras_mtl.Task`.
        x: inputs, or a `tf.data.Dataset` of `(x, {task: y})` pairs.
        y: labels `{task: y}`, or `None` with a dataset.
        spec: `keras_mtl.evaluation.ModelSpec`, the one of the multi-task
            model. Defaults to `None`.
        build_fn: callable `build_fn(tasks) -> MTLModel`, compiled or not,
            instead of `spec`. Defaults to `None`.
        inputs: `keras.Input` or a dict/list of them, instead of `spec`:
            short for `spec=ModelSpec(inputs, trunk, sharing)`. Defaults to
            `None`.
        trunk: the trunk spec of `build_mtl_model`, with `inputs`. Defaults
            to `None`.
        sharing: str or `keras_mtl.sharing.Sharing`, with `inputs`.
            Defaults to `None` (`"hard"`).
        optimizer: str, config or `keras.optimizers.Optimizer`, with
            `inputs`, or for models `build_fn` leaves uncompiled; a fresh
            copy per model. Defaults to `None` (`"adam"`).
        compile_kwargs: dict of more `compile` arguments for the models
            built from `spec` or `inputs`, and those `build_fn` leaves
            uncompiled. Defaults to `None`.
        validation_data: `(x, y)` or a dataset, to validate on and evaluate
            the baselines on. Defaults to `None`.
        epochs: int. Defaults to `1`.
        batch_size: int. Defaults to `None`.
        sample_weight: array or `{task: array}`. Defaults to `None`.
        callbacks: the callbacks of each baseline's fit, each used by one
            fit only. A dict `{task: [callbacks]}` (tasks left out get
            none), a callable `task_name -> [callbacks]`, called once per
            task before training, or a list, deep-copied for each task (the
            objects passed stay untouched), which may not monitor a
            per-task log such as `val_<task>_loss` (a baseline logs only its
            own task; `val_loss` is that task's loss). Defaults to `None`.
        restore_best: bool. Keep, for the results and the returned models,
            the weights of each baseline's best validation epoch by
            `val_<task>_<monitor>`, lower or higher as its compiled metric
            says (lower for `loss`), instead of the last epoch's. Needs
            `validation_data`. Defaults to `False`.
        monitor: str, or dict `{task: str}` (other tasks: `"loss"`), with
            `restore_best=True`: the metric that picks the best epoch, named
            as in the results (`"loss"`, `"mae"`, `"accuracy"`). Defaults
            to `None` (`"loss"`).
        verbose: int. Defaults to `0`.
        return_models: bool. Also return the trained models. Defaults to
            `False`.
        **fit_kwargs: more `fit` arguments, the same for every model.

    Returns:
        dict `{task: {metric: value}}` (as from `evaluate_tasks`), and with
        `return_models=True` a tuple `(results, {task: model})`.

    Example:

    ```python
    spec = keras_mtl.evaluation.ModelSpec(inputs, trunk=[64, 64])
    baselines = keras_mtl.evaluation.train_single_task_baselines(
        tasks, x_train, y_train, spec=spec,
        validation_data=(x_val, y_val), epochs=5, batch_size=64)
    mtl = keras_mtl.evaluation.evaluate_tasks(model, x_val, y_val)
    print(keras_mtl.evaluation.results_table(mtl, baselines))
    ```

    Each baseline stopped early on its own loss, and scored at the best
    epoch of its first metric:

    ```python
    baselines = keras_mtl.evaluation.train_single_task_baselines(
        tasks, x_train, y_train, spec=spec,
        validation_data=(x_val, y_val), epochs=50, batch_size=64,
        callbacks=lambda task: [keras.callbacks.EarlyStopping(
            monitor=f"val_{task}_loss", patience=3)],
        restore_best=True, monitor={"left": "accuracy", "right": "accuracy"})
    ```

    References:
        - [Vandenhende et al., 2021](https://arxiv.org/abs/2004.13379),
          single-task baselines and Delta_m.
    """
    tasks = check_tasks(tasks)
    names = [task.name for task in tasks]
    build = _model_builder(spec, build_fn, inputs, trunk, sharing, optimizer)
    if isinstance(x, tf.data.Dataset) and y is not None:
        raise ValueError("Pass `y=None` when `x` is a tf.data.Dataset.")
    monitors = _monitors(monitor, restore_best, names)
    if monitors is not None and validation_data is None:
        raise ValueError(
            "`restore_best=True` picks each baseline's best validation "
            "epoch: pass `validation_data`."
        )
    callbacks = _own_callbacks(callbacks, names)
    results, models = {}, {}
    for task in tasks:
        model = build(task, dict(compile_kwargs or {}))
        # Fit on this task's labels only, then evaluate on the same split
        # the multi-task model is scored on.
        if isinstance(x, tf.data.Dataset):
            fit_args = (_select_labels(x, task.name),)
        else:
            xs, ys, sw = _select_labels((x, y, sample_weight), task.name)
            fit_args = (xs, ys)
            fit_kwargs["sample_weight"] = sw
        val = None
        if validation_data is not None:
            val = _select_labels(validation_data, task.name)
        task_callbacks = callbacks[task.name]
        if monitors is not None:
            task_callbacks.append(_BestEpoch(task.name, monitors[task.name]))
        model.fit(
            *fit_args,
            validation_data=val,
            epochs=epochs,
            batch_size=batch_size,
            verbose=verbose,
            callbacks=task_callbacks,
            **fit_kwargs,
        )
        data = val if val is not None else fit_args
        if isinstance(data, tf.data.Dataset):
            data = (data,)
        evaluated = evaluate_tasks(
            model,
            *data[:2],
            sample_weight=data[2] if len(data) > 2 else None,
            batch_size=None
            if isinstance(data[0], tf.data.Dataset)
            else batch_size,
        )
        results[task.name] = evaluated[task.name]
        models[task.name] = model
    return (results, models) if return_models else results
