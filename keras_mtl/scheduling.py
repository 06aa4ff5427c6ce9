"""Task scheduling: which sources a `Mixture` draws from, as training goes.

A `SamplingSchedule` is a Keras callback that sets the sampling rates of a
`keras_mtl.data.Mixture` (the variable its pipeline reads at every draw)
from the epoch, or from the step. Its rates are a function of the epoch or
step alone, so an interrupted run resumed by `keras.callbacks.
BackupAndRestore` (which restores the epoch and the optimizer's step
count) continues with the rates it had. The current rates are logged as
`<source>_rate`.

Schedules that change the weights of the tasks in the loss, rather than
which data arrives, are weighting methods: `keras_mtl.weighting.
LossBalanced` and `keras_mtl.weighting.DynamicTaskPrioritization`.
"""

import keras
import numpy as np

from keras_mtl.data import Mixture
from keras_mtl.data import annealed_rates

__all__ = ["SamplingSchedule", "AnnealedSampling", "Curriculum"]

UNITS = ("epoch", "step")


class SamplingSchedule(keras.callbacks.Callback):
    """Base class: sets a mixture's sampling rates as training goes.

    Subclasses implement `rates(epoch, step)`, returning one rate per
    source (a list, array, or dict by source name; normalised to sum to 1)
    or `None` to keep the current rates. With `unit="epoch"` it is called
    at the beginning of every epoch (`step` is `None`); with `unit="step"`
    before every batch, with the optimizer's step count. The pipeline
    prefetches: a change reaches the batches `fit` trains on within a few
    batches (see `keras_mtl.data.Mixture.set_rates`).

    Args:
        mixture: `keras_mtl.data.Mixture` drawn at random (it has `rates`).
        unit: `"epoch"` or `"step"`. Defaults to `"epoch"`.

    Example:

    ```python
    class MainTaskFirst(keras_mtl.scheduling.SamplingSchedule):
        # Only source "main" for two epochs, then every source equally.
        def rates(self, epoch, step):
            if epoch < 2:
                return {name: float(name == "main")
                        for name in self.mixture.source_names}
            return [1.0] * len(self.mixture.sources)
    ```
    """

    def __init__(self, mixture, unit="epoch"):
        super().__init__()
        if not isinstance(mixture, Mixture):
            raise TypeError(
                "`mixture` must be a keras_mtl.data.Mixture (what "
                f"`keras_mtl.data.mix` returns). Received: {mixture!r}"
            )
        if mixture.rates is None:
            raise ValueError(
                f"{type(self).__name__} sets sampling rates, but this "
                f"mixture is not drawn at random (exhaustion="
                f"{mixture.exhaustion!r}, order={mixture.order!r}). Use "
                "exhaustion='repeat' or 'largest' or 'first', no `order`."
            )
        if unit not in UNITS:
            raise ValueError(
                f"`unit` must be one of {UNITS}. Received: unit={unit!r}"
            )
        self.mixture = mixture
        self.unit = unit
        self._epoch = 0

    def rates(self, epoch, step):
        """The rates from `epoch` (0-based) or `step` on; `None`: keep."""
        raise NotImplementedError(
            f"{type(self).__name__} must implement `rates(epoch, step)`."
        )

    def _apply(self, epoch, step):
        rates = self.rates(epoch, step)
        if rates is not None:
            self.mixture.set_rates(rates)

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch
        if self.unit == "epoch":
            self._apply(epoch, None)

    def on_train_batch_begin(self, batch, logs=None):
        if self.unit == "step":
            step = int(self.model.optimizer.iterations.numpy())
            self._apply(self._epoch, step)

    def on_epoch_end(self, epoch, logs=None):
        if logs is None:
            return
        values = self.mixture.rates.numpy()
        for name, value in zip(self.mixture.source_names, values):
            logs[f"{name}_rate"] = float(value)


