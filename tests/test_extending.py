"""The worked examples of docs/extending.md, and its weight-scale table.

The examples are loaded from `docs/examples/` (they register themselves;
the registries are restored afterwards, since other tests list them).
Every row of the table "What `<task>_weight` means" is checked on a tiny
model trained four steps (three with every task labelled, one with a task
absent), against numbers worked out from the task losses and the Gram
matrix of the task gradients.
"""

import importlib.util
import pathlib
import re
import sys
import types

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_mtl
from keras_mtl import testing

DOCS = pathlib.Path(__file__).resolve().parent.parent / "docs"
EXAMPLES = DOCS / "examples"
GUIDE = DOCS / "extending.md"
TASKS = ["reg", "binary", "multi"]
NUM_EXAMPLES = 32
# The built-in methods (read before any example registers itself).
METHODS = keras_mtl.weighting.registry.names()


@pytest.fixture
def examples():
    """The example modules, importable by name while the tests run."""
    registries = [keras_mtl.weighting.registry, keras_mtl.sharing.registry]
    # The registry has no public way to unregister: restore its contents.
    saved = [(dict(r._classes), list(r._canonical)) for r in registries]
    modules = {}
    sys.path.insert(0, str(EXAMPLES))
    try:
        for path in sorted(EXAMPLES.glob("*.py")):
            spec = importlib.util.spec_from_file_location(path.stem, path)
            module = importlib.util.module_from_spec(spec)
            sys.modules[path.stem] = module
            spec.loader.exec_module(module)
            modules[path.stem] = module
        yield types.SimpleNamespace(**modules)
    finally:
        sys.path.remove(str(EXAMPLES))
        for name in modules:
            sys.modules.pop(name, None)
        for registry, (classes, canonical) in zip(registries, saved):
            registry._classes.clear()
            registry._classes.update(classes)
            registry._canonical[:] = canonical


def _without(y, absent):
    """Labels with every label of the `absent` tasks missing."""
    y = dict(y)
    for name in absent:
        missing = -1 if name == "multi" else np.nan
        y[name] = np.full_like(y[name], missing)
    return y


def _fit(model, x, y, epochs=1):
    """Full-batch fit: one step per epoch; the history by key."""
    history = model.fit(
        x, y, batch_size=NUM_EXAMPLES, epochs=epochs, shuffle=False, verbose=0
    )
    return history.history


def _weights(history):
    """`(steps, T)` logged weights of a full-batch history."""
    return np.array([history[f"{name}_weight"] for name in TASKS]).T


def _losses_and_gram(model, x, y):
    """Task losses (static weights applied) and the Gram matrix of their
    gradients at `model.shared_variables`, by hand, in float64."""
    shared = model.shared_variables
    with tf.GradientTape(persistent=True) as tape:
        shares = model.compute_task_losses(y, model(x, training=True))
        losses = [
            share * weight
            for share, weight in zip(shares, model.static_loss_weights)
        ]
    rows = []
    for loss in losses:
        grads = tape.gradient(loss, shared)
        rows.append(
            np.concatenate(
                [
                    np.zeros(v.shape).ravel()
                    if g is None
                    else g.numpy().ravel()
                    for g, v in zip(grads, shared)
                ]
            )
        )
    del tape
    jacobian = np.stack(rows).astype("float64")
    return np.array([float(v) for v in losses]), jacobian @ jacobian.T


# --- a. a loss-level method ----------------------------------------------


