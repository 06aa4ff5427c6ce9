from keras_mtl import testing

MIRRORED_VS_ONE_DEVICE = """
import keras
import numpy as np
import keras_mtl
from keras_mtl import testing

assert len(tf.config.list_logical_devices("CPU")) == 2
x, y = testing.tiny_data(n=64)
# Uneven missing labels between the replicas' halves of each batch: exact
# only if the labelled count is summed over replicas.
y["reg"][:6] = np.nan
y["multi"][1:40:3] = -1

def build():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8,), name="x")
    trunk = keras.layers.Dense(
        8, activation="relu", kernel_regularizer=keras.regularizers.L2(0.1))
    model = keras_mtl.build_mtl_model(
        inputs, testing.tiny_tasks(), trunk=trunk, weighting=WEIGHTING)
    model.compile(optimizer=keras.optimizers.SGD(0.1))
    return model

def train(model):
    history = model.fit(x, y, epochs=2, batch_size=16, shuffle=False, verbose=0)
    return history.history, [v.numpy() for v in model.trainable_variables]

for WEIGHTING in ["equal", {"reg": 2.0, "binary": 1.0, "multi": 0.5}]:
    one_logs, one = train(build())
    with tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"]).scope():
        two_model = build()
    assert two_model.distribute_strategy.num_replicas_in_sync == 2
    two_logs, two = train(two_model)
    moved = max(np.abs(a - b).max() for a, b in zip(one, build().get_weights()))
    assert moved > 1e-2, moved
    for a, b in zip(one, two):
        np.testing.assert_allclose(a, b, atol=2e-6, rtol=1e-5)
    for key in one_logs:
        np.testing.assert_allclose(one_logs[key], two_logs[key], rtol=1e-5)
print("OK")
"""


def test_mirrored_two_devices_equals_one_device():
    assert "OK" in testing.run_with_devices(MIRRORED_VS_ONE_DEVICE)