class AnnealedSampling(SamplingSchedule):
    """Annealed sampling (Stickland & Murray, 2019): from proportional to
    the source sizes towards uniform.

    In epoch `e = 1, ..., E`, source `i` is drawn with probability
    `p_i ∝ n_i ** alpha`, `alpha = 1 - 0.8 (e - 1) / (E - 1)`: 1.0 in the
    first epoch, 0.2 in the last (the paper's schedule; TF Model Garden's
    is one epoch off). See `keras_mtl.data.annealed_rates`.

    Args:
        mixture: `keras_mtl.data.Mixture` drawn at random, every source of
            known size.
        epochs: int >= 1, the `E` of the formula: the number of epochs
            `fit` runs. Epochs past it keep alpha 0.2.

    Example:

    ```python
    mixture = keras_mtl.data.mix(sources, model.tasks, batch_size=64)
    model.fit(mixture, epochs=5,
              callbacks=[keras_mtl.scheduling.AnnealedSampling(mixture, 5)])
    ```

    References:
        - [Stickland & Murray, 2019](https://arxiv.org/abs/1902.02671),
          BERT and PALs, §4.
    """

    def __init__(self, mixture, epochs):
        super().__init__(mixture, unit="epoch")
        if not isinstance(epochs, (int, np.integer)) or isinstance(
            epochs, bool
        ):
            raise TypeError(f"`epochs` must be an int. Received: {epochs!r}")
        if epochs < 1:
            raise ValueError(f"`epochs` must be >= 1. Received: {epochs}")
        unknown = [
            s.name
            for s, size in zip(mixture.sources, mixture.sizes)
            if not size
        ]
        if unknown:
            raise ValueError(
                f"AnnealedSampling draws by source size; sources {unknown} "
                "have no known size: give `keras_mtl.data.Source(size=...)`."
            )
        self.epochs = int(epochs)

    def rates(self, epoch, step):
        return annealed_rates(
            self.mixture.sizes, min(epoch + 1, self.epochs), self.epochs
        )


class Curriculum(SamplingSchedule):
    """A fixed curriculum: piecewise-constant rates from given epochs (or
    steps) on.

    `phases` maps the first epoch (0-based, as Keras counts) or step of a
    phase to its rates. Before the first phase, the mixture's rates stay.
    Sources joining one after another, sequential training (one source per
    phase) and a main task whose share grows are all curricula.

    Args:
        mixture: `keras_mtl.data.Mixture` drawn at random.
        phases: dict `{start: rates}`, `start` an int >= 0, `rates` a list
            (one number >= 0 per source, not all zero) or a dict by source
            name (sources left out get 0).
        unit: `"epoch"` or `"step"`: what `start` counts. Defaults to
            `"epoch"`.

    Example:

    ```python
    # Source "b" joins at epoch 2; from epoch 4 on only "b" is drawn.
    schedule = keras_mtl.scheduling.Curriculum(
        mixture, {0: {"a": 1.0}, 2: {"a": 1.0, "b": 1.0}, 4: {"b": 1.0}})
    ```

    References:
        - [Kiperwasser & Ballesteros, 2018](https://arxiv.org/abs/1804.08915),
          Scheduled Multi-Task Learning.
    """

    def __init__(self, mixture, phases, unit="epoch"):
        super().__init__(mixture, unit=unit)
        if not isinstance(phases, dict) or not phases:
            raise TypeError(
                "`phases` must be a non-empty dict {start: rates}. "
                f"Received: phases={phases!r}"
            )
        names = mixture.source_names
        checked = {}
        for start, rates in phases.items():
            if (
                not isinstance(start, (int, np.integer))
                or isinstance(start, bool)
                or start < 0
            ):
                raise ValueError(
                    f"Phase starts are ints >= 0 ({unit}s). Received: {start!r}"
                )
            if isinstance(rates, dict):
                unknown = sorted(set(rates) - set(names))
                if unknown:
                    raise ValueError(
                        f"Phase {start} names unknown sources {unknown}. "
                        f"Expected names among {names}."
                    )
                rates = [rates.get(n, 0.0) for n in names]
            values = np.asarray(rates, dtype="float64")
            if values.shape != (len(names),):
                raise ValueError(
                    f"Phase {start} needs one rate per source {names}. "
                    f"Received: {rates!r}"
                )
            if not np.all(np.isfinite(values)) or (values < 0).any():
                raise ValueError(
                    f"Rates of phase {start} must be finite and >= 0. "
                    f"Received: {rates!r}"
                )
            if values.sum() == 0:
                raise ValueError(
                    f"Rates of phase {start} are all zero: at least one "
                    "source must be drawn."
                )
            checked[int(start)] = values / values.sum()
        self.phases = dict(sorted(checked.items()))

    def rates(self, epoch, step):
        now = epoch if self.unit == "epoch" else step
        current = None
        for start, rates in self.phases.items():
            if start <= now:
                current = rates
        return current
