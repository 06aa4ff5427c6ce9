"""Sampling across per-task datasets: rates, layouts, epochs, fills, fit.

Delivered proportions are checked against the requested rates with a
tolerance from the binomial spread: each count within 4 standard
deviations, `|c_i - N p_i| <= 4 sqrt(N p_i (1 - p_i))` (a false alarm
about once in 16,000 checks per source).
"""

import math
import pathlib
import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_mtl
from keras_mtl import testing
from keras_mtl.data import sampling

ID_STRIDE = 100_000


def _id_source(index, size, task="reg", name=None, dim=None):
    """Examples whose input is `index * ID_STRIDE + position` (int64)."""
    ids = np.arange(size, dtype="int64") + index * ID_STRIDE
    x = ids if dim is None else {"id": ids, "x": np.ones((size, dim), "f4")}
    labels = {task: np.full(size, float(index), "float32")}
    ds = tf.data.Dataset.from_tensor_slices((x, labels))
    return keras_mtl.data.Source(ds, name=name or f"s{index}")


def _ids(batch):
    x = batch[0]
    return np.asarray(x["id"] if isinstance(x, dict) else x)


def _take(mixture, num_batches=None):
    """Lists each batch's ids (all batches if `num_batches` is None)."""
    dataset = mixture.dataset
    if num_batches is not None:
        dataset = dataset.take(num_batches)
    return [_ids(b) for b in dataset.as_numpy_iterator()]


def _assert_binomial(counts, rates, what=""):
    counts = np.asarray(counts, "float64")
    total = counts.sum()
    rates = np.asarray(rates, "float64")
    expected = total * rates
    sigma = np.sqrt(total * rates * (1 - rates))
    assert np.all(np.abs(counts - expected) <= 4 * sigma + 1e-9), (
        what,
        counts,
        expected,
        sigma,
    )


