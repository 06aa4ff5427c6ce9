"""Gradient-level methods: hand-checked weights, the train step, saving."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_mtl
from keras_mtl import testing
from keras_mtl.weighting import IMTLG
from keras_mtl.weighting import MGDA
from keras_mtl.weighting import AlignedMTL
from keras_mtl.weighting import CAGrad
from keras_mtl.weighting import GradientWeighting
from keras_mtl.weighting import NashMTL
from keras_mtl.weighting import PCGrad

ALIASES = {
    "mgda": MGDA,
    "pcgrad": PCGrad,
    "cagrad": CAGrad,
    "imtl_g": IMTLG,
    "nash_mtl": NashMTL,
    "aligned_mtl": AlignedMTL,
}


def _weights(method, gradients, losses=None):
    gradients = np.asarray(gradients, "float32")
    size = len(gradients)
    method.set_tasks([f"t{i}" for i in range(size)])
    gram = tf.constant(gradients @ gradients.T)
    losses = tf.ones((size,)) if losses is None else tf.constant(losses)
    combine = tf.function(method.combine)
    return combine(gram, tf.cast(losses, "float32")).numpy()


@pytest.mark.parametrize("alias", sorted(ALIASES))
def test_registry_and_config(alias):
    method = keras_mtl.weighting.get(alias)
    assert type(method) is ALIASES[alias]
    assert method.gradients == "shared" and method.mode == "param"
    method = ALIASES[alias](mode="rep", name="grad")
    revived = type(method).from_config(method.get_config())
    assert revived.get_config() == method.get_config()
    testing.run_serialization_test(method)
    with pytest.raises(ValueError, match="`mode` must be one of"):
        ALIASES[alias](mode="params")


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="normalization"):
        MGDA(normalization="l1")
    with pytest.raises(ValueError, match="`c` must be"):
        CAGrad(c=-1.0)
    with pytest.raises(ValueError, match="rescale"):
        CAGrad(rescale=3)
    with pytest.raises(ValueError, match="max_iterations"):
        NashMTL(max_iterations=0)
    with pytest.raises(TypeError, match="seed"):
        PCGrad(seed="a")
    with pytest.raises(ValueError, match="parallel_tasks"):
        MGDA(parallel_tasks=0)


def test_mgda_two_tasks_closed_form():
    # a = (g2 - g1).g2 / |g1 - g2|^2 = 4 / 5.
    testing.assert_allclose(_weights(MGDA(), [[1, 0], [0, 2]]), [0.8, 0.2])
    # One gradient inside the other's half space: the smaller one alone.
    testing.assert_allclose(_weights(MGDA(), [[1, 0], [3, 1]]), [1, 0])
    # l2: unit gradients (1, 0), (0, 1) -> equal weights.
    weights = _weights(MGDA(normalization="l2"), [[1, 0], [0, 2]])
    testing.assert_allclose(weights, [0.5, 0.5])
    # loss: (1, 0) / 1 and (0, 2) / 4 -> a = 0.25 / 1.25.
    weights = _weights(MGDA(normalization="loss"), [[1, 0], [0, 2]], [1, 4])
    testing.assert_allclose(weights, [0.2, 0.8], atol=1e-6)
    # loss+: (1, 0) / (1 * 1) and (0, 2) / (4 * 2) -> a = 1 / 17.
    weights = _weights(MGDA(normalization="loss+"), [[1, 0], [0, 2]], [1, 4])
    testing.assert_allclose(weights, [1 / 17, 16 / 17], atol=1e-6)


def test_mgda_frank_wolfe():
    identity = _weights(MGDA(), np.eye(3))
    testing.assert_allclose(identity, [1 / 3] * 3, atol=1e-5)
    # Min-norm point of hull{(1,0), (0,1), (1,1)} is (0.5, 0.5).
    weights = _weights(MGDA(), [[1, 0], [0, 1], [1, 1]])
    testing.assert_allclose(weights, [0.5, 0.5, 0.0], atol=1e-4)
    # Random problem: KKT conditions of min |G^T w|^2 on the simplex.
    rng = np.random.default_rng(0)
    gradients = rng.normal(size=(5, 8)).astype("float32")
    weights = _weights(MGDA(max_iterations=5000, tolerance=1e-9), gradients)
    product = gradients @ gradients.T @ weights
    assert abs(weights.sum() - 1) < 1e-5 and np.all(weights >= 0)
    support = weights > 1e-3
    value = weights @ product
    assert np.all(product >= value - 2e-3 * abs(value) - 1e-5)
    assert np.allclose(product[support], value, rtol=2e-2, atol=1e-4)


def _pcgrad_reference(gradients, orders):
    """The PCGrad loop of Yu et al. (LibMTL's form), in numpy."""
    projected = gradients.astype("float64").copy()
    for i in range(len(gradients)):
        for j in orders[i]:
            if j == i:
                continue
            dot = projected[i] @ gradients[j]
            if dot < 0:
                projected[i] -= (
                    dot / (gradients[j] @ gradients[j]) * gradients[j]
                )
    return projected.sum(0)


def test_pcgrad_projection():
    gradients = np.array([[1.0, 0.0], [-1.0, 1.0]], "float32")
    # g1 <- g1 + 0.5 g2 = (0.5, 0.5); g2 <- g2 + g1 = (0, 1).
    weights = _weights(PCGrad(), gradients)
    testing.assert_allclose(weights, [2.0, 1.5])
    testing.assert_allclose(weights @ gradients, [0.5, 1.5])
    # No conflict: plain sum.
    testing.assert_allclose(_weights(PCGrad(), [[1, 0], [1, 1]]), [1, 1])
    rng = np.random.default_rng(1)
    gradients = rng.normal(size=(4, 6)).astype("float32")
    method = PCGrad(seed=3)
    method.set_tasks(list("abcd"))
    for step in range(3):
        orders = method.task_orders(step).numpy()
        gram = tf.constant(gradients @ gradients.T)
        weights = method.combine(gram, tf.ones(4), step).numpy()
        expected = _pcgrad_reference(gradients, orders)
        testing.assert_allclose(weights @ gradients, expected, atol=1e-5)
    assert not np.array_equal(
        method.task_orders(0).numpy(), method.task_orders(1).numpy()
    )


def _cagrad_reference(gradients, c, rescale=1):
    """The authors' `cagrad` (Liu et al. 2021), SLSQP on the simplex."""
    from scipy.optimize import minimize

    gradients = gradients.astype("float64")
    size = len(gradients)
    gram = gradients @ gradients.T
    start = np.ones(size) / size
    radius = c * np.sqrt(gram.mean() + 1e-8)

    def objective(x):
        return x @ gram @ start + radius * np.sqrt(x @ gram @ x + 1e-8)

    result = minimize(
        objective,
        start,
        bounds=[(0, 1)] * size,
        constraints={"type": "eq", "fun": lambda x: 1 - x.sum()},
        options={"ftol": 1e-12, "maxiter": 1000},
    )
    gw = result.x @ gradients
    direction = gradients.mean(0) + radius / (np.linalg.norm(gw) + 1e-8) * gw
    return direction / {0: 1, 1: 1 + c**2, 2: 1 + c}[rescale]


@pytest.mark.parametrize("size", [2, 3, 6])
def test_cagrad_matches_authors_solution(size):
    rng = np.random.default_rng(size)
    gradients = rng.normal(size=(size, 7)).astype("float32")
    gradients[1] = -0.7 * gradients[0] + 0.3 * gradients[1]
    for c, rescale in [(0.4, 1), (0.5, 2)]:
        weights = _weights(CAGrad(c=c, rescale=rescale), gradients)
        expected = _cagrad_reference(gradients, c, rescale)
        testing.assert_allclose(weights @ gradients, expected, atol=2e-4)
    # c = 0 is the mean gradient.
    weights = _weights(CAGrad(c=0.0, rescale=0), gradients)
    testing.assert_allclose(weights, [1 / size] * size, atol=1e-6)


def test_imtlg_weights():
    # Orthogonal: d = (a1, 2 a2) with d.u1 = d.u2 -> a = (2/3, 1/3).
    weights = _weights(IMTLG(), [[1, 0], [0, 2]])
    testing.assert_allclose(weights, [2 / 3, 1 / 3], atol=1e-6)
    # g2 = (1, 1): d.u1 = 1 = d.u2 = (1 + a2)/sqrt(2) -> a2 = sqrt(2) - 1.
    weights = _weights(IMTLG(), [[1, 0], [1, 1]])
    root = np.sqrt(2.0)
    testing.assert_allclose(weights, [2 - root, root - 1], atol=1e-6)
    rng = np.random.default_rng(2)
    gradients = rng.normal(size=(4, 9)).astype("float32")
    weights = _weights(IMTLG(), gradients)
    units = gradients / np.linalg.norm(gradients, axis=1, keepdims=True)
    projections = units @ (weights @ gradients)
    testing.assert_allclose(projections, [projections[0]] * 4, atol=1e-4)
    testing.assert_allclose(weights.sum(), 1.0, atol=1e-5)
    # Parallel gradients: no unique solution, equal weights.
    weights = _weights(IMTLG(), [[1, 0], [2, 0]])
    testing.assert_allclose(weights, [0.5, 0.5])


def test_nash_mtl_weights_solve_the_bargaining_equation():
    # Orthogonal gradients: alpha_i = 1 / |g_i|.
    weights = _weights(NashMTL(normalize=False, ridge=0.0), [[2, 0], [0, 0.5]])
    testing.assert_allclose(weights, [0.5, 2.0], atol=1e-5)
    rng = np.random.default_rng(3)
    for size in (2, 3, 8):
        gradients = rng.normal(size=(size, 12)).astype("float32") * 3.0
        gram = gradients.astype("float64") @ gradients.T
        alpha = _weights(NashMTL(normalize=False, ridge=0.0), gradients)
        assert np.all(alpha > 0)
        testing.assert_allclose(gram @ alpha, 1 / alpha, rtol=1e-4, atol=0)
        # The authors' normalisation: the Gram matrix over its norm.
        normalised = _weights(NashMTL(), gradients)
        scaled = gram / np.linalg.norm(gram)
        testing.assert_allclose(
            scaled @ normalised, 1 / normalised, rtol=1e-3, atol=0
        )


def test_aligned_mtl_weights():
    # Orthogonal, norms 1 and 2: B = sigma_min diag(1, 1/2), d = (1, 1).
    weights = _weights(AlignedMTL(), [[1, 0], [0, 2]])
    testing.assert_allclose(weights, [1.0, 0.5], atol=1e-6)
    rng = np.random.default_rng(4)
    gradients = rng.normal(size=(3, 6)).astype("float64")
    gram = gradients @ gradients.T
    values, vectors = np.linalg.eigh(gram)
    balance = (
        np.sqrt(values.min()) * vectors @ np.diag(values**-0.5) @ vectors.T
    )
    # The aligned gradients B G are orthogonal with the smallest scale.
    aligned = balance @ gradients
    testing.assert_allclose(
        aligned @ aligned.T, values.min() * np.eye(3), atol=1e-9
    )
    weights = _weights(AlignedMTL(), gradients)
    testing.assert_allclose(weights, balance.sum(0), rtol=1e-4, atol=1e-5)
    # Rank 1: B = v v^T, v = (1, 2) / sqrt(5); B G keeps G, d = (3, 0).
    weights = _weights(AlignedMTL(), [[1, 0], [2, 0]])
    testing.assert_allclose(weights, [0.6, 1.2], rtol=1e-5)


@pytest.mark.parametrize("alias", sorted(ALIASES))
@pytest.mark.parametrize("size", [2, 5])
def test_combine_compiled_with_xla_gives_the_graph_weights(alias, size):
    rng = np.random.default_rng(7)
    gradients = rng.normal(size=(size, 12)).astype("float32")
    gram = tf.constant(gradients @ gradients.T)
    losses = tf.constant(rng.uniform(0.5, 2.0, size), "float32")
    method = ALIASES[alias]()
    method.set_tasks([f"t{i}" for i in range(size)])
    step = tf.constant(3, "int64")
    graph = tf.function(method.combine)(gram, losses, step).numpy()
    present = tf.ones((size,), "bool")
    compiled = method.gradient_weights(gram, losses, step, present).numpy()
    # Frank-Wolfe (MGDA) stops at a tolerance of 1e-5 on the weights.
    testing.assert_allclose(compiled, graph, rtol=1e-4, atol=2e-5)
    # The Gram matrix is an argument of the compiled program, not a
    # compile-time constant (which would recompile it at every step).
    hlo = method._compiled_combine.experimental_get_compiler_ir(
        gram, losses, step, present
    )(stage="hlo")
    entry = next(line for line in hlo.splitlines() if line.startswith("ENTRY"))
    assert f"f32[{size},{size}]" in entry.split("->")[0], entry


class NumpyMean(GradientWeighting):
    """A `combine` that XLA cannot compile: it calls numpy."""

    jit_combine = False

    def combine(self, gram, task_losses, step=0):
        mean = tf.numpy_function(
            lambda g: np.full(len(g), 1 / len(g), "float32"), [gram], "float32"
        )
        return tf.reshape(mean, (self.num_tasks,))


def test_jit_combine_false_runs_combine_in_the_graph():
    model = testing.tiny_model(weighting=NumpyMean())
    x, y = testing.tiny_data()
    history = model.fit(x, y, batch_size=32, verbose=0).history
    assert history["reg_weight"] == pytest.approx([1 / 3])
    assert model.weighting._compiled_combine is None


@pytest.mark.parametrize(
    "sharing",
    ["hard", pytest.param("cross_stitch", marks=pytest.mark.slow)],
)
def test_parallel_tasks_changes_the_passes_not_the_update(sharing):
    x, y = testing.tiny_data(n=32)
    trained = []
    for parallel_tasks in (None, 2):
        keras.utils.set_random_seed(4)
        method = PCGrad(parallel_tasks=parallel_tasks)
        model = testing.tiny_model(weighting=method, sharing=sharing)
        model.fit(x, y, batch_size=16, verbose=0)
        trained.append(model.trainable_variables)
    for a, b in zip(*trained):
        testing.assert_allclose(a, b, atol=1e-6, msg=a.path)


class SumOfGradients(GradientWeighting):
    def combine(self, gram, task_losses, step=0):
        return tf.ones((self.num_tasks,))


@pytest.mark.parametrize("mode", ["param", "rep"])
def test_unit_weights_give_the_equal_weighting_step(mode):
    x, y = testing.tiny_data(n=32)
    y["reg"][::4] = np.nan
    models = []
    for weighting in ["equal", SumOfGradients(mode=mode)]:
        keras.utils.set_random_seed(5)
        inputs = keras.Input((8,))
        tasks = testing.tiny_tasks()
        tasks[1].loss_weight = 0.5
        model = keras_mtl.build_mtl_model(
            inputs,
            tasks,
            trunk=keras.layers.Dense(8, activity_regularizer="l2"),
            weighting=weighting,
        )
        model.compile(optimizer=keras.optimizers.SGD(0.5))
        if models:
            for a, b in zip(
                model.trainable_variables, models[0].trainable_variables
            ):
                a.assign(b)
        models.append(model)
    logs = [m.fit(x, y, batch_size=16, verbose=0).history for m in models]
    pairs = zip(models[0].trainable_variables, models[1].trainable_variables)
    for a, b in pairs:
        testing.assert_allclose(a, b, atol=1e-6, msg=a.path)
    assert logs[1]["loss"] == pytest.approx(logs[0]["loss"], rel=1e-5)
    assert logs[1]["reg_loss"] == pytest.approx(logs[0]["reg_loss"], rel=1e-5)


def test_fit_logs_weights_and_saves(tmp_path):
    model = testing.tiny_model(weighting=MGDA(normalization="l2"))
    x, y = testing.tiny_data()
    history = model.fit(x, y, batch_size=32, epochs=2, verbose=0).history
    for name in model.task_names:
        assert f"{name}_weight" in history
    weights = model.weighting.task_weights.numpy()
    assert abs(weights.sum() - 1) < 1e-5 and np.all(weights >= 0)
    assert not np.allclose(weights, 1 / 3, atol=1e-3)
    loaded = testing.run_model_saving_test(model, x, tmp_path / "m.keras")
    assert isinstance(loaded.weighting, MGDA)
    assert loaded.weighting.normalization == "l2"
    testing.assert_allclose(loaded.weighting.task_weights, weights)


def test_rep_mode_needs_one_shared_representation():
    inputs = keras.Input((4,))
    trunk = keras.layers.Dense(3, name="trunk")(inputs)
    # Head "b" also reads the inputs: no single shared representation.
    outputs = {
        "a": keras.layers.Dense(1, name="a")(trunk),
        "b": keras.layers.Dense(1, name="b")(
            keras.layers.Concatenate()([trunk, inputs])
        ),
    }
    model = keras_mtl.MTLModel(
        inputs,
        outputs,
        tasks=[keras_mtl.Task("a"), keras_mtl.Task("b")],
        weighting=PCGrad(mode="rep"),
    )
    model.compile(optimizer="sgd")
    data = (
        np.ones((4, 4), "float32"),
        {"a": np.ones((4, 1)), "b": np.ones((4, 1))},
    )
    with pytest.raises(ValueError, match="mode='rep'"):
        model.fit(*data, verbose=0)


@pytest.mark.parametrize("mode", ["param", "rep"])
def test_mixed_precision_unscales_gradients(mode):
    x, y = testing.tiny_data(n=32)
    found = []
    for policy in ["float32", "mixed_float16"]:
        keras.config.set_dtype_policy(policy)
        keras.utils.set_random_seed(5)
        model = testing.tiny_model(
            weighting=NashMTL(normalize=False, mode=mode), trunk=(16,)
        )
        model.fit(x, y, batch_size=32, verbose=0)
        found.append(model.weighting.task_weights.numpy())
    assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
    # Scaled gradients (by 2^15) would shrink the weights 2^15-fold.
    testing.assert_allclose(found[1], found[0], rtol=2e-2)


def test_jit_compile_without_strategy():
    x, y = testing.tiny_data(n=32)
    found = []
    for jit in [False, True]:
        keras.utils.set_random_seed(5)
        model = testing.tiny_model(weighting=AlignedMTL(mode="rep"))
        model.compile(optimizer="sgd", jit_compile=jit)
        model.fit(x, y, batch_size=32, verbose=0)
        found.append(model.weighting.task_weights.numpy())
    testing.assert_allclose(found[1], found[0], rtol=1e-4)


def test_param_mode_without_one_shared_representation():
    # Head "b" also reads the inputs: the per-task gradients come from the
    # stacked-loss Jacobian; unit weights must still give the equal step.
    x = np.random.default_rng(0).normal(size=(16, 4)).astype("float32")
    labels = {"a": x[:, :1] * 2.0, "b": x[:, 1:2] - x[:, 2:3]}
    models = []
    for weighting in ["equal", SumOfGradients()]:
        keras.utils.set_random_seed(5)
        inputs = keras.Input((4,))
        trunk = keras.layers.Dense(3, name="trunk")(inputs)
        both = keras.layers.Concatenate()([trunk, inputs])
        outputs = {
            "a": keras.layers.Dense(1, name="a")(trunk),
            "b": keras.layers.Dense(1, name="b")(both),
        }
        model = keras_mtl.MTLModel(
            inputs,
            outputs,
            tasks=[keras_mtl.Task("a"), keras_mtl.Task("b")],
            weighting=weighting,
        )
        model.compile(optimizer=keras.optimizers.SGD(0.1))
        if models:
            reference = models[0].trainable_variables
            for a, b in zip(model.trainable_variables, reference):
                a.assign(b)
        models.append(model)
    for model in models:
        model.fit(x, labels, batch_size=8, verbose=0)
    pairs = zip(models[0].trainable_variables, models[1].trainable_variables)
    for a, b in pairs:
        testing.assert_allclose(a, b, atol=1e-6, msg=a.path)
