import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def fresh_keras():
    # Without Keras's gc.collect(): it scans every object of the worker, and
    # took up to 2.9 s a test late in a run (709 s of setup in all);
    # Python's own collector still frees the cycles.
    keras.backend.clear_session(free_memory=False)
    keras.utils.set_random_seed(1337)
    policy = keras.config.dtype_policy()
    yield
    keras.config.set_dtype_policy(policy)
