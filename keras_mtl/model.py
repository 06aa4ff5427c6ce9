import keras
import numpy as np
import tensorflow as tf
from keras import ops
from keras.src.models.functional import functional_from_config

from keras_mtl import distribute
from keras_mtl import masking
from keras_mtl import weighting as weighting_module
from keras_mtl.tasks import Task
from keras_mtl.tasks import resolve_loss


def check_tasks(tasks):
    """Validates a task list; returns it as a list of `Task`s."""
    if isinstance(tasks, Task):
        tasks = [tasks]
    if not isinstance(tasks, (list, tuple)) or not tasks:
        raise ValueError(
            "`tasks` must be a non-empty list of keras_mtl.Task. "
            f"Received: tasks={tasks!r}"
        )
    tasks = [Task.from_config(t) if isinstance(t, dict) else t for t in tasks]
    for task in tasks:
        if not isinstance(task, Task):
            raise TypeError(
                "Every element of `tasks` must be a keras_mtl.Task. "
                f"Received: {task!r}"
            )
    names = [t.name for t in tasks]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"Task names must be unique. Duplicated: {duplicates}")
    return list(tasks)


class _WeightingEpochEnd(keras.callbacks.Callback):
    """Tells the model's weighting method that a training epoch ended."""

    def __init__(self, weighting):
        super().__init__()
        self.weighting = weighting

    def on_epoch_end(self, epoch, logs=None):
        self.weighting.on_epoch_end()


def _per_task(value, names, what):
    """Spreads a compile argument over tasks: dict, list or one value."""
    if value is None:
        return {}
    if isinstance(value, dict):
        unknown = sorted(set(value) - set(names))
        if unknown:
            raise ValueError(
                f"`{what}` names unknown tasks {unknown}. "
                f"Expected keys among {names}."
            )
        return dict(value)
    if isinstance(value, (list, tuple)) and what != "metrics":
        if len(value) != len(names):
            raise ValueError(
                f"`{what}` as a list needs one entry per task {names}. "
                f"Received {len(value)} entries."
            )
        return dict(zip(names, value))
    return {name: value for name in names}


def _logs_as_vectors(step_function):
    """Makes a step return `(1,)` logs, which `strategy.reduce(..., axis=0)`
    averages over workers into scalars again."""

    def step(data):
        logs = step_function(data)
        return tf.nest.map_structure(lambda v: tf.reshape(v, (-1,)), logs)

    return step


