"""The one place where keras-mtl reaches into Keras's private API.

`metric_directions` reads which way each compiled metric improves, which
Keras keeps private. The rest works around a Keras bug:

keras-team/keras#20585: under `tf.distribute.MultiWorkerMirroredStrategy`,
Keras 3's TensorFlow trainer calls `strategy.reduce` on the nested first
batch (to build the model) and, with `axis=0`, on the scalar logs of every
step; both fail. `MultiWorkerFix` avoids those two calls and changes
nothing else; outside multi-worker training it is not involved at all.

It reaches into Keras's private trainer methods, which is why it lives
here alone. `tests/test_compat.py` runs a plain `keras.Model` under two
workers and expects the bug: once a Keras release fixes it, that test fails;
then set `FIXED_IN` to that version (the fix is skipped from it on) and
remove this module when the oldest supported Keras has the fix.
"""

import keras
import tensorflow as tf

from keras_mtl import distribute

# The first Keras version without keras-team/keras#20585 (none known yet).
FIXED_IN = None


def _version(text):
    return tuple(int(part) for part in text.split(".")[:3] if part.isdigit())


def needs_multi_worker_fix(strategy):
    """Whether `strategy` spans workers and this Keras has the bug."""
    if FIXED_IN is not None and _version(keras.version()) >= _version(FIXED_IN):
        return False
    return distribute.in_multi_worker_mode(strategy)


def _logs_as_vectors(step_function):
    """Makes a step return `(1,)` logs, which `strategy.reduce(..., axis=0)`
    averages over workers into scalars again."""

    def step(data):
        logs = step_function(data)
        return tf.nest.map_structure(lambda v: tf.reshape(v, (-1,)), logs)

    return step


def _first_local_batch(strategy, iterator):
    for _, _, batches in iterator:
        return tf.nest.map_structure(
            lambda v: (
                strategy.experimental_local_results(v)[0]
                if isinstance(v, tf.distribute.DistributedValues)
                else v
            ),
            next(batches),
        )
    return None


class MultiWorkerFix:
    """Mixin of `keras.Model` methods that avoid keras-team/keras#20585."""

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        strategy = self.distribute_strategy
        if iterator is not None and needs_multi_worker_fix(strategy):
            data_batch = _first_local_batch(strategy, iterator)
            iterator = None
        return super()._maybe_symbolic_build(
            iterator=iterator, data_batch=data_batch
        )

    def make_train_function(self, force=False):
        if not needs_multi_worker_fix(self.distribute_strategy):
            return super().make_train_function(force=force)
        if self.train_function is None or force:
            self.train_function = self._make_function(
                _logs_as_vectors(self.train_step)
            )
        return self.train_function

    def make_test_function(self, force=False):
        if not needs_multi_worker_fix(self.distribute_strategy):
            return super().make_test_function(force=force)
        if self.test_function is None or force:
            self.test_function = self._make_function(
                _logs_as_vectors(self.test_step)
            )
        return self.test_function


def metric_directions(model):
    """`{(output name or None, metric name): "up" | "down"}` of the built
    compiled metrics of `model` that carry a direction.

    Keras metrics know which way is better (`_direction`), but neither that
    nor which output a compiled metric belongs to is public; Keras's own
    monitor callbacks read the first and never the second, so they cannot
    resolve `mode="auto"` for `<output>_<metric>`.
    """
    directions = {}
    for compiled in model.metrics:
        for lists in ("_flat_metrics", "_flat_weighted_metrics"):
            for metric_list in getattr(compiled, lists, None) or []:
                for metric in getattr(metric_list, "metrics", None) or []:
                    direction = getattr(metric, "_direction", None)
                    if direction in ("up", "down"):
                        key = (metric_list.output_name, metric.name)
                        directions[key] = direction
    return directions
