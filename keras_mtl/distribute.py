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
