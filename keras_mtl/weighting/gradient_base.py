import abc
import inspect

import tensorflow as tf
from keras import ops

from keras_mtl.weighting.base import Weighting

MODES = ("param", "rep")


class GradientWeighting(Weighting, metaclass=abc.ABCMeta):
    """Base class of the methods that combine per-task gradients.

    The model's training step computes, for every task `i`, the gradient
    `g_i` of its (statically weighted) loss: with respect to the shared
    parameters (`mode="param"`) or to the shared representation, the tensor
    that every task head reads (`mode="rep"`, as in MGDA-UB: one backward
    pass through the trunk instead of T). It sums them over replicas (so N
    replicas make the update of one device on the same global batch), forms
    the Gram matrix `G G^T` and asks the method for weights `w`; the shared
    parameters then move along `d = sum_i w_i g_i` (in `rep` mode, `d` is
    back-propagated through the trunk). Task-specific parameters,
    weighting variables and regularisers get the ordinary gradient of
    `sum_i L_i`. See `MTLModel.train_step` for how the gradients are
    computed (no T full backward passes).

    Every method here combines the gradients linearly, with weights that
    depend only on the Gram matrix and the task losses. Subclasses
    implement one hook, `combine(gram, task_losses, step, present)`, in
    TensorFlow so that it runs in the graph.

    Tasks absent from the batch have zero rows and columns in `gram` and
    must get weight 0: `combine` takes the combination over the present
    tasks only (the simplex, projections or system of the present ones).
    `combine` is only called with two or more tasks present; with one, its
    weight is 1, with none, all are 0.

    The weights of the last training step are kept in the variable
    `task_weights` (saved with the model), logged as `<task>_weight`, and
    used for the logged `loss` (`sum_i w_i L_i` plus regularisers) in
    training and evaluation.

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
        def combine(self, gram, task_losses, step=0, present=None):
            present = self.all_present(present)
            norms = tf.sqrt(tf.linalg.diag_part(gram))
            return tf.where(present, 1.0 / (norms + 1e-12), 0.0)

    model = keras_mtl.build_mtl_model(
        inputs, tasks, trunk=[64], weighting=SumOfUnitGradients())
    ```

    References:
        - [Sener & Koltun, 2018](https://arxiv.org/abs/1810.04650), per-task
          gradients of the shared representation (MGDA-UB).
        - [Yu et al., 2020](https://arxiv.org/abs/2001.06782), conflicting
          task gradients.
    """

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
        self._combine_fn = None
        self._compiled_combine = None

    @property
    def gradients(self):
        return "representation" if self.mode == "rep" else "shared"

    def build(self, input_shape):
        self.task_weights = self.add_weight(
            shape=(input_shape[0],),
            initializer="ones",
            trainable=False,
            aggregation="only_first_replica",
            name="task_weights",
        )
        self.built = True

    def compute_weights(self, task_losses, present, training=False):
        return ops.convert_to_tensor(self.task_weights)

    @abc.abstractmethod
    def combine(self, gram, task_losses, step=0, present=None):
        """Returns the `(T,)` weights of the per-task gradients.

        Args:
            gram: `(T, T)` float32 tensor `G G^T` of the per-task gradients
                (all-reduced over replicas, unscaled); rows and columns of
                absent tasks are zero.
            task_losses: `(T,)` float32 tensor of the task losses of the
                global batch (statically weighted, no gradient).
            step: int64 scalar tensor, the optimizer's iteration count.
            present: `(T,)` bool tensor; at least two are true. `None`
                (when called by hand) means all tasks; `all_present` turns
                it into a tensor.

        Returns:
            `(T,)` float32 tensor `w`, zero for absent tasks: the update is
            `sum_i w_i g_i`.
        """

    def all_present(self, present):
        """`present` as a `(T,)` bool tensor; `None` means all tasks."""
        if present is None:
            return tf.ones((self.num_tasks,), "bool")
        return tf.convert_to_tensor(present)

    def combine_state(self):
        """The variables of a stateful `combine`, in order. Defaults to `[]`.

        A method with state across steps (GradVac's cosine targets, the
        weights `Smoothed` averages) lists its non-trainable variables
        (`aggregation="only_first_replica"`) here and returns
        `(weights, new_values)` from `combine`, one new value per variable,
        without assigning them: `gradient_weights` does, after the compiled
        `combine`. Under `tf.distribute` a replica cannot assign a variable
        inside a nested `tf.function` or a `tf.cond`. `combine` sees the
        all-reduced Gram matrix, so every replica computes the same state;
        a step with fewer than two present tasks leaves it alone.
        """
        return []

    def gradient_weights(self, gram, task_losses, step, present):
        """`combine` with the absent-task rule, XLA-compiled unless
        `jit_combine` is false; stores the weights in `task_weights` (and
        the new values of `combine_state`)."""
        if self._combine_fn is None:
            combine = self.combine
            if "present" not in inspect.signature(combine).parameters:
                # A method written before `present` existed: it sees every
                # task, and absent ones are only masked out afterwards.
                def combine(gram, task_losses, step, present):
                    return self.combine(gram, task_losses, step)

            self._combine_fn = combine
            if self.jit_combine:
                self._compiled_combine = tf.function(combine, jit_compile=True)
                self._combine_fn = self._compiled_combine
        gram = tf.cast(gram, "float32")
        present_float = tf.cast(present, "float32")
        state = self.combine_state()
        values = []
        if self.num_tasks == 1:
            weights = present_float
        elif state:
            old = [tf.convert_to_tensor(v) for v in state]
            weights, values = tf.cond(
                tf.reduce_sum(present_float) >= 2.0,
                lambda: self._combine_fn(gram, task_losses, step, present),
                lambda: (present_float, old),
            )
        else:
            weights = tf.cond(
                tf.reduce_sum(present_float) >= 2.0,
                lambda: self._combine_fn(gram, task_losses, step, present),
                lambda: present_float,
            )
        weights = tf.where(present, tf.cast(weights, "float32"), 0.0)
        weights = tf.stop_gradient(weights)
        self.task_weights.assign(weights)
        for variable, value in zip(state, values):
            variable.assign(value)
        return weights

    def get_config(self):
        config = super().get_config()
        config["mode"] = self.mode
        config["parallel_tasks"] = self.parallel_tasks
        return config
