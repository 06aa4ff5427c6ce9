import abc

import keras
import tensorflow as tf
from keras import ops
from keras.src.losses import loss as loss_module

from keras_mtl import distribute
from keras_mtl.weighting.base import Weighting

MODES = ("param", "rep")


class _RepSplit:
    """The trunk and heads sub-models of `rep` mode.

    A plain object, so that Keras does not track the sub-models as layers
    of the weighting method (their layers belong to the model).
    """

    def __init__(self, trunk, heads):
        self.trunk = trunk
        self.heads = heads


def _all_reduce_sum(values):
    """Sums a structure of tensors over the replicas (identity with one)."""
    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return values
    return context.all_reduce(tf.distribute.ReduceOp.SUM, values)


def _add(gradient, other):
    """The sum of two gradients of one variable, either of them `None`."""
    if gradient is None:
        return other
    return gradient if other is None else gradient + other


def _flat_gram(matrices):
    """`sum_k M_k M_k^T` over `(T, ...)` tensors flattened to `(T, n_k)`."""
    gram = 0.0
    for matrix in matrices:
        flat = tf.cast(tf.reshape(matrix, (tf.shape(matrix)[0], -1)), "float32")
        gram += tf.matmul(flat, flat, transpose_b=True)
    return gram


def _shared_representation(model):
    """The last tensor that every task output depends on, and the check
    that nothing else reaches the heads (so it cuts the graph in two)."""
    ancestors = {}
    order = {}
    for name in model.task_names:
        seen, stack = set(), [model._outputs_struct[name]]
        while stack:
            tensor = stack.pop()
            if id(tensor) in seen:
                continue
            seen.add(id(tensor))
            order[id(tensor)] = tensor
            operation, node_index, _ = tensor._keras_history
            stack.extend(operation._inbound_nodes[node_index].input_tensors)
        ancestors[name] = seen
    common = set.intersection(*ancestors.values())
    candidates = [order[i] for i in common]
    for tensor in candidates:
        downstream = [
            other
            for other in candidates
            if other is not tensor and _depends_on(other, tensor)
        ]
        if not downstream:
            return tensor
    return None


def _depends_on(tensor, ancestor):
    seen, stack = set(), [tensor]
    while stack:
        current = stack.pop()
        if current is ancestor:
            return True
        if id(current) in seen:
            continue
        seen.add(id(current))
        operation, node_index, _ = current._keras_history
        stack.extend(operation._inbound_nodes[node_index].input_tensors)
    return False


