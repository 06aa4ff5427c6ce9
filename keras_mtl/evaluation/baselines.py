"""Single-task baselines: the reference a multi-task model must beat."""

import tensorflow as tf

from keras_mtl.evaluation.model_spec import ModelSpec
from keras_mtl.evaluation.model_spec import exactly_one
from keras_mtl.evaluation.model_spec import fresh_optimizer
from keras_mtl.evaluation.report import task_results_from_logs
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
    `validation_data` if given, else on the training data.

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

    References:
        - [Vandenhende et al., 2021](https://arxiv.org/abs/2004.13379),
          single-task baselines and Delta_m.
    """
    tasks = check_tasks(tasks)
    build = _model_builder(spec, build_fn, inputs, trunk, sharing, optimizer)
    if isinstance(x, tf.data.Dataset) and y is not None:
        raise ValueError("Pass `y=None` when `x` is a tf.data.Dataset.")
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
        model.fit(
            *fit_args,
            validation_data=val,
            epochs=epochs,
            batch_size=batch_size,
            verbose=verbose,
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
