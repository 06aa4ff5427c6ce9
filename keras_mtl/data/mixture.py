"""What `keras_mtl.data.mix` returns: the dataset and its sampling state."""

import warnings

import numpy as np

from keras_mtl.data import rates as rates_module


class Mixture:
    """Batches drawn from several sources, as built by `keras_mtl.data.mix`.

    Attributes:
        dataset: `tf.data.Dataset` of batched `(x, {task: y})`, every task
            key present (missing labels filled with NaN or the task's
            `missing_label`). Pass it to `fit` with `steps_per_epoch`.
        steps_per_epoch: int or `None`. Batches per epoch; `None` where the
            epoch ends when the data does, after a random number of steps
            (`exhaustion="largest"` or `"first"` with random draws).
        rates: `tf.Variable` of shape `(S,)`, float32, on the CPU, or
            `None`. The probability of each source at each draw, read by
            the pipeline at every draw: assign to it (or call `set_rates`)
            during training to change the mix. `None` where the mix is not
            drawn at random (`exhaustion="once"` or an `order`).
        sources: list of `keras_mtl.data.Source`, in the order of `rates`.
        source_names: list of str, the sources' names in that order.
        sizes: list of int or `None`: examples per source (`None` where
            unknown).
        task_sources: dict `{task: [source names]}`: which sources label
            each task.
        layout: `"mixed"` or `"homogeneous"`.
        exhaustion: `"repeat"`, `"once"`, `"largest"` or `"first"`.
        order: `None`, `"round_robin"` or `"sequential"`.
        batch_size: int.
        label_specs: dict `{task: (tf.TensorSpec, fill)}`: each task's
            label spec, and the value that fills its labels in the batches
            of sources that do not label it (`None` if every source does).
    """

    def __init__(
        self,
        dataset,
        steps_per_epoch,
        rates,
        sources,
        layout,
        exhaustion,
        order,
        batch_size,
        task_names,
        label_specs=None,
    ):
        self.dataset = dataset
        self.steps_per_epoch = steps_per_epoch
        self.rates = rates
        self.sources = list(sources)
        self.layout = layout
        self.exhaustion = exhaustion
        self.order = order
        self.batch_size = batch_size
        self.task_names = list(task_names)
        self.label_specs = label_specs

    @property
    def source_names(self):
        return [s.name for s in self.sources]

    @property
    def sizes(self):
        return [s.size for s in self.sources]

    @property
    def task_sources(self):
        return {
            task: [s.name for s in self.sources if task in s.tasks]
            for task in self.task_names
        }

    def set_rates(self, rates):
        """Sets the probability of each source for the draws to come.

        The pipeline prefetches two batches: a change reaches the batches
        `fit` trains on within about three batches (one or two more under
        a `tf.distribute` strategy, which buffers a batch per device).

        Args:
            rates: list of numbers >= 0, not all zero, one per source, or a
                dict by source name. Normalised to sum to 1.

        Returns:
            The new rates, a float64 numpy array.
        """
        if self.rates is None:
            raise ValueError(
                f"This mixture is not drawn at random (exhaustion="
                f"{self.exhaustion!r}, order={self.order!r}), so it has no "
                "rates to set. Use the default exhaustion='repeat' without "
                "`order` for rates that change during training."
            )
        names = self.source_names
        if isinstance(rates, dict):
            unknown = sorted(set(rates) - set(names))
            missing = [n for n in names if n not in rates]
            if unknown or missing:
                raise ValueError(
                    f"`rates` must have one entry per source {names}. "
                    f"Unknown: {unknown}; missing: {missing}."
                )
            rates = [rates[n] for n in names]
        values = rates_module.check_weights(rates, names, argument="rates")
        values = values / values.sum()
        if self.exhaustion == "largest":
            largest = int(np.argmax([s or 0 for s in self.sizes]))
            if values[largest] == 0:
                raise ValueError(
                    "With exhaustion='largest' the epoch ends when source "
                    f"{names[largest]!r} runs out, so its rate must stay "
                    "> 0."
                )
        self.rates.assign(values.astype("float32"))
        return values

    def __repr__(self):
        rates = None if self.rates is None else self.rates.numpy().round(4)
        return (
            f"Mixture(sources={self.source_names}, sizes={self.sizes}, "
            f"rates={rates}, layout={self.layout!r}, "
            f"exhaustion={self.exhaustion!r}, order={self.order!r}, "
            f"batch_size={self.batch_size}, "
            f"steps_per_epoch={self.steps_per_epoch})"
        )


def unpack(x, y, kwargs, steps, model):
    """What `model.fit` or `evaluate` passes on for `x`: a `Mixture`'s
    dataset, with `kwargs[steps]` set to its `steps_per_epoch` unless
    given; any other `x` unchanged."""
    if not isinstance(x, Mixture):
        return x
    if y is not None:
        raise ValueError(
            "A keras_mtl.data.Mixture holds its labels: pass `y=None`."
        )
    if sorted(x.task_names) != sorted(model.task_names):
        raise ValueError(
            f"The mixture labels tasks {x.task_names}; the model has "
            f"tasks {model.task_names}. Build it with `tasks=model.tasks`."
        )
    method = model.weighting
    if x.layout == "homogeneous" and method.gradients in (
        "shared",
        "representation",
    ):
        warnings.warn(
            f"{type(method).__name__} combines the gradients of the tasks "
            "present in a batch, but each batch of this mixture comes from "
            "one source (layout='homogeneous'): where a source labels one "
            "task there is nothing to combine. Use layout='mixed'.",
            stacklevel=3,
        )
    if kwargs.get(steps) is None and x.steps_per_epoch is not None:
        kwargs[steps] = x.steps_per_epoch
    if steps == "steps_per_epoch":
        kwargs.setdefault("shuffle", False)  # the mixture shuffles
    return x.dataset