def test_inverse_initial_loss_by_hand(examples, tmp_path):
    cls = examples.inverse_initial_loss.InverseInitialLossWeighting
    x, y = testing.tiny_data(n=NUM_EXAMPLES)
    model = testing.tiny_model(weighting="inverse_initial_loss")
    method = model.weighting
    assert type(method) is cls

    # Step 1, "binary" unlabelled: weight 0, and its L(0) waits.
    losses_0, _ = _losses_and_gram(model, x, _without(y, ["binary"]))
    history = _fit(model, x, _without(y, ["binary"]))
    # Its logged weight is NaN: the mean over no step.
    testing.assert_allclose(_weights(history)[0], [1.0, np.nan, 1.0])
    testing.assert_allclose(
        method.initial_losses, [losses_0[0], 0.0, losses_0[2]], rtol=1e-5
    )
    # Step 2, all labelled: L(0) / L for the others, 1 for "binary".
    losses_1, _ = _losses_and_gram(model, x, y)
    history = _fit(model, x, y)
    expected = np.array(
        [losses_0[0] / losses_1[0], 1.0, losses_0[2] / losses_1[2]]
    )
    assert not np.allclose(expected, 1.0, atol=1e-3)
    testing.assert_allclose(_weights(history)[0], expected, rtol=1e-4)
    testing.assert_allclose(
        method.initial_losses,
        [losses_0[0], losses_1[1], losses_0[2]],
        rtol=1e-5,
    )
    testing.assert_allclose(
        history["weighted_loss"][0], np.sum(expected * losses_1), rtol=1e-4
    )
    # Evaluation records nothing.
    model.evaluate(x, _without(y, ["reg"]), verbose=0)
    testing.assert_allclose(
        method.initial_losses,
        [losses_0[0], losses_1[1], losses_0[2]],
        rtol=1e-5,
    )

    loaded = testing.run_model_saving_test(model, x, tmp_path / "m.keras")
    assert type(loaded.weighting) is cls
    config = keras_mtl.weighting.serialize(loaded.weighting)
    assert config["registered_name"] == "my_package>" + cls.__name__


def test_inverse_initial_loss_config(examples):
    cls = examples.inverse_initial_loss.InverseInitialLossWeighting
    assert keras_mtl.weighting.registry.name_of(cls) == "inverse_initial_loss"
    assert type(keras_mtl.weighting.get("inverse_initial")) is cls
    method = cls(power=0.5, epsilon=1e-6, name="inverse")
    revived = testing.run_serialization_test(method)
    assert (revived.power, revived.epsilon) == (0.5, 1e-6)
    revived = keras_mtl.weighting.get(keras_mtl.weighting.serialize(method))
    assert revived.get_config() == method.get_config()
    with pytest.raises(ValueError, match="Received: power=-1"):
        cls(power=-1)
    # power = 0.5 on fixed losses: sqrt(L(0) / L) after the first step.
    method = cls(power=0.5)
    testing.run_weighting_test(method, [2.0, 8.0], expected_total=10.0)
    total, weights = method(keras.ops.convert_to_tensor([0.5, 2.0]))
    testing.assert_allclose(weights, [2.0, 2.0])
    testing.assert_allclose(total, 2.0 * 0.5 + 2.0 * 2.0)


# --- b. a gradient-level method ------------------------------------------


def _unit_sum_weights(gram, present, keep_scale=True):
    norms = np.sqrt(np.diag(gram))
    weights = np.where(present, 1.0 / np.where(present, norms, 1.0), 0.0)
    return weights * (norms[present].mean() if keep_scale else 1.0)


def test_normalized_gradient_sum_by_hand(examples, tmp_path):
    cls = examples.normalized_gradient_sum.NormalizedGradientSum
    x, y = testing.tiny_data(n=NUM_EXAMPLES)
    model = testing.tiny_model(weighting="normalized_gradient_sum")
    assert type(model.weighting) is cls

    _, gram = _losses_and_gram(model, x, y)
    history = _fit(model, x, y)
    expected = _unit_sum_weights(gram, np.ones(3, bool))
    testing.assert_allclose(_weights(history)[0], expected, rtol=1e-4)
    testing.assert_allclose(model.weighting.task_weights, expected, rtol=1e-4)
    # The update has the mean gradient norm in every task's direction.
    projections = gram @ expected / np.sqrt(np.diag(gram))
    assert projections.min() > 0

    absent = _without(y, ["binary"])
    _, gram = _losses_and_gram(model, x, absent)
    assert gram[1, 1] == 0.0
    history = _fit(model, x, absent)
    expected = _unit_sum_weights(gram, np.array([True, False, True]))
    assert expected[1] == 0.0
    expected[1] = np.nan  # logged: the mean over no step
    testing.assert_allclose(_weights(history)[0], expected, rtol=1e-4)

    loaded = testing.run_model_saving_test(model, x, tmp_path / "m.keras")
    assert type(loaded.weighting) is cls


