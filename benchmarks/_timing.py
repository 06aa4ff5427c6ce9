"""Per-step timing shared by the benchmark scripts."""

import time

import keras
import numpy as np


class StepTimer(keras.callbacks.Callback):
    """Seconds between consecutive training batches (the first excluded).

    Timing steps rather than whole `fit` calls leaves out what `fit` does
    once per call (data adapters, callbacks, the first step's dispatch).
    """

    def on_epoch_begin(self, epoch, logs=None):
        self.times = []

    def on_train_batch_end(self, batch, logs=None):
        self.times.append(time.perf_counter())

    @property
    def steps(self):
        return list(np.diff(self.times))


def step_times(model, x, y, batch_size):
    """Trains `model` one epoch on `(x, y)`; returns its step times."""
    timer = StepTimer()
    model.fit(
        x,
        y,
        batch_size=batch_size,
        epochs=1,
        shuffle=False,
        verbose=0,
        callbacks=[timer],
    )
    return timer.steps
