"""`MTLHyperModel`: a keras-tuner HyperModel of multi-task models."""

import warnings

import keras
import keras_tuner

from keras_mtl import evaluation
from keras_mtl import sharing as sharing_module
from keras_mtl import weighting as weighting_module
from keras_mtl.evaluation.model_spec import exactly_one
from keras_mtl.evaluation.model_spec import fresh_optimizer
from keras_mtl.evaluation.model_spec import fresh_weighting
from keras_mtl.model import MTLModel
from keras_mtl.structure import check_tasks
from keras_mtl.tasks import Task
from keras_mtl.tuner.objective import MultiTaskObjective
from keras_mtl.tuner.objective import default_objective_metrics
from keras_mtl.tuner.search_space import Choices

# Logs whose value is the sum of the task losses times the loss weights.
_SUMMED_LOSSES = ("loss", "val_loss")


def _members(objective):
    """The objectives of a keras-tuner (multi-)objective."""
    return list(getattr(objective, "objectives", None) or [objective])


def _running_tuner_objective(callbacks):
    """The objective of the tuner whose callbacks these are, if any."""
    # `Tuner.run_trial` adds a callback holding the tuner to every fit.
    for callback in callbacks:
        tuner = getattr(callback, "tuner", None)
        if isinstance(tuner, keras_tuner.Tuner):
            return tuner.oracle.objective
    return None


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
    `get_best_models()` returns `MTLModel`s. Before the first trial trains,
    `fit` stops the search with a `ValueError` if the tuner has no
    objective, or scores `val_loss` while loss weights are tuned (see
    `check_tuner_objective`), or if there is no validation data.

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
        self._weighting_choices = Choices(
            "weighting",
            weighting_module,
            weighting_methods,
            weighting_search_space,
        )
        self._sharing_choices = Choices(
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
        """Fits `model`, with the objective callback first in line.

        Under a tuner, the tuner's objective is checked first (see
        `check_tuner_objective`); the errors raised are
        `keras_tuner.errors.FatalValueError`s, which are `ValueError`s that
        stop the search rather than fail one trial after another.

        Args:
            hp: `keras_tuner.HyperParameters` of the trial.
            model: the `MTLModel` that `build(hp)` returned.
            *args: passed to `model.fit`.
            **kwargs: passed to `model.fit`, with `callbacks` (the tuner's
                among them) after the objective callback.

        Returns:
            The `keras.callbacks.History` of `model.fit`.

        Raises:
            ValueError: if the tuner's objective is not one this
                hypermodel can score, or if there is no `validation_data`
                (nor `validation_split`) for an objective on validation
                data.
        """
        callbacks = list(kwargs.pop("callbacks", None) or [])
        objective = _running_tuner_objective(callbacks)
        if objective is not None:
            self.check_tuner_objective(objective)
        needs_validation = objective is None or any(
            o.name.startswith("val_") for o in _members(objective)
        )
        if (
            needs_validation
            and kwargs.get("validation_data") is None
            and not kwargs.get("validation_split")
        ):
            name = self.objective.name if objective is None else objective.name
            raise keras_tuner.errors.FatalValueError(
                f"The objective `{name}` is computed on validation data: "
                "pass `validation_data=` (or `validation_split=`) to "
                "`tuner.search`."
            )
        callbacks.insert(0, self.objective_callback)
        return model.fit(*args, callbacks=callbacks, **kwargs)

    def check_tuner_objective(self, objective):
        """Checks that a tuner's objective is one this hypermodel can score.

        `fit` calls it with the objective of the tuner running the trial,
        before training: a mistake stops the search at its first trial.
        Any log of the models is accepted (`val_<task>_<metric>`, ...),
        except:

        - no objective (keras-tuner's default, which expects `fit` to
          return one float): an error, pass `objective=hypermodel.objective`;
        - the score of `hypermodel.objective` (with or without `val_`)
          with `direction="min"`: an error;
        - `loss` or `val_loss` (also as members of a list objective): the
          sum of the task losses times the trial's loss weights, so when
          loss weights are tuned (`tuned_tasks`, by default all tasks) the
          smallest weights would win: an error. With `tuned_tasks=[]` the
          weights are fixed and the sum is comparable across trials:
          allowed, with a warning that the task with the largest loss
          scale dominates it.

        Args:
            objective: `keras_tuner.Objective`, e.g. `tuner.oracle.objective`.

        Raises:
            ValueError: in the cases above (as
                `keras_tuner.errors.FatalValueError`).

        Example:

        ```python
        hypermodel.check_tuner_objective(tuner.oracle.objective)
        ```
        """
        expected = self.objective
        # keras-tuner's `DefaultObjective`, the one of a tuner made without.
        if objective.name == "default_objective":
            raise keras_tuner.errors.FatalValueError(
                "The tuner has no objective: pass "
                "`objective=hypermodel.objective` (here "
                f"`{expected.name}`, maximised) to the tuner."
            )
        for member in _members(objective):
            scores = (expected.name, expected.name.removeprefix("val_"))
            if member.name in scores and member.direction != "max":
                raise keras_tuner.errors.FatalValueError(
                    f"`{member.name}` is to be maximised; the tuner "
                    "minimises it. Pass `objective=hypermodel.objective`."
                )
            if member.name not in _SUMMED_LOSSES:
                continue
            if self.tuned_tasks:
                raise keras_tuner.errors.FatalValueError(
                    f"The tuner's objective `{member.name}` is the sum of "
                    "the task losses times their loss weights, and this "
                    f"hypermodel tunes the weights of {self.tuned_tasks}: "
                    "the smallest weights would win. Pass "
                    f"`objective=hypermodel.objective` (`{expected.name}`), "
                    "or `tuned_tasks=[]` to keep every task's loss weight."
                )
            warnings.warn(
                f"The tuner's objective `{member.name}` scores the sum of "
                "the task losses times their (fixed) loss weights, which "
                "the task with the largest loss scale dominates. "
                f"`hypermodel.objective` (`{expected.name}`) does not.",
                stacklevel=2,
            )

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
