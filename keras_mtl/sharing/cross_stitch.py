import keras

from keras_mtl.layers.cross_stitch import CrossStitch
from keras_mtl.layers.towers import clone_layer
from keras_mtl.layers.towers import dense_stack
from keras_mtl.layers.towers import is_hidden_sizes
from keras_mtl.sharing.base import Sharing
from keras_mtl.sharing.base import merge_inputs


def tower_layers(trunk, scheme):
    """The trunk spec as a list of layers to copy per task, one per depth."""
    if trunk is None:
        raise ValueError(
            f"`sharing='{scheme}'` copies the trunk for each task, so it needs "
            "a trunk: a list of hidden sizes or a keras Layer/Sequential. "
            "Received: trunk=None"
        )
    if isinstance(trunk, keras.Sequential):
        return list(trunk.layers)
    if isinstance(trunk, keras.layers.Layer):
        return [trunk]
    if is_hidden_sizes(trunk):
        return dense_stack(trunk, "dense")
    raise TypeError(
        "`trunk` must be a list of hidden sizes (ints >= 1), a keras Layer or "
        f"Sequential. Received: trunk={trunk!r}"
    )


def tower_inputs(inputs, trunk):
    """What the first tower layer sees: merged features for a sizes list."""
    if isinstance(trunk, (list, tuple)):
        return merge_inputs(inputs)
    return inputs


def check_num_tasks(task_names, scheme):
    if len(task_names) < 2:
        raise ValueError(
            f"`sharing='{scheme}'` ties one tower per task and needs at least "
            f"2 tasks. Received tasks: {list(task_names)}"
        )


class CrossStitchSharing(Sharing):
    """One tower per task, mixed by cross-stitch units between layers.

    Each task gets its own copy of the trunk (a `Dense` per hidden size, or
    fresh clones of the layers of a `keras.Sequential` or of a single
    layer), named `{task}_{layer}`. After each chosen depth a
    `keras_mtl.layers.CrossStitch` unit named `cross_stitch_{depth}` mixes
    the T towers' features.

    Args:
        per_channel: bool. One mixing matrix per channel. Defaults to
            `False`.
        diagonal: float in `[0, 1]`. Initial self weight. Defaults to `0.9`.
        learning_rate_multiplier: float > 0. How much faster the mixing
            matrices learn. Defaults to `1.0`.
        stitch_after: list of int, or `None`. Depths (0-based tower layer
            indices) followed by a unit. Defaults to `None`: after every
            layer.

    Example:

    ```python
    model = keras_mtl.build_mtl_model(
        inputs, tasks, trunk=[64, 32],
        sharing=keras_mtl.sharing.CrossStitchSharing(
            learning_rate_multiplier=10.0))
    ```

    References:
        - [Misra et al., 2016](https://arxiv.org/abs/1604.03539)
    """

    # Ranges of the arguments for keras_mtl.tuner (see `search_space`).
    search_space = {
        "diagonal": {"min_value": 0.5, "max_value": 0.95, "default": 0.9},
        "learning_rate_multiplier": {
            "min_value": 1.0,
            "max_value": 100.0,
            "sampling": "log",
            "default": 1.0,
        },
    }

    def __init__(
        self,
        per_channel=False,
        diagonal=0.9,
        learning_rate_multiplier=1.0,
        stitch_after=None,
    ):
        # Validates the unit's arguments now rather than at build.
        CrossStitch(per_channel, diagonal, learning_rate_multiplier)
        if stitch_after is not None and (
            not isinstance(stitch_after, (list, tuple))
            or not all(
                isinstance(i, int) and not isinstance(i, bool)
                for i in stitch_after
            )
        ):
            raise TypeError(
                "`stitch_after` must be a list of layer indices or None. "
                f"Received: stitch_after={stitch_after!r}"
            )
        self.per_channel = per_channel
        self.diagonal = diagonal
        self.learning_rate_multiplier = learning_rate_multiplier
        self.stitch_after = stitch_after

    def get_config(self):
        return {
            "per_channel": self.per_channel,
            "diagonal": self.diagonal,
            "learning_rate_multiplier": self.learning_rate_multiplier,
            "stitch_after": None
            if self.stitch_after is None
            else list(self.stitch_after),
        }

    def build(self, inputs, trunk, task_names):
        check_num_tasks(task_names, "cross_stitch")
        layers = tower_layers(trunk, "cross_stitch")
        depths = range(len(layers))
        stitch_after = (
            depths if self.stitch_after is None else self.stitch_after
        )
        bad = sorted(set(stitch_after) - set(depths))
        if bad:
            raise ValueError(
                f"`stitch_after` has depths {bad} outside the trunk's "
                f"{len(layers)} layers; expected indices in "
                f"0..{len(layers) - 1}."
            )
        first = tower_inputs(inputs, trunk)
        features = [first] * len(task_names)
        for depth, layer in enumerate(layers):
            features = [
                clone_layer(layer, f"{task}_{layer.name}")(x)
                for task, x in zip(task_names, features)
            ]
            if depth in stitch_after:
                features = CrossStitch(
                    per_channel=self.per_channel,
                    diagonal=self.diagonal,
                    learning_rate_multiplier=self.learning_rate_multiplier,
                    name=f"cross_stitch_{depth}",
                )(features)
        return dict(zip(task_names, features))
