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


def check_variables(method, shared, variables, split):
    """The trainable `variables` that are not `shared`, with clear errors
    where `method` cannot run on a model of these `shared` variables and
    `split` (its `structure.RepresentationSplit`, or `None`)."""
    if not shared:
        raise ValueError(
            f"{type(method).__name__} needs shared variables (a trunk) to "
            "combine task gradients; the model has none."
        )
    shared_ids = {id(v) for v in shared}
    others = [v for v in variables if id(v) not in shared_ids]
    if method.gradients == "representation" and split is None:
        raise ValueError(
            f"`mode='rep'` of {type(method).__name__} needs one shared "
            "representation that every task head reads and that holds "
            "all shared variables upstream (hard sharing). Use "
            "`mode='param'` for this model."
        )
    return others


def combined(
    tape, method, terms, step, iterations, shared, others, representation=None
):
    """The gradients of one step of a gradient-level method.

    Per-task gradients of the shared variables (`method.gradients ==
    "shared"`) or of the shared `representation` (`"representation"`), all
    summed over the replicas; their Gram matrix, loss scale removed, goes to
    `method.gradient_weights`; the shared variables get `sum_i w_i g_i`
    (this replica's share: the optimizer sums over replicas), the others
    the gradient of the plain sum of the task terms (each head's task alone
    reaches it). The terms of `regularization_loss` and the model's
    regularisers are added to both, unweighted.

    Args:
        tape: the persistent tape of the forward pass.
        method: the model's `GradientWeighting`.
        terms: dict of the loss-scaled terms recorded on the tape: `tasks`
            (list of T scalars), `stacked` (the `(T,)` tensor of them),
            `total` (their sum plus `extra`), `extra` and `scale`.
        step: the model's loss terms of the step (`task_losses`,
            `present`, `extra`).
        iterations: the optimizer's step count.
        shared: the shared variables.
        others: the other trainable variables.
        representation: the shared representation the heads read (the
            output of the trunk), or `None` when the model has no such
            split (then `method.gradients` must be `"shared"`).

    Returns:
        `(weights, gradients)`: the `(T,)` weights and one gradient per
        variable of `shared + others`.
    """
    replicas = tf.distribute.get_strategy().num_replicas_in_sync
    scale = terms["scale"]
    rep_mode = method.gradients == "representation"
    if representation is not None:
        jacobian, other_grads = at_representation(
            tape, terms["tasks"], representation, others
        )
    if rep_mode:
        gram = all_reduce_sum(flat_gram([jacobian]))
    else:
        if representation is not None:
            per_task = through_trunk(
                tape, representation, jacobian, shared, method.parallel_tasks
            )
        else:
            per_task = jacobians(
                tape, terms["stacked"], shared, method.parallel_tasks
            )
        per_task = all_reduce_sum(per_task)
        gram = flat_gram(per_task)
    gram = gram / (scale * scale)
    record = getattr(method, "gram_record", None)
    if record is not None:  # kept for `GradientConflict(x=None)`
        record.assign(gram, step["present"])
    weights = method.gradient_weights(
        gram,
        step["task_losses"],
        tf.convert_to_tensor(iterations),
        step["present"],
    )
    if rep_mode:
        direction = tf.tensordot(tf.cast(weights, jacobian.dtype), jacobian, 1)
        shared_grads = tape.gradient(
            representation, shared, output_gradients=direction
        )
    else:
        shared_grads = [
            tf.tensordot(tf.cast(weights, j.dtype), j, 1) / replicas
            for j in per_task
        ]
    has_extra = not isinstance(step["extra"], float)
    if representation is None:
        other_grads = tape.gradient(terms["total"], others) if others else []
    elif has_extra and others:
        regular = tape.gradient(terms["extra"], others)
        other_grads = [add(g, r) for g, r in zip(other_grads, regular)]
    if has_extra:
        regular = tape.gradient(terms["extra"], shared)
        shared_grads = [add(g, r) for g, r in zip(shared_grads, regular)]
    return weights, list(shared_grads) + list(other_grads)