def test_normalized_gradient_sum_combine(examples):
    cls = examples.normalized_gradient_sum.NormalizedGradientSum
    assert type(keras_mtl.weighting.get("ngs")) is cls
    method = cls(keep_scale=False, mode="rep")
    revived = testing.run_serialization_test(method)
    assert (revived.keep_scale, revived.mode) == (False, "rep")
    assert revived.gradients == "representation"
    with pytest.raises(TypeError, match="Received: keep_scale=1"):
        cls(keep_scale=1)
    method.set_tasks(["a", "b", "c"])
    gram = np.array([[4.0, -1.0, 0.0], [-1.0, 9.0, 0.0], [0.0, 0.0, 0.0]])
    losses = tf.ones((3,))
    present = tf.constant([True, True, False])
    weights = method.gradient_weights(gram, losses, 0, present)
    testing.assert_allclose(weights, [1 / 2, 1 / 3, 0.0])
    method = cls()
    method.set_tasks(["a", "b", "c"])
    weights = method.gradient_weights(gram, losses, 0, present)
    testing.assert_allclose(weights, [2.5 / 2, 2.5 / 3, 0.0])


# --- c. a sharing scheme --------------------------------------------------


def test_shared_private_sharing(examples, tmp_path):
    cls = examples.shared_private.SharedPrivateSharing
    assert type(keras_mtl.sharing.get("shared_private")) is cls
    x, y = testing.tiny_data(n=NUM_EXAMPLES)
    model = testing.tiny_model(
        weighting="normalized_gradient_sum",
        sharing=cls(private_units=3),
        trunk=(5,),
    )
    assert [v.path for v in model.shared_variables] == [
        "trunk_dense_0/kernel",
        "trunk_dense_0/bias",
    ]
    assert model.shared_representation is None
    for name in TASKS:
        paths = [v.path for v in model.task_variables[name]]
        assert f"{name}_private/kernel" in paths, paths
        private = model.get_layer(f"{name}_private")
        assert tuple(private.kernel.shape) == (8, 3)
    assert tuple(model.get_layer("reg").kernel.shape) == (5 + 3, 1)

    # A task never labelled: its private layer gets no gradient (and so,
    # before any step with labels, no Adam momentum); the trunk moves.
    private = model.get_layer("binary_private").kernel.numpy().copy()
    trunk = model.shared_variables[0].numpy().copy()
    _fit(model, x, _without(y, ["binary"]), epochs=2)
    testing.assert_allclose(
        model.get_layer("binary_private").kernel, private, atol=0, rtol=0
    )
    assert np.abs(model.shared_variables[0].numpy() - trunk).max() > 1e-3

    # Gradient methods combine the trunk's gradients only (param mode).
    _, gram = _losses_and_gram(model, x, y)
    history = _fit(model, x, y)
    expected = _unit_sum_weights(gram, np.ones(3, bool))
    testing.assert_allclose(_weights(history)[0], expected, rtol=1e-4)

    testing.run_model_saving_test(model, x, tmp_path / "m.keras")


def test_shared_private_config(examples):
    cls = examples.shared_private.SharedPrivateSharing
    scheme = cls(private_units=6)
    assert repr(scheme) == "SharedPrivateSharing(private_units=6)"
    config = keras_mtl.sharing.serialize(scheme)
    assert config["registered_name"] == "my_package>SharedPrivateSharing"
    assert keras_mtl.sharing.deserialize(config).private_units == 6
    assert keras_mtl.sharing.registry.name_of(cls) == "shared_private"
    with pytest.raises(ValueError, match="Received: private_units=0"):
        cls(private_units=0)


