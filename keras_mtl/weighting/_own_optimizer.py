"""The optimizer that a weighting method trains its own variables with."""

import keras

from keras_mtl import distribute


def make_weight_optimizer(optimizer, learning_rate, owner):
    """The optimizer of a method's own variables, from its name."""
    if not isinstance(optimizer, str):
        raise TypeError(
            f"{owner}: `optimizer` must be the name of a Keras optimizer, "
            f"such as 'adam' or 'sgd'. Received: optimizer={optimizer!r}"
        )
    if not isinstance(learning_rate, (int, float)) or not learning_rate > 0:
        raise ValueError(
            f"{owner}: `learning_rate` must be a number > 0. "
            f"Received: learning_rate={learning_rate!r}"
        )
    try:
        return keras.optimizers.get(
            {
                "class_name": optimizer,
                "config": {"learning_rate": float(learning_rate)},
            }
        )
    except ValueError:
        raise ValueError(
            f"{owner}: unknown optimizer {optimizer!r}. Expected the name of "
            "a Keras optimizer, such as 'adam' or 'sgd'."
        ) from None


def apply_replica_gradient(optimizer, gradient, variable):
    """Applies a gradient that every replica computed identically.

    Keras optimizers sum gradients over replicas; dividing first keeps the
    update that of one device.
    """
    optimizer.apply([gradient / distribute.num_replicas()], [variable])
