"""One dataset of a mixture, and the tasks it labels."""

import warnings

import keras
import tensorflow as tf


def _task_name(task):
    name = getattr(task, "name", task)
    if not isinstance(name, str):
        raise TypeError(
            "Tasks must be given by name or as `keras_mtl.Task`. "
            f"Received: {task!r}"
        )
    return name


def _looks_batched(spec):
    leaves = keras.tree.flatten(spec)
    return bool(leaves) and all(
        getattr(s, "shape", None) is not None
        and s.shape.rank
        and s.shape[0] is None
        for s in leaves
    )


class Source:
    """One dataset for `keras_mtl.data.mix`, with the tasks it labels.

    The dataset yields single examples (not batches): `(x, {task: y})`, or
    `(x, y)` for a source of one task. `mix` fills in the tasks a source
    does not label, as missing labels.

    Args:
        dataset: `tf.data.Dataset` of unbatched `(x, labels)` pairs. `x`
            has the same structure, dtypes and shapes in every source of a
            mixture.
        tasks: list of task names (or `keras_mtl.Task`s), or one name. The
            tasks this source labels: the keys of its label dict, or the one
            task of its bare labels. Defaults to `None`: the keys of the
            label dict.
        size: int >= 1 or `None`. Number of examples. Needed where
            `dataset.cardinality()` is unknown (after `filter`, from a
            generator, ...) or infinite, for size-based rates, the default
            `steps_per_epoch` and the exhaustion modes that end an epoch.
            For an unknown cardinality the pipeline checks it as it runs
            (`tf.data.experimental.assert_cardinality`); for an infinite
            dataset it only sets the rates. Defaults to `None`:
            `dataset.cardinality()`.
        name: str or `None`. The source's name in errors, rates and logs.
            Defaults to `None`: its task names joined by `"_"`.

    Example:

    ```python
    x = np.random.rand(100, 8).astype("float32")
    left = keras_mtl.data.Source(
        tf.data.Dataset.from_tensor_slices((x, np.zeros(100, "int32"))),
        tasks="left",
    )
    left.size  # 100
    ```
    """

    def __init__(self, dataset, tasks=None, size=None, name=None):
        if not isinstance(dataset, tf.data.Dataset):
            raise TypeError(
                "`dataset` must be a `tf.data.Dataset` of `(x, labels)` "
                f"examples. Received: dataset={dataset!r}"
            )
        spec = dataset.element_spec
        if not isinstance(spec, tuple) or len(spec) != 2:
            raise ValueError(
                "`dataset` must yield `(x, labels)` pairs, with labels a "
                "`{task: y}` dict or one task's `y` (no sample weights). "
                f"Received elements of spec {spec}"
            )
        if isinstance(tasks, str) or hasattr(tasks, "name"):
            tasks = [tasks]
        if tasks is not None:
            if not isinstance(tasks, (list, tuple)) or not tasks:
                raise ValueError(
                    "`tasks` must be a task name or a non-empty list of "
                    f"them. Received: tasks={tasks!r}"
                )
            tasks = [_task_name(t) for t in tasks]
            duplicates = sorted({t for t in tasks if tasks.count(t) > 1})
            if duplicates:
                raise ValueError(f"`tasks` repeats {duplicates}.")
        if name is not None and (not isinstance(name, str) or not name):
            raise TypeError(
                f"`name` must be a non-empty string. Received: name={name!r}"
            )
        label_spec = spec[1]
        where = f"Source {name!r}" if name else "Source"
        if isinstance(label_spec, dict):
            keys = list(label_spec)
            if tasks is None:
                tasks = keys
            elif set(keys) != set(tasks):
                raise ValueError(
                    f"{where}: its labels have keys {sorted(keys)}, but "
                    f"`tasks={tasks}`. Name exactly the tasks it labels."
                )
        elif tasks is None:
            raise ValueError(
                f"{where}: its labels are one tensor, not a `{{task: y}}` "
                "dict: pass `tasks=` with the one task they label."
            )
        elif len(tasks) != 1:
            raise ValueError(
                f"{where}: its labels are one tensor, so it labels one task; "
                f"received tasks={tasks}. Yield a `{{task: y}}` dict for "
                "several tasks."
            )
        else:
            label_spec = {tasks[0]: label_spec}
        for task, task_spec in label_spec.items():
            if not isinstance(task_spec, tf.TensorSpec):
                raise TypeError(
                    f"{where}: labels of task {task!r} must be dense "
                    f"tensors. Received spec {task_spec}"
                )
        self.dataset = dataset
        self.tasks = list(tasks)
        self.name = name or "_".join(self.tasks)
        self.input_spec = spec[0]
        self.label_spec = dict(label_spec)
        self.cardinality = int(dataset.cardinality())
        self.size = self._resolve_size(size)
        if _looks_batched(spec):
            warnings.warn(
                f"Source {self.name!r}: every tensor has an unknown first "
                "axis, as if the dataset were batched. Sources yield single "
                "examples; `mix` batches them.",
                stacklevel=2,
            )

    @property
    def infinite(self):
        """Whether the dataset never ends (`cardinality()` is infinite)."""
        return self.cardinality == tf.data.INFINITE_CARDINALITY

    @property
    def labels_dict(self):
        """Whether the dataset's labels are a `{task: y}` dict."""
        return isinstance(self.dataset.element_spec[1], dict)

    def _resolve_size(self, size):
        where = f"Source {self.name!r}"
        if self.cardinality == 0:
            raise ValueError(f"{where} is empty (`cardinality()` is 0).")
        if size is None:
            return self.cardinality if self.cardinality > 0 else None
        if not isinstance(size, int) or isinstance(size, bool) or size < 1:
            raise ValueError(
                f"{where}: `size` must be an int >= 1 (an empty source "
                f"cannot be drawn from). Received: size={size!r}"
            )
        if self.cardinality > 0 and size != self.cardinality:
            raise ValueError(
                f"{where}: `size={size}` but the dataset's cardinality() is "
                f"{self.cardinality}. Leave `size` out for datasets of known "
                "size."
            )
        return size

    def __repr__(self):
        return (
            f"Source(name={self.name!r}, tasks={self.tasks}, size={self.size})"
        )
