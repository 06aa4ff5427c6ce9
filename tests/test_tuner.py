import copy
import importlib
import math
import sys

import keras
import keras_tuner as kt
import numpy as np
import pytest

import keras_mtl
from keras_mtl import evaluation
from keras_mtl import testing
from keras_mtl.tuner import MTLHyperModel
from keras_mtl.tuner import MultiTaskObjective

BASELINES = {
    "reg": {"mae": 1.0},
    "binary": {"accuracy": 0.5},
    "multi": {"accuracy": 0.25},
}


def _hypermodel(**kwargs):
    kwargs.setdefault("trunk", [8])
    return MTLHyperModel(
        keras.Input((8,), name="x"), testing.tiny_tasks(), **kwargs
    )


@keras.saving.register_keras_serializable(package="keras_mtl_test")
class ToyWeighting(keras_mtl.weighting.Weighting):
    """A weighting method registered after the tuner was imported."""

    def __init__(self, temperature=2.0, **kwargs):
        super().__init__(**kwargs)
        self.temperature = temperature

    def get_config(self):
        return {**super().get_config(), "temperature": self.temperature}


@pytest.fixture
def toy_registered(monkeypatch):
    """Registers ToyWeighting as "toy" for one test: in a registry copy."""
    registry = copy.deepcopy(keras_mtl.weighting.registry)
    monkeypatch.setattr(keras_mtl.weighting, "registry", registry)
    monkeypatch.setattr(keras_mtl.weighting, "register", registry.register)
    keras_mtl.weighting.register(ToyWeighting, name="toy")
    return registry


def _names(module):
    """Every name, alias and class name a registry module knows."""
    registry = getattr(module, "registry", None)
    if registry is not None:
        return set(registry.as_dict())
    return set(module.ALL_OBJECTS_DICT)


def _params(hp, name):
    return [p for p in hp.space if p.name == name]


def test_default_search_space():
    hypermodel = _hypermodel()
    hp = kt.HyperParameters()
    model = hypermodel.build(hp)
    assert hp.values == {
        "loss_weight_reg": 1.0,
        "loss_weight_binary": 1.0,
        "loss_weight_multi": 1.0,
    }
    for param in hp.space:
        assert isinstance(param, kt.engine.hyperparameters.Float)
        assert (param.min_value, param.max_value) == (0.1, 10.0)
        assert param.sampling == "log"
        assert not param.conditions
    assert isinstance(model, keras_mtl.MTLModel)
    assert isinstance(model.weighting, keras_mtl.weighting.EqualWeighting)
    assert model.compiled
    assert hypermodel.objective.name == "val_mean_log_metric"
    assert hypermodel.objective.direction == "max"


def test_loss_weights_reach_the_model():
    tasks = testing.tiny_tasks()
    tasks[1].loss_weight = 0.25
    hypermodel = MTLHyperModel(
        keras.Input((8,)),
        tasks,
        trunk=[8],
        tuned_tasks=["binary", "multi"],
        loss_weight_range=(0.01, 1.0),
    )
    hp = kt.HyperParameters()
    hypermodel.build(hp)
    assert hp.values == {"loss_weight_binary": 0.25, "loss_weight_multi": 1.0}
    hp.values["loss_weight_multi"] = 0.05
    model = hypermodel.build(hp)
    assert model._static_loss_weights == [1.0, 0.25, 0.05]
    x, y = testing.tiny_data(n=16)
    logs = model.evaluate(x, y, batch_size=16, return_dict=True, verbose=0)
    expected = logs["reg_loss"] + 0.25 * logs["binary_loss"]
    expected += 0.05 * logs["multi_loss"]
    assert logs["loss"] == pytest.approx(expected, rel=1e-5)
    # The hypermodel's own tasks are left alone.
    assert [t.loss_weight for t in tasks] == [1.0, 0.25, 1.0]


