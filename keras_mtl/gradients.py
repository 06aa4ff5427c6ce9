"""Per-task gradients for the training step, without T full backward passes.

Used by `MTLModel.train_step` for the methods that declare `gradients`.
"""

import tensorflow as tf


def all_reduce_sum(values):
    """Sums a structure of tensors over the replicas (identity with one).

    Unlike `keras_mtl.distribute.all_reduce_sum`, the gradient is kept.
    """
    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return values
    return context.all_reduce(tf.distribute.ReduceOp.SUM, values)


def add(gradient, other):
    """The sum of two gradients of one variable, either of them `None`."""
    if gradient is None:
        return other
    return gradient if other is None else gradient + other


def flat_gram(matrices):
    """`sum_k M_k M_k^T` over `(T, ...)` tensors flattened to `(T, n_k)`."""
    gram = 0.0
    for matrix in matrices:
        flat = tf.cast(tf.reshape(matrix, (tf.shape(matrix)[0], -1)), "float32")
        gram += tf.matmul(flat, flat, transpose_b=True)
    return gram


def at_variable(tape, task_terms, variable):
    """`(T, *variable.shape)`: each task term's gradient at one variable."""
    gradients = []
    for term in task_terms:
        gradient = tape.gradient(term, variable)
        gradients.append(
            tf.zeros_like(variable) if gradient is None else gradient
        )
    return tf.stack(gradients)


def at_representation(tape, task_terms, representation, variables=()):
    """Each task's gradient of the representation, and of `variables`.

    One backward pass per task through its own head only (the other heads
    do not depend on it), so together they cost one backward pass through
    the heads, and memory grows with T times the representation, not T
    times all the heads. The same passes give the gradients of the
    task-specific `variables` (the heads'), summed over the tasks: no
    second backward pass through the heads.

    Returns:
        `(jacobian, gradients)`: the `(T, *representation.shape)`
        gradients, and one gradient (or `None`) per variable.
    """
    jacobian, sums = [], [None] * len(variables)
    for term in task_terms:
        gradients = tape.gradient(term, [representation, *variables])
        own = gradients[0]
        jacobian.append(tf.zeros_like(representation) if own is None else own)
        sums = [add(s, g) for s, g in zip(sums, gradients[1:])]
    return tf.stack(jacobian), sums


def through_trunk(tape, representation, jacobian, shared, parallel_tasks=None):
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

    num_tasks = jacobian.shape[0]
    size = parallel_tasks or num_tasks
    chunks = [
        tf.vectorized_map(backward, jacobian[start : start + size])
        for start in range(0, num_tasks, size)
    ]
    return [tf.concat(parts, axis=0) for parts in zip(*chunks)]


def jacobians(tape, stacked_terms, sources, parallel_tasks=None):
    """Jacobians of the `(T,)` terms recorded on a persistent `tape`.

    Returns one `(T, *source.shape)` tensor per source, zeros where a task
    does not reach the source. Nothing is all-reduced here.
    """
    found = tape.jacobian(
        stacked_terms,
        sources,
        parallel_iterations=parallel_tasks,
        experimental_use_pfor=True,
    )
    num_tasks = stacked_terms.shape[0]
    return [
        tf.zeros((num_tasks,) + tuple(s.shape), stacked_terms.dtype)
        if j is None
        else j
        for j, s in zip(found, sources)
    ]
