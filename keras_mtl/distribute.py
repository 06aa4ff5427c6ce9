"""Helpers for exact losses and statistics under `tf.distribute`."""

import tensorflow as tf


def num_replicas():
    """Number of replicas that train in sync (1 without a strategy).

    Returns:
        int: `num_replicas_in_sync` of the current `tf.distribute` strategy.

    Example:

    ```python
    # A term of a custom weighting's total that is not a task loss:
    regulariser = keras.ops.sum(self.log_variances)
    total = total + regulariser / keras_mtl.distribute.num_replicas()
    ```
    """
    return tf.distribute.get_strategy().num_replicas_in_sync


def all_reduce_sum(value):
    """Sums `value` over the replicas of the current replica context.

    Outside a replica context, or with one replica, returns `value`. The sum
    carries no gradient: use it for counts and statistics, never for a loss
    that must be differentiated.

    Args:
        value: a tensor, e.g. this replica's `(T,)` task losses.

    Returns:
        The tensor summed over the replicas, with its gradient stopped.

    Example:

    ```python
    # In a custom Weighting: weights from the losses of the global batch.
    totals = keras_mtl.distribute.all_reduce_sum(task_losses)
    ```
    """
    value = tf.stop_gradient(value)
    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return value
    return context.all_reduce(tf.distribute.ReduceOp.SUM, value)


def in_multi_worker_mode(strategy=None):
    """Whether `strategy` (default: the current one) spans several workers.

    Args:
        strategy: a `tf.distribute.Strategy`. Defaults to `None`: the
            current one.

    Returns:
        bool: true for a `MultiWorkerMirroredStrategy` of more than one
        worker.

    Example:

    ```python
    keras_mtl.distribute.in_multi_worker_mode()  # False on one machine
    ```
    """
    strategy = strategy or tf.distribute.get_strategy()
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return False
    resolver = strategy.cluster_resolver
    if resolver is None:
        return False
    jobs = resolver.cluster_spec().as_dict()
    return sum(len(jobs.get(job, [])) for job in ("chief", "worker")) > 1


def all_finite(values):
    """Whether every value on every replica is finite (no NaN, no inf).

    Args:
        values: a list of tensors (`None` entries are skipped), e.g. a
            step's total and gradients.

    Returns:
        A scalar bool tensor, the same on every replica.

    Example:

    ```python
    finite = keras_mtl.distribute.all_finite([total, *grads])
    ```
    """
    bad = [
        tf.reduce_sum(tf.cast(~tf.math.is_finite(v), "int32"))
        for v in values
        if v is not None
    ]
    if not bad:
        return tf.constant(True)
    return all_reduce_sum(tf.add_n(bad)) == 0


def run_if(condition, fn, *args):
    """Runs `fn(*args)` on every replica where `condition` holds.

    `condition` must be the same on every replica (see `all_finite`). A
    `tf.cond` in a replica context cannot hold a branch that calls
    `merge_call`, as an optimizer's `apply` does under a strategy; so there
    the condition is taken in the cross-replica context and `fn` runs in
    each replica with its own `args`, as in Keras's `LossScaleOptimizer`.
    Pass every per-replica tensor `fn` reads through `args`, not by closure.
    `fn` returns nothing.

    Args:
        condition: a scalar bool tensor.
        fn: a callable.
        *args: nested structures of tensors, `fn`'s arguments.

    Example:

    ```python
    keras_mtl.distribute.run_if(
        finite, lambda grads: optimizer.apply(grads, variables), grads
    )
    ```
    """

    def branch(*values):
        fn(*values)
        return tf.constant(True)

    if not tf.distribute.has_strategy():
        tf.cond(condition, lambda: branch(*args), lambda: tf.constant(False))
        return

    def cross_replica(strategy, condition, *args):
        condition = strategy.experimental_local_results(condition)[0]

        def each_replica():
            strategy.extended.call_for_each_replica(fn, args=args)
            return tf.constant(True)

        tf.cond(condition, each_replica, lambda: tf.constant(False))

    tf.distribute.get_replica_context().merge_call(
        cross_replica, args=(condition, *args)
    )
