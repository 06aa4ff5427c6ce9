import inspect
import warnings

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from keras_mtl import compat
from keras_mtl import compiling
from keras_mtl import distribute
from keras_mtl import gradients
from keras_mtl import labels
from keras_mtl import structure
from keras_mtl import weighting as weighting_module
from keras_mtl.structure import check_tasks
from keras_mtl.tasks import Task

__all__ = ["MTLModel", "check_tasks"]


class _WeightingEpochEnd(keras.callbacks.Callback):
    """Tells the model's weighting method that a training epoch ended."""

    def __init__(self, weighting):
        super().__init__()
        self.weighting = weighting

    def on_epoch_end(self, epoch, logs=None):
        hook = self.weighting.on_epoch_end
        if inspect.signature(hook).parameters:
            hook(dict(logs or {}))
        else:  # a method written before the hook took the logs
            hook()


@keras.saving.register_keras_serializable(package="keras_mtl")
class MTLModel(compat.MultiWorkerFix, keras.Model):
    """A functional multi-task model: named outputs, one per task.

    Usually made by `keras_mtl.build_mtl_model`. Its outputs are a dict keyed
    by task name. `compile()` takes each task's loss, metrics and loss
    weight from its `Task` unless `loss=`, `loss_weights=` or `metrics=` say
    otherwise (a dict by task name, or one value for every task). Training
    minimises `sum_i w_i L_i` with the weights `w_i` of the `weighting`
    method, plus its own term and the model's losses (regularisers).

    The training step is `train_step`, shaped like Keras's own: forward
    pass under a tape, per-task losses over the labelled examples, the
    weights (and the per-task gradients the method asks for), the loss
    scale of mixed precision, the optimizer's update, then the method's
    `after_step`, trackers and metrics. A task with no label in a batch
    sits out: weight 0, and its method state does not move. A model of one
    task trains plainly whatever the method (there is nothing to combine).

    Logs hold `loss` (the total), `<task>_loss` (each task's unweighted
    loss, the mean over its labelled examples of the epoch),
    `<task>_<metric>`, and in training only `<task>_weight` for weighting
    methods that change the weights (the mean over the steps in which the
    task had labels) and `<task>_examples`, the number of labelled examples
    of the task the epoch delivered (of loss elements, for sequence
    outputs). A task with no label in the epoch (so far, in the logs of a
    batch) logs NaN for its loss, weight and metrics, not the 0 of an empty
    mean, and 0 examples.

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
        shared_representation: str, `None` or `"auto"`. Name of the layer
            whose output every task head reads and which all shared
            variables precede (hard sharing), for `mode="rep"` gradient
            methods; `None` if there is none. Defaults to `"auto"`: found
            from the graph when first needed.
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

    def __init__(
        self,
        *args,
        tasks=None,
        weighting="equal",
        shared_representation="auto",
        **kwargs,
    ):
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
        if not isinstance(self.output, dict) or sorted(self.output) != sorted(
            names
        ):
            raise ValueError(
                "MTLModel outputs must be a dict keyed by the task names "
                f"{names}. Received outputs: {self.output!r}"
            )
        self._tasks = tuple(tasks)
        weighting = weighting_module.get(weighting)
        if weighting.has_owner:
            raise ValueError(
                f"Weighting '{weighting.name}' already belongs to another "
                "model: its state (weights, histories, its optimizer) would "
                "be shared and trained twice. Give each model its own: a new "
                "instance, or the method's name."
            )
        weighting.set_tasks(names)
        weighting.has_owner = True
        self.weighting = weighting
        self._shared_representation = shared_representation
        self._structure = None
        self._task_loss_fns = None
        self._static_loss_weights = None
        self._compile_arguments = None
        self._total_tracker = keras.metrics.Mean(name="loss")
        # One (T,) tracker per quantity, not T `Mean`s: their per-step
        # updates are a cost that grows with T. The labelled counts that
        # weight each task's loss are its `<task>_examples`.
        self._task_trackers = [
            labels.TaskMeans(names, "loss", count_suffix="examples")
        ]
        if weighting.log_weights:
            self._task_trackers.append(labels.TaskMeans(names, "weight"))

    @property
    def tasks(self):
        return list(self._tasks)

    @property
    def task_names(self):
        return [t.name for t in self._tasks]

    @property
    def shared_representation(self):
        """Name of the layer of the shared representation, or `None`."""
        return self._found().representation

    def _found(self):
        if self._structure is None:
            self._structure = structure.ModelStructure(
                self, self._shared_representation
            )
        return self._structure

    @property
    def shared_variables(self):
        """Trainable variables that more than one task's output depends on.

        These are the parameters whose per-task gradients can conflict: the
        trunk, and with soft sharing every tower and mixing unit.
        """
        return list(self._found().shared)

    @property
    def task_variables(self):
        """`{task: [variables]}`: trainable variables of one task alone."""
        return {k: list(v) for k, v in self._found().own.items()}

    @property
    def static_loss_weights(self):
        """The `(T,)` static loss weights resolved by `compile()`."""
        if self._static_loss_weights is None:
            raise RuntimeError("Call `compile()` before training the model.")
        return list(self._static_loss_weights)

    @property
    def metrics(self):
        # Our own `loss` tracker stands where Keras's (unused) one would.
        own = [self._total_tracker, *self._task_trackers]
        rest = [
            m
            for m in super().metrics
            if m.name != "loss" and not any(m is o for o in own)
        ]
        return [own[0], *rest, *own[1:]]

    def compile(
        self,
        optimizer="rmsprop",
        loss=None,
        loss_weights=None,
        metrics=None,
        weighted_metrics=None,
        **kwargs,
    ):
        self._task_loss_fns, self._static_loss_weights, task_metrics = (
            compiling.resolve(
                self._tasks, loss, loss_weights, metrics, weighted_metrics
            )
        )
        # Every metric is weighted: that is how missing labels are masked.
        super().compile(
            optimizer=optimizer,
            loss=None,
            metrics=None,
            weighted_metrics=task_metrics or None,
            **kwargs,
        )
        self._compile_arguments = dict(
            optimizer=optimizer,
            loss=loss,
            loss_weights=loss_weights,
            metrics=metrics,
            weighted_metrics=weighted_metrics,
            **kwargs,
        )

    def get_compile_config(self):
        if self._compile_arguments is None:
            return {}
        return keras.saving.serialize_keras_object(self._compile_arguments)

    def compile_from_config(self, config):
        config = keras.saving.deserialize_keras_object(config)
        self.compile(**config)
        if self.built and self.optimizer is not None:
            self.optimizer.build(self.trainable_variables)

    def compute_task_losses(self, y, y_pred, sample_weight=None):
        """This replica's share of each task's loss, a list of T scalars.

        Each is the task's mean loss over the labelled examples of the
        global batch, divided so that the shares of all replicas add up to
        it; static loss weights not applied; 0 where nothing is labelled.
        The gradient of one reaches only its task's head.
        """
        self._check_compiled()
        return labels.task_losses(
            self._tasks, self._task_loss_fns, y, y_pred, sample_weight
        )[0]

    def compute_loss(
        self, x=None, y=None, y_pred=None, sample_weight=None, training=True
    ):
        """The total that training minimises, on this replica's batch."""
        step = self._loss_terms(y, y_pred, sample_weight)
        return self._weighted_total(step, training)[1]

    def _weighted_total(self, step, training):
        """The weights of the step, and `sum_i w_i L_i` plus the extra
        terms (this replica's share)."""
        weights = self.weighting.weights_for(
            step["task_losses"], step["present"], training=training
        )
        return weights, ops.sum(weights * step["weighted"]) + step["extra"]

    def _check_compiled(self):
        if self._task_loss_fns is None:
            raise RuntimeError("Call `compile()` before training the model.")

    def _loss_terms(self, y, y_pred, sample_weight):
        """The loss terms of a step: `weighted` (`(T,)` shares times static
        weights), `task_losses` (their global sums, no gradient), `present`,
        `counts`, `extra` (method's term and regularisers, this replica's
        share) and `shares` (list, unweighted)."""
        self._check_compiled()
        step = labels.loss_terms(
            self._tasks,
            self._task_loss_fns,
            self._static_loss_weights,
            y,
            y_pred,
            sample_weight,
        )
        replicas = distribute.num_replicas()
        extra = 0.0
        own = self.weighting.regularization_loss(
            step["task_losses"], step["present"]
        )
        if own is not None:
            extra = extra + ops.cast(own, "float32") / replicas
        if self.losses:
            regularisers = ops.sum(
                [ops.cast(v, "float32") for v in self.losses]
            )
            extra = extra + regularisers / replicas
        step["extra"] = extra
        return step

    def train_step(self, data):
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        method = self.weighting
        # One task: nothing to combine or balance, train it plainly.
        needs = method.gradients if len(self._tasks) > 1 else None
        if needs in ("shared", "representation"):
            return self._gradient_step(x, y, sample_weight)
        # Loss-level methods, and the after-step hook's needs.
        optimizer = self.optimizer
        scale = ops.cast(optimizer.scale_loss(1.0), "float32")
        kernel = None
        if needs == "kernel":
            kernel = method.gradient_variable(self)
        with tf.GradientTape(persistent=kernel is not None) as tape:
            y_pred = self(x, training=True)
            step = self._loss_terms(y, y_pred, sample_weight)
            weights, total = self._weighted_total(step, training=True)
            scaled_total = optimizer.scale_loss(total)
            task_terms = self._task_terms(step, scale)
        variables = self.trainable_variables
        grads = tape.gradient(scaled_total, variables)
        task_gradients = None
        if kernel is not None:
            at_kernel = gradients.at_variable(tape, task_terms, kernel)
            task_gradients = gradients.all_reduce_sum(
                ops.cast(at_kernel, "float32") / scale
            )
        del tape
        optimizer.apply(grads, variables)
        new_task_losses = None
        if method.losses_after_step:
            after = self._loss_terms(y, self(x, training=True), sample_weight)
            new_task_losses = after["task_losses"]
        if needs == method.gradients:
            method.after_step(
                step["task_losses"],
                step["present"],
                task_gradients,
                new_task_losses,
            )
        return self._finish_step(
            x, y, y_pred, sample_weight, step, total, weights
        )

    def _gradient_step(self, x, y, sample_weight):
        """The step of gradient-level methods: per-task gradients of the
        shared parameters (or representation), combined by the method."""
        method, optimizer = self.weighting, self.optimizer
        shared = self.shared_variables
        if not shared:
            raise ValueError(
                f"{type(method).__name__} needs shared variables (a trunk) to "
                "combine task gradients; the model has none."
            )
        shared_ids = {id(v) for v in shared}
        others = [
            v for v in self.trainable_variables if id(v) not in shared_ids
        ]
        split = self._found().split
        if method.gradients == "representation" and split is None:
            raise ValueError(
                f"`mode='rep'` of {type(method).__name__} needs one shared "
                "representation that every task head reads and that holds "
                "all shared variables upstream (hard sharing). Use "
                "`mode='param'` for this model."
            )
        scale = ops.cast(optimizer.scale_loss(1.0), "float32")
        representation = None
        with tf.GradientTape(persistent=True) as tape:
            if split is not None:
                representation = split.trunk(x, training=True)
                y_pred = split.heads(representation, training=True)
            else:
                y_pred = self(x, training=True)
            step = self._loss_terms(y, y_pred, sample_weight)
            weighted, extra = step["weighted"], step["extra"]
            terms = dict(
                scale=scale,
                stacked=weighted * scale,
                extra=extra * scale,
                total=ops.sum(weighted) * scale + extra * scale,
                tasks=self._task_terms(step, scale),
            )
        weights, grads = gradients.combined(
            tape,
            method,
            terms,
            step,
            optimizer.iterations,
            shared,
            others,
            representation,
        )
        del tape
        optimizer.apply(grads, shared + others)
        total = ops.sum(weights * weighted) + extra
        return self._finish_step(
            x, y, y_pred, sample_weight, step, total, weights
        )

    def _task_terms(self, step, scale):
        # Loss-scaled like the total (mixed_float16); from each task's own
        # scalar: the gradient of a slice of the stacked losses would go
        # back through every task's loss.
        return [
            share * weight * scale
            for share, weight in zip(step["shares"], self._static_loss_weights)
        ]

    def test_step(self, data):
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        y_pred = self(x, training=False)
        step = self._loss_terms(y, y_pred, sample_weight)
        weights, total = self._weighted_total(step, training=False)
        logs = self._finish_step(
            x, y, y_pred, sample_weight, step, total, weights
        )
        # Training quantities only: no `val_<task>_examples`, and no
        # `val_<task>_weight` (the weights do not change in evaluation).
        training_only = set(self._task_trackers[0].count_keys)
        if self.weighting.log_weights:
            training_only |= set(self._task_trackers[1].keys)
        return {k: v for k, v in logs.items() if k not in training_only}

    def _finish_step(self, x, y, y_pred, sample_weight, step, total, weights):
        """Updates the trackers and metrics; returns the logs."""
        replicas = distribute.num_replicas()
        batch_size = ops.shape(keras.tree.flatten(x)[0])[0]
        self._total_tracker.update_state(
            total * replicas, sample_weight=batch_size
        )
        # Each task's loss is the mean over its labelled examples: weighted
        # by the labelled count (this replica's part of it).
        unweighted = distribute.all_reduce_sum(ops.stack(step["shares"]))
        self._task_trackers[0].update_state(
            unweighted, sample_weight=step["counts"] / replicas
        )
        if self.weighting.log_weights:
            present = ops.cast(step["present"], "float32")
            self._task_trackers[1].update_state(
                weights, sample_weight=present / replicas
            )
        return self.compute_metrics(x, y, y_pred, sample_weight=sample_weight)

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        self._check_compiled()
        y, _, weights = labels.prepare_labels(
            self._tasks, self._task_loss_fns, y, y_pred, sample_weight
        )
        return super().compute_metrics(x, y, y_pred, sample_weight=weights)

    def get_metrics_result(self):
        # Keras drops the output name from metric names when there is one
        # output; keep `<task>_<metric>` for every task count.
        prefix = f"{self.task_names[0]}_" if len(self._tasks) == 1 else ""
        results = {}
        for metric in self.metrics:
            result = metric.result()
            if isinstance(metric, labels.TaskSums):  # keys name the tasks
                results.update(result)
            elif isinstance(result, dict):
                results.update({prefix + k: v for k, v in result.items()})
            else:
                results[metric.name] = result
        return self._nan_where_unlabelled(results)

    def _nan_where_unlabelled(self, results):
        """NaN, not the 0 of an empty mean, for the loss, weight and
        metrics of a task with no label yet in the epoch."""
        trackers = self._task_trackers[0]
        counts = ops.unstack(trackers.counts, len(self._tasks))
        index = {name: i for i, name in enumerate(self.task_names)}
        longest_first = sorted(index, key=len, reverse=True)
        for key, value in results.items():
            task = next(
                (n for n in longest_first if key.startswith(f"{n}_")), None
            )
            if task is None or key in trackers.count_keys:
                continue
            results[key] = ops.where(
                counts[index[task]] > 0, value, ops.full_like(value, np.nan)
            )
        return results

    def fit(
        self,
        x=None,
        y=None,
        batch_size=None,
        epochs=1,
        verbose="auto",
        callbacks=None,
        sample_weight=None,
        **kwargs,
    ):
        """`keras.Model.fit`, which also tells the weighting about epochs.

        A callback that calls `self.weighting.on_epoch_end(logs)` runs first
        among the callbacks at each epoch end, so that checkpoints such as
        `BackupAndRestore` see the weighting state of the next epoch.
        Array labels are checked first (string labels, per-task
        `sample_weight` dicts). `x` (and `validation_data`) may be a
        `keras_mtl.data.Mixture`: its dataset is used, with its
        `steps_per_epoch` unless given. The other arguments are those of
        `keras.Model.fit`.
        """
        x = self._from_mixture(x, y, kwargs, "steps_per_epoch")
        if "validation_data" in kwargs:
            kwargs["validation_data"] = self._from_mixture(
                kwargs["validation_data"], None, kwargs, "validation_steps"
            )
        return super().fit(
            x=x,
            y=y,
            batch_size=batch_size,
            epochs=epochs,
            verbose=verbose,
            callbacks=self._with_epoch_hook(callbacks),
            sample_weight=labels.check_array_labels(
                y, sample_weight, self.task_names
            ),
            **kwargs,
        )

    def evaluate(self, x=None, y=None, sample_weight=None, **kwargs):
        """`keras.Model.evaluate`, with array labels checked and a
        `keras_mtl.data.Mixture` accepted as in `fit`."""
        x = self._from_mixture(x, y, kwargs, "steps")
        return super().evaluate(
            x=x,
            y=y,
            sample_weight=labels.check_array_labels(
                y, sample_weight, self.task_names
            ),
            **kwargs,
        )

    def _from_mixture(self, x, y, kwargs, steps):
        from keras_mtl.data import Mixture

        if not isinstance(x, Mixture):
            return x
        if y is not None:
            raise ValueError(
                "A keras_mtl.data.Mixture holds its labels: pass `y=None`."
            )
        if sorted(x.task_names) != sorted(self.task_names):
            raise ValueError(
                f"The mixture labels tasks {x.task_names}; the model has "
                f"tasks {self.task_names}. Build it with `tasks=model.tasks`."
            )
        if x.layout == "homogeneous" and self.weighting.gradients in (
            "shared",
            "representation",
        ):
            warnings.warn(
                f"{type(self.weighting).__name__} combines the gradients of "
                "the tasks present in a batch, but each batch of this "
                "mixture comes from one source (layout='homogeneous'): where "
                "a source labels one task there is nothing to combine. Use "
                "layout='mixed'.",
                stacklevel=3,
            )
        if kwargs.get(steps) is None and x.steps_per_epoch is not None:
            kwargs[steps] = x.steps_per_epoch
        if steps == "steps_per_epoch":
            kwargs.setdefault("shuffle", False)  # the mixture shuffles
        return x.dataset

    def _with_epoch_hook(self, callbacks):
        hook = _WeightingEpochEnd(self.weighting)
        if isinstance(callbacks, keras.callbacks.CallbackList):
            hook.set_model(self)
            callbacks.callbacks.insert(0, hook)
            return callbacks
        return [hook] + (keras.tree.flatten(callbacks) if callbacks else [])

    def get_config(self):
        config = super().get_config()
        config["tasks"] = [t.get_config() for t in self._tasks]
        config["weighting"] = weighting_module.serialize(self.weighting)
        config["shared_representation"] = self._shared_representation
        return config

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        config["tasks"] = [Task.from_config(t) for t in config["tasks"]]
        config["weighting"] = weighting_module.deserialize(
            config["weighting"], custom_objects=custom_objects
        )
        return super().from_config(config, custom_objects=custom_objects)