def test_weighting_and_sharing_choices_with_conditional_scopes(
    toy_registered,
):
    hypermodel = _hypermodel(
        weighting_methods="all",
        sharing_modes="all",
        weighting_search_space={
            "toy": {"temperature": {"min_value": 0.5, "max_value": 4.0}}
        },
    )
    hp = kt.HyperParameters()
    hypermodel.build(hp)
    # "fixed" needs its weights: it is left out. "toy" was registered after
    # the hypermodel was made and is picked up.
    (weighting,) = _params(hp, "weighting")
    assert "fixed" not in weighting.values
    assert weighting.values[0] == "equal"
    assert "toy" in weighting.values
    assert _params(hp, "sharing")[0].values[0] == "hard"
    names = _names(keras_mtl.sharing) | _names(keras_mtl.weighting)
    expected = {
        "loss_weight_reg": 1.0,
        "loss_weight_binary": 1.0,
        "loss_weight_multi": 1.0,
        "weighting": "equal",
        "sharing": "hard",
    }
    # Only the chosen methods' arguments are active; with the default
    # methods, none.
    active = {k: v for k, v in hp.values.items() if k.split("_")[0] in names}
    assert {k: hp.values[k] for k in expected} == expected
    assert all(k in expected for k in active)
    (temperature,) = _params(hp, "toy_temperature")
    assert temperature.conditions[0].name == "weighting"
    assert temperature.conditions[0].values == ["toy"]
    assert "toy_temperature" not in hp.values

    hp.values["weighting"] = "toy"
    hp.values["toy_temperature"] = 3.0
    model = hypermodel.build(hp)
    assert isinstance(model.weighting, ToyWeighting)
    assert model.weighting.temperature == 3.0


def test_explicit_choices_and_the_whole_space(toy_registered):
    hypermodel = _hypermodel(
        weighting="toy",
        weighting_methods=["equal", "toy"],
        sharing_modes=["hard"],
    )
    hp = kt.HyperParameters()
    hypermodel.build(hp)
    # The default method comes first and is the default value.
    assert hp.values == {
        "loss_weight_reg": 1.0,
        "loss_weight_binary": 1.0,
        "loss_weight_multi": 1.0,
        "weighting": "toy",
        "sharing": "hard",
    }
    assert _params(hp, "weighting")[0].values == ["toy", "equal"]
    # No range for "toy" here: its arguments keep their defaults.
    assert not _params(hp, "toy_temperature")


