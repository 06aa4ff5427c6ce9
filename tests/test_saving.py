import keras
import numpy as np
import tensorflow as tf

import keras_mtl
from keras_mtl import testing


def test_save_load_keeps_everything_and_resumes(tmp_path):
    model = testing.tiny_model(
        weighting={"reg": 1.0, "binary": 0.5, "multi": 2.0}
    )
    x, y = testing.tiny_data()
    model.fit(x, y, epochs=1, batch_size=16, shuffle=False, verbose=0)
    loaded = testing.run_model_saving_test(model, x, tmp_path / "m.keras")
    assert isinstance(loaded, keras_mtl.MTLModel)
    assert loaded.weighting.weights_by_task == {
        "reg": 1.0,
        "binary": 0.5,
        "multi": 2.0,
    }
    assert loaded.optimizer.iterations.numpy() == 4
    # Training goes on exactly where it stopped.
    model.fit(x, y, epochs=1, batch_size=16, shuffle=False, verbose=0)
    loaded.fit(x, y, epochs=1, batch_size=16, shuffle=False, verbose=0)
    for a, b in zip(model.trainable_variables, loaded.trainable_variables):
        testing.assert_allclose(a, b, atol=1e-5, msg=a.path)


def test_save_load_with_compile_overrides(tmp_path):
    model = testing.tiny_model()
    model.compile(
        optimizer="sgd", loss={"reg": "mae"}, loss_weights={"multi": 0.0}
    )
    x, y = testing.tiny_data(n=16)
    logs = model.evaluate(x, y, return_dict=True, verbose=0)
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    reloaded_logs = loaded.evaluate(x, y, return_dict=True, verbose=0)
    for key, value in logs.items():
        np.testing.assert_allclose(reloaded_logs[key], value, rtol=1e-5)


def test_export_serves_named_outputs(tmp_path):
    model = testing.tiny_model()
    x, _ = testing.tiny_data(n=4)
    expected = model.predict(x, verbose=0)
    model.export(str(tmp_path / "saved"), verbose=False)
    reloaded = tf.saved_model.load(str(tmp_path / "saved"))
    served = reloaded.serve(x)
    assert sorted(served) == ["binary", "multi", "reg"]
    for name, value in expected.items():
        testing.assert_allclose(served[name], value, atol=1e-6)


def test_backup_and_restore_resumes_training(tmp_path):
    x, y = testing.tiny_data()

    def train(callbacks, epochs):
        keras.utils.set_random_seed(0)
        model = testing.tiny_model()
        model.fit(
            x,
            y,
            epochs=epochs,
            batch_size=16,
            shuffle=False,
            callbacks=callbacks,
            verbose=0,
        )
        return model

    straight = train([], epochs=3)

    class Interrupt(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 1:
                raise RuntimeError("interrupted")

    backup = keras.callbacks.BackupAndRestore(str(tmp_path / "backup"))
    try:
        train([backup, Interrupt()], epochs=3)
    except RuntimeError:
        pass
    resumed = train([backup], epochs=3)
    assert resumed.optimizer.iterations.numpy() == 12
    for a, b in zip(straight.trainable_variables, resumed.trainable_variables):
        testing.assert_allclose(a, b, atol=1e-5, msg=a.path)
