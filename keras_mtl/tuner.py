"""Tune task weights, weighting methods and sharing with keras-tuner.

`MTLHyperModel` is a `keras_tuner.HyperModel`; `MultiTaskObjective` is a
callback that writes a multi-task score into the logs, which the tuner then
optimises like any other metric.
"""

import inspect
import types

import keras

try:
    import keras_tuner
except ImportError:  # pragma: no cover - depends on the environment
    raise ImportError(
        "keras_mtl.tuner needs keras-tuner. Install it with "
        "`pip install 'keras-mtl[tuner]'` (or `pip install keras-tuner`)."
    ) from None

from keras_mtl import evaluation
from keras_mtl import sharing as sharing_module
from keras_mtl import weighting as weighting_module
from keras_mtl.evaluation.model_spec import exactly_one
from keras_mtl.evaluation.model_spec import fresh_optimizer
from keras_mtl.evaluation.model_spec import fresh_weighting
from keras_mtl.model import MTLModel
from keras_mtl.model import check_tasks
from keras_mtl.tasks import Task

__all__ = [
    "MTLHyperModel",
    "MultiTaskObjective",
    "default_objective_metrics",
]


def _registry(module):
    """`({name: class}, [one name per class])` of a registry module."""
    # The registry object where there is one, else the older module dict.
    registry = getattr(module, "registry", None)
    if registry is not None:
        return registry.as_dict(), registry.names()
    objects = module.ALL_OBJECTS_DICT
    return objects, _registry_names(objects)


def _declared_spaces(module):
    classes, names = _registry(module)
    return types.MappingProxyType(
        {
            name: dict(classes[name].search_space)
            for name in names
            if getattr(classes[name], "search_space", None)
        }
    )


def __getattr__(name):
    # Read-only views of the `search_space` each class declares, for code
    # written when the ranges were module tables.
    if name == "WEIGHTING_SEARCH_SPACE":
        return _declared_spaces(weighting_module)
    if name == "SHARING_SEARCH_SPACE":
        return _declared_spaces(sharing_module)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _select_baselines(baselines, metrics, higher_is_better, average):
    """`{task: {metric: float}}`: the baselines of the scored metrics."""
    if not isinstance(baselines, dict) or not all(
        isinstance(v, dict) for v in baselines.values()
    ):
        raise TypeError(
            "`baselines` must be a dict {task: {metric: value}}. "
            f"Received: baselines={baselines!r}"
        )
    for task, names in metrics.items():
        for metric in names:
            if metric not in baselines.get(task, {}):
                raise ValueError(
                    f"`baselines` has no value for task '{task}', metric "
                    f"'{metric}'. It has: "
                    f"{ {t: sorted(m) for t, m in baselines.items()} }"
                )
    selected = {
        task: {m: baselines[task][m] for m in names}
        for task, names in metrics.items()
    }
    # Checks now that each is a finite, non-zero number.
    evaluation.delta_m(
        selected, selected, higher_is_better, average, metrics="all"
    )
    return {
        task: {m: float(v) for m, v in values.items()}
        for task, values in selected.items()
    }


