"""Sampling rates across datasets: p_i proportional to min(s n_i, K)^(1/T)."""

import math

import numpy as np

RATE_NAMES = ("uniform", "proportional", "sqrt")


def _is_number(value):
    return isinstance(value, (int, float, np.number)) and not isinstance(
        value, bool
    )


def check_temperature(temperature):
    if not _is_number(temperature) or not temperature > 0:
        raise ValueError(
            "`temperature` must be a number > 0 (`float('inf')` gives "
            f"uniform rates). Received: temperature={temperature!r}"
        )


def check_cap(cap):
    if cap is not None and (not _is_number(cap) or not cap >= 1):
        raise ValueError(
            "`cap` must be None or a number >= 1 (a maximum number of "
            f"examples per source). Received: cap={cap!r}"
        )


def check_scale(scale):
    if not _is_number(scale) or not (0 < scale < math.inf):
        raise ValueError(
            f"`scale` must be a finite number > 0. Received: scale={scale!r}"
        )


def check_weights(weights, names=None, argument="weights"):
    """Returns `weights` as a float64 array, or raises naming the culprit."""
    try:
        values = np.asarray(weights, dtype="float64")
    except (TypeError, ValueError):
        raise TypeError(
            f"`{argument}` must be a list of numbers. "
            f"Received: {argument}={weights!r}"
        ) from None
    if values.ndim != 1 or not len(values):
        raise ValueError(
            f"`{argument}` must be a non-empty list of numbers, one per "
            f"source. Received: {argument}={weights!r}"
        )
    if names is not None and len(values) != len(names):
        raise ValueError(
            f"`{argument}` must have one entry per source {names}. "
            f"Received {len(values)} entries: {weights!r}"
        )
    labels = names or [f"#{i}" for i in range(len(values))]
    bad = [n for n, v in zip(labels, values) if not (0 <= v < math.inf)]
    if bad:
        raise ValueError(
            f"`{argument}` must be finite and >= 0; sources {bad} have "
            f"{[float(values[labels.index(n)]) for n in bad]}. "
            f"Received: {argument}={weights!r}"
        )
    if not values.sum() > 0:
        raise ValueError(
            f"`{argument}` are all zero: at least one source must have a "
            f"positive rate. Received: {argument}={weights!r}"
        )
    return values


def sampling_rates(sizes, temperature=1.0, cap=None, scale=1.0, weights=None):
    """Probability of drawing from each source, from sizes or user weights.

    Source `i` with `n_i` examples is drawn with probability
    `p_i ∝ min(scale * n_i, cap) ** (1 / temperature)`, in seqio's order:
    scale, then cap, then temperature. `temperature=1` without a cap is
    examples-proportional mixing, `temperature=2` square-root mixing,
    `temperature=float("inf")` uniform mixing, and a `cap` gives T5's
    capped "examples-proportional mixing". With `weights`, the user's
    weights take the place of the sizes: `p_i ∝ w_i ** (1 / temperature)`.

    Args:
        sizes: list of numbers > 0. Examples per source. Ignored (and may
            be `None`) when `weights` is given.
        temperature: number > 0. Flattens the rates as it grows. Defaults
            to `1.0` (proportional).
        cap: number >= 1 or `None`. Most examples counted for one source
            (T5's `K`), applied after `scale`. Defaults to `None` (no cap).
        scale: number > 0. Multiplies the sizes before the cap (seqio's
            `scale`). Defaults to `1.0`.
        weights: list of numbers >= 0, not all zero, or `None`. User
            weights in place of the sizes; `cap` and `scale` do not apply.
            Defaults to `None`.

    Returns:
        A float64 numpy array of shape `(len(sizes),)` that sums to 1.

    Example:

    ```python
    keras_mtl.data.sampling_rates([100, 400])                  # [0.2, 0.8]
    keras_mtl.data.sampling_rates([100, 400], temperature=2)   # [1/3, 2/3]
    keras_mtl.data.sampling_rates([100, 400], cap=200)         # [1/3, 2/3]
    keras_mtl.data.sampling_rates(None, weights=[1, 3])        # [0.25, 0.75]
    ```

    References:
        - [Raffel et al., 2020](https://jmlr.org/papers/v21/20-074.html),
          T5, §3.5.2: examples-proportional and temperature-scaled mixing.
        - [seqio](https://github.com/google/seqio),
          `mixing_rate_num_examples`.
    """
    check_temperature(temperature)
    check_cap(cap)
    check_scale(scale)
    if weights is not None:
        if cap is not None or scale != 1.0:
            raise ValueError(
                "`cap` and `scale` apply to sizes, not to user `weights`. "
                f"Received: cap={cap!r}, scale={scale!r} with weights."
            )
        base = check_weights(weights)
    else:
        base = check_sizes(sizes)
        base = np.minimum(scale * base, math.inf if cap is None else cap)
    if temperature == math.inf:
        rates = (base > 0).astype("float64")
    else:
        # Zero stays zero: a source of weight 0 is never drawn.
        rates = np.where(base > 0, base ** (1.0 / temperature), 0.0)
    return rates / rates.sum()