def _source_counts(ids, num_sources):
    return np.bincount(np.concatenate(ids) // ID_STRIDE, minlength=num_sources)


# Rates: the formula, by hand.


RATE_CASES = [
    (dict(sizes=[100, 300, 600]), [0.1, 0.3, 0.6]),
    (dict(sizes=[100, 400], temperature=2), [1 / 3, 2 / 3]),
    (dict(sizes=[100, 400], temperature=math.inf), [0.5, 0.5]),
    # T5: examples-proportional with a cap K.
    (dict(sizes=[100, 1000, 10000], cap=1000), [1 / 21, 10 / 21, 10 / 21]),
    # seqio order: scale, then cap (cap first would give 100:500:5000).
    (
        dict(sizes=[10, 50, 500], scale=10, cap=1000),
        [100 / 1600, 500 / 1600, 1000 / 1600],
    ),
    (
        dict(sizes=[10, 50, 500], scale=10, cap=1000, temperature=2),
        np.sqrt([100, 500, 1000]) / np.sqrt([100, 500, 1000]).sum(),
    ),
    (dict(sizes=None, weights=[1, 3]), [0.25, 0.75]),
    (dict(sizes=None, weights=[1, 4], temperature=2), [1 / 3, 2 / 3]),
    (
        dict(sizes=None, weights=[0, 1, 1], temperature=math.inf),
        [0, 0.5, 0.5],
    ),
]


def test_sampling_rates_by_hand():
    for kwargs, expected in RATE_CASES:
        rates = keras_mtl.data.sampling_rates(**kwargs)
        np.testing.assert_allclose(rates, expected, rtol=1e-12, err_msg=kwargs)
        assert rates.sum() == pytest.approx(1.0)


def test_annealed_rates_follow_the_paper():
    sizes = [1, 1024]
    alphas = []
    for epoch in (1, 2, 3):
        rates = keras_mtl.data.annealed_rates(sizes, epoch, 3)
        alphas.append(math.log(rates[1] / rates[0]) / math.log(1024))
    # Stickland & Murray: 1.0 -> 0.6 -> 0.2 (Model Garden: 1.4 -> 1.0 -> 0.6).
    np.testing.assert_allclose(alphas, [1.0, 0.6, 0.2], atol=1e-12)
    np.testing.assert_allclose(
        keras_mtl.data.annealed_rates([100, 300], 1, 1), [0.25, 0.75]
    )
    with pytest.raises(ValueError, match="counts from 1"):
        keras_mtl.data.annealed_rates(sizes, 0, 3)
    with pytest.raises(ValueError, match="counts from 1"):
        keras_mtl.data.annealed_rates(sizes, 4, 3)


def test_mix_resolves_rates():
    sources = [_id_source(0, 100), _id_source(1, 400)]
    for kwargs, expected in [
        (dict(rates="uniform"), [0.5, 0.5]),
        (dict(rates="proportional"), [0.2, 0.8]),
        (dict(rates="sqrt"), [1 / 3, 2 / 3]),
        (dict(rates="proportional", cap=100), [0.5, 0.5]),
        (dict(rates=[3, 1]), [0.75, 0.25]),
        (dict(rates={"s1": 1, "s0": 3}), [0.75, 0.25]),
        (dict(rates=[1, 4], temperature=2), [1 / 3, 2 / 3]),
    ]:
        mixture = keras_mtl.data.mix(sources, ["reg"], 10, **kwargs)
        np.testing.assert_allclose(
            mixture.rates.numpy(), expected, rtol=1e-6, err_msg=kwargs
        )
    assert mixture.rates.dtype == tf.float32
    assert "CPU" in mixture.rates.device
    assert mixture.sizes == [100, 400]
    assert mixture.steps_per_epoch == 50  # ceil(500 / 10)
    assert mixture.task_sources == {"reg": ["s0", "s1"]}


def test_sources_by_name_and_set_rates():
    sources = {"big": _id_source(0, 300), "small": _id_source(1, 100)}
    mixture = keras_mtl.data.mix(sources, ["reg"], 10, rates="uniform")
    assert mixture.source_names == ["big", "small"]
    np.testing.assert_allclose(
        mixture.set_rates({"small": 3, "big": 1}), [0.25, 0.75]
    )
    np.testing.assert_allclose(mixture.rates.numpy(), [0.25, 0.75])
    with pytest.raises(ValueError, match="all zero"):
        mixture.set_rates([0, 0])
    with pytest.raises(ValueError, match="missing: \\['big'\\]"):
        mixture.set_rates({"small": 1})
    once = keras_mtl.data.mix(sources, ["reg"], 10, exhaustion="once")
    with pytest.raises(ValueError, match="no rates to set"):
        once.set_rates([1, 1])


# Delivered mix.


@pytest.mark.parametrize("rates", ["proportional", [0.5, 0.2, 0.3]])
def test_mixed_layout_delivers_the_requested_rates(rates):
    sources = [_id_source(i, n) for i, n in enumerate([200, 600, 1200])]
    mixture = keras_mtl.data.mix(sources, ["reg"], 40, rates=rates, seed=1)
    ids = _take(mixture, 100)  # 4000 examples
    assert all(len(b) == 40 for b in ids)
    _assert_binomial(_source_counts(ids, 3), mixture.rates.numpy(), rates)
    # Batches really mix the sources.
    assert np.mean([len(set(b // ID_STRIDE)) > 1 for b in ids]) > 0.9


@pytest.mark.parametrize("rates", ["proportional", "uniform"])
def test_homogeneous_layout_delivers_single_source_batches(rates):
    sources = [_id_source(i, n) for i, n in enumerate([200, 600, 1200])]
    mixture = keras_mtl.data.mix(
        sources, ["reg"], 8, rates=rates, layout="homogeneous", seed=2
    )
    ids = _take(mixture, 1000)
    assert all(len(b) == 8 for b in ids)
    assert all(len(set(b // ID_STRIDE)) == 1 for b in ids)
    batch_sources = np.bincount([b[0] // ID_STRIDE for b in ids], minlength=3)
    _assert_binomial(batch_sources, mixture.rates.numpy(), rates)


def test_changing_rates_mid_iteration_changes_the_mix():
    sources = [_id_source(0, 500), _id_source(1, 500)]
    mixture = keras_mtl.data.mix(sources, ["reg"], 20, rates="uniform", seed=3)
    lag = sampling.PREFETCH_BATCHES + 1
    iterator = iter(mixture.dataset)

    def next_counts(num_batches):
        ids = [_ids(next(iterator)) for _ in range(num_batches)]
        return _source_counts(ids, 2)

    _assert_binomial(next_counts(100), [0.5, 0.5], "before")
    mixture.set_rates([0.1, 0.9])
    next_counts(lag)
    _assert_binomial(next_counts(100), [0.1, 0.9], "after set_rates")
    # A plain assign works too. One-hot rates bound the lag: only the
    # batches already drawn (prefetched, or being assembled: how many of
    # them depends on timing) may still hold source 0.
    mixture.rates.assign([0.0, 1.0])
    per_batch = [next_counts(1)[0] for _ in range(lag + 20)]
    assert all(c == 0 for c in per_batch[lag:]), per_batch


# Epochs and exhaustion.


def test_once_gives_every_example_once_and_reshuffles_each_epoch():
    sizes = [37, 100, 13]
    for layout in ("mixed", "homogeneous"):
        sources = [_id_source(i, n) for i, n in enumerate(sizes)]
        mixture = keras_mtl.data.mix(
            sources, ["reg"], 16, exhaustion="once", layout=layout, seed=4
        )
        everything = np.sort(
            np.concatenate(
                [np.arange(n) + i * ID_STRIDE for i, n in enumerate(sizes)]
            )
        )
        epochs = [_take(mixture), _take(mixture)]
        for batches in epochs:
            assert len(batches) == mixture.steps_per_epoch
            np.testing.assert_array_equal(
                np.sort(np.concatenate(batches)), everything
            )
            if layout == "homogeneous":
                assert all(len(set(b // ID_STRIDE)) == 1 for b in batches)
        first, second = (np.concatenate(b) for b in epochs)
        assert not np.array_equal(first, second), layout
        for i in range(3):  # each source's own order differs too
            own = [e[e // ID_STRIDE == i] for e in (first, second)]
            assert not np.array_equal(*own), (layout, i)
        assert mixture.rates is None


def test_restarted_sources_reshuffle_without_replay():
    sources = [_id_source(0, 50), _id_source(1, 400)]
    for exhaustion in ("repeat", "largest"):
        mixture = keras_mtl.data.mix(
            sources, ["reg"], 10, rates="uniform", exhaustion=exhaustion, seed=5
        )
        stream = np.concatenate(_take(mixture, 40))
        small = stream[stream // ID_STRIDE == 0]
        passes = [small[k * 50 : (k + 1) * 50] for k in range(3)]
        for p in passes:  # every pass is a full permutation: no replay
            np.testing.assert_array_equal(np.sort(p), np.arange(50))
        assert not np.array_equal(passes[0], passes[1])
        assert not np.array_equal(passes[1], passes[2])


def test_largest_and_first_end_the_epoch():
    sizes = [60, 200]
    sources = [_id_source(i, n) for i, n in enumerate(sizes)]
    largest = keras_mtl.data.mix(
        sources, ["reg"], 16, rates="uniform", exhaustion="largest", seed=6
    )
    assert largest.steps_per_epoch is None
    # Finite, of random length: not the "infinite" the restarts suggest.
    unknown = tf.data.UNKNOWN_CARDINALITY
    assert largest.dataset.cardinality() == unknown
    counts = _source_counts(_take(largest), 2)
    assert counts[1] == 200 and counts[0] > 60  # the small one restarted
    _assert_binomial(counts, [0.5, 0.5])
    first = keras_mtl.data.mix(
        sources, ["reg"], 16, rates="uniform", exhaustion="first", seed=6
    )
    assert first.steps_per_epoch is None
    assert first.dataset.cardinality() == unknown
    counts = _source_counts(_take(first), 2)
    assert counts[0] == 60 and counts[1] < 200


STEPS_CASES = [
    (dict(), 9),  # ceil(137 / 16)
    (dict(layout="homogeneous"), 9),
    (dict(steps_per_epoch=5), 5),
    (dict(exhaustion="once"), 9),
    (dict(exhaustion="once", layout="homogeneous"), 10),  # 3 + 7
    (dict(exhaustion="largest"), None),
    (dict(exhaustion="first", layout="homogeneous"), None),
    (dict(order="round_robin"), 9),
    (dict(order="round_robin", exhaustion="once"), 9),
    # Turns 0, 1, 0, 1, ...: source 1 (100) runs out at turn 201.
    (dict(order="round_robin", exhaustion="largest"), 13),
    # Source 0 (37) is drawn empty at turn 74.
    (dict(order="round_robin", exhaustion="first"), 5),
    (
        dict(order="round_robin", exhaustion="first", layout="homogeneous"),
        6,
    ),
    (dict(order="sequential"), 9),
    (dict(order="sequential", layout="homogeneous"), 10),
    (dict(order="sequential", exhaustion="once"), 9),
]


def test_steps_per_epoch():
    sources = [_id_source(0, 37), _id_source(1, 100)]
    for kwargs, steps in STEPS_CASES:
        mixture = keras_mtl.data.mix(sources, ["reg"], 16, seed=7, **kwargs)
        assert mixture.steps_per_epoch == steps, kwargs
        if kwargs.get("exhaustion", "repeat") == "repeat":
            cardinality = mixture.dataset.cardinality()
            assert cardinality == tf.data.INFINITE_CARDINALITY, kwargs
            continue
        batches = _take(mixture)
        if steps is not None:
            assert len(batches) == steps, kwargs
            assert int(mixture.dataset.cardinality()) == steps, kwargs
        if kwargs.get("order") == "sequential":
            ids = np.concatenate(batches)
            assert np.all(np.diff(ids // ID_STRIDE) >= 0)  # 0, then 1


def test_once_epochs_in_fit_use_every_batch():
    make_mixture, make_model = _two_task_setup("mixed")
    mixture = make_mixture(rates="proportional", exhaustion="once")
    assert mixture.steps_per_epoch == 22  # ceil((256 + 96) / 16)
    counter = _BatchCounter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        make_model("sgd").fit(
            mixture.dataset,
            steps_per_epoch=mixture.steps_per_epoch,
            epochs=3,
            verbose=0,
            callbacks=[counter],
        )
    assert counter.batches == [22] * 3
    assert not [w for w in caught if "ran out of data" in str(w.message)]


class _BatchCounter(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.batches = []

    def on_epoch_begin(self, epoch, logs=None):
        self.batches.append(0)

    def on_train_batch_end(self, batch, logs=None):
        self.batches[-1] += 1


# Determinism.


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(),
        dict(layout="homogeneous", exhaustion="once"),
        dict(exhaustion="largest", rates="sqrt"),
    ],
)
def test_same_seed_same_batches(kwargs):
    def batches(seed):
        sources = [_id_source(0, 50), _id_source(1, 120, task="other")]
        mixture = keras_mtl.data.mix(
            sources, ["reg", "other"], 8, seed=seed, **kwargs
        )
        return list(mixture.dataset.take(20).as_numpy_iterator())

    first, again, other = batches(11), batches(11), batches(12)
    assert len(first) == len(again) == 20
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a[0], b[0])
        for task in a[1]:
            np.testing.assert_array_equal(a[1][task], b[1][task])  # NaN ok
    assert any(not np.array_equal(a[0], b[0]) for a, b in zip(first, other))


# Missing labels.


def _labelled_sources():
    rng = np.random.default_rng(0)
    a = tf.data.Dataset.from_tensor_slices(
        (
            rng.normal(size=(30, 4)).astype("float32"),
            {
                "vec": rng.normal(size=(30, 3)).astype("float32"),
                "cls": rng.integers(0, 5, 30).astype("int32"),
            },
        )
    )
    b = tf.data.Dataset.from_tensor_slices(
        (
            rng.normal(size=(20, 4)).astype("float32") + 100.0,
            rng.normal(size=(20,)).astype("float32"),
        )
    )
    return [
        keras_mtl.data.Source(a, name="a"),
        keras_mtl.data.Source(b, tasks="bin", name="b"),
    ]


@pytest.mark.parametrize("layout", ["mixed", "homogeneous"])
def test_missing_tasks_are_filled(layout):
    tasks = [
        keras_mtl.Task("vec", units=3),
        keras_mtl.Task(
            "cls",
            loss="sparse_categorical_crossentropy",
            units=5,
            activation="softmax",
            missing_label=-7,
        ),
        keras_mtl.Task("bin", loss="binary_crossentropy"),
    ]
    mixture = keras_mtl.data.mix(
        _labelled_sources(), tasks, 10, rates="uniform", layout=layout, seed=9
    )
    spec = mixture.dataset.element_spec[1]
    assert set(spec) == {"vec", "cls", "bin"}
    assert spec["cls"].dtype == tf.int32 and spec["vec"].shape[1:] == (3,)
    seen = set()
    for x, y in mixture.dataset.take(20).as_numpy_iterator():
        from_b = x[:, 0] > 50.0
        seen.update(from_b.tolist())
        assert np.isnan(y["vec"][from_b]).all()
        assert (y["cls"][from_b] == -7).all()
        assert not np.isnan(y["bin"][from_b]).any()
        assert np.isnan(y["bin"][~from_b]).all()
        assert not np.isnan(y["vec"][~from_b]).any()
        assert (y["cls"][~from_b] >= 0).all()
    assert seen == {True, False}


# Training on a mixture.


def _two_task_setup(layout, seed=0, batch_size=16):
    """Task `a` (regression) labelled by source A only, `b` (4 classes) by
    source B only; disjoint inputs of the same structure."""
    rng = np.random.default_rng(seed)
    x_a = rng.normal(size=(256, 8)).astype("float32")
    x_b = rng.normal(size=(96, 8)).astype("float32")
    y_a = (x_a[:, :1] * 2.0 - x_a[:, 1:2]).astype("float32")
    y_b = np.argmax(x_b[:, 3:7], axis=1).astype("int32")
    sources = [
        keras_mtl.data.Source(
            tf.data.Dataset.from_tensor_slices((x_a, y_a)), "a", name="A"
        ),
        keras_mtl.data.Source(
            tf.data.Dataset.from_tensor_slices((x_b, y_b)), "b", name="B"
        ),
    ]
    tasks = [
        keras_mtl.Task("a", loss="mse"),
        keras_mtl.Task(
            "b",
            loss="sparse_categorical_crossentropy",
            units=4,
            activation="softmax",
            missing_label=-1,
        ),
    ]

    def make_mixture(**kwargs):
        kwargs = {"rates": "sqrt", "layout": layout, "seed": seed, **kwargs}
        return keras_mtl.data.mix(sources, tasks, batch_size, **kwargs)

    def make_model(optimizer):
        keras.utils.set_random_seed(seed)
        model = keras_mtl.build_mtl_model(
            keras.Input((8,), name="x"), tasks, trunk=[16]
        )
        model.compile(optimizer=optimizer)
        return model

    return make_mixture, make_model


class _Snapshots(keras.callbacks.Callback):
    def on_train_begin(self, logs=None):
        self.values = [self._now()]

    def on_train_batch_end(self, batch, logs=None):
        self.values.append(self._now())

    def _now(self):
        return {
            "shared": [v.numpy().copy() for v in self.model.shared_variables],
            **{
                name: [v.numpy().copy() for v in variables]
                for name, variables in self.model.task_variables.items()
            },
        }


def _moved(before, after):
    return max(np.abs(a - b).max() for a, b in zip(before, after))


def test_each_head_learns_only_from_its_own_source():
    make_mixture, make_model = _two_task_setup("homogeneous")
    steps = 30
    model = make_model(keras.optimizers.SGD(0.05))
    # Same seed (and global seed), same batches: a twin mixture tells each
    # batch's source.
    twin = make_mixture(rates="uniform").dataset.take(steps)
    from_a = [not np.isnan(y["a"]).any() for _, y in twin.as_numpy_iterator()]
    assert 4 < sum(from_a) < steps - 4
    snapshots = _Snapshots()
    model.fit(
        make_mixture(rates="uniform").dataset,
        steps_per_epoch=steps,
        verbose=0,
        callbacks=[snapshots],
    )
    for step, is_a in enumerate(from_a):
        before, after = snapshots.values[step], snapshots.values[step + 1]
        assert _moved(before["shared"], after["shared"]) > 0
        own, other = ("a", "b") if is_a else ("b", "a")
        assert _moved(before[own], after[own]) > 0, step
        assert _moved(before[other], after[other]) == 0, step


def test_fit_on_a_mixed_mixture_learns_both_tasks():
    make_mixture, make_model = _two_task_setup("mixed")
    mixture = make_mixture()
    model = make_model(keras.optimizers.Adam(0.02))
    history = model.fit(
        mixture.dataset,
        steps_per_epoch=mixture.steps_per_epoch,
        epochs=4,
        verbose=0,
    ).history
    for key in ("loss", "a_loss", "b_loss"):
        assert np.isfinite(history[key]).all(), history
    # Measured: a_loss 2.28 -> 0.06, b_loss 1.15 -> 0.33.
    assert history["a_loss"][-1] < 0.25 * history["a_loss"][0], history
    assert history["b_loss"][-1] < 0.6 * history["b_loss"][0], history
    if "a_examples" in history:  # the model's count of labelled examples
        counts = [sum(history[f"{t}_examples"]) for t in ("a", "b")]
        assert sum(counts) == 4 * 22 * 16
        _assert_binomial(counts, mixture.rates.numpy(), "logged")


# Under a tf.distribute strategy, Keras 3.15's `fit` takes a batch from a
# first iterator to build the model symbolically, then trains from a fresh
# iterator, i.e. the mixture's second pass (reshuffled). Both runs below go
# through a strategy, so they train on the same global batches.
MIRRORED = """
import keras
import numpy as np
sys.path.insert(0, TESTS_DIR)  # not `tests.`: a site-packages `tests` wins
from test_sampling import _two_task_setup

assert len(tf.config.list_logical_devices("CPU")) == 2
make_mixture, make_model = _two_task_setup("mixed", batch_size=16)

def train(strategy):
    keras.utils.set_random_seed(0)
    mixture = make_mixture()
    with strategy.scope():
        model = make_model(keras.optimizers.SGD(0.1))
    model.fit(mixture.dataset, epochs=2, verbose=0,
              steps_per_epoch=mixture.steps_per_epoch)
    return [v.numpy() for v in model.trainable_variables]

one = train(tf.distribute.OneDeviceStrategy("/cpu:0"))
mirrored = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
two = train(mirrored)
with mirrored.scope():
    try:
        make_mixture()
    except ValueError as e:
        assert "outside `strategy.scope()`" in str(e), e
    else:
        raise AssertionError("mix inside a strategy scope must raise")
start = make_model("sgd").get_weights()
moved = max(np.abs(a - b).max() for a, b in zip(one, start))
assert moved > 1e-2, moved
gap = max(np.abs(a - b).max() for a, b in zip(one, two))
assert gap < 1e-5, gap
print("OK", moved, gap)
"""


def test_mirrored_two_devices_equals_one_device():
    tests_dir = repr(str(pathlib.Path(__file__).resolve().parent))
    script = "import sys\nTESTS_DIR = " + tests_dir + "\n" + MIRRORED
    output = testing.run_with_devices(script)
    assert "OK" in output, output


# Bad input.


def _unknown_size_source(index, size):
    return keras_mtl.data.Source(
        _id_source(index, size).dataset.filter(lambda x, y: True),
        name=f"s{index}",
    )


def test_sources_of_unknown_or_infinite_size():
    known = _id_source(0, 40)
    unknown = _unknown_size_source(1, 60)
    assert unknown.size is None
    with pytest.raises(ValueError, match=r"\['s1'\].*Source\(\.\.\., size"):
        keras_mtl.data.mix([known, unknown], ["reg"], 10)
    # Uniform rates need no size, but the default steps_per_epoch does.
    with pytest.raises(ValueError, match=r"\['s1'\].*steps_per_epoch"):
        keras_mtl.data.mix([known, unknown], ["reg"], 10, rates="uniform")
    keras_mtl.data.mix(
        [known, unknown], ["reg"], 10, rates="uniform", steps_per_epoch=4
    )
    sized = keras_mtl.data.Source(unknown.dataset, size=60, name="s1")
    mixture = keras_mtl.data.mix([known, sized], ["reg"], 10, exhaustion="once")
    assert mixture.steps_per_epoch == 10 and len(_take(mixture)) == 10
    wrong = keras_mtl.data.Source(unknown.dataset, size=70, name="s1")
    mixture = keras_mtl.data.mix([known, wrong], ["reg"], 10, exhaustion="once")
    with pytest.raises(tf.errors.OpError, match="70"):
        _take(mixture)
    infinite = keras_mtl.data.Source(
        _id_source(2, 10).dataset.repeat(), name="s2"
    )
    with pytest.raises(ValueError, match=r"\['s2'\].*size"):
        keras_mtl.data.mix([known, infinite], ["reg"], 10)
    with pytest.raises(ValueError, match=r"\['s2'\] are infinite"):
        keras_mtl.data.mix([known, infinite], ["reg"], 10, exhaustion="first")
    infinite = keras_mtl.data.Source(infinite.dataset, size=160, name="s2")
    mixture = keras_mtl.data.mix([known, infinite], ["reg"], 10)
    np.testing.assert_allclose(mixture.rates.numpy(), [0.2, 0.8])


def _bad_inputs():
    a, b = _id_source(0, 10), _id_source(1, 20)
    ds = a.dataset
    f32 = tf.data.Dataset.from_tensor_slices(
        (np.zeros((5, 8), "float32"), np.zeros(5, "float32"))
    )
    f32_7 = tf.data.Dataset.from_tensor_slices(
        (np.zeros((5, 7), "float32"), np.zeros(5, "float32"))
    )
    as_dict = tf.data.Dataset.from_tensor_slices(
        ({"x": np.zeros((5, 8), "float32")}, np.zeros(5, "float32"))
    )
    ints = tf.data.Dataset.from_tensor_slices(
        (np.zeros((5, 8), "float32"), np.zeros(5, "int32"))
    )
    cls = keras_mtl.Task("cls", loss="sparse_categorical_crossentropy")
    mix = keras_mtl.data.mix
    Source = keras_mtl.data.Source
    return [
        (lambda: mix([a], ["other"], 4), "labels tasks \\['reg'\\]"),
        (lambda: mix([a, b], ["reg", "cls"], 4), "'cls' is labelled by no"),
        (
            lambda: mix(
                [Source(f32, "reg"), Source(f32_7, "reg", name="n")], ["reg"], 4
            ),
            "Source 'n': inputs has shape \\(7,\\)",
        ),
        (
            lambda: mix(
                [Source(f32, "reg"), Source(as_dict, "reg", name="d")],
                ["reg"],
                4,
            ),
            "Source 'd': its inputs have structure",
        ),
        (
            lambda: mix(
                [
                    Source(f32, "reg"),
                    Source(
                        ds.map(lambda x, y: (tf.cast(x, "float32"), y)),
                        name="c",
                    ),
                ],
                ["reg"],
                4,
            ),
            "Source 'c': inputs has shape \\(\\) and dtype float32",
        ),
        (lambda: Source(ds.take(0)), "is empty"),
        (lambda: Source(ds.filter(lambda x, y: True), size=0), "size"),
        (lambda: mix([a, b], ["reg"], 4, rates=[1, -1]), "'s1'"),
        (lambda: mix([a, b], ["reg"], 4, rates=[0, 0]), "all zero"),
        (lambda: mix([a, b], ["reg"], 4, rates=[1, 2, 3]), "one entry"),
        (lambda: mix([a, b], ["reg"], 4, temperature=0), "temperature"),
        (lambda: mix([a, b], ["reg"], 4, temperature=-2), "temperature"),
        (lambda: mix([a, b], ["reg"], 4, cap=0.5), "cap"),
        (lambda: mix([a, b], ["reg"], 4, rates="sqrtt"), "Unknown `rates`"),
        (lambda: mix([a, b], ["reg"], 4, layout="mix"), "Unknown `layout`"),
        (lambda: mix([a, b], ["reg"], 4, exhaustion="all"), "`exhaustion`"),
        (lambda: mix([a, b], ["reg"], 4, order="random"), "Unknown `order`"),
        (lambda: mix([a, b], ["reg"], 0), "batch_size"),
        (
            lambda: mix([a, b], ["reg"], 4, exhaustion="once", rates="sqrt"),
            "exhaustion='once'.*proportional",
        ),
        (
            lambda: mix(
                [a, b], ["reg"], 4, exhaustion="once", steps_per_epoch=3
            ),
            "steps_per_epoch",
        ),
        (
            lambda: mix(
                [a, b], ["reg"], 4, order="sequential", exhaustion="first"
            ),
            "sequential",
        ),
        (
            lambda: mix(
                [Source(f32, "reg"), Source(ints, "cls")], ["reg", cls], 4
            ),
            "Task 'cls' has integer labels .*missing_label",
        ),
        (
            lambda: mix(
                [Source(f32, "reg"), Source(ints, "cls")], ["reg", "cls"], 4
            ),
            "pass the Task objects",
        ),
        (
            lambda: mix([Source(f32, "reg"), Source(f32, "reg")], ["reg"], 4),
            "unique",
        ),
        (lambda: Source(ds, tasks=["reg", "x"]), "keys \\['reg'\\]"),
        (lambda: Source(f32), "pass `tasks=`"),
        (lambda: Source(f32.map(lambda x, y: (x, y, y)), "reg"), "pairs"),
        (lambda: Source(np.zeros(3), "reg"), "tf.data.Dataset"),
        (lambda: mix([ds], ["reg"], 4), "keras_mtl.data.Source"),
        (
            lambda: keras_mtl.data.sampling_rates([10, 0]),
            "finite and > 0",
        ),
        (
            lambda: keras_mtl.data.sampling_rates([10, 20], cap=0),
            "cap",
        ),
    ]


def test_bad_input_is_rejected_with_a_clear_error():
    for index, (build, match) in enumerate(_bad_inputs()):
        try:
            with pytest.raises((ValueError, TypeError), match=match):
                build()
        except BaseException as e:  # name the case that failed
            raise AssertionError(f"case {index} ({match!r}): {e}") from None


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(layout="mixed", exhaustion="once"),
        dict(layout="homogeneous", exhaustion="once"),
        dict(layout="mixed", exhaustion="once", order="round_robin"),
        dict(layout="homogeneous", exhaustion="largest", order="round_robin"),
        dict(layout="mixed", exhaustion="once", order="sequential"),
        dict(layout="homogeneous", exhaustion="once", order="sequential"),
    ],
)
def test_drop_remainder_gives_full_batches_and_counts_them(kwargs):
    # Sizes 70 and 30 with batches of 16: 6 examples too many in all
    # (100 = 6 * 16 + 4), and 70 = 4 * 16 + 6, 30 = 16 + 14 per source.
    sources = [_id_source(0, 70), _id_source(1, 30)]
    kept = keras_mtl.data.mix(sources, ["reg"], 16, seed=0, **kwargs)
    dropped = keras_mtl.data.mix(
        sources, ["reg"], 16, seed=0, drop_remainder=True, **kwargs
    )
    batches = _take(dropped)
    assert {len(b) for b in batches} == {16}
    assert len(batches) == dropped.steps_per_epoch
    expected = {
        ("mixed", "once"): (7, 6),
        ("homogeneous", "once"): (2 + 5, 1 + 4),  # 5 + 2 batches vs 4 + 1
        ("homogeneous", "largest"): (10, 8),  # round robin to A's last
    }
    layout = kwargs["layout"]
    key = (layout, kwargs["exhaustion"] if layout == "homogeneous" else "once")
    assert (kept.steps_per_epoch, dropped.steps_per_epoch) == expected[key]
    assert dropped.dataset.element_spec[0].shape[0] == 16


def test_drop_remainder_with_a_source_smaller_than_a_batch_is_an_error():
    sources = [_id_source(0, 70), _id_source(1, 10)]
    with pytest.raises(ValueError, match=r"\['s1'\] have fewer than"):
        keras_mtl.data.mix(
            sources, ["reg"], 16, layout="homogeneous", drop_remainder=True
        )
    with pytest.raises(TypeError, match="`drop_remainder` must be True"):
        keras_mtl.data.mix(sources, ["reg"], 16, drop_remainder=1)