@keras.saving.register_keras_serializable(package="keras_mtl")
class MultiTaskObjective(keras.callbacks.Callback):
    """Writes one multi-task score per epoch into the logs, for a tuner.

    With `baselines`, the score is Delta_m% against them
    (`keras_mtl.evaluation.delta_m`): positive when the multi-task model
    beats the single-task models. Without, it is the mean log-metric
    (`keras_mtl.evaluation.mean_log_metric`)
    `(100 / K) sum_k (-1)^{l_k} ln M_k` (`l_k = 1` where lower is better),
    for which no task's scale dominates: multiplying a task's metric by a
    constant shifts every model's score equally, and the difference of two
    models' scores is, to first order, the Delta_m% of one against the
    other. Both are to be maximised, unlike the raw sum of losses that
    keras-tuner's own multi-objective minimises.

    It reads the per-task entries of the epoch's logs (`<task>_<metric>`,
    and `val_<task>_<metric>` when there is validation data) and adds
    `<name>` and `val_<name>`. Baselines are normally measured on the
    validation data, so `val_<name>` is the objective; `<name>` compares
    the training metrics with the same baselines, for the curious.
    Callbacks run in order and share the logs, so put it first:
    `MTLHyperModel.fit` does, so that keras-tuner's own callbacks,
    `History`, `EarlyStopping` and the rest all see the score.

    Args:
        metrics: dict `{task: metric}` or `{task: [metrics]}`: the log names
            of the metrics to score (`"accuracy"`, `"mae"`, `"loss"`, ...).
        baselines: `{task: {metric: value}}` single-task results, e.g. from
            `keras_mtl.evaluation.train_single_task_baselines`. Defaults to
            `None` (the mean log-metric).
        higher_is_better: None, bool, `{task: bool}` or
            `{task: {metric: bool}}`. Defaults to `None`: from the names.
        average: `"metrics"` or `"tasks"`: how several metrics per task are
            averaged (see `keras_mtl.evaluation.delta_m`). Defaults to
            `"metrics"`.
        name: str. Log name of the score. Defaults to `"delta_m"` with
            baselines, else `"mean_log_metric"`.

    Example:

    ```python
    objective = keras_mtl.tuner.MultiTaskObjective(
        {"left": "accuracy", "right": "accuracy"}, baselines=baselines)
    tuner = keras_tuner.RandomSearch(
        hypermodel, objective=objective.objective, max_trials=10)
    ```

    References:
        - [Vandenhende et al., 2021](https://arxiv.org/abs/2004.13379), for
          Delta_m as the multi-task figure of merit.
    """

    def __init__(
        self,
        metrics,
        baselines=None,
        higher_is_better=None,
        average="metrics",
        name=None,
    ):
        super().__init__()
        if not isinstance(metrics, dict) or not metrics:
            raise TypeError(
                "`metrics` must be a non-empty dict {task: metric name or list "
                f"of names}}. Received: metrics={metrics!r}"
            )
        if average not in evaluation.AVERAGES:
            raise ValueError(
                f"`average` must be one of {evaluation.AVERAGES}. "
                f"Received: average={average!r}"
            )
        self.metrics = {
            task: [m] if isinstance(m, str) else list(m)
            for task, m in metrics.items()
        }
        for task, names in self.metrics.items():
            if not names or not all(isinstance(m, str) for m in names):
                raise TypeError(
                    f"`metrics` of task '{task}' must be metric names. "
                    f"Received: {metrics[task]!r}"
                )
        # Scoring ones checks every metric's direction now, not at the end
        # of the first epoch.
        evaluation.mean_log_metric(
            {t: dict.fromkeys(names, 1.0) for t, names in self.metrics.items()},
            higher_is_better,
            average,
            metrics=self.metrics,
        )
        if baselines is not None:
            baselines = _select_baselines(
                baselines, self.metrics, higher_is_better, average
            )
        self.baselines = baselines
        self.higher_is_better = higher_is_better
        self.average = average
        self.name = name or (
            "delta_m" if baselines is not None else "mean_log_metric"
        )

    @property
    def objective(self):
        """The `keras_tuner.Objective` to maximise: `val_<name>`."""
        return keras_tuner.Objective(f"val_{self.name}", direction="max")

    def score(self, results):
        """The score of `{task: {metric: value}}` results."""
        if self.baselines is not None:
            return evaluation.delta_m(
                results,
                self.baselines,
                self.higher_is_better,
                self.average,
                metrics="all",
            )
        return evaluation.mean_log_metric(
            results, self.higher_is_better, self.average, metrics=self.metrics
        )

    def on_epoch_end(self, epoch, logs=None):
        if logs is None:
            return
        tasks = list(self.metrics)
        for prefix in ("", "val_"):
            if prefix and not any(k.startswith(prefix) for k in logs):
                continue  # No validation this epoch.
            found = evaluation.task_results_from_logs(logs, tasks, prefix)
            missing = [
                f"{prefix}{task}_{metric}"
                for task, names in self.metrics.items()
                for metric in names
                if metric not in found[task]
            ]
            if missing:
                raise ValueError(
                    f"MultiTaskObjective: the logs lack {missing}, so "
                    f"`{prefix}{self.name}` cannot be computed. Logs hold: "
                    f"{sorted(logs)}. Check the task names and `metrics`."
                )
            logs[f"{prefix}{self.name}"] = self.score(found)

    def get_config(self):
        return {
            "metrics": self.metrics,
            "baselines": self.baselines,
            "higher_is_better": self.higher_is_better,
            "average": self.average,
            "name": self.name,
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)