def test_objective_callback_numbers():
    callback = MultiTaskObjective(
        {"a": "accuracy", "b": "mae"},
        baselines={"a": {"accuracy": 0.8, "loss": 3.0}, "b": {"mae": 0.4}},
    )
    logs = {
        "a_accuracy": 0.9,
        "b_mae": 0.5,
        "val_a_accuracy": 0.6,
        "val_b_mae": 0.2,
    }
    callback.on_epoch_end(0, logs)
    assert logs["delta_m"] == pytest.approx(50 * (0.1 / 0.8 - 0.1 / 0.4))
    assert logs["val_delta_m"] == pytest.approx(50 * (-0.2 / 0.8 + 0.2 / 0.4))
    assert callback.objective.name == "val_delta_m"

    log_score = MultiTaskObjective({"a": "accuracy", "b": "mae"})
    logs = {"a_accuracy": 0.5, "b_mae": 2.0}
    log_score.on_epoch_end(0, logs)
    expected = 50 * (math.log(0.5) - math.log(2.0))
    assert logs["mean_log_metric"] == pytest.approx(expected)
    assert "val_mean_log_metric" not in logs
    # Scaling one task's metric shifts every model's score alike.
    scaled = {"a_accuracy": 0.5, "b_mae": 200.0}
    log_score.on_epoch_end(0, scaled)
    assert scaled["mean_log_metric"] - logs["mean_log_metric"] == pytest.approx(
        -50 * math.log(100)
    )
    with pytest.raises(ValueError, match=r"lack \['val_b_mae'\]"):
        log_score.on_epoch_end(0, {**logs, "val_a_accuracy": 0.5})
    with pytest.raises(ValueError, match=r"lack \['a_accuracy'\]"):
        log_score.on_epoch_end(0, {"b_mae": 2.0})
    single = MultiTaskObjective({"a": "accuracy"})
    logs = {"a_accuracy": 0.5, "loss": 1.0, "val_a_accuracy": 0.25}
    single.on_epoch_end(0, logs)
    assert logs["val_mean_log_metric"] == pytest.approx(100 * math.log(0.25))
    revived = MultiTaskObjective.from_config(callback.get_config())
    assert revived.get_config() == callback.get_config()


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"metrics": ["accuracy"]}, TypeError, "non-empty dict"),
        ({"metrics": {"a": "speed"}}, ValueError, "'speed'"),
        ({"metrics": {"a": "mae"}, "average": "max"}, ValueError, "average"),
        (
            {"metrics": {"a": "mae"}, "baselines": {"a": {"mse": 1.0}}},
            ValueError,
            "task 'a', metric 'mae'",
        ),
    ],
)
def test_objective_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        MultiTaskObjective(**kwargs)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"tuned_tasks": ["nope"]}, ValueError, "unknown tasks \\['nope'\\]"),
        ({"loss_weight_range": (0.0, 1.0)}, ValueError, "loss_weight_range"),
        ({"loss_weight_range": 3}, ValueError, "loss_weight_range"),
        ({"weighting_methods": ["nope"]}, ValueError, "Unknown weighting"),
        (
            {"weighting_methods": ["fixed"]},
            ValueError,
            "'fixed' needs.*weights",
        ),
        ({"sharing_modes": "hard"}, TypeError, "sharing"),
        (
            {"objective": MultiTaskObjective({"x": "mae"})},
            ValueError,
            "unknown tasks \\['x'\\]",
        ),
        ({"objective": "loss"}, TypeError, "MultiTaskObjective"),
        (
            {"objective": MultiTaskObjective({"reg": "mae"}), "baselines": {}},
            ValueError,
            "not beside it",
        ),
        ({"build_fn": lambda *a, **k: None}, ValueError, "exactly one of"),
        ({"spec": "x"}, ValueError, "exactly one of"),
        ({"baselines": {**BASELINES, "reg": {"mae": 0.0}}}, ValueError, "zero"),
        ({"build_fn": 3}, TypeError, "build_fn"),
    ],
)
def test_hypermodel_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        _hypermodel(**kwargs)


def _statuses(tuner):
    return [t.status for t in tuner.oracle.trials.values()]


def test_search_needs_validation_data(tmp_path):
    hypermodel = _hypermodel()
    tuner = kt.RandomSearch(
        hypermodel,
        objective=hypermodel.objective,
        max_trials=1,
        directory=str(tmp_path),
    )
    x, y = testing.tiny_data(n=16)
    # It stops the search: not a failed trial and a search that ends.
    with pytest.raises(ValueError, match="pass `validation_data="):
        tuner.search(x, y, epochs=1, verbose=0)
    assert _statuses(tuner) == ["RUNNING"]


@pytest.mark.parametrize(
    "objective, match",
    [
        (None, "no objective: pass `objective=hypermodel.objective`"),
        ("val_loss", r"tunes the weights of \['reg', 'binary', 'multi'\]"),
        (
            [kt.Objective("val_reg_mae", "min"), "val_loss"],
            "`val_loss` is the sum of the task losses",
        ),
        (
            kt.Objective("val_mean_log_metric", "min"),
            "`val_mean_log_metric` is to be maximised",
        ),
    ],
    ids=["none", "val_loss", "list_with_val_loss", "minimised"],
)
def test_search_refuses_objectives_it_cannot_score(objective, match, tmp_path):
    hypermodel = _hypermodel()
    tuner = kt.RandomSearch(
        hypermodel, objective=objective, max_trials=1, directory=str(tmp_path)
    )
    x, y = testing.tiny_data(n=16)
    with pytest.raises(ValueError, match=match):
        tuner.search(x, y, validation_data=(x, y), epochs=1, verbose=0)
    # Raised by the first trial's `fit`, before any training.
    assert _statuses(tuner) == ["RUNNING"]


