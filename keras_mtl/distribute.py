"""Helpers for exact losses and statistics under `tf.distribute`."""

import tensorflow as tf


def num_replicas():
    """Number of replicas that train in sync (1 without a strategy)."""
    return tf.distribute.get_strategy().num_replicas_in_sync


def all_reduce_sum(value):
    """Sums `value` over the replicas of the current replica context.

    Outside a replica context, or with one replica, returns `value`. The sum
    carries no gradient: use it for counts and statistics, never for a loss
    that must be differentiated.
    """
    value = tf.stop_gradient(value)
    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return value
    return context.all_reduce(tf.distribute.ReduceOp.SUM, value)


def in_multi_worker_mode(strategy=None):
    """Whether `strategy` (default: the current one) spans several workers."""
    strategy = strategy or tf.distribute.get_strategy()
    return isinstance(
        strategy, tf.distribute.MultiWorkerMirroredStrategy
    ) and bool(strategy.extended._in_multi_worker_mode())