def default_objective_metrics(tasks):
    """`{task: metric}`: each task's first metric, or its loss if none.

    The metrics `MTLHyperModel` scores by default.

    Args:
        tasks: list of `keras_mtl.Task`.

    Returns:
        dict `{task_name: metric_name}`.

    Example:

    ```python
    keras_mtl.tuner.default_objective_metrics(
        [keras_mtl.Task("a", metrics=["mae"]), keras_mtl.Task("b")])
    # {"a": "mae", "b": "loss"}
    ```
    """
    metrics = {}
    for task in check_tasks(tasks):
        metric = task.metrics[0] if task.metrics else "loss"
        if not isinstance(metric, str):
            metric = getattr(metric, "name", None) or getattr(
                metric, "__name__", None
            )
        metrics[task.name] = metric
    return metrics


def _registry_names(registry):
    """One name per class: its first lowercase alias, else its key."""
    names, seen = [], {}
    for key, cls in registry.items():
        if key.islower() and cls not in seen:
            seen[cls] = key
            names.append(key)
    # Sorted: class-name keys may come from a set, in no stable order.
    for key, cls in sorted(registry.items()):
        if cls not in seen:
            seen[cls] = key
            names.append(key)
    return names


def _accepted_arguments(cls):
    parameters = inspect.signature(cls.__init__).parameters
    return {
        name
        for name, p in parameters.items()
        if name != "self" and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)
    }


def _required_arguments(cls):
    parameters = inspect.signature(cls.__init__).parameters
    return {
        name
        for name, p in parameters.items()
        if name != "self"
        and p.default is p.empty
        and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)
    }


def _declare(hp, name, spec):
    if isinstance(spec, dict) and "values" in spec:
        return hp.Choice(name, **spec)
    if isinstance(spec, dict):
        low, high = spec.get("min_value"), spec.get("max_value")
        if low is None or high is None:
            raise ValueError(
                f"Search space of {name!r}: a dict needs `min_value` and "
                f"`max_value`, or `values`. Received: {spec!r}"
            )
        is_int = all(
            isinstance(v, int) and not isinstance(v, bool)
            for v in (low, high, spec.get("default", 0))
        )
        if is_int:
            return hp.Int(name, **spec)
        return hp.Float(name, **spec)
    if isinstance(spec, (list, tuple)):
        return hp.Choice(name, list(spec))
    return hp.Fixed(name, spec)


class _Choices:
    """A tunable choice among registry entries, each with its arguments.

    Argument ranges come from each class's `search_space`, updated per
    argument by `search_space` (`{name or alias: {argument: spec}}`).
    """

    def __init__(self, kind, module, methods, search_space):
        self.kind = kind
        self.module = module
        self.search_space = dict(search_space or {})
        if methods is not None and methods != "all":
            if isinstance(methods, str) or not isinstance(
                methods, (list, tuple)
            ):
                raise TypeError(
                    f"`{kind}` choices must be None, 'all' or a list of names. "
                    f"Received: {methods!r}"
                )
            classes, names = _registry(module)
            unknown = [m for m in methods if m not in classes]
            if unknown or not methods:
                raise ValueError(
                    f"Unknown {kind} {unknown or methods}. Expected names "
                    f"among {names}."
                )
            for name in methods:
                missing = _required_arguments(classes[name]) - set(
                    self._space_of(name, classes)
                )
                if missing:
                    raise ValueError(
                        f"{kind.capitalize()} '{name}' needs arguments "
                        f"{sorted(missing)}: give them a search space in "
                        f"`{kind}_search_space`."
                    )
        self.methods = methods

    def names(self):
        if self.methods != "all":
            return list(self.methods)
        # Read at call time, so methods registered later are included;
        # those with required arguments and no search space are left out.
        classes, names = _registry(self.module)
        return [
            name
            for name in names
            if _required_arguments(classes[name])
            <= set(self._space_of(name, classes))
        ]

    def _space_of(self, name, classes):
        cls = classes[name]
        space = dict(getattr(cls, "search_space", {}))
        for key, arguments in self.search_space.items():
            if classes.get(key) is cls:
                space.update(arguments)
        accepted = _accepted_arguments(cls)
        return {k: v for k, v in space.items() if k in accepted}

    def build(self, hp, default):
        classes, _ = _registry(self.module)
        names = self.names()
        if default in names:
            names.remove(default)
            names.insert(0, default)
        chosen = hp.Choice(self.kind, names, default=names[0])
        instance = None
        for name in names:
            with hp.conditional_scope(self.kind, [name]):
                kwargs = {
                    arg: _declare(hp, f"{name}_{arg}", spec)
                    for arg, spec in self._space_of(name, classes).items()
                }
            if name == chosen:
                instance = classes[name](**kwargs)
        return instance