def check_sizes(sizes, names=None):
    try:
        values = np.asarray(sizes, dtype="float64")
    except (TypeError, ValueError):
        values = None
    if values is None or values.ndim != 1 or not len(values):
        raise ValueError(
            "`sizes` must be a non-empty list of numbers of examples. "
            f"Received: sizes={sizes!r}"
        )
    labels = names or [f"#{i}" for i in range(len(values))]
    bad = [n for n, v in zip(labels, values) if not (0 < v < math.inf)]
    if bad:
        raise ValueError(
            f"Sizes must be finite and > 0; sources {bad} are not. "
            f"Received: sizes={list(sizes)!r}"
        )
    return values


def annealing_alpha(epoch, epochs):
    """Stickland & Murray's exponent: 1 - 0.8 (epoch - 1) / (epochs - 1)."""
    for name, value in (("epochs", epochs), ("epoch", epoch)):
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool):
            raise TypeError(
                f"`{name}` must be an int. Received: {name}={value!r}"
            )
    if epochs < 1:
        raise ValueError(f"`epochs` must be >= 1. Received: epochs={epochs}")
    if not 1 <= epoch <= epochs:
        raise ValueError(
            "`epoch` counts from 1 to `epochs` (Keras callbacks count from "
            f"0: pass `epoch + 1`). Received: epoch={epoch}, epochs={epochs}"
        )
    if epochs == 1:
        return 1.0
    return 1.0 - 0.8 * (epoch - 1) / (epochs - 1)


def annealed_rates(sizes, epoch, epochs):
    """Annealed sampling: `p_i ∝ n_i ** alpha`, alpha from 1.0 down to 0.2.

    Stickland & Murray (2019) start proportional to the sizes and end close
    to uniform: `alpha = 1 - 0.8 (e - 1) / (E - 1)` for epochs
    `e = 1, ..., E`. This follows the paper; TF Model Garden's
    `AnnealingTaskSampler` is one epoch off (its own test expects alpha
    1.4 -> 1.0 -> 0.6 for `E = 3`, where the paper gives 1.0 -> 0.6 -> 0.2).

    Args:
        sizes: list of numbers > 0. Examples per source.
        epoch: int. The current epoch, counted from 1 (a Keras callback's
            `epoch` argument is 0-based: pass `epoch + 1`).
        epochs: int >= 1. Total number of epochs `E`. With `E = 1`,
            alpha is 1.

    Returns:
        A float64 numpy array of shape `(len(sizes),)` that sums to 1.

    Example:

    ```python
    sizes = [1000, 9000]
    [keras_mtl.data.annealed_rates(sizes, e, 3) for e in (1, 2, 3)]
    # alpha 1.0, 0.6, 0.2: [0.1, 0.9], [0.21, 0.79], [0.39, 0.61]
    ```

    References:
        - [Stickland & Murray, 2019](https://arxiv.org/abs/1902.02671),
          BERT and PALs, §4 (annealed sampling).
    """
    alpha = annealing_alpha(epoch, epochs)
    return sampling_rates(sizes, temperature=1.0 / alpha)


def resolve_rates(rates, sizes, names, temperature, cap, scale):
    """The `(S,)` float64 rates of `mix`'s `rates` argument.

    `sizes` holds `None` for sources of unknown size; size-based rates then
    raise naming those sources.
    """
    if isinstance(rates, str):
        if rates not in RATE_NAMES:
            raise ValueError(
                f"Unknown `rates` {rates!r}. Expected one of {RATE_NAMES} "
                "or a list of weights, one per source."
            )
        if rates == "uniform":
            if temperature != 1.0 or cap is not None or scale != 1.0:
                raise ValueError(
                    "`rates='uniform'` takes no `temperature`, `cap` or "
                    f"`scale`. Received: temperature={temperature!r}, "
                    f"cap={cap!r}, scale={scale!r}"
                )
            return np.full(len(names), 1.0 / len(names))
        if rates == "sqrt":
            if temperature != 1.0:
                raise ValueError(
                    "`rates='sqrt'` is temperature 2; pass "
                    "`rates='proportional', temperature=...` for another "
                    f"temperature. Received: temperature={temperature!r}"
                )
            temperature = 2.0
        unknown = [n for n, s in zip(names, sizes) if s is None]
        if unknown:
            raise ValueError(
                f"`rates={rates!r}` needs the size of every source, and "
                f"sources {unknown} have no known size (infinite or unknown "
                "`cardinality()`). Pass `Source(..., size=...)`, or "
                "`rates=` as a list of weights."
            )
        check_sizes(sizes, names)
        return sampling_rates(sizes, temperature, cap, scale)
    if isinstance(rates, dict):
        unknown = sorted(set(rates) - set(names))
        missing = [n for n in names if n not in rates]
        if unknown or missing:
            raise ValueError(
                f"`rates` must have one entry per source {names}. Unknown: "
                f"{unknown}; missing: {missing}."
            )
        rates = [rates[n] for n in names]
    if not isinstance(rates, (list, tuple, np.ndarray)):
        raise TypeError(
            f"`rates` must be one of {RATE_NAMES}, a list of weights or a "
            f"dict by source name. Received: rates={rates!r}"
        )
    check_weights(rates, names, argument="rates")
    return sampling_rates(None, temperature, cap, scale, weights=rates)
