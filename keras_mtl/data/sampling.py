"""`mix`: one training dataset drawn from several per-task datasets."""

import math

import numpy as np
import tensorflow as tf

from keras_mtl.data import rates as rates_module
from keras_mtl.data import validation
from keras_mtl.data.mixture import Mixture

LAYOUTS = ("mixed", "homogeneous")
EXHAUSTIONS = ("repeat", "once", "largest", "first")
ORDERS = ("round_robin", "sequential")
PREFETCH_BATCHES = 2


def _filler(source, label_specs):
    """The map function that completes a batch of a source's labels."""
    names = list(label_specs)

    def fill(x, y):
        if not source.labels_dict:
            y = {source.tasks[0]: y}
        count = tf.shape(tf.nest.flatten(y)[0])[:1]
        full = {}
        for name in names:
            if name in y:
                full[name] = y[name]
                continue
            spec, value = label_specs[name]
            dims = tf.constant(spec.shape.as_list(), tf.int32)
            shape = tf.concat([count, dims], 0)
            full[name] = tf.fill(shape, tf.constant(value, spec.dtype))
        return x, full

    return fill


def source_batch(mixture, index, size):
    """The first `size` examples of `mixture.sources[index]`, as one batch
    `(x, {task: y})` with every task's labels (filled as `mix` fills
    them)."""
    source = mixture.sources[index]
    dataset = source.dataset.batch(size).take(1)
    return next(iter(dataset.map(_filler(source, mixture.label_specs))))


def _source_dataset(
    source, label_specs, batch_size, layout, repeat, buffer, drop=False
):
    """A source shuffled, filled, and batched (homogeneous) or not (mixed).

    Labels are filled a batch at a time, then unbatched for the mixed
    layout: a map call per example would cost more than the rest of the
    pipeline together.
    """
    ds = source.dataset
    if source.cardinality == tf.data.UNKNOWN_CARDINALITY and source.size:
        ds = ds.apply(tf.data.experimental.assert_cardinality(source.size))
    if buffer is not None:
        ds = ds.shuffle(
            buffer[0], seed=buffer[1], reshuffle_each_iteration=True
        )
    if repeat:
        ds = ds.repeat()
    complete = source.labels_dict and set(source.tasks) == set(label_specs)
    if layout == "mixed" and complete:
        return ds
    # The mixed layout batches only to fill the labels: nothing to drop.
    ds = ds.batch(batch_size, drop_remainder=drop and layout != "mixed")
    if not complete:
        ds = ds.map(_filler(source, label_specs))
    return ds.unbatch() if layout == "mixed" else ds


def _drawn_selector(rates, block, seed):
    """Source ids drawn from the `rates` variable, `block` per read.

    One read and one categorical draw per batch (mixed layout: `block` is
    the batch size) rather than per example, as `sample_from_datasets`
    with a dataset of weights would do.
    """

    def draw(seed_pair):
        logits = tf.math.log(rates.read_value())[tf.newaxis]
        return tf.random.stateless_categorical(
            logits, block, seed=seed_pair, dtype=tf.int64
        )[0]

    seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True)
    return seeds.batch(2).map(draw).unbatch()


def _shuffled_selector(counts, seed):
    """Source ids, `counts[i]` of id `i`, in a fresh random order each pass."""
    ids = tf.repeat(tf.range(len(counts), dtype=tf.int64), counts)
    seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True)
    return (
        seeds.batch(2)
        .take(1)
        .map(lambda s: tf.random.experimental.stateless_shuffle(ids, s))
        .unbatch()
    )


def _rates_variable(values):
    if tf.distribute.has_strategy():
        raise ValueError(
            "Call `keras_mtl.data.mix` outside `strategy.scope()`: the "
            "input pipeline reads the mixture's `rates` variable on the "
            "host CPU, and inside a scope it would be mirrored onto the "
            "replicas' devices. Build the model inside the scope and the "
            "mixture outside it."
        )
    with tf.init_scope(), tf.device("/cpu:0"):
        return tf.Variable(
            values.astype("float32"), trainable=False, name="mixture_rates"
        )