def test_search_on_val_loss_with_fixed_loss_weights_warns(tmp_path):
    # Nothing that rescales the loss is tuned: `val_loss` compares trials,
    # a deliberate choice, with a warning about what it scores.
    hypermodel = _hypermodel(
        tuned_tasks=[],
        sharing_modes=["hard"],
        compile_kwargs={"run_eagerly": True},
    )
    tuner = kt.RandomSearch(
        hypermodel, objective="val_loss", max_trials=1, directory=str(tmp_path)
    )
    x, y = testing.tiny_data(n=16)
    x_val, y_val = testing.tiny_data(n=16, seed=1)
    with pytest.warns(UserWarning, match="largest loss scale dominates"):
        tuner.search(x, y, validation_data=(x_val, y_val), epochs=1, verbose=0)
    (trial,) = tuner.oracle.get_best_trials()
    assert trial.status == "COMPLETED"
    logs = tuner.get_best_models()[0].evaluate(
        x_val, y_val, batch_size=16, return_dict=True, verbose=0
    )
    total = logs["reg_loss"] + logs["binary_loss"] + logs["multi_loss"]
    assert trial.score == pytest.approx(logs["loss"], rel=1e-5)
    assert logs["loss"] == pytest.approx(total, rel=1e-5)


def test_check_tuner_objective_accepts_the_models_logs():
    hypermodel = _hypermodel()
    for objective in (
        hypermodel.objective,
        kt.Objective("mean_log_metric", "max"),
        kt.Objective("val_reg_mae", "min"),
        kt.Objective("val_reg_loss", "min"),
    ):
        assert hypermodel.check_tuner_objective(objective) is None


def test_hypermodel_needs_inputs_or_build_fn():
    with pytest.raises(ValueError, match="`inputs`"):
        MTLHyperModel(tasks=testing.tiny_tasks())


def test_build_fn_gets_tuned_tasks():
    calls = []

    def build_fn(tasks, sharing, weighting):
        calls.append(([t.loss_weight for t in tasks], sharing, weighting))
        return keras_mtl.build_mtl_model(
            keras.Input((8,)), tasks, [4], sharing=sharing, weighting=weighting
        )

    hypermodel = MTLHyperModel(
        tasks=testing.tiny_tasks(), build_fn=build_fn, optimizer="sgd"
    )
    hp = kt.HyperParameters()
    hypermodel.build(hp)
    hp.values["loss_weight_reg"] = 2.0
    model = hypermodel.build(hp)
    assert calls[-1][0] == [2.0, 1.0, 1.0]
    assert isinstance(model.optimizer, keras.optimizers.SGD)
    with pytest.raises(NotImplementedError, match="build_fn"):
        hypermodel.get_config()


def test_config_round_trip():
    hypermodel = _hypermodel(
        trunk=keras.layers.Dense(4, name="trunk"),
        baselines=BASELINES,
        weighting_methods=["equal"],
        optimizer=keras.optimizers.SGD(0.05),
    )
    config = hypermodel.get_config()
    revived = MTLHyperModel.from_config(config)
    assert revived.get_config() == config
    hp = kt.HyperParameters()
    model = revived.build(hp)
    assert model.get_layer("trunk").units == 4
    assert float(model.optimizer.learning_rate) == pytest.approx(0.05)
    assert revived.objective.name == "val_delta_m"


