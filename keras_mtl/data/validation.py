"""Checks of `mix`'s arguments: sources, tasks, labels, inputs, options."""

import math

import keras
import numpy as np
import tensorflow as tf

from keras_mtl.data.source import Source
from keras_mtl.masking import label_dtype_error
from keras_mtl.tasks import Task

SHUFFLE_BUFFER = 10_000


def check_choice(value, choices, argument, allow_none=False):
    """Raises unless `value` is one of the names `choices`."""
    if (value is None and allow_none) or value in choices:
        return
    raise ValueError(
        f"Unknown `{argument}` {value!r}. Expected one of {choices}"
        + (" or None." if allow_none else ".")
    )


def check_sources(sources):
    """Returns `sources` as a list of uniquely named `Source`s."""
    if isinstance(sources, Source):
        sources = [sources]
    if isinstance(sources, dict):
        for name, source in sources.items():
            if not isinstance(source, Source):
                raise TypeError(
                    "Every source must be a keras_mtl.data.Source; wrap a "
                    "dataset as `Source(dataset, tasks=[...])`. "
                    f"Received {name!r}: {source!r}"
                )
        sources = [
            s if s.name == name else Source(s.dataset, s.tasks, s.size, name)
            for name, s in sources.items()
        ]
    sources = list(sources) if isinstance(sources, (list, tuple)) else sources
    if not isinstance(sources, list) or not sources:
        raise ValueError(
            "`sources` must be a non-empty list (or dict by name) of "
            f"keras_mtl.data.Source. Received: sources={sources!r}"
        )
    for source in sources:
        if not isinstance(source, Source):
            raise TypeError(
                "Every source must be a keras_mtl.data.Source; wrap a "
                "dataset as `Source(dataset, tasks=[...])`. "
                f"Received: {source!r}"
            )
    names = [s.name for s in sources]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(
            f"Source names must be unique; {duplicates} appear more than "
            "once. Pass `Source(..., name=...)` or a dict by name."
        )
    return sources


def check_tasks(tasks):
    """Returns `{task name: Task or None}` in the order given."""
    if isinstance(tasks, (str, Task)):
        tasks = [tasks]
    if not isinstance(tasks, (list, tuple)) or not tasks:
        raise ValueError(
            "`tasks` must be a non-empty list of keras_mtl.Task (e.g. "
            f"`model.tasks`) or task names. Received: tasks={tasks!r}"
        )
    by_name = {}
    for task in tasks:
        if not isinstance(task, (str, Task)):
            raise TypeError(
                "Every task must be a keras_mtl.Task or a task name. "
                f"Received: {task!r}"
            )
        name = task if isinstance(task, str) else task.name
        if name in by_name:
            raise ValueError(f"Task {name!r} appears twice in `tasks`.")
        by_name[name] = None if isinstance(task, str) else task
    return by_name


def fill_value(name, task, spec, unlabelled):
    """The value marking a missing label of task `name`, or raises."""
    lacking = [s.name for s in unlabelled]
    if not spec.shape.is_fully_defined():
        raise ValueError(
            f"Task {name!r}: sources {lacking} do not label it, and its "
            f"labels have shape {spec.shape}, not fully known, so they "
            "cannot be filled as missing. Give its labels a fixed shape."
        )
    if spec.dtype.is_floating:
        return math.nan
    if not spec.dtype.is_integer:
        raise TypeError(
            f"Task {name!r}: sources {lacking} do not label it, and its "
            f"{spec.dtype.name} labels cannot mark a missing label. Cast "
            "them to float (NaN marks missing) or to int with a "
            "`missing_label`."
        )
    missing = None if task is None else task.missing_label
    if missing is None:
        hint = (
            "pass the Task objects (e.g. `model.tasks`) rather than names, "
            "with a `missing_label` for this task"
            if task is None
            else "give the Task a `missing_label` (e.g. -1)"
        )
        raise ValueError(
            f"Task {name!r} has integer labels ({spec.dtype.name}) and "
            f"sources {lacking} do not label it, so its missing labels need "
            f"a sentinel value: {hint}, or use float labels (NaN marks "
            "missing)."
        )
    if not float(missing).is_integer():
        raise ValueError(
            f"Task {name!r}: `missing_label={missing!r}` is not an integer, "
            f"so it cannot mark its {spec.dtype.name} labels."
        )
    return int(missing)