# --- what `<task>_weight` means, for every registered method ---------------

FIXED = {"reg": 1.0, "binary": 0.5, "multi": 2.0}
# Steps 1-3 with every task labelled, step 4 without "binary" labels.
PRESENT = [np.ones(3, bool)] * 3 + [np.array([True, False, True])]


def _check_equal(step, steps):
    testing.assert_allclose(step.weights, step.present * 1.0)


def _check_fixed(step, steps):
    fixed = np.array([FIXED[name] for name in TASKS])
    testing.assert_allclose(step.weights, step.present * fixed)


def _check_uncertainty(step, steps):
    # exp(-s_i), no 1/2 factor: 1 at s = 0, no fixed sum.
    expected = np.exp(-step.state["log_variances"]) * step.present
    testing.assert_allclose(step.weights, expected, rtol=1e-5)


def _check_dwa(step, steps):
    if step.index < 2:
        testing.assert_allclose(step.weights, np.ones(3))
        return
    # Epoch averages: one step per epoch, so the losses of those steps.
    ratios = steps[step.index - 1].losses / steps[step.index - 2].losses
    softmax = np.exp(ratios / 2.0) / np.exp(ratios / 2.0).sum()
    # T softmax, the absent task's share not given to the others.
    testing.assert_allclose(step.weights, 3 * softmax * step.present, 1e-5)


def _check_random_loss(step, steps):
    total = step.weights.sum()
    if step.present.all():
        testing.assert_allclose(total, 1.0, rtol=1e-5)
    else:  # the absent task's draw is dropped, not renormalised
        assert 0.0 < total < 1.0, step.weights


def _check_grad_norm(step, steps):
    # The weights before the step; they sum to T (the present ones keep
    # their sum, the absent one waits).
    weights = step.state["task_weights"]
    testing.assert_allclose(step.weights, weights * step.present, 1e-5)
    testing.assert_allclose(weights.sum(), 3.0, rtol=1e-5)


def _check_loss_balanced(step, steps):
    # T r_i^alpha / sum_present r_j^alpha, r_i = L_i / L_i(0), L_i(0) the
    # first present step of the epoch (here every step).
    first = step.present & (step.state["epoch_steps"] == 0)
    initial = np.where(first, step.losses, step.state["initial_losses"])
    powered = np.sqrt(step.losses / initial) * step.present
    testing.assert_allclose(step.weights, 3 * powered / powered.sum(), 1e-5)


def _check_dtp(step, steps):
    # -(1 - k)^2 log k of the smoothed KPI, 1 before it is known (the
    # first epoch, and "reg", which logs no accuracy); no fixed sum.
    kpis = np.clip(step.state["kpis"], 1e-3, 1 - 1e-3)
    focal = -((1 - kpis) ** 2) * np.log(kpis)
    known = step.state["kpis_known"] > 0
    expected = np.where(known, focal, 1.0) * step.present
    testing.assert_allclose(step.weights, expected, rtol=1e-5)
    assert known[1:].all() == (step.index > 0) and not known[0]


def _check_famo(step, steps):
    z = np.exp(step.state["logits"]) * step.present
    scaled = z / (step.losses + 1e-8) * step.present
    testing.assert_allclose(step.weights, scaled / scaled.sum(), rtol=1e-4)


def _present_gram(step):
    keep = step.present
    return step.gram[np.ix_(keep, keep)], step.weights[keep]


def _check_mgda(step, steps):
    gram, weights = _present_gram(step)
    testing.assert_allclose(weights.sum(), 1.0, rtol=1e-5)
    assert (weights >= 0).all(), weights
    # The min-norm point of the simplex: (G w)_i >= w^T G w for every i.
    assert (gram @ weights >= weights @ gram @ weights * (1 - 1e-3)).all()