def test_objective_argument():
    objective = MultiTaskObjective(
        {"reg": "mae", "multi": ["accuracy", "loss"]},
        baselines={
            "reg": {"mae": 2.0},
            "multi": {"accuracy": 0.5, "loss": 1.0},
        },
        average="tasks",
        name="score",
    )
    hypermodel = _hypermodel(objective=objective)
    assert hypermodel.objective_callback is objective
    assert hypermodel.objective.name == "val_score"
    logs = {
        "reg_mae": 2.0,
        "multi_accuracy": 0.5,
        "multi_loss": 1.0,
        "val_reg_mae": 1.0,
        "val_multi_accuracy": 0.75,
        "val_multi_loss": 2.0,
        "val_binary_accuracy": 0.1,
    }
    objective.on_epoch_end(0, logs)
    # reg: +50%; multi: mean of +50% (accuracy) and -100% (loss); binary is
    # not scored.
    assert logs["val_score"] == pytest.approx((50.0 + (50.0 - 100.0) / 2) / 2)
    assert logs["score"] == pytest.approx(0.0)
    revived = MTLHyperModel.from_config(hypermodel.get_config())
    assert revived.objective_callback.get_config() == objective.get_config()
    assert revived.objective.name == "val_score"


def test_spec_argument():
    spec = keras_mtl.evaluation.ModelSpec(
        keras.Input((8,), name="x"),
        trunk=[8],
        weighting=keras_mtl.weighting.DynamicWeightAverage(temperature=3.0),
        optimizer=keras.optimizers.SGD(0.1),
    )
    hypermodel = MTLHyperModel(tasks=testing.tiny_tasks(), spec=spec)
    hp = kt.HyperParameters()
    first, second = hypermodel.build(hp), hypermodel.build(hp)
    for model in (first, second):
        assert model.input.name == "x"
        assert float(model.optimizer.learning_rate) == pytest.approx(0.1)
        assert model.weighting.temperature == 3.0
        assert model.weighting is not spec.weighting
    assert first.weighting is not second.weighting
    assert first.optimizer is not second.optimizer
    assert {id(v) for v in first.weights}.isdisjoint(
        id(v) for v in second.weights
    )
    config = hypermodel.get_config()
    assert MTLHyperModel.from_config(config).get_config() == config
    with pytest.raises(ValueError, match=r"\['sharing'\] go with `inputs`"):
        MTLHyperModel(tasks=testing.tiny_tasks(), spec=spec, sharing="mmoe")
    with pytest.raises(TypeError, match="ModelSpec"):
        MTLHyperModel(tasks=testing.tiny_tasks(), spec={"inputs": None})
    with pytest.raises(ValueError, match="`trunk` goes with `inputs`"):
        MTLHyperModel(tasks=testing.tiny_tasks(), spec=spec, trunk=[4])


def test_search_spaces_are_declared_by_each_class():
    hypermodel = _hypermodel(
        weighting_methods=["dwa", "cagrad"],
        sharing_modes=["hard", "mmoe"],
        weighting_search_space={
            # Keyed by another alias of DWA's class: still its range.
            "dynamic_weight_average": {
                "temperature": {"min_value": 1.0, "max_value": 4.0}
            }
        },
    )
    hp = kt.HyperParameters()
    hypermodel.build(hp)
    (temperature,) = _params(hp, "dwa_temperature")
    assert (temperature.min_value, temperature.max_value) == (1.0, 4.0)
    assert temperature.sampling == "linear"
    (c,) = _params(hp, "cagrad_c")
    expected = keras_mtl.weighting.CAGrad.search_space["c"]
    assert (c.min_value, c.max_value, c.default) == (
        expected["min_value"],
        expected["max_value"],
        expected["default"],
    )
    (experts,) = _params(hp, "mmoe_num_experts")
    assert experts.values == [2, 4, 8]
    assert experts.default == 4
    # The old module tables are read-only views of the classes' spaces.
    views = keras_mtl.tuner.WEIGHTING_SEARCH_SPACE
    assert views["cagrad"] == keras_mtl.weighting.CAGrad.search_space
    mmoe = keras_mtl.sharing.MMoESharing
    assert keras_mtl.tuner.SHARING_SEARCH_SPACE["mmoe"] == mmoe.search_space
    with pytest.raises(TypeError):
        views["cagrad"] = {}
    assert "WEIGHTING_SEARCH_SPACE" not in keras_mtl.tuner.__all__


