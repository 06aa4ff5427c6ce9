import math

import keras
import numpy as np
from keras import ops

from keras_mtl.weighting.base import Weighting
from keras_mtl.weighting.gls import check_epsilon


@keras.saving.register_keras_serializable(package="keras_mtl")
class STCH(Weighting):
    """Smooth Tchebycheff scalarisation (STCH), the multi-task variant.

    Three phases, counted in training epochs `e = 0, 1, ...`:

    - `e < warmup_epochs`: the objective is `sum_i log L_i`, so
      `w_i = 1 / L_i`.
    - `e == warmup_epochs`: the same weights, and each task's nadir
      `z_i` is measured: the mean of its batch losses over the epoch.
    - afterwards: with `l_i = log(L_i / z_i)`, the objective is
      `T mu logsumexp(l / mu)`, whose gradient is that of
      `sum_i w_i L_i` with

      `w_i = T softmax(l / mu)_i / L_i`.

    The weights come from the global-batch losses, gradient stopped (one
    ordinary backward pass); `sum_i w_i L_i` is `T` in every phase. The
    task furthest above its nadir, relative to it, dominates: a smooth
    version of minimising the worst task.

    This follows the code of the authors and of LibMTL (the log of the
    losses, the nadir from one epoch, the factor `T`), not the paper's
    `mu logsumexp(lambda_i (L_i - z_i) / mu)`, which TorchJD implements.
    Note that `warmup_epochs=4` gives five epochs of `w = 1 / L` (the last
    one measuring the nadir), as there.

    Absent tasks get weight 0 and add nothing to the nadir; `T` and the
    softmax run over the present tasks. A task absent from the whole nadir
    epoch measures its nadir in the next epoch in which it has labels, and
    keeps the warm-up weight `1 / L_i` until then (outside the softmax).
    Losses below `epsilon` count as `epsilon`. The epoch count, the running
    sums and the nadir are variables saved with the model; `MTLModel.fit`
    calls `on_epoch_end` after each epoch (in a custom loop, call it
    yourself). Evaluation steps do not count.

    Args:
        mu: float > 0. Smoothing: small values approach the max of `l`,
            large ones the mean. Defaults to `1.0`.
        warmup_epochs: int >= 0. Epochs of `w = 1 / L` before the nadir
            epoch. Defaults to `4` (the authors' value, which they call ad
            hoc).
        epsilon: float > 0. Smallest loss used in the weights. Defaults to
            `1e-8`.
        log_weights: bool. Whether to log `<task>_weight`. Defaults to
            `True`.
        **kwargs: Base layer keyword arguments.

    Example:

    ```python
    model = keras_mtl.build_mtl_model(
        inputs, tasks, trunk=[64],
        weighting=keras_mtl.weighting.STCH(mu=1.0, warmup_epochs=4))
    ```

    References:
        - [Lin et al., 2024](https://arxiv.org/abs/2402.19078), smooth
          Tchebycheff scalarisation.
        - Xi-L/STCH `STCH_MTL/LibMTL/weighting/STCH.py` (identical in LibMTL
          `weighting/STCH.py`), the code followed.
    """

    # Ranges of the arguments for keras_mtl.tuner (see `search_space`).
    search_space = {
        "mu": {
            "min_value": 0.1,
            "max_value": 10.0,
            "sampling": "log",
            "default": 1.0,
        },
    }

    def __init__(
        self,
        mu=1.0,
        warmup_epochs=4,
        epsilon=1e-8,
        log_weights=True,
        **kwargs,
    ):
        super().__init__(log_weights=log_weights, **kwargs)
        if (
            not isinstance(mu, (int, float))
            or isinstance(mu, bool)
            or not math.isfinite(mu)
            or not mu > 0
        ):
            raise ValueError(f"`mu` must be a float > 0. Received: mu={mu!r}")
        if (
            not isinstance(warmup_epochs, int)
            or isinstance(warmup_epochs, bool)
            or warmup_epochs < 0
        ):
            raise ValueError(
                "`warmup_epochs` must be an int >= 0. "
                f"Received: warmup_epochs={warmup_epochs!r}"
            )
        self.mu = float(mu)
        self.warmup_epochs = warmup_epochs
        self.epsilon = check_epsilon(epsilon)

    def build(self, input_shape):
        num_tasks = input_shape[0]

        def state(name, shape, dtype="float32"):
            return self.add_weight(
                shape=shape,
                initializer="zeros",
                dtype=dtype,
                trainable=False,
                aggregation="only_first_replica",
                name=name,
            )

        self.epochs_seen = state("epochs_seen", (), dtype="int64")
        # Running sums of the nadir epoch, per task.
        self.nadir_loss_sums = state("nadir_loss_sums", (num_tasks,))
        self.nadir_steps = state("nadir_steps", (num_tasks,))
        # 0 until measured (a measured nadir is >= epsilon).
        self.nadir = state("nadir", (num_tasks,))
        self.built = True

    def compute_weights(self, task_losses, present, training=False):
        losses = ops.maximum(task_losses, self.epsilon)
        nadir = ops.convert_to_tensor(self.nadir)
        measured = nadir > 0.0
        if training:
            measuring = ops.logical_and(
                ops.greater_equal(self.epochs_seen, self.warmup_epochs),
                ops.logical_not(measured),
            )
            counted = ops.cast(ops.logical_and(present, measuring), "float32")
            self.nadir_loss_sums.assign_add(losses * counted)
            self.nadir_steps.assign_add(counted)
        smooth = ops.logical_and(present, measured)
        count = ops.sum(ops.cast(smooth, "float32"))
        relative = ops.log(losses / ops.where(measured, nadir, 1.0))
        logits = ops.where(smooth, relative / self.mu, -np.inf)
        # All -inf (no task in the smooth phase) gives NaN, masked out.
        shares = ops.where(smooth, ops.softmax(logits), 0.0)
        return ops.where(smooth, count * shares, 1.0) / losses

    def on_epoch_end(self, logs=None):
        steps = self.nadir_steps.numpy()
        if int(self.epochs_seen.numpy()) >= self.warmup_epochs:
            done = np.logical_and(steps > 0, self.nadir.numpy() == 0.0)
            means = self.nadir_loss_sums.numpy() / np.maximum(steps, 1.0)
            nadir = np.where(done, np.maximum(means, self.epsilon), 0.0)
            self.nadir.assign(self.nadir.numpy() + nadir)
            self.nadir_loss_sums.assign(ops.zeros_like(self.nadir_loss_sums))
            self.nadir_steps.assign(ops.zeros_like(self.nadir_steps))
        self.epochs_seen.assign_add(1)

    def get_config(self):
        config = super().get_config()
        config.update(
            mu=self.mu,
            warmup_epochs=self.warmup_epochs,
            epsilon=self.epsilon,
        )
        return config