def _check_pcgrad(step, steps):
    # Projections only add: each weight >= 1, and exactly 1 without
    # conflicts, so the sum is >= T.
    _, weights = _present_gram(step)
    assert (weights >= 1.0 - 1e-6).all(), weights


def _check_cagrad(step, steps):
    c = 0.4
    gram, weights = _present_gram(step)
    mean = np.full(len(weights), 1.0 / len(weights))
    extra = weights * (1 + c**2) - mean
    assert (extra >= -1e-6).all(), extra
    # (1 + c^2) d = g_0 + c ||g_0|| g_w / ||g_w||.
    testing.assert_allclose(
        extra @ gram @ extra, c**2 * (mean @ gram @ mean), rtol=1e-3
    )


def _check_imtl_g(step, steps):
    gram, weights = _present_gram(step)
    testing.assert_allclose(weights.sum(), 1.0, rtol=1e-5)
    # d has the same projection on every unit task gradient.
    projections = gram @ weights / np.sqrt(np.diag(gram))
    testing.assert_allclose(projections, projections[0], rtol=1e-3)


def _check_nash_mtl(step, steps):
    gram, weights = _present_gram(step)
    gram = gram / np.linalg.norm(gram) + 1e-6 * np.eye(len(weights))
    testing.assert_allclose(weights * (gram @ weights), 1.0, rtol=1e-3)


def _check_aligned_mtl(step, steps):
    gram, weights = _present_gram(step)
    # sum_i w_i g_i is a sum of |P| orthogonal vectors of norm^2 lambda_min.
    smallest = np.linalg.eigvalsh(gram)[0]
    testing.assert_allclose(
        weights @ gram @ weights, len(weights) * smallest, rtol=1e-3
    )


def _check_upgrad(step, steps):
    gram, weights = _present_gram(step)
    # w = sum_i v^(i) with v^(i) >= e_i / n_P: every w_i >= 1 / n_P, and
    # d = sum_i w_i g_i conflicts with no task (to the reg_eps slack).
    assert (weights >= 1.0 / len(weights) - 1e-6).all(), weights
    slack = 1e-3 * np.sqrt(np.diag(gram) * (weights @ gram @ weights))
    assert (gram @ weights >= -slack).all(), gram @ weights


def _check_dual_proj(step, steps):
    gram, weights = _present_gram(step)
    assert (weights >= 1.0 / len(weights) - 1e-6).all(), weights
    slack = 1e-3 * np.sqrt(np.diag(gram) * (weights @ gram @ weights))
    assert (gram @ weights >= -slack).all(), gram @ weights


def _check_con_fig(step, steps):
    gram, weights = _present_gram(step)
    # Equal, positive projections of d on every unit task gradient.
    projections = gram @ weights / np.sqrt(np.diag(gram))
    testing.assert_allclose(projections, projections[0], rtol=1e-3)
    assert projections[0] > 0.0


def _check_krum(step, steps):
    # One present task's gradient: weight 1 on it, 0 elsewhere.
    assert sorted(step.weights.tolist()) == [0.0] * 2 + [1.0], step.weights
    assert step.weights[~step.present].sum() == 0.0


def _present_losses(step):
    return np.where(step.present, step.losses, 1.0)


def _check_gls(step, steps):
    # GM / (n_P L_i), GM the geometric mean of the present losses.
    losses = _present_losses(step)
    mean = np.exp(np.log(losses[step.present]).mean())
    expected = mean / (step.present.sum() * losses) * step.present
    testing.assert_allclose(step.weights, expected, rtol=1e-4)


def _check_stch(step, steps):
    # Four epochs of the default warm-up: 1 / L, the nadir not measured.
    expected = step.present / _present_losses(step)
    testing.assert_allclose(step.weights, expected, rtol=1e-4)
    assert step.state["epochs_seen"] == step.index
    assert not step.state["nadir"].any()