@pytest.mark.parametrize(
    "tuner_cls, tuner_kwargs",
    [
        (kt.RandomSearch, {"max_trials": 2}),
        # The other two tuners run the same objective: with -m slow.
        pytest.param(
            kt.BayesianOptimization,
            {"max_trials": 2, "num_initial_points": 1},
            marks=pytest.mark.slow,
        ),
        pytest.param(
            kt.Hyperband,
            {"max_epochs": 2, "factor": 3, "hyperband_iterations": 1},
            marks=pytest.mark.slow,
        ),
    ],
    ids=["random", "bayesian", "hyperband"],
)
def test_tuners_optimise_delta_m(tuner_cls, tuner_kwargs, tmp_path):
    x, y = testing.tiny_data(n=64)
    x_val, y_val = testing.tiny_data(n=32, seed=1)
    # Eager trials: tracing the train function of a tiny model costs more
    # than the trial.
    hypermodel = _hypermodel(
        baselines=BASELINES, compile_kwargs={"run_eagerly": True}
    )
    tuner = tuner_cls(
        hypermodel,
        objective=hypermodel.objective,
        directory=str(tmp_path),
        project_name="tiny",
        seed=3,
        **tuner_kwargs,
    )
    # Hyperband chooses the epochs: 2 trials of 2 epochs here.
    fit_kwargs = {} if tuner_cls is kt.Hyperband else {"epochs": 1}
    tuner.search(
        x,
        y,
        validation_data=(x_val, y_val),
        batch_size=16,
        verbose=0,
        **fit_kwargs,
    )
    trials = tuner.oracle.get_best_trials(num_trials=10)
    assert len(trials) >= 2
    weights = {t.hyperparameters.values["loss_weight_reg"] for t in trials}
    assert len(weights) >= 2
    scores = [t.score for t in trials]
    assert scores == sorted(scores, reverse=True)

    best = tuner.get_best_models()[0]
    assert isinstance(best, keras_mtl.MTLModel)
    best_hp = trials[0].hyperparameters.values
    assert best._static_loss_weights == pytest.approx(
        [best_hp[f"loss_weight_{n}"] for n in best.task_names]
    )
    # The trial's score is Delta_m of its best epoch on the validation
    # data, the one whose weights were kept.
    results = evaluation.evaluate_tasks(best, x_val, y_val, batch_size=16)
    assert evaluation.delta_m(results, BASELINES) == pytest.approx(
        trials[0].score, rel=1e-4, abs=1e-4
    )
    # The scored metrics are those of the best model's predictions.
    predictions = best.predict(x_val, batch_size=16, verbose=0)
    assert np.mean(np.abs(predictions["reg"] - y_val["reg"])) == pytest.approx(
        results["reg"]["mae"], rel=1e-5
    )
    predicted = np.argmax(predictions["multi"], axis=1)
    assert np.mean(predicted == y_val["multi"]) == pytest.approx(
        results["multi"]["accuracy"], abs=1e-6
    )
    testing.assert_allclose(predictions["multi"].sum(axis=1), 1.0, atol=1e-5)
    # The best model is a plain MTLModel: it saves, loads and trains on.
    loaded = testing.run_model_saving_test(
        best, x_val, str(tmp_path / "best.keras")
    )
    loaded.fit(x, y, epochs=1, batch_size=32, verbose=0)


def test_missing_keras_tuner_names_the_extra(monkeypatch):
    monkeypatch.delitem(sys.modules, "keras_mtl.tuner")
    monkeypatch.setitem(sys.modules, "keras_tuner", None)
    with pytest.raises(ImportError, match=r"keras-mtl\[tuner\]"):
        importlib.import_module("keras_mtl.tuner")