def mix(
    sources,
    tasks,
    batch_size,
    rates="proportional",
    temperature=1.0,
    cap=None,
    scale=1.0,
    layout="mixed",
    exhaustion="repeat",
    steps_per_epoch=None,
    shuffle=True,
    seed=None,
    order=None,
    drop_remainder=False,
):
    """Mixes per-task datasets into one dataset of multi-task batches.

    Each source labels some of the tasks. Every batch holds labels for all
    `tasks`: those a source does not label are filled as missing, NaN for
    float labels and the task's `missing_label` for integer ones, so that
    `MTLModel`'s masking leaves them out of the task's loss and metrics.

    Sources are drawn at random: source `i` with probability
    `p_i ∝ min(scale * n_i, cap) ** (1 / temperature)` (see
    `keras_mtl.data.sampling_rates`), or from user weights. The rates live
    in `mixture.rates`, a variable the pipeline reads at every draw, so a
    callback or scheduler can change them as training goes. `order` gives
    deterministic schedules instead.

    Batch layout. `"mixed"` draws each example on its own, so a batch holds
    examples of several sources (seqio, Hugging Face
    `interleave_datasets`); `"homogeneous"` draws whole batches, each from
    one source (MT-DNN, jiant). Gradient-level weighting methods (PCGrad,
    MGDA, CAGrad, GradNorm, ...) combine the gradients of the tasks present
    in a batch: they need the mixed layout, where several tasks are
    labelled in every batch; with homogeneous batches of single-task
    sources they have only one task to combine and reduce to plain
    training on it.

    Exhaustion, i.e. what an epoch is:

    - `"repeat"` (default, seqio and Model Garden): every source repeats
      forever, reshuffled at each pass, and an epoch is `steps_per_epoch`
      batches. The mix is exactly the rates, at any point of training.
    - `"once"` (Emmental, MT-DNN): every example once per epoch, in a new
      random interleaving each epoch; the mix is then proportional to the
      sizes, so `rates` must stay `"proportional"`.
    - `"largest"` (LibMTL): the epoch ends when the largest source has
      given each of its examples once; the others restart (reshuffled) as
      they run out, so small sources are oversampled when their rate is
      larger than their share of examples.
    - `"first"` (Hugging Face's default): the epoch ends when the first
      source runs out; the others are cut short.

    Restarted sources reshuffle at each pass (no replay of a cached first
    pass). The draws go to `tf.data.Dataset.choose_from_datasets` with
    `stop_on_empty_dataset=True`, deliberately: with `False`, the default of
    `sample_from_datasets`, a source that runs out is skipped and the mix
    silently changes. Rather than `sample_from_datasets` with a dataset of
    weight vectors, which reads the weights once per example, the pipeline
    reads `mixture.rates` once per batch and draws the whole batch's
    sources at once (a mixed pipeline about ten times faster); a change of
    rates reaches training within about three batches (two are
    prefetched).

    Args:
        sources: list of `keras_mtl.data.Source`, or a dict of them by
            name (the keys name the sources).
        tasks: list of `keras_mtl.Task` (e.g. `model.tasks`) or task
            names: the label keys of every batch. The `Task`s'
            `missing_label` fills the integer labels a source lacks; with
            names, only float labels can be filled.
        batch_size: int >= 1. Examples per batch (the global batch under a
            `tf.distribute` strategy).
        rates: `"proportional"`, `"sqrt"`, `"uniform"`, or a list (or dict
            by source name) of weights >= 0. `"proportional"` follows the
            sizes through `temperature`, `cap` and `scale`; `"sqrt"` is
            temperature 2; user weights are raised to `1 / temperature`.
            Defaults to `"proportional"`.
        temperature: number > 0. Defaults to `1.0`.
        cap: number >= 1 or `None`. T5's cap on the examples counted per
            source. Defaults to `None`.
        scale: number > 0. Multiplies the sizes before the cap. Defaults to
            `1.0`.
        layout: `"mixed"` or `"homogeneous"`. Defaults to `"mixed"`.
        exhaustion: `"repeat"`, `"once"`, `"largest"` or `"first"`.
            Defaults to `"repeat"`.
        steps_per_epoch: int or `None`. Batches per epoch, for
            `exhaustion="repeat"` only. Defaults to `None`:
            `ceil(sum(n_i) / batch_size)`, as many examples as one pass over
            every source (with `order="sequential"`, exactly one pass).
        shuffle: bool or int. Shuffles each source, anew at every pass:
            `True` with a buffer of `min(n_i, 10_000)` examples (a full
            shuffle for sources of up to 10,000 examples), an int for that
            buffer size, `False` to keep each source's own order. Defaults
            to `True`.
        seed: int or `None`. Seeds the shuffles and the draws, together
            with TensorFlow's global seed as every seeded `tf.data` op
            does: mixtures built with the same `seed` after the same
            `keras.utils.set_random_seed` give the same batches. Each new
            pass (and each new iterator) still gets a new order. Defaults
            to `None`: seeds from the global seed, else random.
        order: `None`, `"round_robin"` or `"sequential"`. A deterministic
            schedule instead of random draws: sources take turns, an example
            (mixed) or a batch (homogeneous) each, or come one after the
            other. `"sequential"` takes exhaustion `"once"` or `"repeat"`.
            Defaults to `None` (random draws).
        drop_remainder: bool. Whether a batch of fewer than `batch_size`
            examples is dropped: the last one of each source's pass
            (homogeneous), or of the epoch (mixed, with an exhaustion that
            ends it). Every batch then has the static shape `batch_size`,
            which XLA (`jit_compile`) compiles once and TPUs require; an
            epoch counts `floor` instead of `ceil` batches. Defaults to
            `False`.

    Returns:
        A `keras_mtl.data.Mixture`: `mixture.dataset` to train on,
        `mixture.steps_per_epoch` for `fit`, and `mixture.rates`, the
        variable of rates (`None` with `exhaustion="once"` or an `order`).
        Call `mix` outside any `strategy.scope()`, since the pipeline reads
        that variable on the host CPU.

    Example:

    ```python
    import numpy as np
    import tensorflow as tf
    import keras
    import keras_mtl

    tasks = [
        keras_mtl.Task("left", loss="sparse_categorical_crossentropy",
                       units=10, activation="softmax", missing_label=-1),
        keras_mtl.Task("right", loss="sparse_categorical_crossentropy",
                       units=10, activation="softmax", missing_label=-1),
    ]
    x_left = np.random.rand(900, 16).astype("float32")
    x_right = np.random.rand(100, 16).astype("float32")
    left = keras_mtl.data.Source(tf.data.Dataset.from_tensor_slices(
        (x_left, np.random.randint(0, 10, 900).astype("int32"))), "left")
    right = keras_mtl.data.Source(tf.data.Dataset.from_tensor_slices(
        (x_right, np.random.randint(0, 10, 100).astype("int32"))), "right")
    mixture = keras_mtl.data.mix([left, right], tasks, batch_size=32,
                                 rates="sqrt", seed=0)
    mixture.rates.numpy()  # [0.75, 0.25]
    model = keras_mtl.build_mtl_model(keras.Input((16,)), tasks, trunk=[32])
    model.compile(optimizer="adam")
    model.fit(mixture.dataset, steps_per_epoch=mixture.steps_per_epoch,
              epochs=2)
    ```

    References:
        - [Raffel et al., 2020](https://jmlr.org/papers/v21/20-074.html),
          T5, §3.5.2: examples-proportional and temperature mixing.
        - [Stickland & Murray, 2019](https://arxiv.org/abs/1902.02671),
          annealed sampling (`keras_mtl.data.annealed_rates`).
        - [Liu et al., 2019](https://arxiv.org/abs/1901.11504), MT-DNN:
          homogeneous batches, each example once per epoch.
    """
    sources = validation.check_sources(sources)
    tasks = validation.check_tasks(tasks)
    if (
        not isinstance(batch_size, (int, np.integer))
        or isinstance(batch_size, bool)
        or batch_size < 1
    ):
        raise ValueError(
            f"`batch_size` must be an int >= 1. Received: {batch_size!r}"
        )
    batch_size = int(batch_size)
    if not isinstance(drop_remainder, bool):
        raise TypeError(
            "`drop_remainder` must be True or False. "
            f"Received: drop_remainder={drop_remainder!r}"
        )
    validation.check_choice(layout, LAYOUTS, "layout")
    validation.check_choice(exhaustion, EXHAUSTIONS, "exhaustion")
    validation.check_choice(order, ORDERS, "order", allow_none=True)
    rates_module.check_temperature(temperature)
    rates_module.check_cap(cap)
    rates_module.check_scale(scale)
    validation.check_steps(steps_per_epoch, exhaustion)
    if order == "sequential" and exhaustion not in ("repeat", "once"):
        raise ValueError(
            "`order='sequential'` takes exhaustion 'once' or 'repeat'; "
            f"Received: exhaustion={exhaustion!r}"
        )
    label_specs = validation.label_specs(sources, tasks)
    validation.check_inputs(sources)
    if exhaustion != "repeat":
        infinite = [s.name for s in sources if s.infinite]
        if infinite:
            raise ValueError(
                f"Sources {infinite} are infinite, so exhaustion="
                f"{exhaustion!r} cannot end an epoch. Use "
                "exhaustion='repeat' (with `steps_per_epoch`), or finite "
                "datasets."
            )
    if exhaustion in ("once", "largest"):
        validation.need_sizes(
            sources, f"exhaustion={exhaustion!r} needs every size"
        )
    if exhaustion == "repeat" and steps_per_epoch is None:
        validation.need_sizes(
            sources,
            "the default `steps_per_epoch` is one pass over every source "
            "(or pass `steps_per_epoch=`)",
        )
    names = [s.name for s in sources]
    sizes = [s.size for s in sources]
    drawn = order is None and exhaustion != "once"
    if drawn:
        values = rates_module.resolve_rates(
            rates, sizes, names, temperature, cap, scale
        )
    else:
        why = (
            f"`order={order!r}` fixes the order"
            if order
            else "exhaustion='once' gives every example once (a mix "
            "proportional to the sizes)"
        )
        validation.check_proportional(rates, temperature, cap, scale, why)
    largest = int(np.argmax(sizes)) if exhaustion == "largest" else None
    if drawn and largest is not None and values[largest] == 0:
        raise ValueError(
            f"With exhaustion='largest' the epoch ends when source "
            f"{names[largest]!r} runs out, so its rate must be > 0."
        )

    seeds = validation.derive_seeds(seed, len(sources) + 1)
    buffers = validation.shuffle_buffers(shuffle, sources, seeds[:-1])
    homogeneous = layout == "homogeneous"

    def prepared(i, repeat):
        return _source_dataset(
            sources[i],
            label_specs,
            batch_size,
            layout,
            repeat,
            buffers[i],
            drop_remainder,
        )

    def restarts(i):
        return exhaustion == "repeat" or (
            exhaustion == "largest" and i != largest
        )

    # Units drawn: examples (mixed) or batches (homogeneous) per source.
    batches = (
        (lambda n: n // batch_size)
        if drop_remainder
        else (lambda n: math.ceil(n / batch_size))
    )
    units = None
    if all(n is not None for n in sizes):
        units = [batches(n) if homogeneous else n for n in sizes]
        if homogeneous and drop_remainder and 0 in units:
            small = [s.name for s, u in zip(sources, units) if u == 0]
            raise ValueError(
                f"Sources {small} have fewer than batch_size={batch_size} "
                "examples: with drop_remainder=True and "
                "layout='homogeneous' they give no batch."
            )

    def to_steps(count):
        if count is None or homogeneous:
            return count
        return batches(count)

    rates_variable = None
    steps = None
    if order == "sequential":
        dataset = prepared(0, False)
        for i in range(1, len(sources)):
            dataset = dataset.concatenate(prepared(i, False))
        if not homogeneous:
            dataset = dataset.batch(batch_size, drop_remainder=drop_remainder)
        steps = to_steps(sum(units)) if units else None
        if exhaustion == "repeat":
            dataset = dataset.repeat()
    else:
        datasets = [prepared(i, restarts(i)) for i in range(len(sources))]
        if order == "round_robin":
            dataset = tf.data.Dataset.choose_from_datasets(
                datasets,
                tf.data.Dataset.range(len(sources)).repeat(),
                stop_on_empty_dataset=exhaustion != "once",
            )
            if exhaustion == "once":
                steps = to_steps(sum(units))
            elif exhaustion == "largest":
                steps = to_steps(units[largest] * len(sources) + largest)
            elif exhaustion == "first" and units:
                steps = to_steps(
                    min(c * len(sources) + i for i, c in enumerate(units))
                )
        elif exhaustion == "once":
            dataset = tf.data.Dataset.choose_from_datasets(
                datasets,
                _shuffled_selector(units, seeds[-1]),
                stop_on_empty_dataset=True,
            )
            steps = to_steps(sum(units))
        else:
            rates_variable = _rates_variable(values)
            dataset = tf.data.Dataset.choose_from_datasets(
                datasets,
                _drawn_selector(
                    rates_variable, 1 if homogeneous else batch_size, seeds[-1]
                ),
                stop_on_empty_dataset=True,
            )
        if not homogeneous:
            dataset = dataset.batch(batch_size, drop_remainder=drop_remainder)
    if exhaustion == "repeat":
        if steps_per_epoch is not None:
            steps = steps_per_epoch
        elif order != "sequential":
            steps = math.ceil(sum(sizes) / batch_size)
    elif steps is not None:
        dataset = dataset.apply(tf.data.experimental.assert_cardinality(steps))
    elif dataset.cardinality() == tf.data.INFINITE_CARDINALITY:
        # Restarted sources make tf.data believe the epoch never ends; a
        # claim of infinity would also make tf.distribute skip its check
        # that every worker still has data.
        dataset = dataset.take_while(lambda *_: True)
    return Mixture(
        dataset=dataset.prefetch(PREFETCH_BATCHES),
        steps_per_epoch=None if steps is None else int(steps),
        rates=rates_variable,
        sources=sources,
        layout=layout,
        exhaustion=exhaustion,
        order=order,
        batch_size=batch_size,
        task_names=list(tasks),
        label_specs=label_specs,
    )