def _check_imtl_l(step, steps):
    expected = np.exp(step.state["log_scales"]) * step.present
    testing.assert_allclose(step.weights, expected, rtol=1e-5)


def _check_imtl(step, steps):
    gram, weights = _present_gram(step)
    scales = np.exp(step.state["log_scales"][step.present])
    # IMTL-G's alpha (sum 1) on the scaled gradients, times the scales:
    # equal projections of d on every unit task gradient.
    testing.assert_allclose((weights / scales).sum(), 1.0, rtol=1e-5)
    projections = gram @ weights / np.sqrt(np.diag(gram))
    testing.assert_allclose(projections, projections[0], rtol=1e-3)


def _check_fair_grad(step, steps):
    # alpha = 1: w_i (G w)_i = 1, with the ridge relative to ||G||_F.
    gram, weights = _present_gram(step)
    gram = gram + 1e-6 * np.linalg.norm(gram) * np.eye(len(weights))
    testing.assert_allclose(weights * (gram @ weights), 1.0, rtol=1e-3)


def _check_grad_vac(step, steps):
    # Recomputed on the Gram matrix from the targets before the step
    # (index order): 1 plus the added multiples of the other gradients.
    gram, weights = _present_gram(step)
    keep = np.flatnonzero(step.present)
    targets = step.state["cosine_targets"][np.ix_(keep, keep)]
    coefficients = np.eye(len(keep))
    for i in range(len(keep)):
        for j in range(len(keep)):
            own = np.sqrt(coefficients[i] @ gram @ coefficients[i])
            other = np.sqrt(gram[j, j])
            rho = coefficients[i] @ gram[:, j] / (own * other + 1e-8)
            phi = targets[i, j]
            if j != i and rho < phi:
                coefficients[i, j] += (
                    own
                    * (phi * np.sqrt(1 - rho**2) - rho * np.sqrt(1 - phi**2))
                    / (other * np.sqrt(1 - phi**2) + 1e-8)
                )
    testing.assert_allclose(weights, coefficients.sum(0), rtol=1e-3)
    assert (weights >= 1.0 - 1e-6).all(), weights


def _check_smoothed(step, steps):
    # 0.9 of the last smoothed weights plus 0.1 of MGDA's, whose min-norm
    # point of the present tasks' simplex is recovered here.
    gram, weights = _present_gram(step)
    started = step.state["smoothed_tasks"][step.present] > 0
    previous = step.state["smoothed_weights"][step.present]
    inner = np.where(started, (weights - 0.9 * previous) / 0.1, weights)
    testing.assert_allclose(inner.sum(), 1.0, rtol=1e-3)
    assert (inner >= -1e-3).all(), inner
    assert (gram @ inner >= inner @ gram @ inner * (1 - 1e-2)).all()


SCALE_CHECKS = {
    "equal": _check_equal,
    "fixed": _check_fixed,
    "uncertainty": _check_uncertainty,
    "dynamic_weight_average": _check_dwa,
    "random_loss": _check_random_loss,
    "grad_norm": _check_grad_norm,
    "famo": _check_famo,
    "mgda": _check_mgda,
    "pcgrad": _check_pcgrad,
    "cagrad": _check_cagrad,
    "imtl_g": _check_imtl_g,
    "nash_mtl": _check_nash_mtl,
    "aligned_mtl": _check_aligned_mtl,
    "loss_balanced": _check_loss_balanced,
    "dynamic_task_prioritization": _check_dtp,
    "upgrad": _check_upgrad,
    "dual_proj": _check_dual_proj,
    "con_fig": _check_con_fig,
    "krum": _check_krum,
    "gls": _check_gls,
    "stch": _check_stch,
    "imtl_l": _check_imtl_l,
    "imtl": _check_imtl,
    "fair_grad": _check_fair_grad,
    "grad_vac": _check_grad_vac,
    "smoothed": _check_smoothed,
}


