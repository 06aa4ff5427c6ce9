"""Tune task weights, weighting methods and sharing with keras-tuner.

`MTLHyperModel` is a `keras_tuner.HyperModel`; `MultiTaskObjective` is a
callback that writes a multi-task score into the logs, which the tuner then
optimises like any other metric.
"""

import inspect
import math

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
from keras_mtl.model import MTLModel
from keras_mtl.model import check_tasks

__all__ = [
    "MTLHyperModel",
    "MultiTaskObjective",
    "SHARING_SEARCH_SPACE",
    "WEIGHTING_SEARCH_SPACE",
    "default_objective_metrics",
]


# Argument ranges of known methods, by registry name. A spec is a dict of
# `hp.Float`/`hp.Int` arguments (`min_value`, `max_value`, `sampling`,
# `default`), a dict with `values` (`hp.Choice`), a list (`hp.Choice`, first
# value the default) or one value (`hp.Fixed`). Arguments that a method's
# constructor does not take are skipped, so a renamed argument keeps its
# default rather than break the search.
def _log_range(low, high, default):
    return {
        "min_value": low,
        "max_value": high,
        "sampling": "log",
        "default": default,
    }


WEIGHTING_SEARCH_SPACE = {
    "dwa": {"temperature": _log_range(0.5, 8.0, 2.0)},
    "gradnorm": {
        "alpha": _log_range(0.1, 3.0, 1.5),
        "learning_rate": _log_range(1e-3, 0.1, 0.025),
    },
    "famo": {
        "learning_rate": _log_range(5e-3, 0.1, 0.025),
        "gamma": _log_range(1e-4, 1e-2, 1e-3),
    },
    "mgda": {"normalization": ["none", "l2", "loss", "loss+"]},
    "cagrad": {"c": {"min_value": 0.1, "max_value": 0.9, "default": 0.4}},
}
SHARING_SEARCH_SPACE = {
    "cross_stitch": {
        "diagonal": {"min_value": 0.5, "max_value": 0.95, "default": 0.9},
        "learning_rate_multiplier": _log_range(1.0, 100.0, 1.0),
    },
    "soft": {"strength": _log_range(1e-5, 1e-1, 1e-3)},
    "mmoe": {"num_experts": {"values": [2, 4, 8], "default": 4}},
    "ple": {
        "num_levels": [1, 2],
        "num_task_experts": [1, 2],
        "num_shared_experts": [1, 2],
    },
}