@keras.saving.register_keras_serializable(package="keras_mtl")
class GradientWeighting(Weighting, metaclass=abc.ABCMeta):
    """Base class of the methods that combine per-task gradients.

    Each training step computes, for every task `i`, the gradient `g_i` of
    its (statically weighted) loss: with respect to the shared parameters
    (`mode="param"`) or to the shared representation, the tensor that
    every task head reads (`mode="rep"`, as in MGDA-UB: one backward pass
    through the trunk instead of T). When the model has such a
    representation (hard sharing), each task's gradient with respect to it
    costs a backward pass through that task's head alone, and `param` mode
    then pushes the T of them through the trunk in one vectorised backward
    pass (`tf.vectorized_map`); otherwise (soft sharing) the per-task
    gradients come from one vectorised Jacobian of the stacked task losses
    (`tf.GradientTape.jacobian` with `pfor`). Neither runs T full backward
    passes.

    Under `tf.distribute` every `g_i` is summed over the replicas *before*
    the method sees it, so N replicas make the same update as one device
    on the same global batch. In `rep` mode the gradients of different
    replicas belong to different examples; their Gram matrix is a sum over
    examples and is all-reduced instead, which is just as exact.

    Every method here combines the gradients linearly, `d = sum_i w_i g_i`,
    with weights that depend only on the Gram matrix `G G^T` (and the task
    losses). Subclasses therefore implement one hook, `combine(gram,
    task_losses, step)`, which returns the `(T,)` weights `w`, in
    TensorFlow so that it runs in the graph. The shared parameters move
    along `d` (in `rep` mode, `d` is back-propagated through the trunk);
    task-specific parameters, weighting variables and regularisers get the
    ordinary gradient of the total loss `sum_i L_i`.

    The weights of the last training step are kept in the variable
    `task_weights` (saved with the model), logged as `<task>_weight`, and
    used for the logged `loss` (`sum_i w_i L_i` plus regularisers) in
    training and evaluation.

    With `mixed_float16` the task losses are scaled by the optimizer's loss
    scale before differentiation and the gradients are unscaled before the
    method sees them.

    `combine` runs as one XLA-compiled function (`jit_combine = True`, a
    class attribute): its solvers are loops of many tiny operations on a
    `(T, T)` matrix, which cost a graph op each without XLA (11 ms against
    0.3 ms for MGDA's Frank-Wolfe at T = 10 on a CPU). Pick values at
    computed indices with `tf.gather`, not `x[i]`: XLA needs slice bounds at
    compile time, and would compile anew for every Gram matrix. A subclass
    whose `combine` XLA cannot compile sets `jit_combine = False`.

    Args:
        mode: str. `"param"` (gradients with respect to the shared
            parameters) or `"rep"` (with respect to the shared
            representation). Defaults to `"param"`.
        parallel_tasks: int or `None`. In `param` mode, how many tasks'
            gradients one vectorised backward pass computes at once: the
            passes' intermediate tensors grow with it, so it bounds memory
            for many tasks (the T gradients themselves are kept either
            way). Defaults to `None` (all at once).
        log_weights: bool. Whether to log `<task>_weight`. Defaults to
            `True`.
        **kwargs: Base layer keyword arguments, such as `name`.

    Example:

    ```python
    class SumOfUnitGradients(keras_mtl.weighting.GradientWeighting):
        def combine(self, gram, task_losses, step=0):
            return 1.0 / tf.sqrt(tf.linalg.diag_part(gram) + 1e-12)

    model = keras_mtl.build_mtl_model(
        inputs, tasks, trunk=[64], weighting=SumOfUnitGradients())
    ```

    References:
        - [Sener & Koltun, 2018](https://arxiv.org/abs/1810.04650), per-task
          gradients of the shared representation (MGDA-UB).
        - [Yu et al., 2020](https://arxiv.org/abs/2001.06782), conflicting
          task gradients.
    """

    custom_train_step = True
    jit_combine = True

    def __init__(
        self, mode="param", parallel_tasks=None, log_weights=True, **kwargs
    ):
        super().__init__(log_weights=log_weights, **kwargs)
        if mode not in MODES:
            raise ValueError(
                f"`mode` must be one of {MODES}. Received: mode={mode!r}"
            )
        if parallel_tasks is not None and (
            not isinstance(parallel_tasks, int) or parallel_tasks < 1
        ):
            raise ValueError(
                "`parallel_tasks` must be None or an int >= 1. "
                f"Received: parallel_tasks={parallel_tasks!r}"
            )
        self.mode = mode
        self.parallel_tasks = parallel_tasks
        self._rep_split = None
        self._compiled_combine = None

    def build(self, input_shape):
        self.task_weights = self.add_weight(
            shape=(input_shape[0],),
            initializer="ones",
            trainable=False,
            aggregation="only_first_replica",
            name="task_weights",
        )
        self.built = True

    def compute_weights(self, task_losses, training=False):
        return ops.convert_to_tensor(self.task_weights)

    @abc.abstractmethod
    def combine(self, gram, task_losses, step=0):
        """Returns the `(T,)` weights of the per-task gradients.

        Args:
            gram: `(T, T)` float32 tensor `G G^T` of the per-task gradients
                (all-reduced over replicas, unscaled).
            task_losses: `(T,)` float32 tensor of the task losses of the
                global batch (statically weighted, no gradient).
            step: int64 scalar tensor, the optimizer's iteration count.

        Returns:
            `(T,)` float32 tensor `w`: the update is `sum_i w_i g_i`.
        """

    def _combine(self, gram, task_losses, step):
        """`combine`, compiled with XLA unless `jit_combine` is false."""
        if not self.jit_combine:
            return self.combine(gram, task_losses, step)
        if self._compiled_combine is None:
            self._compiled_combine = tf.function(self.combine, jit_compile=True)
        return self._compiled_combine(gram, task_losses, step)

    def _split(self, model, required=True):
        """The trunk/heads split, or `None` when the model has none and
        `required` is false (soft sharing in `param` mode)."""
        if self._rep_split is False and not required:
            return None
        if not self._rep_split:
            representation = _shared_representation(model)
            shared = {id(v) for v in model.shared_variables}
            trunk = heads = None
            if representation is not None:
                trunk = keras.Model(model.inputs, representation)
                try:
                    heads = keras.Model(representation, model._outputs_struct)
                except ValueError:
                    heads = None
            if heads is None or shared != {
                id(v) for v in trunk.trainable_variables
            }:
                if not required:
                    self._rep_split = False
                    return None
                raise ValueError(
                    f"`mode='rep'` of {type(self).__name__} needs one shared "
                    "representation that every task head reads and that "
                    "holds all shared variables upstream (hard sharing). "
                    "Use `mode='param'` for this model."
                )
            self._rep_split = _RepSplit(trunk, heads)
        return self._rep_split

    def representation_gradients(
        self, tape, task_terms, representation, variables=()
    ):
        """Each task's gradient of the representation, and of `variables`.

        One backward pass per task through its own head only (the other
        heads do not depend on it), so together they cost one backward
        pass through the heads, and memory grows with T times the
        representation, not T times all the heads. The same passes give
        the gradients of the task-specific `variables` (the heads'), summed
        over the tasks: no second backward pass through the heads.

        Returns:
            `(jacobian, gradients)`: the `(T, *representation.shape)`
            gradients, and one gradient (or `None`) per variable.
        """
        jacobian, sums = [], [None] * len(variables)
        for term in task_terms:
            gradients = tape.gradient(term, [representation, *variables])
            own = gradients[0]
            jacobian.append(
                tf.zeros_like(representation) if own is None else own
            )
            sums = [_add(s, g) for s, g in zip(sums, gradients[1:])]
        return tf.stack(jacobian), sums

    def trunk_gradients(self, tape, representation, jacobian, shared):
        """Per-task gradients of the shared variables from those of the
        representation: one vectorised backward pass through the trunk (of
        `parallel_tasks` tasks at a time)."""

        def backward(output_gradient):
            gradients = tape.gradient(
                representation, shared, output_gradients=output_gradient
            )
            return [
                tf.zeros_like(v) if g is None else g
                for g, v in zip(gradients, shared)
            ]

        size = self.parallel_tasks or self.num_tasks
        chunks = [
            tf.vectorized_map(backward, jacobian[start : start + size])
            for start in range(0, self.num_tasks, size)
        ]
        return [tf.concat(parts, axis=0) for parts in zip(*chunks)]

    def per_task_gradients(self, tape, task_losses, sources):
        """Jacobians of the `(T,)` losses recorded on a persistent `tape`.

        Returns one `(T, *source.shape)` tensor per source, zeros where a
        task does not reach the source. Nothing is all-reduced here.
        """
        jacobians = tape.jacobian(
            task_losses,
            sources,
            parallel_iterations=self.parallel_tasks,
            experimental_use_pfor=True,
        )
        return [
            tf.zeros((self.num_tasks,) + tuple(s.shape), task_losses.dtype)
            if j is None
            else j
            for j, s in zip(jacobians, sources)
        ]

    def train_step(self, model, data):
        """One training step of `model` with per-task gradients."""
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        optimizer = model.optimizer
        shared = model.shared_variables
        if not shared:
            raise ValueError(
                f"{type(self).__name__} needs shared variables (a trunk) to "
                "combine task gradients; the model has none."
            )
        shared_ids = {id(v) for v in shared}
        others = [
            v for v in model.trainable_variables if id(v) not in shared_ids
        ]
        static = ops.convert_to_tensor(model.static_loss_weights, "float32")
        replicas = distribute.num_replicas()
        scale = ops.cast(optimizer.scale_loss(1.0), "float32")
        split = self._split(model, required=self.mode == "rep")
        with tf.GradientTape(persistent=True) as tape:
            if split is not None:
                representation = split.trunk(x, training=True)
                y_pred = split.heads(representation, training=True)
            else:
                y_pred = model(x, training=True)
            loss_list = model.compute_task_loss_list(y, y_pred, sample_weight)
            task_losses = ops.stack(loss_list)
            weighted = task_losses * static
            extra = 0.0
            if model.losses:
                extra = ops.sum([ops.cast(v, "float32") for v in model.losses])
                extra = extra / replicas
            scaled_losses = weighted * scale
            scaled_extra = extra * scale
            scaled_total = ops.sum(weighted) * scale + scaled_extra
            task_terms = [
                value * weight * scale
                for value, weight in zip(loss_list, model.static_loss_weights)
            ]

        global_losses = distribute.all_reduce_sum(weighted)
        if split is not None:
            jacobian, other_grads = self.representation_gradients(
                tape, task_terms, representation, others
            )
        if self.mode == "rep":
            gram = _all_reduce_sum(_flat_gram([jacobian]))
        else:
            if split is not None:
                jacobians = self.trunk_gradients(
                    tape, representation, jacobian, shared
                )
            else:
                jacobians = self.per_task_gradients(tape, scaled_losses, shared)
            jacobians = _all_reduce_sum(jacobians)
            gram = _flat_gram(jacobians)
        gram = gram / (scale * scale)
        if self.num_tasks == 1:
            weights = tf.ones((1,), "float32")
        else:
            step = tf.convert_to_tensor(optimizer.iterations)
            weights = self._combine(gram, global_losses, step)
        weights = tf.stop_gradient(tf.cast(weights, "float32"))

        if self.mode == "rep":
            direction = tf.tensordot(
                tf.cast(weights, jacobian.dtype), jacobian, 1
            )
            shared_grads = tape.gradient(
                representation, shared, output_gradients=direction
            )
        else:
            # The optimizer sums gradients over replicas: give it a share.
            shared_grads = [
                tf.tensordot(tf.cast(weights, j.dtype), j, 1) / replicas
                for j in jacobians
            ]
        if split is None:
            other_grads = tape.gradient(scaled_total, others) if others else []
        elif model.losses and others:
            regular = tape.gradient(scaled_extra, others)
            other_grads = [_add(g, r) for g, r in zip(other_grads, regular)]
        if model.losses:
            regular = tape.gradient(scaled_extra, shared)
            shared_grads = [_add(g, r) for g, r in zip(shared_grads, regular)]
        del tape
        optimizer.apply(
            list(shared_grads) + list(other_grads), list(shared) + others
        )

        self.task_weights.assign(weights)
        total = model.combine_losses(task_losses, y_pred, training=True)
        model._loss_tracker.update_state(
            loss_module.unscale_loss_for_distribution(total),
            sample_weight=tf.shape(keras.tree.flatten(x)[0])[0],
        )
        return model.compute_metrics(x, y, y_pred, sample_weight=sample_weight)

    def get_config(self):
        config = super().get_config()
        config["mode"] = self.mode
        config["parallel_tasks"] = self.parallel_tasks
        return config