def train_steps(name):
    """Trains a tiny model four full-batch steps (one per epoch) with the
    registered method `name`, logging its weights.

    Returns one namespace per step: `logged` (the `(T,)` `<task>_weight`
    of the logs, NaN where absent), `weights` (the same, 0 where absent),
    `present`, and, taken before the step, `losses` and
    `gram` (by hand) and `state` (the method's variables by name).
    """
    cls = keras_mtl.weighting.registry[name]
    args = {"fixed": (FIXED,), "krum": (0,)}.get(name, ())
    model = testing.tiny_model(weighting=cls(*args, log_weights=True))
    if not issubclass(cls, keras_mtl.weighting.GradientWeighting):
        # Loss-level steps are cheaper run eagerly than traced.
        model.compile(optimizer=keras.optimizers.Adam(0.01), run_eagerly=True)
    x, y = testing.tiny_data(n=NUM_EXAMPLES)
    steps = []
    for index, present in enumerate(PRESENT):
        labels = _without(y, [n for n, p in zip(TASKS, present) if not p])
        losses, gram = _losses_and_gram(model, x, labels)
        variables = model.weighting.variables
        state = {v.name: v.numpy().copy() for v in variables}
        logged = _weights(_fit(model, x, labels))[0]
        steps.append(
            types.SimpleNamespace(
                index=index,
                logged=logged,
                weights=np.where(present, logged, 0.0),
                present=present,
                losses=losses,
                gram=gram,
                state=state,
            )
        )
    return steps


def test_every_method_has_a_scale_check():
    assert sorted(SCALE_CHECKS) == sorted(METHODS)


# The gradient-level rows but MGDA's trace a per-task-gradient step each
# (4 s): they run with -m slow; MGDA's and every loss-level row by default.
SLOW_SCALE_CHECKS = ("pcgrad", "cagrad", "imtl_g", "nash_mtl", "aligned_mtl")
SLOW_SCALE_CHECKS += ("upgrad", "dual_proj", "con_fig", "krum")
SLOW_SCALE_CHECKS += ("imtl", "fair_grad", "grad_vac", "smoothed")


@pytest.mark.parametrize(
    "name",
    [
        pytest.param(n, marks=pytest.mark.slow) if n in SLOW_SCALE_CHECKS else n
        for n in METHODS
    ],
)
def test_weight_scale(name):
    steps = train_steps(name)
    for step in steps:
        present = np.array(step.present)
        assert np.isfinite(step.logged[present]).all(), (step.index, step)
        # An absent task's logged weight is NaN (the mean over no step).
        assert np.isnan(step.logged[~present]).all(), step.logged
        SCALE_CHECKS[name](step, steps)


# --- docs/extending.md ------------------------------------------------------


def _python_blocks(text):
    return re.findall(r"^```python\n(.*?)^```", text, re.M | re.S)


def test_guide_table_names_every_method():
    rows = re.findall(r"^\| `([a-z_]+)` \|", GUIDE.read_text(), re.M)
    assert sorted(set(rows)) == sorted(METHODS)


def test_guide_code_runs(examples):
    """Blocks headed `# docs/examples/<file>` are that file, verbatim (the
    tests above run it); every other block runs, in order, in one
    namespace, with docs/examples on the path."""
    blocks = _python_blocks(GUIDE.read_text())
    included = set()
    namespace = {"__name__": "extending_md"}
    for block in blocks:
        header = re.match(r"# docs/examples/(\w+\.py)\n", block)
        if header:
            included.add(header.group(1))
            assert block == (EXAMPLES / header.group(1)).read_text(), (
                f"docs/extending.md differs from {header.group(1)}"
            )
        else:
            exec(compile(block, str(GUIDE), "exec"), namespace)
    assert included == {p.name for p in EXAMPLES.glob("*.py")}