def _model_source(spec, inputs, trunk, build_fn):
    """Checks that exactly one of `spec`, `inputs` and `build_fn` is given."""
    if build_fn is not None and not callable(build_fn):
        raise TypeError(f"`build_fn` must be callable. Received: {build_fn!r}")
    exactly_one(
        (("spec", spec), ("inputs", inputs), ("build_fn", build_fn)),
        "`spec`, `inputs` (with `trunk`) or `build_fn`",
    )
    if spec is not None and not isinstance(spec, evaluation.ModelSpec):
        raise TypeError(
            "`spec` must be a keras_mtl.evaluation.ModelSpec. "
            f"Received: spec={spec!r}"
        )
    if trunk is not None and inputs is None:
        raise ValueError(
            "`trunk` goes with `inputs`; a `spec` or `build_fn` has its own."
        )


def _loss_weight_range(loss_weight_range):
    try:
        low, high = (float(v) for v in loss_weight_range)
    except (TypeError, ValueError):
        low = high = None
    if low is None or not 0 < low < high:
        raise ValueError(
            "`loss_weight_range` must be (min, max) with 0 < min < max "
            "(log scale). "
            f"Received: loss_weight_range={loss_weight_range!r}"
        )
    return low, high


def _objective(objective, baselines, tasks):
    names = [t.name for t in tasks]
    if objective is None:
        return MultiTaskObjective(
            default_objective_metrics(tasks), baselines=baselines
        )
    if baselines is not None:
        raise ValueError(
            "Pass `baselines` to the `objective` "
            "(`MultiTaskObjective(metrics, baselines=...)`), not beside it."
        )
    if not isinstance(objective, MultiTaskObjective):
        raise TypeError(
            "`objective` must be a keras_mtl.tuner.MultiTaskObjective. "
            f"Received: objective={objective!r}"
        )
    unknown = sorted(set(objective.metrics) - set(names))
    if unknown:
        raise ValueError(
            f"`objective` scores unknown tasks {unknown}. "
            f"Expected names among {names}."
        )
    return objective


