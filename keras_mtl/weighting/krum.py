import keras
import tensorflow as tf

from keras_mtl.weighting.gradient_base import GradientWeighting


@keras.saving.register_keras_serializable(package="keras_mtl")
class Krum(GradientWeighting):
    """Krum: the task gradient closest to its nearest neighbours.

    A Byzantine-robust aggregator, not a multi-task method: it assumes up
    to `f = n_byzantine` of the T gradients may be arbitrary and keeps the
    one(s) the others agree with. From the Gram matrix,
    `dist_ij = sqrt(max(G_ii + G_jj - 2 G_ij, 0))` (clamped: near-equal
    gradients can round to a slightly negative square); the score of task
    `i` is the sum of its `T - f - 2` smallest distances to the other
    tasks, and `w` is `1 / m` on the `m = n_selected` tasks of lowest
    score (Multi-Krum for `m > 1`), 0 elsewhere. Ties go to the first
    task. The update is `d = sum_i w_i g_i`, a mean of selected gradients.

    Absent tasks are not candidates and are not counted: with `n` tasks
    present, the scores sum `n - f - 2` distances to present tasks (at
    least 1: with fewer than `f + 3` present, each task is scored by its
    nearest present neighbour), absent tasks get weight 0, and at most `n`
    tasks are selected (`w = 1 / min(m, n)`). `f` stays the number of
    Byzantine tasks assumed among the present ones.

    Args:
        n_byzantine: int >= 0. The number `f` of gradients that may be
            adversarial. A model of two or more tasks needs at least
            `f + 3` (checked when the method is bound to its tasks; one
            task trains plainly). Required, as in TorchJD.
        n_selected: int >= 1, at most the number of tasks. How many
            lowest-score gradients are averaged. Defaults to `1`.
        mode: str. `"param"` or `"rep"` (see `GradientWeighting`).
            Defaults to `"param"`.
        parallel_tasks: int or `None`. See `GradientWeighting`.
        log_weights: bool. Whether to log `<task>_weight`. Defaults to
            `True`.
        **kwargs: Base layer keyword arguments.

    Example:

    ```python
    model = keras_mtl.build_mtl_model(
        inputs, tasks, trunk=[64],
        weighting=keras_mtl.weighting.Krum(n_byzantine=1))
    ```

    References:
        - [Blanchard et al., 2017](https://proceedings.neurips.cc/paper/2017/hash/f4b9ec30ad9f68f89b29639786cb62ef-Abstract.html),
          Machine Learning with Adversaries: Byzantine Tolerant Gradient
          Descent; follows TorchJD's `aggregation/_krum.py`.
    """

    # `n_byzantine` is bounded by the number of tasks, which a search
    # space cannot know: give one in `weighting_search_space`.
    search_space = {}

    def __init__(
        self,
        n_byzantine,
        n_selected=1,
        mode="param",
        parallel_tasks=None,
        log_weights=True,
        **kwargs,
    ):
        super().__init__(
            mode=mode,
            parallel_tasks=parallel_tasks,
            log_weights=log_weights,
            **kwargs,
        )
        for name, value, least in (
            ("n_byzantine", n_byzantine, 0),
            ("n_selected", n_selected, 1),
        ):
            if not isinstance(value, int) or isinstance(value, bool):
                raise TypeError(
                    f"`{name}` must be an int. Received: {name}={value!r}"
                )
            if value < least:
                raise ValueError(
                    f"`{name}` must be >= {least}. Received: {name}={value!r}"
                )
        self.n_byzantine = n_byzantine
        self.n_selected = n_selected

    def build(self, input_shape):
        num_tasks = input_shape[0]
        # One task needs no combination (its weight is 1): it trains plainly.
        if 1 < num_tasks < self.n_byzantine + 3:
            raise ValueError(
                "Krum needs at least `n_byzantine + 3` tasks. Received: "
                f"n_byzantine={self.n_byzantine} with {num_tasks} tasks."
            )
        if 1 < num_tasks < self.n_selected:
            raise ValueError(
                "`n_selected` must be at most the number of tasks "
                f"({num_tasks}). Received: n_selected={self.n_selected}"
            )
        super().build(input_shape)

    def combine(self, gram, task_losses, step=0, present=None):
        size = self.num_tasks
        present = self.all_present(present)
        count = tf.reduce_sum(tf.cast(present, "int32"))
        squared = tf.linalg.diag_part(gram)
        distances = tf.sqrt(
            tf.maximum(squared[:, None] + squared[None, :] - 2.0 * gram, 0.0)
        )
        others = tf.logical_and(
            tf.logical_and(present[:, None], present[None, :]),
            tf.logical_not(tf.eye(size, dtype="bool")),
        )
        nearest = tf.sort(tf.where(others, distances, float("inf")), axis=1)
        neighbours = tf.maximum(count - self.n_byzantine - 2, 1)
        counted = tf.range(size)[None, :] < neighbours
        scores = tf.reduce_sum(tf.where(counted, nearest, 0.0), axis=1)
        scores = tf.where(present, scores, float("inf"))
        # Rank with ties broken by index: the first of equal scores wins.
        before = tf.logical_or(
            scores[None, :] < scores[:, None],
            tf.logical_and(
                tf.equal(scores[None, :], scores[:, None]),
                tf.range(size)[None, :] < tf.range(size)[:, None],
            ),
        )
        rank = tf.reduce_sum(tf.cast(before, "int32"), axis=1)
        selected = tf.minimum(self.n_selected, count)
        chosen = tf.logical_and(present, rank < selected)
        return tf.where(chosen, 1.0 / tf.cast(selected, "float32"), 0.0)

    def get_config(self):
        config = super().get_config()
        config.update(n_byzantine=self.n_byzantine, n_selected=self.n_selected)
        return config