@keras.saving.register_keras_serializable(package="keras_mtl")
class MTLModel(keras.Model):
    """A functional multi-task model: named outputs, one per task.

    Usually made by `keras_mtl.build_mtl_model`. Its outputs are a dict keyed
    by task name. `compile()` takes each task's loss, metrics and loss
    weight from its `Task` unless `loss=`, `loss_weights=` or `metrics=` say
    otherwise (a dict by task name, or one value for every task). Training
    minimises the total that the `weighting` method makes of the task
    losses, plus the model's own losses (regularisers).

    Logs hold `loss` (the total), `<task>_loss` (each task's unweighted
    loss over its labelled examples), `<task>_<metric>`, and
    `<task>_weight` for weighting methods that change the weights.

    Labels are a dict `{task: y}` with every task. Missing labels (NaN, or
    the task's `missing_label`) count for nothing in loss and metrics.
    `sample_weight` may be one tensor for all tasks or a dict by task.

    Args:
        inputs: `keras.Input` or a dict/list of them.
        outputs: dict `{task_name: tensor}`.
        tasks: list of `keras_mtl.Task`, one per output.
        weighting: str, dict or `keras_mtl.weighting.Weighting`. How task
            losses are combined (see `keras_mtl.weighting.get`). Defaults to
            `"equal"`.
        **kwargs: `name` and other `keras.Model` arguments.

    Example:

    ```python
    inputs = keras.Input((8,))
    features = keras.layers.Dense(16, activation="relu")(inputs)
    outputs = {"a": keras.layers.Dense(1, name="a")(features),
               "b": keras.layers.Dense(1, name="b")(features)}
    model = keras_mtl.MTLModel(
        inputs, outputs,
        tasks=[keras_mtl.Task("a"), keras_mtl.Task("b")])
    model.compile(optimizer="adam")
    ```

    References:
        - [Caruana, 1997](https://doi.org/10.1023/A:1007379606734),
          Multitask Learning.
        - [Ruder, 2017](https://arxiv.org/abs/1706.05098), an overview of
          multi-task learning in deep networks.
    """

    def __init__(self, *args, tasks=None, weighting="equal", **kwargs):
        if tasks is None:
            raise ValueError(
                "MTLModel needs `tasks`, the list of keras_mtl.Task of its "
                "outputs. (`keras.models.clone_model` does not pass them: "
                "rebuild the model with `keras_mtl.build_mtl_model`, or copy "
                "it with `MTLModel.from_config(model.get_config())`.)"
            )
        super().__init__(*args, **kwargs)
        tasks = check_tasks(tasks)
        names = [t.name for t in tasks]
        if not isinstance(self._outputs_struct, dict) or sorted(
            self._outputs_struct
        ) != sorted(names):
            raise ValueError(
                "MTLModel outputs must be a dict keyed by the task names "
                f"{names}. Received outputs: {self._outputs_struct!r}"
            )
        self._tasks = tuple(tasks)
        weighting = weighting_module.get(weighting)
        if getattr(weighting, "_owned_by_a_model", False):
            raise ValueError(
                f"Weighting '{weighting.name}' already belongs to another "
                "model: its state (weights, histories, its optimizer) would "
                "be shared and trained twice. Give each model its own: a new "
                "instance, or the method's name."
            )
        weighting.set_tasks(names)
        weighting._owned_by_a_model = True
        self.weighting = weighting
        self._task_loss_fns = None
        self._static_loss_weights = None
        self._task_trackers = None

    def _task_operations(self):
        """Maps each task to the operations its output depends on."""
        found = {}
        for name in self.task_names:
            seen, stack = set(), [self._outputs_struct[name]]
            while stack:
                operation, node_index, _ = stack.pop()._keras_history
                if id(operation) in seen:
                    continue
                seen.add(id(operation))
                found.setdefault(name, []).append(operation)
                node = operation._inbound_nodes[node_index]
                stack.extend(node.input_tensors)
        return found

    @property
    def shared_variables(self):
        """Trainable variables that more than one task's output depends on.

        These are the parameters whose per-task gradients can conflict: the
        trunk, and with soft sharing every tower and mixing unit.
        """
        return self._split_variables()[0]

    @property
    def task_variables(self):
        """`{task: [variables]}`: trainable variables of one task alone."""
        return self._split_variables()[1]

    def _split_variables(self):
        operations = self._task_operations()
        owners = {}
        for name, ops_of_task in operations.items():
            for operation in ops_of_task:
                for v in operation.trainable_variables:
                    owners.setdefault(id(v), set()).add(name)
        shared, own = [], {name: [] for name in self.task_names}
        for v in self.trainable_variables:
            tasks_of_v = owners.get(id(v), set())
            if len(tasks_of_v) == 1:
                own[next(iter(tasks_of_v))].append(v)
            elif len(tasks_of_v) > 1:
                shared.append(v)
        return shared, own

    @property
    def static_loss_weights(self):
        """The `(T,)` static loss weights resolved by `compile()`."""
        if self._static_loss_weights is None:
            raise RuntimeError("Call `compile()` before training the model.")
        return list(self._static_loss_weights)

    @property
    def tasks(self):
        return list(self._tasks)

    @property
    def task_names(self):
        return [t.name for t in self._tasks]

    def compile(
        self,
        optimizer="rmsprop",
        loss=None,
        loss_weights=None,
        metrics=None,
        weighted_metrics=None,
        **kwargs,
    ):
        names = self.task_names
        losses = _per_task(loss, names, "loss")
        weights = _per_task(loss_weights, names, "loss_weights")
        task_metrics = {t.name: list(t.metrics) for t in self._tasks}
        for extra in (metrics, weighted_metrics):
            if extra is None:
                continue
            if isinstance(extra, dict):
                _per_task(extra, names, "metrics")
                for name, value in extra.items():
                    value = value if isinstance(value, list) else [value]
                    task_metrics[name] = list(value)
            else:
                extra = extra if isinstance(extra, list) else [extra]
                task_metrics = {name: list(extra) for name in names}
        self._task_loss_fns = [
            resolve_loss(losses.get(t.name, t.loss), t.name)
            for t in self._tasks
        ]
        self._static_loss_weights = [
            float(weights.get(t.name, t.loss_weight)) for t in self._tasks
        ]
        task_metrics = {k: v for k, v in task_metrics.items() if v}
        # Every metric is weighted: that is how missing labels are masked.
        super().compile(
            optimizer=optimizer,
            loss=None,
            metrics=None,
            weighted_metrics=task_metrics or None,
            **kwargs,
        )
        self._compile_config = (
            keras.src.saving.serialization_lib.SerializableDict(
                optimizer=optimizer,
                loss=loss,
                loss_weights=loss_weights,
                metrics=metrics,
                weighted_metrics=weighted_metrics,
                **kwargs,
            )
        )
        if self._task_trackers is None:
            trackers = [keras.metrics.Mean(name=f"{n}_loss") for n in names]
            if self.weighting.log_weights:
                trackers += [
                    keras.metrics.Mean(name=f"{n}_weight") for n in names
                ]
            self._task_trackers = trackers

    def compile_from_config(self, config):
        config = keras.saving.deserialize_keras_object(config)
        self.compile(**config)
        if self.built and self.optimizer is not None:
            self.optimizer.build(self.trainable_variables)

    def _check_labels(self, y):
        names = self.task_names
        if isinstance(y, (list, tuple)) and len(y) == len(names):
            y = dict(zip(names, y))
        if not isinstance(y, dict):
            if len(names) == 1 and y is not None:
                return {names[0]: y}
            raise ValueError(
                f"Labels must be a dict keyed by task name {names}. "
                f"Received: {type(y).__name__}"
            )
        missing = [n for n in names if n not in y or y[n] is None]
        unknown = sorted(k for k in y if k not in names)
        if missing or unknown:
            raise ValueError(
                f"Labels must have one entry per task {names}. "
                f"Missing: {missing}; unknown keys: {unknown}. Mark missing "
                "labels with NaN or the task's `missing_label` instead."
            )
        return y

    def _task_sample_weight(self, sample_weight, name):
        if isinstance(sample_weight, dict):
            unknown = sorted(
                k for k in sample_weight if k not in self.task_names
            )
            if unknown:
                raise ValueError(
                    f"`sample_weight` names unknown tasks {unknown}. "
                    f"Expected keys among {self.task_names}."
                )
            return sample_weight.get(name)
        return sample_weight

    def prepare_labels(self, y, y_pred, sample_weight=None):
        """Masks missing labels: returns dicts `(y, mask, weight)` by task."""
        if self._task_loss_fns is None:
            raise RuntimeError("Call `compile()` before training the model.")
        y = self._check_labels(y)
        prepared = {}
        for task, loss_fn in zip(self._tasks, self._task_loss_fns):
            prepared[task.name] = masking.prepare_labels(
                task,
                y[task.name],
                y_pred[task.name],
                self._task_sample_weight(sample_weight, task.name),
                loss_fn=loss_fn,
            )
        return {
            k: {n: p[i] for n, p in prepared.items()}
            for i, k in enumerate(("y", "mask", "weight"))
        }

    def compute_task_losses(self, y, y_pred, sample_weight=None):
        """Returns the `(T,)` unweighted task losses, this replica's share.

        Each entry is the task's loss over its labelled examples, divided so
        that the shares of all replicas add up to the global-batch loss.
        """
        return ops.stack(self.compute_task_loss_list(y, y_pred, sample_weight))

    def compute_task_loss_list(self, y, y_pred, sample_weight=None):
        """The task losses of `compute_task_losses`, as a list of scalars.

        For per-task gradients: the gradient of one of these reaches only
        its task's head, where that of an entry of the stacked `(T,)`
        tensor goes back through every task's loss (with zeros), T times
        the work.
        """
        labels = self.prepare_labels(y, y_pred, sample_weight)
        return [
            masking.masked_task_loss(
                loss_fn,
                labels["y"][task.name],
                y_pred[task.name],
                labels["mask"][task.name],
                labels["weight"][task.name],
            )
            for task, loss_fn in zip(self._tasks, self._task_loss_fns)
        ]

    def combine_losses(self, task_losses, y_pred, training=True):
        """Weights the task losses, adds regularisers and logs the terms."""
        static = ops.convert_to_tensor(self._static_loss_weights, "float32")
        total, weights = self.weighting(task_losses * static, training=training)
        replicas = distribute.num_replicas()
        if self.losses:
            extra = ops.sum([ops.cast(v, "float32") for v in self.losses])
            total = total + extra / replicas
        batch_size = ops.shape(next(iter(y_pred.values())))[0]
        values = [task_losses[i] * replicas for i in range(len(self._tasks))]
        if self.weighting.log_weights:
            values += [weights[i] for i in range(len(self._tasks))]
        for tracker, value in zip(self._task_trackers, values):
            tracker.update_state(value, sample_weight=batch_size)
        return total

    def compute_loss(
        self, x=None, y=None, y_pred=None, sample_weight=None, training=True
    ):
        task_losses = self.compute_task_losses(y, y_pred, sample_weight)
        return self.combine_losses(task_losses, y_pred, training=training)

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        labels = self.prepare_labels(y, y_pred, sample_weight)
        return super().compute_metrics(
            x, labels["y"], y_pred, sample_weight=labels["weight"]
        )

    def fit(self, *args, **kwargs):
        """`keras.Model.fit`, which also tells the weighting about epochs.

        A callback that calls `self.weighting.on_epoch_end()` runs first
        among the callbacks at each epoch end, so that checkpoints such as
        `BackupAndRestore` see the weighting state of the next epoch.
        """
        if len(args) > 5:  # `callbacks` is the sixth argument of `fit`
            args = list(args)
            args[5] = self._with_epoch_hook(args[5])
        else:
            kwargs["callbacks"] = self._with_epoch_hook(kwargs.get("callbacks"))
        self._check_arrays(args, kwargs)
        return super().fit(*args, **kwargs)

    def evaluate(self, *args, **kwargs):
        self._check_arrays(args, kwargs)
        return super().evaluate(*args, **kwargs)

    def _check_arrays(self, args, kwargs):
        """Checks array labels before Keras converts them, and completes a
        `{task: weights}` dict that names only some tasks (Keras wants one
        array per output)."""
        y = args[1] if len(args) > 1 else kwargs.get("y")
        if not isinstance(y, dict):
            return
        for name, value in y.items():
            dtype = getattr(value, "dtype", None)
            if isinstance(dtype, np.dtype) and dtype.kind in "USO":
                raise masking.label_dtype_error(name, dtype)
        weights = kwargs.get("sample_weight")
        if isinstance(weights, dict):
            self._task_sample_weight(weights, None)  # unknown keys raise
            kwargs["sample_weight"] = {
                name: weights[name]
                if weights.get(name) is not None
                else np.ones(np.shape(value)[:1], "float32")
                for name, value in y.items()
            }

    def _with_epoch_hook(self, callbacks):
        hook = _WeightingEpochEnd(self.weighting)
        if isinstance(callbacks, keras.callbacks.CallbackList):
            hook.set_model(self)
            callbacks.callbacks.insert(0, hook)
            return callbacks
        return [hook] + (keras.tree.flatten(callbacks) if callbacks else [])

    def get_metrics_result(self):
        # Keras drops the output name from metric names when there is one
        # output; keep `<task>_<metric>` for every task count.
        prefix = f"{self.task_names[0]}_" if len(self._tasks) == 1 else ""
        results = {}
        for metric in self.metrics:
            result = metric.result()
            if isinstance(result, dict):
                results.update({prefix + k: v for k, v in result.items()})
            else:
                results[metric.name] = result
        return results

    def train_step(self, data):
        if self.weighting.custom_train_step:
            return self.weighting.train_step(self, data)
        return super().train_step(data)

    # Under MultiWorkerMirroredStrategy, Keras 3's TF trainer calls
    # `strategy.reduce` on the nested first batch and, with `axis=0`, on the
    # scalar logs of every step; both fail (keras-team/keras#20585). The
    # three methods below avoid those calls; nothing changes otherwise.

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        strategy = self._distribute_strategy
        if iterator is not None and distribute.in_multi_worker_mode(strategy):
            for _, _, batches in iterator:
                data_batch = tf.nest.map_structure(
                    lambda v: (
                        strategy.experimental_local_results(v)[0]
                        if isinstance(v, tf.distribute.DistributedValues)
                        else v
                    ),
                    next(batches),
                )
                break
            iterator = None
        return super()._maybe_symbolic_build(
            iterator=iterator, data_batch=data_batch
        )

    def make_train_function(self, force=False):
        if not distribute.in_multi_worker_mode(self._distribute_strategy):
            return super().make_train_function(force=force)
        if self.train_function is None or force:
            self.train_function = self._make_function(
                _logs_as_vectors(self.train_step)
            )
        return self.train_function

    def make_test_function(self, force=False):
        if not distribute.in_multi_worker_mode(self._distribute_strategy):
            return super().make_test_function(force=force)
        if self.test_function is None or force:
            self.test_function = self._make_function(
                _logs_as_vectors(self.test_step)
            )
        return self.test_function

    def get_config(self):
        config = super().get_config()
        config["tasks"] = [t.get_config() for t in self._tasks]
        config["weighting"] = weighting_module.serialize(self.weighting)
        return config

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        config["tasks"] = [Task.from_config(t) for t in config["tasks"]]
        config["weighting"] = weighting_module.deserialize(
            config["weighting"], custom_objects=custom_objects
        )
        return functional_from_config(cls, config, custom_objects)
