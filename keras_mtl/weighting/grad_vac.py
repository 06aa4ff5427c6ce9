import math

import keras
import tensorflow as tf

from keras_mtl.weighting.gradient_base import GradientWeighting


@keras.saving.register_keras_serializable(package="keras_mtl")
class GradVac(GradientWeighting):
    """Gradient vaccine: pulls task gradients towards their usual alignment.

    Each pair of tasks keeps a target cosine `phi_ij` (an exponential moving
    average of the cosines seen, starting at 0). For each task `i`, with
    `g'_i = g_i` at first, the other tasks `j` are visited in turn:

    - `rho = g'_i . g_j / (||g'_i|| ||g_j|| + epsilon)`;
    - if `rho < phi_ij`, `g'_i += g_j ||g'_i|| (phi_ij sqrt(1 - rho^2) -
      rho sqrt(1 - phi_ij^2)) / (||g_j|| sqrt(1 - phi_ij^2) + epsilon)`,
      which raises the cosine of `g'_i` and `g_j` to `phi_ij`;
    - always, `phi_ij <- (1 - beta) phi_ij + beta rho`.

    The update is `sum_i g'_i`. Each `g'_i` is a linear combination of the
    original gradients, so the method runs on the Gram matrix (the
    coefficient tracking of TorchJD): the logged weights are the
    coefficients of the sum. With `phi = 0` (the first step) a correction
    happens exactly when the gradients conflict, and it is PCGrad's
    projection. This is the whole-model variant (one `phi` per pair, not
    per layer).

    The targets are a `(T, T)` non-trainable variable, `cosine_targets`,
    saved with the model; computed from the all-reduced Gram matrix, they
    are the same on every replica. Tasks absent from the batch are not
    visited: their rows and columns of `cosine_targets` do not move. A task
    `j` with a zero gradient is never added (its coefficient would not
    change the update).

    Visiting order: with `seed=None`, the other tasks in index order, so
    the update on the present tasks is the one of those tasks alone. With
    an int `seed`, a random order per task and step, drawn statelessly from
    `seed` and the optimizer step as in `PCGrad` (the peers draw one with
    `random.shuffle` or `torch.randperm`).

    Args:
        beta: float in (0, 1]. Rate of the moving average of the cosines.
            Defaults to `0.5` (LibMTL's and TorchJD's default).
        seed: int or `None`. Seed of the random visiting orders; `None`
            visits in index order. Defaults to `None`.
        epsilon: float >= 0. Added to the denominators. Defaults to `1e-8`.
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
        weighting=keras_mtl.weighting.GradVac(beta=0.5, seed=0))
    ```

    References:
        - [Wang et al., 2021](https://arxiv.org/abs/2010.05874), Gradient
          Vaccine.
        - TorchJD `aggregation/_gradvac.py` (the Gram-matrix form) and
          LibMTL `weighting/GradVac.py` (`GradVac_group_type=0`), the peer
          code followed.
    """

    # Ranges of the arguments for keras_mtl.tuner (see `search_space`).
    search_space = {
        "beta": {
            "min_value": 0.01,
            "max_value": 1.0,
            "sampling": "log",
            "default": 0.5,
        },
    }

    def __init__(
        self,
        beta=0.5,
        seed=None,
        epsilon=1e-8,
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
        if (
            not isinstance(beta, (int, float))
            or isinstance(beta, bool)
            or not 0 < beta <= 1
        ):
            raise ValueError(
                f"`beta` must be a float in (0, 1]. Received: beta={beta!r}"
            )
        if seed is not None and (
            not isinstance(seed, int) or isinstance(seed, bool)
        ):
            raise TypeError(
                f"`seed` must be an int or None. Received: seed={seed!r}"
            )
        if (
            not isinstance(epsilon, (int, float))
            or isinstance(epsilon, bool)
            or not math.isfinite(epsilon)
            or epsilon < 0
        ):
            raise ValueError(
                f"`epsilon` must be a float >= 0. Received: epsilon={epsilon!r}"
            )
        self.beta = float(beta)
        self.seed = seed
        self.epsilon = float(epsilon)

    def build(self, input_shape):
        super().build(input_shape)
        self.cosine_targets = self.add_weight(
            shape=(input_shape[0], input_shape[0]),
            initializer="zeros",
            trainable=False,
            aggregation="only_first_replica",
            name="cosine_targets",
        )

    def combine_state(self):
        return [self.cosine_targets]

    def task_orders(self, step):
        """`(T, T)` int32: row `i` is the order in which task `i` visits
        the others (it skips itself)."""
        size = self.num_tasks
        if self.seed is None:
            return tf.tile(tf.range(size)[None, :], (size, 1))
        seed = tf.stack(
            [tf.constant(self.seed, tf.int64), tf.cast(step, tf.int64)]
        )
        bits = tf.random.stateless_uniform(
            (size, size),
            seed,
            minval=0,
            maxval=2**31 - 1,
            dtype="int32",
            alg="philox",
        )
        return tf.cast(tf.argsort(bits, axis=1, stable=True), tf.int32)

    def combine(self, gram, task_losses, step=0, present=None):
        """The weights and the new `cosine_targets` (see `combine_state`)."""
        present = self.all_present(present)
        targets = tf.convert_to_tensor(self.cosine_targets)
        weights, targets = self.combine_in_order(
            gram, targets, self.task_orders(step), present
        )
        return tf.where(present, weights, 0.0), [targets]

    def combine_in_order(self, gram, targets, orders, present):
        """GradVac with explicit `(T, T)` visiting orders.

        Returns:
            `(weights, targets)`: the `(T,)` coefficients of the update and
            the `(T, T)` cosine targets after the step.
        """
        size = self.num_tasks
        # Row i holds the coefficients of g'_i on the g_j; every row
        # visits its own j at each position, independently of the others.
        coefficients = tf.eye(size, dtype=gram.dtype)
        rows = tf.range(size)
        norms = tf.sqrt(tf.maximum(tf.linalg.diag_part(gram), 0.0))
        for position in range(size):
            other = orders[:, position]
            other_norm = tf.gather(norms, other)
            visited = tf.logical_and(
                other != rows,
                tf.logical_and(present, tf.gather(present, other)),
            )
            dots = tf.reduce_sum(coefficients * tf.gather(gram, other), axis=1)
            own_norm = tf.sqrt(
                tf.maximum(
                    tf.reduce_sum(
                        tf.matmul(coefficients, gram) * coefficients, axis=1
                    ),
                    0.0,
                )
            )
            rho = dots / (own_norm * other_norm + self.epsilon)
            pairs = tf.stack([rows, other], axis=1)
            target = tf.gather_nd(targets, pairs)
            sine = tf.sqrt(tf.maximum(1.0 - tf.square(rho), 0.0))
            target_sine = tf.sqrt(tf.maximum(1.0 - tf.square(target), 0.0))
            amount = (
                own_norm
                * (target * sine - rho * target_sine)
                / (other_norm * target_sine + self.epsilon)
            )
            vaccinate = tf.logical_and(
                tf.logical_and(visited, rho < target), other_norm > 0.0
            )
            amount = tf.where(vaccinate, amount, 0.0)
            coefficients += amount[:, None] * tf.one_hot(other, size)
            moved = (1.0 - self.beta) * target + self.beta * rho
            targets = tf.tensor_scatter_nd_update(
                targets, pairs, tf.where(visited, moved, target)
            )
        return tf.reduce_sum(coefficients, axis=0), targets

    def get_config(self):
        config = super().get_config()
        config.update(beta=self.beta, seed=self.seed, epsilon=self.epsilon)
        return config
