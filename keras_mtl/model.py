import keras
import tensorflow as tf
from keras import ops

from keras_mtl import compat
from keras_mtl import compiling
from keras_mtl import gradients
from keras_mtl import guard
from keras_mtl import labels
from keras_mtl import logs
from keras_mtl import structure
from keras_mtl import weighting as weighting_module
from keras_mtl.data import checks
from keras_mtl.structure import check_tasks
from keras_mtl.tasks import Task

__all__ = ["MTLModel", "check_tasks"]


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

    Logs hold `loss` (`sum_i s_i <task>_loss` with the static loss weights
    `s_i`, plus regularisers: comparable across epochs, methods and with
    `val_loss`, whatever the method's weights), `<task>_loss` (each task's
    unweighted loss, the mean over its labelled examples of the epoch),
    `<task>_<metric>`, and in training only `weighted_loss` (the objective
    the step minimised), `<task>_weight` for weighting
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
        *args: `inputs` and `outputs`, as for a functional `keras.Model`:
            a `keras.Input` or a dict/list of them, and a dict
            `{task_name: tensor}`.
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
        self._tasks = tuple(structure.check_outputs(self.output, tasks))
        names = self.task_names
        self.weighting = weighting_module.get(weighting)
        self.weighting.attach(names)
        self._shared_representation = shared_representation
        self._structure = None
        self._task_loss_fns = None
        self._static_loss_weights = None
        self._compile_arguments = None
        self._skip_non_finite = True
        self._sitting_out = frozenset()
        self._logs = logs.TaskLogs(names, self.weighting.log_weights)

    @property
    def tasks(self):
        return list(self._tasks)

    @property
    def skip_non_finite(self):
        """Whether a step with a NaN or inf total or gradient is skipped
        (`compile(skip_non_finite=...)`, default `True`)."""
        return self._skip_non_finite

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
    def training_tasks(self):
        """The tasks that train (all, unless `set_training_tasks` said
        otherwise)."""
        return [n for n in self.task_names if n not in self._sitting_out]

    def set_training_tasks(self, tasks=None):
        """Lets only `tasks` train; the others sit out of training steps.

        A task that sits out is absent from every batch for the weighting
        method (weight 0, its state does not move, the combination is that
        of the others), adds nothing to the objective, and its own
        variables (`task_variables`) are left out of the optimizer's
        update, so they do not drift with momentum. Its `<task>_loss` and
        metrics are still measured and logged, and evaluation is unchanged.
        The set is not saved with the model. A change re-traces the
        training step. `keras_mtl.callbacks.PerTaskEarlyStopping` uses it.

        Args:
            tasks: list of task names, or `None` for all tasks.

        Example:

        ```python
        model.set_training_tasks(["price"])  # "churn" sits out
        model.set_training_tasks()  # every task trains again
        ```
        """
        names = self.task_names
        tasks = names if tasks is None else list(tasks)
        unknown = [t for t in tasks if t not in names]
        if unknown or not all(isinstance(t, str) for t in tasks):
            raise ValueError(
                f"`tasks` must be names among the model's tasks {names}. "
                f"Received: tasks={tasks!r}"
            )
        sitting_out = frozenset(names) - set(tasks)
        if sitting_out != self._sitting_out:
            self._sitting_out = sitting_out
            if self.train_function is not None:
                self.make_train_function(force=True)

    def _trained_variables(self):
        variables = self.trainable_variables
        if not self._sitting_out:
            return variables
        own = self.task_variables
        frozen = {id(v) for n in self._sitting_out for v in own[n]}
        return [v for v in variables if id(v) not in frozen]

    @property
    def static_loss_weights(self):
        """The `(T,)` static loss weights resolved by `compile()`."""
        if self._static_loss_weights is None:
            raise RuntimeError("Call `compile()` before training the model.")
        return list(self._static_loss_weights)

    @property
    def metrics(self):
        # Our own logs stand where Keras's (unused) `loss` tracker would.
        rest = [
            m for m in super().metrics if m.name not in ("loss", "task_logs")
        ]
        return [self._logs, *rest]

    def compile(
        self,
        optimizer="rmsprop",
        loss=None,
        loss_weights=None,
        metrics=None,
        weighted_metrics=None,
        skip_non_finite=True,
        **kwargs,
    ):
        """`keras.Model.compile`, with the tasks' losses, weights and
        metrics unless given, and `skip_non_finite`.

        The other arguments are those of `keras.Model.compile`: `loss`,
        `loss_weights` and `metrics` may be dicts by task name.

        Args:
            skip_non_finite: bool. Whether a training step whose total or
                gradients hold a NaN or inf, on any replica, is skipped: no
                weight, optimizer or weighting state moves, the step counts
                for nothing in the loss and weight logs, and `skipped_steps`
                counts it (compiled metrics still see the batch). `False`
                applies it, as Keras does. Defaults to `True`.
        """
        if not isinstance(skip_non_finite, bool):
            raise TypeError(
                "`skip_non_finite` must be True or False. "
                f"Received: skip_non_finite={skip_non_finite!r}"
            )
        self._skip_non_finite = skip_non_finite
        self._logs.count_skipped = skip_non_finite
        self._task_loss_fns, self._static_loss_weights, task_metrics = (
            compiling.resolve(
                self._tasks, loss, loss_weights, metrics, weighted_metrics
            )
        )
        self._logs.loss_weights = list(self._static_loss_weights)
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
            skip_non_finite=skip_non_finite,
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

    def compute_task_losses(
        self, y, y_pred, sample_weight=None, return_counts=False
    ):
        """This replica's share of each task's loss, a list of T scalars.

        Each is the task's mean loss over the labelled examples of the
        global batch, divided so that the shares of all replicas add up to
        it; static loss weights not applied; 0 where nothing is labelled.
        The gradient of one reaches only its task's head. With
        `return_counts`, also the `(T,)` labelled counts of the global
        batch (a task is present where its count is positive): a loss of 0
        cannot tell an unlabelled task from one whose weights are 0.
        """
        self._check_compiled()
        losses, counts = labels.task_losses(
            self._tasks, self._task_loss_fns, y, y_pred, sample_weight
        )
        return (losses, counts) if return_counts else losses

    def compute_loss(
        self, x=None, y=None, y_pred=None, sample_weight=None, training=True
    ):
        """The total that training minimises, on this replica's batch."""
        step = self._loss_terms(y, y_pred, sample_weight, training)
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

    def _loss_terms(self, y, y_pred, sample_weight, training=False):
        """The loss terms of a step (see `labels.loss_terms`), with the
        method's own term and the regularisers (`labels.extra_terms`)."""
        self._check_compiled()
        active = None
        if training and self._sitting_out:
            active = [n not in self._sitting_out for n in self.task_names]
        step = labels.loss_terms(
            self._tasks,
            self._task_loss_fns,
            self._static_loss_weights,
            y,
            y_pred,
            sample_weight,
            active,
        )
        return labels.extra_terms(step, self.weighting, self.losses)

    def train_step(self, data):
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        before = guard.state_before(self.weighting, self.skip_non_finite)
        method = self.weighting
        # One task: nothing to combine or balance, train it plainly.
        needs = method.gradients if len(self._tasks) > 1 else None
        if needs in ("shared", "representation"):
            return self._gradient_step(x, y, sample_weight, before)
        # Loss-level methods, and the after-step hook's needs.
        optimizer = self.optimizer
        scale = ops.cast(optimizer.scale_loss(1.0), "float32")
        kernel = None
        if needs == "kernel":
            kernel = method.gradient_variable(self)
        with tf.GradientTape(persistent=kernel is not None) as tape:
            y_pred = self(x, training=True)
            step = self._loss_terms(y, y_pred, sample_weight, True)
            weights, total = self._weighted_total(step, training=True)
            scaled_total = optimizer.scale_loss(total)
            task_terms = labels.task_terms(
                step, self._static_loss_weights, scale
            )
        variables = self._trained_variables()
        grads = tape.gradient(scaled_total, variables)
        task_gradients = None
        if kernel is not None:
            at_kernel = gradients.at_variable(tape, task_terms, kernel)
            task_gradients = gradients.all_reduce_sum(
                ops.cast(at_kernel, "float32") / scale
            )
        del tape

        def update(grads, x, y, sample_weight, losses, present, at_kernel):
            optimizer.apply(grads, variables)
            new_task_losses = None
            if method.losses_after_step:
                after = self(x, training=True)
                after = self._loss_terms(y, after, sample_weight, True)
                new_task_losses = after["task_losses"]
            if needs == method.gradients:
                method.after_step(losses, present, at_kernel, new_task_losses)

        # Per-replica tensors go through the arguments (see `run_if`).
        inputs = (x, y, sample_weight, step["task_losses"], step["present"])
        inputs = (*inputs, task_gradients)
        finite = guard.run(
            self, update, before, [total, *grads], grads, *inputs
        )
        return self._finish_step(
            x, y, y_pred, sample_weight, step, total, weights, finite
        )

    def _gradient_step(self, x, y, sample_weight, before):
        """The step of gradient-level methods: per-task gradients of the
        shared parameters (or representation), combined by the method."""
        method, optimizer = self.weighting, self.optimizer
        shared, split = self.shared_variables, self._found().split
        others = gradients.check_variables(
            method, shared, self._trained_variables(), split
        )
        scale = ops.cast(optimizer.scale_loss(1.0), "float32")
        representation = None
        with tf.GradientTape(persistent=True) as tape:
            if split is not None:
                representation = split.trunk(x, training=True)
                y_pred = split.heads(representation, training=True)
            else:
                y_pred = self(x, training=True)
            step = self._loss_terms(y, y_pred, sample_weight, True)
            weighted, extra = step["weighted"], step["extra"]
            terms = dict(
                scale=scale,
                stacked=weighted * scale,
                extra=extra * scale,
                total=ops.sum(weighted) * scale + extra * scale,
                tasks=labels.task_terms(step, self._static_loss_weights, scale),
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
        total = ops.sum(weights * weighted) + extra
        finite = guard.run(
            self,
            lambda grads: optimizer.apply(grads, shared + others),
            before,
            [total, *grads],
            grads,
        )
        return self._finish_step(
            x, y, y_pred, sample_weight, step, total, weights, finite
        )

    def make_train_function(self, force=False):
        # The optimizer is built eagerly first (for `fit` and
        # `train_on_batch`): built in the traced step, each slot variable is
        # lifted out of the graph under a condition and tf.function traces
        # the step twice (first fit at 60 tasks: 101 s, against 34 s).
        if self.optimizer is not None and not self.optimizer.built:
            with self.distribute_strategy.scope():
                self.optimizer.build(self.trainable_variables)
        return super().make_train_function(force=force)

    def test_step(self, data):
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        y_pred = self(x, training=False)
        step = self._loss_terms(y, y_pred, sample_weight)
        weights, total = self._weighted_total(step, training=False)
        logs = self._finish_step(
            x, y, y_pred, sample_weight, step, total, weights
        )
        return {
            k: v for k, v in logs.items() if k not in self._logs.training_only
        }

    def _finish_step(
        self, x, y, y_pred, sample_weight, step, total, weights, finite=None
    ):
        """Updates the trackers and metrics; returns the logs."""
        batch_size = ops.shape(keras.tree.flatten(x)[0])[0]
        self._logs.update_state(step, total, weights, batch_size, finite)
        return self.compute_metrics(x, y, y_pred, sample_weight=sample_weight)

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        self._check_compiled()
        y, _, weights = labels.prepare_labels(
            self._tasks, self._task_loss_fns, y, y_pred, sample_weight
        )
        return super().compute_metrics(x, y, y_pred, sample_weight=weights)

    def summary(self, *args, print_fn=None, **kwargs):
        """`keras.Model.summary`, then the weighting method and the
        parameters shared by the tasks against each task's own."""
        super().summary(*args, print_fn=print_fn, **kwargs)
        for line in structure.summary_lines(self):
            (print_fn or print)(line)

    def get_metrics_result(self):
        return self._logs.collect(self.metrics)

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
        `BackupAndRestore` see the weighting state of the next epoch
        (a `BackupAndRestore` with an integer `save_freq` gets a warning:
        Keras restarts an interrupted epoch at batch 0).
        Callbacks that monitor a per-task log with `mode="auto"`
        (`EarlyStopping`, `ModelCheckpoint`, `ReduceLROnPlateau`) get its
        direction from the model (`logs.MonitorModes`). The data is
        checked first (empty or unbatched, string labels, class ids out of
        range, per-task `sample_weight` dicts). `x`
        (and `validation_data`) may be a `keras_mtl.data.Mixture`: its
        dataset is used, with its `steps_per_epoch` unless given. The other
        arguments are those of `keras.Model.fit`.
        """
        x, sample_weight = checks.fit_arguments(
            self,
            self._task_loss_fns,
            x,
            y,
            sample_weight,
            kwargs,
            "steps_per_epoch",
        )
        return super().fit(
            x=x,
            y=y,
            batch_size=batch_size,
            epochs=epochs,
            verbose=verbose,
            callbacks=logs.fit_callbacks(callbacks, self),
            sample_weight=sample_weight,
            **kwargs,
        )

    def evaluate(self, x=None, y=None, sample_weight=None, **kwargs):
        """`keras.Model.evaluate`, with array labels checked and a
        `keras_mtl.data.Mixture` accepted as in `fit`."""
        x, sample_weight = checks.fit_arguments(
            self, self._task_loss_fns, x, y, sample_weight, kwargs, "steps"
        )
        return super().evaluate(x=x, y=y, sample_weight=sample_weight, **kwargs)

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