@keras.saving.register_keras_serializable(package="keras_mtl")
class MultiTaskObjective(keras.callbacks.Callback):
    """Writes one multi-task score per epoch into the logs, for a tuner.

    With `baselines`, the score is Delta_m% against them
    (`keras_mtl.evaluation.delta_m`): positive when the multi-task model
    beats the single-task models. Without, it is the mean log-metric
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
            for metric in names:
                evaluation._direction(higher_is_better, task, metric)
        if baselines is not None:
            baselines = evaluation._as_results(baselines, "baselines")
            for task, names in self.metrics.items():
                for metric in names:
                    if metric not in baselines.get(task, {}):
                        raise ValueError(
                            f"`baselines` has no value for task '{task}', "
                            f"metric '{metric}'. It has: "
                            f"{ {t: sorted(m) for t, m in baselines.items()} }"
                        )
            baselines = {
                task: {m: baselines[task][m] for m in names}
                for task, names in self.metrics.items()
            }
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
        rows = []
        for task, names in self.metrics.items():
            for metric in names:
                higher = evaluation._direction(
                    self.higher_is_better, task, metric
                )
                value = max(float(results[task][metric]), 1e-12)
                sign = 1.0 if higher else -1.0
                rows.append(
                    {"task": task, "change": 100 * sign * math.log(value)}
                )
        return evaluation._average(rows, self.average)

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
    """A tunable choice among registry entries, each with its arguments."""

    def __init__(self, kind, module, methods, search_space):
        self.kind = kind
        self.module = module
        self.search_space = search_space
        registry = self.registry
        if methods is not None and methods != "all":
            if isinstance(methods, str) or not isinstance(
                methods, (list, tuple)
            ):
                raise TypeError(
                    f"`{kind}` choices must be None, 'all' or a list of names. "
                    f"Received: {methods!r}"
                )
            unknown = [m for m in methods if m not in registry]
            if unknown or not methods:
                raise ValueError(
                    f"Unknown {kind} {unknown or methods}. Expected names "
                    f"among {_registry_names(registry)}."
                )
            for name in methods:
                missing = _required_arguments(registry[name]) - set(
                    self._space_of(name)
                )
                if missing:
                    raise ValueError(
                        f"{kind.capitalize()} '{name}' needs arguments "
                        f"{sorted(missing)}: give them a search space in "
                        f"`{kind}_search_space`."
                    )
        self.methods = methods

    @property
    def registry(self):
        # Looked up at each use: methods registered later are included.
        return self.module.ALL_OBJECTS_DICT

    def names(self):
        if self.methods != "all":
            return list(self.methods)
        # Read at call time, so methods registered later are included;
        # those with required arguments and no search space are left out.
        names = []
        for name in _registry_names(self.registry):
            required = _required_arguments(self.registry[name])
            if required <= set(self._space_of(name)):
                names.append(name)
        return names

    def _space_of(self, name):
        cls = self.registry[name]
        space = {}
        for key in (name, cls.__name__):
            space.update(self.search_space.get(key, {}))
        accepted = _accepted_arguments(cls)
        return {k: v for k, v in space.items() if k in accepted}

    def build(self, hp, default):
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
                    for arg, spec in self._space_of(name).items()
                }
            if name == chosen:
                instance = self.registry[name](**kwargs)
        return instance


@keras.saving.register_keras_serializable(package="keras_mtl")
class MTLHyperModel(keras_tuner.HyperModel):
    """A keras-tuner HyperModel over task weights, weighting and sharing.

    The search space holds, for each task, `loss_weight_<task>` (float, log
    scale, in `loss_weight_range`, default the task's own `loss_weight`).
    With `weighting_methods`, a `weighting` choice is added, and each
    method's arguments (`<method>_<argument>`) in a conditional scope that
    is active only when that method is chosen; `sharing_modes` does the
    same for a `sharing` choice. `"all"` takes every method of the
    registry (`keras_mtl.weighting.ALL_OBJECTS_DICT`,
    `keras_mtl.sharing.ALL_OBJECTS_DICT`) at the time `build` is called;
    argument ranges come from `WEIGHTING_SEARCH_SPACE` and
    `SHARING_SEARCH_SPACE`, updated by the `*_search_space` arguments.

    The tuner's objective should be `hypermodel.objective`: the
    `MultiTaskObjective` that `fit` puts first among the callbacks, Delta_m%
    against `baselines` when given, else the mean log-metric (see
    `MultiTaskObjective`). It works with `RandomSearch`,
    `BayesianOptimization` and `Hyperband`, and `get_best_models()` returns
    `MTLModel`s.

    Args:
        inputs: `keras.Input` or a dict/list of them. Fresh inputs of the
            same spec are made for each trial. Not needed with `build_fn`.
        tasks: list of `keras_mtl.Task`.
        trunk: the trunk spec of `keras_mtl.build_mtl_model`; a layer or
            model trunk is cloned for each trial. Defaults to `None`.
        build_fn: callable `build_fn(tasks, sharing, weighting) -> MTLModel`,
            compiled or not, instead of `inputs`/`trunk`. The tasks carry
            the trial's loss weights. Defaults to `None`.
        sharing: str or `keras_mtl.sharing.Sharing`, when not tuned.
            Defaults to `"hard"`.
        weighting: str or `keras_mtl.weighting.Weighting`, when not tuned.
            Defaults to `"equal"`.
        optimizer: str, config or `keras.optimizers.Optimizer` for
            uncompiled models; a fresh copy per trial. Defaults to `"adam"`.
        compile_kwargs: dict of more `compile` arguments for uncompiled
            models, e.g. `{"steps_per_execution": 8}`, or
            `{"run_eagerly": True}` for tiny models, where tracing the
            train function costs more than the trial. Defaults to `None`.
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
            `WEIGHTING_SEARCH_SPACE`; a spec is a dict of `hp.Float`/`hp.Int`
            arguments, a list (choice) or a value (fixed). Defaults to `None`.
        sharing_search_space: the same for sharing modes. Defaults to `None`.
        objective_metrics: `{task: metric or [metrics]}` scored by the
            objective, or `"loss"` for every task's loss. Defaults to `None`:
            each task's first metric, or its loss if it has none.
        baselines: `{task: {metric: value}}` single-task results on the
            validation data, from
            `keras_mtl.evaluation.train_single_task_baselines`. Defaults to
            `None`.
        higher_is_better: see `keras_mtl.evaluation.delta_m`. Defaults to
            `None` (from metric names).
        average: `"metrics"` or `"tasks"`. Defaults to `"metrics"`.
        name: str. Defaults to `None`.
        tunable: bool. Defaults to `True`.

    Example:

    ```python
    hypermodel = keras_mtl.tuner.MTLHyperModel(
        inputs, tasks, trunk=[64, 64], baselines=baselines)
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
        build_fn=None,
        sharing="hard",
        weighting="equal",
        optimizer="adam",
        compile_kwargs=None,
        loss_weight_range=(0.1, 10.0),
        tuned_tasks=None,
        weighting_methods=None,
        sharing_modes=None,
        weighting_search_space=None,
        sharing_search_space=None,
        objective_metrics=None,
        baselines=None,
        higher_is_better=None,
        average="metrics",
        name=None,
        tunable=True,
    ):
        super().__init__(name=name, tunable=tunable)
        self.tasks = check_tasks(tasks)
        names = [t.name for t in self.tasks]
        if build_fn is None and inputs is None:
            raise ValueError(
                "Pass either `inputs` (and `trunk`) or `build_fn`."
            )
        if build_fn is not None and not callable(build_fn):
            raise TypeError(
                f"`build_fn` must be callable. Received: {build_fn!r}"
            )
        if inputs is not None:
            evaluation._fresh_inputs(inputs)  # validates
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
        tuned_tasks = names if tuned_tasks is None else list(tuned_tasks)
        unknown = sorted(set(tuned_tasks) - set(names))
        if unknown:
            raise ValueError(
                f"`tuned_tasks` names unknown tasks {unknown}. "
                f"Expected names among {names}."
            )
        if objective_metrics is None:
            objective_metrics = default_objective_metrics(self.tasks)
        elif objective_metrics == "loss":
            objective_metrics = {n: "loss" for n in names}
        elif isinstance(objective_metrics, dict):
            unknown = sorted(set(objective_metrics) - set(names))
            if unknown:
                raise ValueError(
                    f"`objective_metrics` names unknown tasks {unknown}. "
                    f"Expected names among {names}."
                )
        self.inputs = inputs
        self.trunk = trunk
        self.build_fn = build_fn
        self.sharing = sharing
        self.weighting = weighting
        self.optimizer = optimizer
        self.compile_kwargs = dict(compile_kwargs or {})
        self.loss_weight_range = (low, high)
        self.tuned_tasks = tuned_tasks
        self.weighting_methods = weighting_methods
        self.sharing_modes = sharing_modes
        self.weighting_search_space = weighting_search_space
        self.sharing_search_space = sharing_search_space
        self.objective_callback = MultiTaskObjective(
            objective_metrics,
            baselines=baselines,
            higher_is_better=higher_is_better,
            average=average,
        )
        self._weighting_choices = _Choices(
            "weighting",
            weighting_module,
            weighting_methods,
            {**WEIGHTING_SEARCH_SPACE, **(weighting_search_space or {})},
        )
        self._sharing_choices = _Choices(
            "sharing",
            sharing_module,
            sharing_modes,
            {**SHARING_SEARCH_SPACE, **(sharing_search_space or {})},
        )

    @property
    def objective(self):
        """The `keras_tuner.Objective` to pass to the tuner."""
        return self.objective_callback.objective

    def build(self, hp):
        low, high = self.loss_weight_range
        tasks = []
        for task in self.tasks:
            weight = None
            if task.name in self.tuned_tasks:
                weight = hp.Float(
                    f"loss_weight_{task.name}",
                    low,
                    high,
                    sampling="log",
                    default=min(max(task.loss_weight, low), high),
                )
            tasks.append(evaluation._copy_task(task, weight))
        if self.weighting_methods is None:
            weighting = evaluation._fresh_weighting(self.weighting)
        else:
            default = (
                self.weighting if isinstance(self.weighting, str) else None
            )
            weighting = self._weighting_choices.build(hp, default)
        if self.sharing_modes is None:
            sharing = self.sharing
        else:
            default = self.sharing if isinstance(self.sharing, str) else None
            sharing = self._sharing_choices.build(hp, default)
        if self.build_fn is not None:
            model = self.build_fn(tasks, sharing=sharing, weighting=weighting)
        else:
            model = evaluation._spec_builder(
                self.inputs, self.trunk, sharing, weighting
            )(tasks)
        if not isinstance(model, MTLModel):
            raise TypeError(
                "`build_fn` must return a keras_mtl.MTLModel. "
                f"Received: {type(model).__name__}"
            )
        if not model.compiled:
            model.compile(
                optimizer=evaluation._fresh_optimizer(self.optimizer),
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
                "`inputs`, `tasks` and `trunk` for one."
            )
        ser = keras.saving.serialize_keras_object
        objective = self.objective_callback
        return {
            "inputs": keras.tree.map_structure(
                lambda t: {
                    "batch_shape": list(t.shape),
                    "dtype": t.dtype,
                    "sparse": t.sparse,
                    "name": t._keras_history.operation.name,
                },
                self.inputs,
            ),
            "tasks": [t.get_config() for t in self.tasks],
            "trunk": self.trunk
            if self.trunk is None or isinstance(self.trunk, (list, tuple))
            else ser(self.trunk),
            "sharing": self.sharing
            if isinstance(self.sharing, str)
            else ser(self.sharing),
            "weighting": self.weighting
            if isinstance(self.weighting, str)
            else weighting_module.serialize(self.weighting),
            "optimizer": self.optimizer
            if isinstance(self.optimizer, str)
            else ser(self.optimizer),
            "compile_kwargs": self.compile_kwargs,
            "loss_weight_range": list(self.loss_weight_range),
            "tuned_tasks": list(self.tuned_tasks),
            "weighting_methods": self.weighting_methods,
            "sharing_modes": self.sharing_modes,
            "weighting_search_space": self.weighting_search_space,
            "sharing_search_space": self.sharing_search_space,
            "objective_metrics": objective.metrics,
            "baselines": objective.baselines,
            "higher_is_better": objective.higher_is_better,
            "average": objective.average,
            "name": self.name,
            "tunable": self.tunable,
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        des = keras.saving.deserialize_keras_object

        def is_spec(value):
            return isinstance(value, dict) and "batch_shape" in value

        config["inputs"] = keras.tree.traverse(
            lambda v: keras.Input(**v) if is_spec(v) else None,
            config["inputs"],
        )
        for key in ("trunk", "sharing", "optimizer"):
            if isinstance(config[key], dict):
                config[key] = des(config[key])
        if isinstance(config["weighting"], dict):
            config["weighting"] = weighting_module.deserialize(
                config["weighting"]
            )
        return cls(**config)
