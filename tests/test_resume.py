"""Interrupt and resume with `BackupAndRestore`, killed by SIGKILL.

The process is killed mid-epoch (no Python cleanup runs) and a new process
resumes from the backup. With `save_freq="epoch"` the result is training
straight through, weights, optimizer and weighting state; with an integer
`save_freq`, Keras 3.15 restores the state of the last save but restarts
the interrupted epoch at batch 0, so the batches of that epoch trained
before the save run twice: the documented limit, checked here exactly.
"""

import json
import os
import signal
import subprocess
import sys
import textwrap
import warnings

import keras
import numpy as np
import pytest

from keras_mtl import testing

SCRIPT = textwrap.dedent(
    """
    import json, os, signal, sys
    import keras
    import numpy as np
    from keras_mtl import testing

    mode, save_freq, backup, out = sys.argv[1:5]
    save_freq = save_freq if save_freq == "epoch" else int(save_freq)
    x, y = testing.tiny_data(n=64)

    def model():
        keras.utils.set_random_seed(3)
        return testing.tiny_model(weighting="dwa")

    class Kill(keras.callbacks.Callback):
        # SIGKILL in epoch 1 (0-based), after its batch 2 (of 4).
        def on_epoch_begin(self, epoch, logs=None):
            self.epoch = epoch

        def on_train_batch_end(self, batch, logs=None):
            if self.epoch == 1 and batch == 2:
                os.kill(os.getpid(), signal.SIGKILL)

    def fit(m, callbacks):
        return m.fit(x, y, epochs=3, batch_size=16, shuffle=False,
                     callbacks=callbacks, verbose=0)

    def state(m):
        return [v.numpy().tolist() for v in
                m.weights + m.optimizer.variables + m.weighting.variables]

    restore = keras.callbacks.BackupAndRestore(backup, save_freq=save_freq)
    if mode == "killed":
        fit(model(), [restore, Kill()])
    else:
        resumed = model()
        fit(resumed, [restore])
        straight = model()
        fit(straight, [])
        with open(out, "w") as f:
            json.dump({"resumed": state(resumed), "straight": state(straight),
                       "iterations": [
                           int(resumed.optimizer.iterations.numpy()),
                           int(straight.optimizer.iterations.numpy())]}, f)
    """
)


def _run(tmp_path, save_freq):
    script = tmp_path / "resume.py"
    script.write_text(SCRIPT)
    args = [str(save_freq), str(tmp_path / "backup"), str(tmp_path / "o.json")]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    killed = subprocess.run(
        [sys.executable, str(script), "killed", *args],
        env=env,
        capture_output=True,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr.decode()[-2000:]
    done = subprocess.run(
        [sys.executable, str(script), "resume", *args],
        env=env,
        capture_output=True,
    )
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    return json.loads((tmp_path / "o.json").read_text())


def test_resume_after_sigkill_with_epoch_saves_is_training_straight_through(
    tmp_path,
):
    result = _run(tmp_path, "epoch")
    assert result["iterations"] == [12, 12]
    assert len(result["resumed"]) == len(result["straight"])
    for a, b in zip(result["resumed"], result["straight"]):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


def test_resume_after_sigkill_with_batch_saves_replays_the_epochs_start(
    tmp_path,
):
    # Saved after batch 1 of epoch 1 (every 2 batches: 6 steps in all);
    # killed after batch 2; the resumed run restarts epoch 1 at batch 0:
    # 6 + 4 + 4 = 14 steps instead of 12, batches 0-1 of epoch 1 twice.
    result = _run(tmp_path, 2)
    assert result["iterations"] == [14, 12]
    differs = [
        not np.allclose(a, b, rtol=1e-4)
        for a, b in zip(result["resumed"], result["straight"])
    ]
    assert any(differs)


def test_fit_warns_that_batch_saves_do_not_resume_exactly(tmp_path):
    x, y = testing.tiny_data(n=32)
    model = testing.tiny_model()
    backup = keras.callbacks.BackupAndRestore(str(tmp_path), save_freq=2)
    with pytest.warns(UserWarning, match="restarts the interrupted epoch"):
        model.fit(x, y, epochs=1, batch_size=16, callbacks=[backup], verbose=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        model.fit(
            x,
            y,
            epochs=1,
            batch_size=16,
            verbose=0,
            callbacks=[keras.callbacks.BackupAndRestore(str(tmp_path / "e"))],
        )
