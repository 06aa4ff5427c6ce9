import keras
import numpy as np
from keras import ops

from keras_mtl import testing
from keras_mtl.weighting import DynamicWeightAverage


def _dwa_weights(last, before, temperature=2.0):
    """The paper's formula: T * softmax((L(t-1) / L(t-2)) / temperature)."""
    rates = np.asarray(last) / np.asarray(before) / temperature
    return len(rates) * np.exp(rates) / np.sum(np.exp(rates))


def test_weights_follow_the_formula_on_a_hand_made_history():
    dwa = DynamicWeightAverage(temperature=2.0)
    dwa.set_tasks(["a", "b", "c"])
    epochs = [
        [[1.0, 2.0, 3.0], [3.0, 2.0, 1.0]],  # averages 2, 2, 2
        [[1.0, 1.0, 1.5]],  # averages 1, 1, 1.5
        [[0.5, 0.6, 1.5], [0.5, 1.0, 1.5]],  # averages 0.5, 0.8, 1.5
        [[0.1, 0.1, 0.1]],
    ]
    expected = [
        [1.0, 1.0, 1.0],
        [1.0, 1.0, 1.0],
        # rates 0.5, 0.5, 0.75: 3 * softmax([0.25, 0.25, 0.375])
        [0.957503, 0.957503, 1.084993],
        # rates 0.5, 0.8, 1.0: 3 * softmax([0.25, 0.4, 0.5])
        [0.870610, 1.011505, 1.117885],
    ]
    testing.assert_allclose(
        expected[3], _dwa_weights([0.5, 0.8, 1.5], [1.0, 1.0, 1.5]), atol=1e-6
    )
    for steps, weights in zip(epochs, expected):
        for losses in steps:
            losses = ops.convert_to_tensor(losses)
            total, got = dwa(losses, training=True)
            testing.assert_allclose(got, weights, atol=1e-6)
            testing.assert_allclose(total, np.dot(weights, losses), atol=1e-5)
            # Evaluation sees the same weights and adds nothing to the stats.
            testing.assert_allclose(dwa(losses * 100.0)[1], weights, atol=1e-6)
        dwa.on_epoch_end()
    assert int(dwa.epochs_seen.numpy()) == 4
    testing.assert_allclose(dwa.epoch_losses[0], [0.1, 0.1, 0.1], atol=1e-7)
    testing.assert_allclose(dwa.epoch_losses[1], [0.5, 0.8, 1.5], atol=1e-7)
    dwa.on_epoch_end()  # an epoch without training steps changes nothing
    assert int(dwa.epochs_seen.numpy()) == 4


def test_fit_uses_epoch_averages_of_the_logged_losses():
    """With validation data; the hook and resume tests train without."""
    model = testing.tiny_model(weighting=DynamicWeightAverage())
    x, y = testing.tiny_data(n=64)
    history = model.fit(
        x,
        y,
        validation_data=(x, y),
        epochs=4,
        batch_size=16,  # equal batches: the log's mean is the mean over steps
        verbose=0,
    ).history
    tasks = ["reg", "binary", "multi"]
    losses = np.array([history[f"{t}_loss"] for t in tasks]).T
    weights = np.array([history[f"{t}_weight"] for t in tasks]).T
    testing.assert_allclose(weights[:2], np.ones((2, 3)))
    for epoch in (2, 3):
        expected = _dwa_weights(losses[epoch - 1], losses[epoch - 2])
        testing.assert_allclose(weights[epoch], expected, atol=1e-5)
    assert not np.allclose(weights[3], 1.0, atol=1e-3)
    # The weights are a training quantity: not logged for validation.
    assert not any(f"val_{t}_weight" in history for t in tasks)
    assert int(model.weighting.epochs_seen.numpy()) == 4


def test_fit_calls_the_hook_however_callbacks_are_passed():
    model = testing.tiny_model(weighting=DynamicWeightAverage())
    x, y = testing.tiny_data(n=32)
    seen = []
    log = keras.callbacks.LambdaCallback(
        on_epoch_end=lambda epoch, logs: seen.append(
            int(model.weighting.epochs_seen.numpy())
        )
    )
    model.fit(x, y, 16, 2, 0, [log])  # positional; the hook runs first
    assert seen == [1, 2]
    model.fit(x, y, batch_size=16, epochs=1, verbose=0, callbacks=log)
    callbacks = keras.callbacks.CallbackList([log], model=model)
    model.fit(x, y, batch_size=16, epochs=1, verbose=0, callbacks=callbacks)
    assert seen == [1, 2, 3, 4]
