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

import json
import math
import os

import keras
import numpy as np
import tensorflow as tf

from keras_mtl.data import Mixture
from keras_mtl.data import annealed_rates
from keras_mtl.data import sampling

__all__ = [
    "SamplingSchedule",
    "AnnealedSampling",
    "Curriculum",
    "LearningProgressBandit",
]

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


class LearningProgressBandit(SamplingSchedule):
    """A learning-progress bandit (Exp3.S, Graves et al., 2017) choosing
    the source of the next batch.

    Each source is an arm. The mixture draws batch `t` from source `i`
    with probability `pi_t(i) = (1 - epsilon) softmax(w)_i + epsilon / N`,
    set before every batch. The reward of a draw is its prediction gain:
    the drop of the source's loss (the mean of its tasks' losses) on a
    fixed probe batch of that source, from before the step to after it,
    `r = L_i(probe_i; theta_t) - L_i(probe_i; theta_t+1)`. It is rescaled
    to `[-1, 1]` by the 20th and 80th percentiles `q20`, `q80` of the last
    `history` rewards (-1 below `q20`, 1 above `q80`, linear between; the
    sign of `r - q` while the history holds one distinct value `q`, the
    sign of `r` while it is empty) and updates the logits with an
    importance weight and a share `alpha` of the others (Exp3.S):

    ```
    r~_j = (r^ [j == i] + beta) / pi_t(j)
    w_j <- log((1 - alpha) exp(w_j + eta r~_j)
               + alpha / (N - 1) sum_{k != j} exp(w_k + eta r~_k))
    ```

    `alpha` is constant, as in Auer et al.'s Exp3.S: it keeps every
    source's weight within reach, so the policy can follow progress that
    moves between sources. (ESPnet's `EXP3SCurriculumGenerator` uses
    `alpha_t = 1 / t`, which at `t = 1` hands each arm the other's weight
    and with two sources at `t = 2` makes them equal.)

    The probe of a source is its first `probe_size` examples (their
    labels filled as `mix` fills them), evaluated with `training=False`
    after every step: one forward pass over `N * probe_size` examples per
    step, outside the compiled step. Graves et al. measure the gain on the
    batch just trained; a fixed probe measures it on the same examples
    before and after too, without keeping the batch. The loss difference
    between two different batches of a source would be dominated by the
    batches' spread, not by learning.

    Needs a `layout="homogeneous"` mixture (each batch from one source)
    whose sources label disjoint sets of tasks (the tasks labelled in a
    batch, read from `<task>_examples`, name its source), and
    `steps_per_execution=1`. The pipeline prefetches, so a batch is drawn
    under the rates of up to three batches before; the importance weight
    uses the rates set when it was trained. The state is the logits, the
    reward history and the step count: `get_state()` / `set_state()`;
    with `backup_dir` it is written at every epoch end and read back when
    training begins, as `keras.callbacks.BackupAndRestore(
    save_freq="epoch")` does for the model. The policy is logged as
    `<source>_rate`.

    Args:
        mixture: `keras_mtl.data.Mixture`, homogeneous, drawn at random.
        epsilon: number in `[0, 1]`. Share of the uniform policy. Defaults
            to `0.05`.
        eta: number > 0. Step size of the logits. Defaults to `0.01`.
        beta: number >= 0. Bonus added to every arm's reward. Defaults to
            `0.0`.
        alpha: number in `[0, 1)`. Share of the other arms mixed into each
            arm's weight at every update. Defaults to `0.001`.
        history: int >= 1. Rewards kept for the percentiles. Defaults to
            `1000`.
        probe_size: int >= 1 or `None`. Examples per source's probe.
            Defaults to `None`: the mixture's batch size.
        backup_dir: str or `None`. Directory for the state file. Defaults
            to `None`.

    Example:

    ```python
    mixture = keras_mtl.data.mix(sources, model.tasks, batch_size=64,
                                 layout="homogeneous", steps_per_epoch=100)
    bandit = keras_mtl.scheduling.LearningProgressBandit(mixture, eta=0.05)
    model.fit(mixture, epochs=5, callbacks=[bandit])
    ```

    References:
        - [Graves et al., 2017](https://arxiv.org/abs/1704.03003),
          Automated Curriculum Learning for Neural Networks, §3.
        - [Auer et al., 2002](https://doi.org/10.1137/S0097539701398375),
          The Nonstochastic Multiarmed Bandit Problem (Exp3.S).
    """

    STATE_FILE = "learning_progress_bandit.json"

    def __init__(
        self,
        mixture,
        epsilon=0.05,
        eta=0.01,
        beta=0.0,
        alpha=0.001,
        history=1000,
        probe_size=None,
        backup_dir=None,
    ):
        super().__init__(mixture, unit="step")
        if mixture.layout != "homogeneous":
            raise ValueError(
                "LearningProgressBandit chooses the source of each batch: "
                "it needs a mixture with layout='homogeneous'. Received "
                f"layout={mixture.layout!r}."
            )
        owner = {}
        for source in mixture.sources:
            for task in source.tasks:
                if task in owner:
                    raise ValueError(
                        f"Sources {owner[task]!r} and {source.name!r} both "
                        f"label task '{task}': LearningProgressBandit tells "
                        "the source of a batch by the tasks it labels, so "
                        "the sources must label disjoint sets of tasks."
                    )
                owner[task] = source.name
        _check_number("epsilon", epsilon, 0.0, 1.0)
        _check_number("eta", eta, 0.0, None, open_low=True)
        _check_number("beta", beta, 0.0, None)
        _check_number("alpha", alpha, 0.0, 1.0, open_high=True)
        for name, value in (("history", history), ("probe_size", probe_size)):
            if value is None and name == "probe_size":
                continue
            if not isinstance(value, int) or isinstance(value, bool):
                raise TypeError(f"`{name}` must be an int. Received: {value!r}")
            if value < 1:
                raise ValueError(f"`{name}` must be >= 1. Received: {value}")
        self.epsilon, self.eta, self.beta = epsilon, eta, beta
        self.alpha = alpha
        self.history = history
        self.probe_size = probe_size or mixture.batch_size
        self.backup_dir = backup_dir
        self._source_of = {
            task: mixture.source_names.index(name)
            for task, name in owner.items()
        }
        self.set_state(None)

    def get_state(self):
        """The bandit's state, a JSON-serialisable dict."""
        return {
            "logits": self.logits.tolist(),
            "rewards": list(self.rewards),
            "steps": self.steps,
        }

    def set_state(self, state):
        """Restores `get_state()`'s dict; `None`: a uniform start."""
        n = len(self.mixture.sources)
        state = state or {}
        self.logits = np.asarray(state.get("logits", np.zeros(n)), "float64")
        self.rewards = [float(r) for r in state.get("rewards", [])]
        self.steps = int(state.get("steps", 0))

    def policy(self):
        """`(N,)` probabilities: `(1 - epsilon) softmax(w) + epsilon / N`."""
        z = np.exp(self.logits - self.logits.max())
        n = len(self.logits)
        return (1 - self.epsilon) * z / z.sum() + self.epsilon / n

    def rates(self, epoch, step):
        return self.policy()

    def probe_losses(self):
        """`(N,)`: each source's loss on its probe, with the model now."""
        return np.asarray(self._probe_losses(), "float64")

    def on_train_begin(self, logs=None):
        per_execution = getattr(self.model, "steps_per_execution", 1)
        if per_execution != 1:
            raise ValueError(
                "LearningProgressBandit reads every batch's logs: compile "
                f"with steps_per_execution=1 (got {per_execution})."
            )
        path = self._state_path()
        if path and os.path.exists(path):
            with open(path) as f:
                self.set_state(json.load(f))
        model, tasks = self.model, self.model.task_names
        probes = [
            sampling.source_batch(self.mixture, i, self.probe_size)
            for i in range(len(self.mixture.sources))
        ]
        own = [
            [tasks.index(t) for t in source.tasks]
            for source in self.mixture.sources
        ]

        @tf.function
        def probe_losses():
            out = []
            for (x, y), indices in zip(probes, own):
                losses = model.compute_task_losses(y, model(x, training=False))
                out.append(
                    tf.add_n([losses[k] for k in indices]) / len(indices)
                )
            return tf.stack(out)

        self._probe_losses = probe_losses
        self._before = self.probe_losses()

    def on_epoch_begin(self, epoch, logs=None):
        super().on_epoch_begin(epoch, logs)
        self._examples = {}  # task -> labelled examples so far this epoch

    def on_train_batch_begin(self, batch, logs=None):
        self._rates = self.policy()
        self.mixture.set_rates(self._rates)

    def on_train_batch_end(self, batch, logs=None):
        self.steps += 1
        after = self.probe_losses()
        before, self._before = self._before, after
        sources = set()
        for task, index in self._source_of.items():
            examples = float(logs.get(f"{task}_examples", 0.0))
            if examples > self._examples.get(task, 0.0):
                sources.add(index)
            self._examples[task] = examples
        if len(sources) != 1:
            return  # nothing labelled, or a skipped step
        (source,) = sources
        progress = before[source] - after[source]
        if math.isfinite(progress):
            self.update(source, progress, self._rates)

    def update(self, source, progress, rates):
        """One Exp3.S update: `progress` of `source`, drawn under `rates`."""
        reward = self._rescale(progress)
        self.rewards = (self.rewards + [float(progress)])[-self.history :]
        bonus = self.beta / np.asarray(rates, "float64")
        bonus[source] = (reward + self.beta) / rates[source]
        moved = self.logits + self.eta * bonus
        n, alpha = len(moved), self.alpha
        top = moved.max()
        each = np.exp(moved - top)
        others = (each.sum() - each) / max(n - 1, 1)
        self.logits = top + np.log((1 - alpha) * each + alpha * others)
        self.logits -= self.logits.max()  # the policy is shift-invariant

    def _rescale(self, progress):
        if not self.rewards:
            return float(np.sign(progress))
        low, high = np.quantile(self.rewards, [0.2, 0.8])
        if high <= low:
            return float(np.sign(progress - low))
        return float(np.clip(2 * (progress - low) / (high - low) - 1, -1, 1))

    def on_epoch_end(self, epoch, logs=None):
        self.mixture.set_rates(self.policy())  # what the next batch gets
        super().on_epoch_end(epoch, logs)
        path = self._state_path()
        if path:
            os.makedirs(self.backup_dir, exist_ok=True)
            with open(path, "w") as f:
                json.dump(self.get_state(), f)

    def _state_path(self):
        if self.backup_dir is None:
            return None
        return os.path.join(self.backup_dir, self.STATE_FILE)


def _check_number(name, value, low, high, open_low=False, open_high=False):
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise TypeError(f"`{name}` must be a number. Received: {value!r}")
    if (
        not math.isfinite(value)
        or value < low
        or (open_low and value == low)
        or (high is not None and value > high)
        or (open_high and value == high)
    ):
        bounds = f"> {low}" if open_low else f">= {low}"
        if high is not None:
            bounds = f"in [{low}, {high}{')' if open_high else ']'}"
        raise ValueError(f"`{name}` must be {bounds}. Received: {value!r}")
