"""The non-finite guard of `MTLModel.train_step` (`skip_non_finite`)."""

import tensorflow as tf
from keras import ops

from keras_mtl import distribute


def state_before(weighting, enabled):
    """Notes, at the start of a step, the weighting state that a skipped
    step puts back: its non-trainable variables (those a replica may
    assign), which `compute_weights` or `combine` may move. Empty when the
    guard is off."""
    if not enabled:
        return [], []
    strategy = tf.distribute.has_strategy()
    state = [
        v
        for v in weighting.non_trainable_variables
        if not strategy or v.aggregation != "none"
    ]
    return state, [ops.copy(v.value) for v in state]


def run(model, update, before, checked, *args):
    """Runs `update(*args)` (the optimizer's step and the after-step hook),
    or with the model's `skip_non_finite` only where every value in
    `checked` is finite on every replica, else putting back the weighting
    state `before` the step; returns that bool (`None` without the
    guard)."""
    if not model.skip_non_finite:
        update(*args)
        return None
    finite = distribute.all_finite(checked)
    if not model.optimizer.built:  # not inside a condition
        model.optimizer.build(model.trainable_variables)
    distribute.run_if(finite, update, *args)
    for variable, value in zip(*before):
        variable.assign(ops.where(finite, variable.value, value))
    return finite