@keras.saving.register_keras_serializable(package="keras_mtl")
class MTLHyperModel(keras_tuner.HyperModel):
    """A keras-tuner HyperModel over task weights, weighting and sharing.

    The search space holds, for each task, `loss_weight_<task>` (float, log
    scale, in `loss_weight_range`, default the task's own `loss_weight`).
    With `weighting_methods`, a `weighting` choice is added, and each
    method's arguments (`<method>_<argument>`) in a conditional scope that
    is active only when that method is chosen; `sharing_modes` does the
    same for a `sharing` choice. `"all"` takes every method of the
    registry (`keras_mtl.weighting`, `keras_mtl.sharing`) at the time
    `build` is called. Argument ranges are the `search_space` each class
    declares (`keras_mtl.weighting.GradNorm.search_space`), updated by the
    `*_search_space` arguments.

    Each trial's model is built from a `keras_mtl.evaluation.ModelSpec`
    (or by `build_fn`): new inputs, a cloned trunk, a new weighting method
    and a new optimizer, so that trials share nothing.

    The tuner's objective should be `hypermodel.objective`: the
    `keras_tuner.Objective` of the `MultiTaskObjective` callback that `fit`
    puts first among the callbacks, Delta_m% against the baselines when it
    has them, else the mean log-metric (see `MultiTaskObjective`). It works
    with `RandomSearch`, `BayesianOptimization` and `Hyperband`, and
    `get_best_models()` returns `MTLModel`s.

    Args:
        inputs: `keras.Input` or a dict/list of them: short for
            `spec=ModelSpec(inputs, trunk, sharing, weighting, optimizer)`.
            Defaults to `None`.
        tasks: list of `keras_mtl.Task`.
        trunk: the trunk spec of `keras_mtl.build_mtl_model`, with `inputs`.
            Defaults to `None`.
        spec: `keras_mtl.evaluation.ModelSpec`, instead of `inputs`; its
            sharing and weighting are used when they are not tuned.
            Defaults to `None`.
        build_fn: callable `build_fn(tasks, sharing, weighting) -> MTLModel`,
            compiled or not, instead of `spec`. The tasks carry the trial's
            loss weights. Defaults to `None`.
        sharing: str or `keras_mtl.sharing.Sharing`, when not tuned; with
            `inputs` or `build_fn`. Defaults to `None` (`"hard"`).
        weighting: str or `keras_mtl.weighting.Weighting`, when not tuned;
            with `inputs` or `build_fn`. Defaults to `None` (`"equal"`).
        optimizer: str, config or `keras.optimizers.Optimizer`, with
            `inputs`, or for models `build_fn` leaves uncompiled; a fresh
            copy per trial. Defaults to `None` (`"adam"`).
        compile_kwargs: dict of more `compile` arguments, e.g.
            `{"steps_per_execution": 8}`, or `{"run_eagerly": True}` for
            tiny models, where tracing the train function costs more than
            the trial. Not for models `build_fn` compiles. Defaults to
            `None`.
        loss_weight_range: `(min, max)`, both > 0. Defaults to `(0.1, 10.0)`.
        tuned_tasks: list of task names whose loss weight is tuned; the
            others keep theirs. Defaults to `None` (all). With Adam, scaling
            every weight by one factor changes little: tuning all but one
            task removes that redundant direction.
        weighting_methods: None, `"all"` or a list of registry names.
            Defaults to `None` (not tuned).
        sharing_modes: None, `"all"` or a list of registry names. Defaults to
            `None` (not tuned).
        weighting_search_space: dict `{method: {argument: spec}}` updating
            the methods' own `search_space`; a spec is a dict of
            `hp.Float`/`hp.Int` arguments, a dict with `values` or a list
            (`hp.Choice`) or a value (`hp.Fixed`). Defaults to `None`.
        sharing_search_space: the same for sharing modes. Defaults to `None`.
        objective: `keras_mtl.tuner.MultiTaskObjective`, the score to
            maximise. Defaults to `None`: one that scores each task's first
            metric (or its loss, see `default_objective_metrics`).
        baselines: `{task: {metric: value}}` single-task results on the
            validation data, for the default `objective`: short for
            `objective=MultiTaskObjective(default_objective_metrics(tasks),
            baselines=baselines)`. Defaults to `None`.
        name: str. Defaults to `None`.
        tunable: bool. Defaults to `True`.

    Example:

    ```python
    spec = keras_mtl.evaluation.ModelSpec(inputs, trunk=[64, 64])
    objective = keras_mtl.tuner.MultiTaskObjective(
        {"left": "accuracy", "right": "accuracy"}, baselines=baselines)
    hypermodel = keras_mtl.tuner.MTLHyperModel(
        tasks=tasks, spec=spec, objective=objective,
        weighting_methods=["equal", "uncertainty", "dwa"])
    tuner = keras_tuner.BayesianOptimization(
        hypermodel, objective=hypermodel.objective, max_trials=20,
        directory="/tmp/mtl_tuning")
    tuner.search(x, y, validation_data=(x_val, y_val), epochs=5)
    best = tuner.get_best_models()[0]
    ```

    References:
        - [O'Malley et al., 2019](https://github.com/keras-team/keras-tuner),
          KerasTuner.
        - [Vandenhende et al., 2021](https://arxiv.org/abs/2004.13379), for
          Delta_m as the multi-task figure of merit.
    """

    def __init__(
        self,
        inputs=None,
        tasks=None,
        trunk=None,
        *,
        spec=None,
        build_fn=None,
        sharing=None,
        weighting=None,
        optimizer=None,
        compile_kwargs=None,
        loss_weight_range=(0.1, 10.0),
        tuned_tasks=None,
        weighting_methods=None,
        sharing_modes=None,
        weighting_search_space=None,
        sharing_search_space=None,
        objective=None,
        baselines=None,
        name=None,
        tunable=True,
    ):
        super().__init__(name=name, tunable=tunable)
        self.tasks = check_tasks(tasks)
        names = [t.name for t in self.tasks]
        _model_source(spec, inputs, trunk, build_fn)
        if spec is not None:
            given = [
                k
                for k, v in (
                    ("sharing", sharing),
                    ("weighting", weighting),
                    ("optimizer", optimizer),
                )
                if v is not None
            ]
            if given:
                raise ValueError(
                    f"{given} go with `inputs` or `build_fn`: with `spec`, "
                    "they are the spec's."
                )
        elif inputs is not None:
            spec = evaluation.ModelSpec(
                inputs,
                trunk,
                sharing or "hard",
                weighting or "equal",
                optimizer or "adam",
            )
        tuned_tasks = names if tuned_tasks is None else list(tuned_tasks)
        unknown = sorted(set(tuned_tasks) - set(names))
        if unknown:
            raise ValueError(
                f"`tuned_tasks` names unknown tasks {unknown}. "
                f"Expected names among {names}."
            )
        self.spec = spec
        self.build_fn = build_fn
        if spec is not None:
            sharing, weighting = spec.sharing, spec.weighting
            optimizer = spec.optimizer
        self.sharing = sharing or "hard"
        self.weighting = weighting or "equal"
        self.optimizer = optimizer or "adam"
        self.compile_kwargs = dict(compile_kwargs or {})
        self.loss_weight_range = _loss_weight_range(loss_weight_range)
        self.tuned_tasks = tuned_tasks
        self.weighting_methods = weighting_methods
        self.sharing_modes = sharing_modes
        self.weighting_search_space = weighting_search_space
        self.sharing_search_space = sharing_search_space
        # `objective` (the property) is the keras-tuner Objective of this
        # callback, as keras-tuner's own HyperModels name it.
        self.objective_callback = _objective(objective, baselines, self.tasks)
        self._weighting_choices = _Choices(
            "weighting",
            weighting_module,
            weighting_methods,
            weighting_search_space,
        )
        self._sharing_choices = _Choices(
            "sharing", sharing_module, sharing_modes, sharing_search_space
        )

    @property
    def objective(self):
        """The `keras_tuner.Objective` to pass to the tuner."""
        return self.objective_callback.objective

    def _trial_tasks(self, hp):
        low, high = self.loss_weight_range
        tasks = []
        for task in self.tasks:
            copy = Task.from_config(task.get_config())
            if task.name in self.tuned_tasks:
                copy.loss_weight = hp.Float(
                    f"loss_weight_{task.name}",
                    low,
                    high,
                    sampling="log",
                    default=min(max(task.loss_weight, low), high),
                )
            tasks.append(copy)
        return tasks

    def build(self, hp):
        tasks = self._trial_tasks(hp)
        weighting = sharing = None
        if self.weighting_methods is not None:
            default = (
                self.weighting if isinstance(self.weighting, str) else None
            )
            weighting = self._weighting_choices.build(hp, default)
        if self.sharing_modes is not None:
            default = self.sharing if isinstance(self.sharing, str) else None
            sharing = self._sharing_choices.build(hp, default)
        if self.spec is not None:
            return self.spec.build(
                tasks,
                sharing=sharing,
                weighting=weighting,
                compile_kwargs=self.compile_kwargs,
            )
        model = self.build_fn(
            tasks,
            sharing=self.sharing if sharing is None else sharing,
            weighting=fresh_weighting(
                self.weighting if weighting is None else weighting
            ),
        )
        if not isinstance(model, MTLModel):
            raise TypeError(
                "`build_fn` must return a keras_mtl.MTLModel. "
                f"Received: {type(model).__name__}"
            )
        if not model.compiled:
            model.compile(
                optimizer=fresh_optimizer(self.optimizer),
                **self.compile_kwargs,
            )
        return model

    def fit(self, hp, model, *args, **kwargs):
        """Fits `model`, with the objective callback first in line."""
        if kwargs.get("validation_data") is None and not kwargs.get(
            "validation_split"
        ):
            raise ValueError(
                f"The objective `{self.objective.name}` is computed on "
                "validation data: pass `validation_data=` (or "
                "`validation_split=`) to `tuner.search`."
            )
        callbacks = list(kwargs.pop("callbacks", None) or [])
        callbacks.insert(0, self.objective_callback)
        return model.fit(*args, callbacks=callbacks, **kwargs)

    def get_config(self):
        if self.build_fn is not None:
            raise NotImplementedError(
                "An MTLHyperModel made from a `build_fn` has no config; use "
                "a `spec` (or `inputs` and `trunk`) for one."
            )
        serialize = keras.saving.serialize_keras_object
        return {
            "tasks": [t.get_config() for t in self.tasks],
            "spec": serialize(self.spec),
            "compile_kwargs": self.compile_kwargs,
            "loss_weight_range": list(self.loss_weight_range),
            "tuned_tasks": list(self.tuned_tasks),
            "weighting_methods": self.weighting_methods,
            "sharing_modes": self.sharing_modes,
            "weighting_search_space": self.weighting_search_space,
            "sharing_search_space": self.sharing_search_space,
            "objective": serialize(self.objective_callback),
            "name": self.name,
            "tunable": self.tunable,
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        deserialize = keras.saving.deserialize_keras_object
        config["spec"] = deserialize(config["spec"])
        config["objective"] = deserialize(config["objective"])
        return cls(**config)
