import numpy as np
import pytest
import tensorflow_datasets as tfds

import keras_mtl


def test_make_multi_mnist_places_digits_as_in_the_paper():
    images = np.zeros((2, 28, 28), "float32")
    images[0, :, :] = 1.0  # all-ones "digit"
    x, y = keras_mtl.data.make_multi_mnist(
        images, np.array([3, 7]), num_pairs=50, seed=0
    )
    assert x.shape == (50, 28, 28, 1) and x.dtype == np.float32
    assert 0.0 <= x.min() and x.max() <= 1.0
    left_only = (y["left"] == 3) & (y["right"] == 7)
    right_only = (y["left"] == 7) & (y["right"] == 3)
    # The left digit covers canvas rows/columns 0:28 of 36, the right one
    # 6:34: after resizing to 28, pixel 0 is left-only and 24 right-only.
    assert left_only.any() and right_only.any()
    assert x[left_only][:, -1, -1, 0].max() < 0.05
    assert x[left_only][:, 0, 0, 0].min() > 0.95
    assert x[right_only][:, 0, 0, 0].max() < 0.05
    assert x[right_only][:, 24, 24, 0].min() > 0.95


def test_make_multi_mnist_rejects_bad_input():
    with pytest.raises(ValueError, match="same number"):
        keras_mtl.data.make_multi_mnist(np.zeros((3, 784)), [1, 2], 4)
    with pytest.raises(ValueError, match="num_pairs"):
        keras_mtl.data.make_multi_mnist(np.zeros((3, 784)), [1, 2, 3], 0)


def test_load_multi_mnist_offline_uses_disjoint_digits():
    (x, y), (x_test, y_test) = keras_mtl.data.load_multi_mnist(
        num_train=200, num_test=100
    )
    assert x.shape == (200, 28, 28, 1) and x_test.shape == (100, 28, 28, 1)
    assert set(y) == {"left", "right"}
    assert y["left"].min() >= 0 and y["left"].max() <= 9
    # No test pair equals a training pair pixel for pixel.
    train = {row.tobytes() for row in (x * 255).round().astype("uint8")}
    test = [row.tobytes() for row in (x_test * 255).round().astype("uint8")]
    assert not any(t in train for t in test)


def test_load_multi_mnist_from_tfds(tmp_path):
    with tfds.testing.mock_data(num_examples=40, data_dir=str(tmp_path)):
        (x, y), (x_test, y_test) = keras_mtl.data.load_multi_mnist(
            source="tfds", num_train=30, num_test=10
        )
    assert x.shape == (30, 28, 28, 1) and x_test.shape == (10, 28, 28, 1)
    assert y_test["right"].shape == (10,)


def test_load_multi_mnist_rejects_unknown_source():
    with pytest.raises(ValueError, match="source"):
        keras_mtl.data.load_multi_mnist(source="internet")