@pytest.mark.parametrize("kind", ["weighting", "sharing"])
def test_every_registered_method_builds(kind):
    # Whatever the registries hold when the test runs: methods merged later
    # are covered too, with their default and a random sampled argument set.
    hypermodel = _hypermodel(weighting_methods="all", sharing_modes="all")
    space = kt.HyperParameters()
    hypermodel.build(space)
    names = _params(space, kind)[0].values
    assert names[0] == {"weighting": "equal", "sharing": "hard"}[kind]
    for name in names:
        for sample in (False, True):
            hp = kt.HyperParameters()
            hp.values[kind] = name
            hypermodel.build(hp)
            if sample:
                hp.merge(space, overwrite=False)
                for param in hp.space:
                    if param.name.startswith(f"{name}_") and hp.is_active(
                        param
                    ):
                        hp.values[param.name] = param.random_sample(seed=1)
            model = hypermodel.build(hp)
            assert isinstance(model, keras_mtl.MTLModel)
            if kind == "weighting":
                registry = keras_mtl.weighting.registry
                assert type(model.weighting) is registry[name]
                for param in hp.space:
                    if param.name.startswith(f"{name}_") and hp.is_active(
                        param
                    ):
                        argument = param.name[len(name) + 1 :]
                        value = getattr(model.weighting, argument)
                        expected = hp.values[param.name]
                        if isinstance(expected, str):
                            assert value == expected
                        else:
                            assert value == pytest.approx(expected)


@pytest.mark.slow
def test_search_under_mirrored_strategy():
    out = testing.run_with_devices(
        """
        import tempfile

        import keras
        import keras_tuner as kt

        from keras_mtl import evaluation
        from keras_mtl import testing
        from keras_mtl.tuner import MTLHyperModel

        x, y = testing.tiny_data(n=64)
        x_val, y_val = testing.tiny_data(n=32, seed=1)
        hypermodel = MTLHyperModel(
            keras.Input((8,), name="x"), testing.tiny_tasks(), trunk=[8]
        )
        tuner = kt.RandomSearch(
            hypermodel,
            objective=hypermodel.objective,
            max_trials=2,
            directory=tempfile.mkdtemp(),
            distribution_strategy=tf.distribute.MirroredStrategy(),
        )
        tuner.search(
            x, y, validation_data=(x_val, y_val), epochs=1, batch_size=16,
            verbose=0,
        )
        best = tuner.get_best_models()[0]
        trial = tuner.oracle.get_best_trials()[0]
        results = evaluation.evaluate_tasks(best, x_val, y_val, batch_size=16)
        score = hypermodel.objective_callback.score(results)
        print(best.distribute_strategy.num_replicas_in_sync, trial.score, score)
        """
    )
    replicas, trial_score, score = out.split()[-3:]
    assert int(replicas) == 2
    assert float(trial_score) == pytest.approx(float(score), rel=1e-4)


@pytest.mark.slow
def test_search_over_every_weighting_and_sharing(tmp_path):
    x, y = testing.tiny_data(n=64)
    x_val, y_val = testing.tiny_data(n=32, seed=1)
    hypermodel = _hypermodel(
        weighting_methods="all",
        sharing_modes="all",
        compile_kwargs={"run_eagerly": True},
    )
    tuner = kt.RandomSearch(
        hypermodel,
        objective=hypermodel.objective,
        max_trials=6,
        directory=str(tmp_path),
        seed=2,
    )
    tuner.search(
        x, y, validation_data=(x_val, y_val), epochs=1, batch_size=16, verbose=0
    )
    trials = tuner.oracle.get_best_trials(num_trials=6)
    assert len(trials) == 6
    assert all(np.isfinite(t.score) for t in trials)
    best = tuner.get_best_models()[0]
    values = trials[0].hyperparameters.values
    registry = keras_mtl.weighting.registry
    assert type(best.weighting) is registry[values["weighting"]]
    results = evaluation.evaluate_tasks(best, x_val, y_val, batch_size=16)
    score = hypermodel.objective_callback.score(results)
    assert score == pytest.approx(trials[0].score, rel=1e-4, abs=1e-4)