def label_specs(sources, tasks):
    """`{task: (TensorSpec, fill value or None)}`, or raises."""
    for source in sources:
        unknown = [t for t in source.tasks if t not in tasks]
        if unknown:
            raise ValueError(
                f"Source {source.name!r} labels tasks {unknown} that are not "
                f"among the model's tasks {list(tasks)}."
            )
    specs = {}
    for name, task in tasks.items():
        labelling = [s for s in sources if name in s.tasks]
        if not labelling:
            raise ValueError(
                f"Task {name!r} is labelled by no source. Sources label: "
                f"{ {s.name: s.tasks for s in sources} }."
            )
        spec = labelling[0].label_spec[name]
        for other in labelling[1:]:
            other_spec = other.label_spec[name]
            if other_spec.dtype != spec.dtype or not (
                other_spec.shape.is_compatible_with(spec.shape)
            ):
                raise ValueError(
                    f"Task {name!r}: source {other.name!r} gives labels of "
                    f"shape {other_spec.shape} and dtype "
                    f"{other_spec.dtype.name}; source {labelling[0].name!r} "
                    f"gives {spec.shape} {spec.dtype.name}. They must agree."
                )
        if spec.dtype == tf.string:
            raise label_dtype_error(name, spec.dtype.name)
        unlabelled = [s for s in sources if name not in s.tasks]
        fill = fill_value(name, task, spec, unlabelled) if unlabelled else None
        specs[name] = (spec, fill)
    return specs


def _describe(path):
    return "inputs" if not path else "input " + "/".join(map(str, path))


def check_inputs(sources):
    """Raises unless every source's inputs match the first source's."""
    first = sources[0]
    reference = dict(keras.tree.flatten_with_path(first.input_spec))
    for source in sources[1:]:
        try:
            keras.tree.assert_same_structure(
                first.input_spec, source.input_spec
            )
        except (ValueError, TypeError):
            raise ValueError(
                f"Source {source.name!r}: its inputs have structure "
                f"{source.input_spec}; source {first.name!r} has "
                f"{first.input_spec}. Inputs of all sources must have the "
                "same structure (keys), shapes and dtypes."
            ) from None
        for path, spec in keras.tree.flatten_with_path(source.input_spec):
            ref = reference[path]
            if spec.dtype != ref.dtype or not spec.is_compatible_with(ref):
                raise ValueError(
                    f"Source {source.name!r}: {_describe(path)} has shape "
                    f"{spec.shape} and dtype {spec.dtype.name}; source "
                    f"{first.name!r} has {ref.shape} {ref.dtype.name}. "
                    "Inputs of all sources must have the same structure, "
                    "shapes and dtypes."
                )


def derive_seeds(seed, count):
    """`count` independent op seeds from one user seed (or `None`s)."""
    if seed is None:
        return [None] * count
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool):
        raise TypeError(f"`seed` must be an int or None. Received: {seed!r}")
    if seed < 0:
        raise ValueError(f"`seed` must be >= 0. Received: seed={seed}")
    state = np.random.SeedSequence(int(seed)).generate_state(count)
    return [int(s) % (2**31 - 1) for s in state]


def shuffle_buffers(shuffle, sources, seeds):
    """`(buffer size, seed)` per source, or `None` for no shuffle."""
    if isinstance(shuffle, bool):
        if not shuffle:
            return [None] * len(sources)
        return [
            (min(s.size or SHUFFLE_BUFFER, SHUFFLE_BUFFER), seed)
            for s, seed in zip(sources, seeds)
        ]
    if not isinstance(shuffle, (int, np.integer)) or shuffle < 1:
        raise ValueError(
            "`shuffle` must be True, False or a shuffle buffer size >= 1. "
            f"Received: shuffle={shuffle!r}"
        )
    return [(int(shuffle), seed) for seed in seeds]


def check_steps(steps_per_epoch, exhaustion):
    if steps_per_epoch is None:
        return
    if exhaustion != "repeat":
        raise ValueError(
            f"`steps_per_epoch` applies to exhaustion='repeat' only; with "
            f"exhaustion={exhaustion!r} the data ends the epoch. Received: "
            f"steps_per_epoch={steps_per_epoch!r}"
        )
    if (
        not isinstance(steps_per_epoch, (int, np.integer))
        or isinstance(steps_per_epoch, bool)
        or steps_per_epoch < 1
    ):
        raise ValueError(
            "`steps_per_epoch` must be an int >= 1 or None. "
            f"Received: steps_per_epoch={steps_per_epoch!r}"
        )


def check_proportional(rates, temperature, cap, scale, why):
    if (
        isinstance(rates, str)
        and rates == "proportional"
        and (temperature == 1.0 and cap is None and scale == 1.0)
    ):
        return
    raise ValueError(
        f"{why}, so `rates` must keep its default 'proportional' with no "
        f"temperature or cap. Received: rates={rates!r}, "
        f"temperature={temperature!r}, cap={cap!r}, scale={scale!r}"
    )


def need_sizes(sources, why):
    unknown = [s.name for s in sources if s.size is None]
    if unknown:
        raise ValueError(
            f"Sources {unknown} have no known size (infinite or unknown "
            f"`cardinality()`), and {why}. Pass `Source(..., size=...)`."
        )
