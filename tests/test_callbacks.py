"""keras_mtl.callbacks: TensorBoard by task, TAG during training, and the
multi-task scores that ModelCheckpoint and EarlyStopping monitor."""

import glob
import os
import pathlib
import re
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_mtl
from keras_mtl import testing
from keras_mtl.callbacks import CombinedMetric
from keras_mtl.callbacks import DeltaMLog
from keras_mtl.callbacks import MTLTensorBoard
from keras_mtl.callbacks import TaskAffinity
from keras_mtl.callbacks.tensorboard import _tag

ROOT = pathlib.Path(__file__).resolve().parent.parent
NAMES = ["a", "b_c"]  # "b_c": keys such as conflict_cos_a_b_c must split


def _data(n=128, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 4)).astype("float32")
    y = {"a": x[:, :1] + x[:, 1:2], "b_c": x[:, 2:3] - x[:, :1]}
    return x, y


def _model(weighting="equal", metrics=("mae",)):
    tasks = [
        keras_mtl.Task(n, loss="mse", metrics=list(metrics)) for n in NAMES
    ]
    model = keras_mtl.build_mtl_model(
        keras.Input((4,)), tasks, trunk=[8], weighting=weighting
    )
    model.compile(optimizer=keras.optimizers.Adam(0.02))
    return model


def _events(run_dir):
    """`({tag: {step: value}}, {tag: {step: PNG bytes}})` of a run."""
    scalars, images = {}, {}
    for path in sorted(glob.glob(os.path.join(run_dir, "events.out.*"))):
        for event in tf.compat.v1.train.summary_iterator(path):
            for value in event.summary.value:
                array = tf.make_ndarray(value.tensor)
                if value.metadata.plugin_data.plugin_name == "images":
                    images.setdefault(value.tag, {})[event.step] = array[2]
                else:
                    scalars.setdefault(value.tag, {})[event.step] = float(array)
    return scalars, images


# The tags of the logs of `_model` with its callbacks, written out by hand.
TRAIN_TAGS = {
    "a_loss": "tasks/a/loss",
    "a_mae": "tasks/a/mae",
    "a_examples": "tasks/a/examples",
    "b_c_loss": "tasks/b_c/loss",
    "b_c_mae": "tasks/b_c/mae",
    "b_c_examples": "tasks/b_c/examples",
    "a_weight": "weights/a",
    "b_c_weight": "weights/b_c",
    "loss": "model/loss",
    "weighted_loss": "model/weighted_loss",
    "skipped_steps": "model/skipped_steps",
}
CONFLICT_TAGS = {
    "conflict_cos_a_b_c": "conflict/cosine/a-b_c",
    "conflict_magnitude_a_b_c": "conflict/magnitude/a-b_c",
    "a_grad_norm": "conflict/grad_norm/a",
    "b_c_grad_norm": "conflict/grad_norm/b_c",
    "conflict_fraction": "conflict/fraction",
}
AFFINITY_TAGS = {
    "affinity_a_a": "affinity/a->a",
    "affinity_a_b_c": "affinity/a->b_c",
    "affinity_b_c_a": "affinity/b_c->a",
    "affinity_b_c_b_c": "affinity/b_c->b_c",
}
VALIDATION_TAGS = {
    "val_a_loss": "tasks/a/loss",
    "val_a_mae": "tasks/a/mae",
    "val_b_c_loss": "tasks/b_c/loss",
    "val_b_c_mae": "tasks/b_c/mae",
    "val_loss": "model/loss",
    "val_delta_m": "model/delta_m",
}


def test_board_writes_every_log_under_its_tag_with_the_logged_value(
    tmp_path,
):
    x, y = _data()
    probe = (x[:32], {n: v[:32] for n, v in y.items()})
    batches = {}
    recorder = keras.callbacks.LambdaCallback(
        on_train_batch_end=lambda batch, logs: batches.setdefault(
            len(batches) + 1, dict(logs)
        )
    )
    # GradientConflict's logs, made up (the real one is in the next test).
    conflict = keras.callbacks.LambdaCallback(
        on_epoch_end=lambda epoch, logs: logs.update(
            conflict_cos_a_b_c=[-0.5, 0.25][epoch],
            conflict_magnitude_a_b_c=[0.8, 0.9][epoch],
            a_grad_norm=[1.5, 1.0][epoch],
            b_c_grad_norm=[0.5, 2.0][epoch],
            conflict_fraction=[1.0, 0.0][epoch],
        )
    )
    affinity = TaskAffinity(*probe, every=8)
    delta = DeltaMLog({"a": {"mae": 0.5}, "b_c": {"mae": 0.5}})
    board = MTLTensorBoard(tmp_path, update_freq=3)
    # Keras's own TensorBoard in the same runs; its `record_if` (every
    # 2nd batch) must not drop this board's summaries.
    plain = keras.callbacks.TensorBoard(
        tmp_path, update_freq=2, write_graph=False
    )
    model = _model(weighting="dwa")
    history = model.fit(
        x,
        y,
        validation_data=(x, y),
        epochs=2,
        batch_size=32,
        verbose=0,
        callbacks=[conflict, affinity, delta, recorder, board, plain],
    ).history

    train, images = _events(tmp_path / "train")
    validation, _ = _events(tmp_path / "validation")
    epoch_tags = {**TRAIN_TAGS, **CONFLICT_TAGS, **AFFINITY_TAGS}
    batch_tags = {f"batch/{tag}" for tag in TRAIN_TAGS.values()}
    ours = {t for t in train if not t.startswith(("epoch_", "batch_"))}
    assert ours == set(epoch_tags.values()) | batch_tags
    for key, tag in epoch_tags.items():
        assert list(train[tag]) == [0, 1], tag
        np.testing.assert_allclose(
            [train[tag][0], train[tag][1]], history[key], rtol=1e-6, err_msg=tag
        )
    assert set(validation) - {
        t for t in validation if t.startswith(("epoch_", "evaluation_"))
    } == set(VALIDATION_TAGS.values())
    for key, tag in VALIDATION_TAGS.items():
        np.testing.assert_allclose(
            [validation[tag][0], validation[tag][1]], history[key], rtol=1e-6
        )
    # 4 batches an epoch: batch logs at steps 3 and 6 (update_freq=3).
    for key, tag in TRAIN_TAGS.items():
        steps = train[f"batch/{tag}"]
        assert list(steps) == [3, 6], tag
        for step, value in steps.items():
            assert value == pytest.approx(batches[step][key], rel=1e-6)
    # Keras's flat tags sit next to them in the same run.
    assert "epoch_loss" in train and "epoch_a_loss" in validation

    assert set(images) == {"conflict/cosine", "conflict/magnitude", "affinity"}
    for tag, by_step in images.items():
        assert list(by_step) == [0, 1], tag
        picture = tf.image.decode_png(by_step[0]).numpy()
        assert picture.ndim == 3 and min(picture.shape[:2]) > 100, tag
        assert picture.std() > 10, tag  # drawn, not blank


def test_board_tags_name_tasks_sources_and_experts():
    names = ["ctr", "ctr_clicks", "price"]
    metrics = {"price_false_positive_rate"}
    cases = {
        "ctr_clicks_loss": "tasks/ctr_clicks/loss",  # the longer name wins
        "ctr_auc": "tasks/ctr/auc",
        "ctr_rate": "rates/ctr",  # a source named after its task
        "ctr_clicks_rate": "rates/ctr_clicks",
        "web_logs_rate": "rates/web_logs",
        "price_false_positive_rate": "tasks/price/false_positive_rate",
        "conflict_cos_ctr_ctr_clicks": "conflict/cosine/ctr-ctr_clicks",
        "conflict_cos_ctr_clicks_price": "conflict/cosine/ctr_clicks-price",
        "affinity_price_ctr": "affinity/price->ctr",
        "mmoe/ctr/expert_2": "experts/mmoe/ctr/expert_2",
        "loss": "model/loss",
        "delta_m": "model/delta_m",
    }
    from keras_mtl.callbacks.tensorboard import _exact_tags

    exact = _exact_tags(names)
    for key, tag in cases.items():
        assert _tag(key, names, exact, metrics) == tag, key


def test_board_without_matplotlib_warns_once_and_writes_the_scalars(
    tmp_path, monkeypatch
):
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)
    x, y = _data(n=64)
    conflict = keras_mtl.callbacks.GradientConflict(x[:32], y_probe(y), every=8)
    with pytest.warns(UserWarning, match="matplotlib") as caught:
        history = _model().fit(
            x,
            y,
            epochs=2,
            batch_size=32,
            verbose=0,
            callbacks=[conflict, MTLTensorBoard(tmp_path)],
        )
    assert sum("matplotlib" in str(w.message) for w in caught) == 1
    scalars, images = _events(tmp_path / "train")
    assert images == {}
    np.testing.assert_allclose(
        list(scalars["conflict/cosine/a-b_c"].values()),
        history.history["conflict_cos_a_b_c"],
        rtol=1e-6,
    )


def y_probe(y, n=32):
    return {name: v[:n] for name, v in y.items()}


@pytest.mark.slow
def test_board_writes_only_on_the_chief_of_two_workers(tmp_path):
    code = f"""
import os, tensorflow as tf, keras, keras_mtl
from keras_mtl import testing
strategy = tf.distribute.MultiWorkerMirroredStrategy()
index = strategy.cluster_resolver.task_id
x, y = testing.tiny_data(n=64)
with strategy.scope():
    model = testing.tiny_model()
board = keras_mtl.callbacks.MTLTensorBoard(
    os.path.join({str(tmp_path)!r}, f"worker_{{index}}"))
model.fit(x, y, batch_size=32, epochs=1, verbose=0, callbacks=[board])
print("done")
"""
    outputs = testing.run_multi_worker(code, num_workers=2)
    assert all(out.strip().endswith("done") for out in outputs)
    chief, _ = _events(tmp_path / "worker_0" / "train")
    assert {"tasks/reg/loss", "tasks/multi/accuracy", "model/loss"} <= set(
        chief
    )
    assert not os.path.exists(tmp_path / "worker_1")


def test_task_affinity_logs_the_epoch_mean_of_task_affinity():
    x, y = _data(n=96)
    probe = (x[:48], y_probe(y, 48))
    affinity = TaskAffinity(*probe, every=2)
    model = _model()
    history = model.fit(
        x, y, epochs=2, batch_size=32, verbose=0, callbacks=[affinity]
    ).history
    # 3 batches an epoch: after batches 2, 4, 6 and at the end of epoch 0
    # (batch 3); epoch 1 ended on a measured batch.
    assert [m["step"] for m in affinity.history] == [2, 3, 4, 6]
    assert [m["epoch"] for m in affinity.history] == [0, 0, 1, 1]
    # The last one was measured at the final weights: recompute it.
    expected = keras_mtl.evaluation.task_affinity(
        model, *probe, batch_size=48, steps=1
    )
    np.testing.assert_allclose(affinity.history[-1]["affinity"], expected)
    for epoch in (0, 1):
        mean = np.mean(
            [m["affinity"] for m in affinity.history if m["epoch"] == epoch], 0
        )
        for i, a in enumerate(NAMES):
            for j, b in enumerate(NAMES):
                key = f"affinity_{a}_{b}"
                assert history[key][epoch] == pytest.approx(mean[i, j])
    all_four = np.mean([m["affinity"] for m in affinity.history], 0)
    np.testing.assert_allclose(affinity.mean_affinity(), all_four)
    # A task's own step lowers its loss most.
    assert np.all(np.diag(all_four) > all_four[[1, 0], [0, 1]])

    with pytest.raises(ValueError, match="every"):
        TaskAffinity(*probe, every=0)
    with pytest.raises(ValueError, match="learning_rate"):
        TaskAffinity(*probe, learning_rate=-1.0)
    with pytest.raises(ValueError, match="No affinity"):
        TaskAffinity(*probe).mean_affinity()
    with pytest.raises(ValueError, match=r"Missing: \['b_c'\]"):
        _model().fit(
            x,
            y,
            epochs=1,
            verbose=0,
            callbacks=[TaskAffinity(x[:8], {"a": y["a"][:8]})],
        )


def test_delta_m_log_is_seen_by_model_checkpoint_and_early_stopping(
    tmp_path,
):
    """Keras 3 hands one logs dict to the callbacks in order: a key added
    by an earlier callback reaches ModelCheckpoint and EarlyStopping."""
    x, y = _data(n=96)
    x_val, y_val = _data(n=64, seed=1)
    # "dist" says nothing of its direction by its name: the compiled
    # metric's own (MAE, down) decides.
    metrics = ["mae", keras.metrics.MeanAbsoluteError(name="dist")]
    model = _model(metrics=metrics)
    baselines = {"a": {"mae": 0.6, "loss": 0.5}, "b_c": {"dist": 0.7}}
    delta = DeltaMLog(baselines)
    assert (delta.monitor, delta.mode) == ("val_delta_m", "max")
    path = str(tmp_path / "ck_{epoch}.weights.h5")
    checkpoint = keras.callbacks.ModelCheckpoint(
        path,
        monitor=delta.monitor,
        mode=delta.mode,
        save_best_only=True,
        save_weights_only=True,
    )
    stop = keras.callbacks.EarlyStopping(
        monitor="val_delta_m", mode="max", patience=10
    )
    history = model.fit(
        x,
        y,
        validation_data=(x_val, y_val),
        epochs=4,
        batch_size=32,
        verbose=0,
        callbacks=[delta, checkpoint, stop],
    ).history
    # Lower is better for both: 100 * mean(-(M - B) / B); the loss is left
    # out of task a, which has a metric.
    expected = [
        100
        * np.mean(
            [-(history["val_a_mae"][e] - 0.6) / 0.6]
            + [-(history["val_b_c_dist"][e] - 0.7) / 0.7]
        )
        for e in range(4)
    ]
    np.testing.assert_allclose(history["val_delta_m"], expected, rtol=1e-9)
    best, saved = -np.inf, []
    for epoch, value in enumerate(history["val_delta_m"]):
        if value > best:
            best = value
            saved.append(f"ck_{epoch + 1}.weights.h5")
    assert sorted(os.listdir(tmp_path)) == sorted(saved)
    assert stop.best == max(history["val_delta_m"])
    assert stop.best_epoch == int(np.argmax(history["val_delta_m"]))

    # After ModelCheckpoint, the key comes too late for it: Keras 3 warns
    # and saves at every epoch, best or not.
    late = str(tmp_path / "late.weights.h5")
    with pytest.warns(UserWarning, match="only with val_delta_m available"):
        model.fit(
            x,
            y,
            validation_data=(x_val, y_val),
            epochs=1,
            verbose=0,
            callbacks=[
                keras.callbacks.ModelCheckpoint(
                    late,
                    monitor="val_delta_m",
                    mode="max",
                    save_best_only=True,
                    save_weights_only=True,
                ),
                DeltaMLog(baselines),
            ],
        )
    assert os.path.exists(late)


@keras.saving.register_keras_serializable(package="keras_mtl_tests")
def worst_mae(results):
    return max(results["a"]["mae"], results["b_c"]["mae"])


def test_combined_metric_weighted_sum_and_function():
    x, y = _data(n=64)
    summed = CombinedMetric({"a": {"mae": 2.0}, "b_c": {"loss": 0.5}})
    assert (summed.monitor, summed.mode) == ("val_combined_metric", "min")
    # An accuracy-like term with a negative weight goes down: still "min".
    turned = CombinedMetric(
        {"a": {"mae": 1.0}, "b_c": {"r2": -1.0}}, name="turned"
    )
    assert turned.mode == "min"
    worst = CombinedMetric(fn=worst_mae, mode="min", name="worst", prefix="")
    history = (
        _model()
        .fit(
            x,
            y,
            validation_data=(x, y),
            epochs=2,
            batch_size=32,
            verbose=0,
            callbacks=[summed, worst],
        )
        .history
    )
    np.testing.assert_allclose(
        history["val_combined_metric"],
        2.0 * np.array(history["val_a_mae"])
        + 0.5 * np.array(history["val_b_c_loss"]),
        rtol=1e-6,
    )
    np.testing.assert_allclose(
        history["worst"], np.maximum(history["a_mae"], history["b_c_mae"])
    )

    for callback in (
        summed,
        worst,
        turned,
        DeltaMLog({"a": {"mae": 1.0}}, higher_is_better=True),
    ):
        revived = testing.run_serialization_test(callback)
        assert revived.get_config() == callback.get_config()
        assert revived.mode == callback.mode
    board = MTLTensorBoard("runs/x", update_freq=5, images=False)
    assert testing.run_serialization_test(board).get_config() == {
        "log_dir": "runs/x",
        "update_freq": 5,
        "images": False,
    }


def test_bad_arguments_and_unknown_names_are_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="update_freq"):
        MTLTensorBoard(tmp_path, update_freq=0)
    with pytest.raises(TypeError, match="log_dir"):
        MTLTensorBoard(None)
    with pytest.raises(TypeError, match="images"):
        MTLTensorBoard(tmp_path, images="yes")
    with pytest.raises(ValueError, match="different ways"):
        CombinedMetric({"a": {"mae": 1.0}, "b_c": {"accuracy": 1.0}})
    with pytest.raises(ValueError, match="pass `mode`"):
        CombinedMetric(fn=worst_mae)
    with pytest.raises(ValueError, match="exactly one"):
        CombinedMetric()
    with pytest.raises(ValueError, match="non-zero"):
        CombinedMetric({"a": {"mae": 0.0}})
    with pytest.raises(ValueError, match="higher_is_better"):
        CombinedMetric({"a": {"score": 1.0}})
    with pytest.raises(ValueError, match="prefix"):
        DeltaMLog({"a": {"mae": 1.0}}, prefix="test_")
    with pytest.raises(ValueError, match="name"):
        DeltaMLog({"a": {"mae": 1.0}}, name="val_delta")
    with pytest.raises(ValueError, match="non-zero"):
        DeltaMLog({"a": {"mae": 0.0}})
    with pytest.raises(ValueError, match=r"Tasks \['a'\] have a bare"):
        DeltaMLog({"a": 0.5})

    x, y = _data(n=32)
    model = _model()  # one model: its step is traced once for every fit

    def fit(callback, **kwargs):
        return model.fit(
            x, y, epochs=1, verbose=0, callbacks=[callback], **kwargs
        )

    with pytest.raises(ValueError, match=r"tasks \['z'\].*\['a', 'b_c'\]"):
        fit(DeltaMLog({"z": {"mae": 1.0}}))
    with pytest.raises(ValueError, match=r"lack \['val_a_auc'\].*'mae'"):
        fit(DeltaMLog({"a": {"auc": 0.5}}), validation_data=(x, y))
    with pytest.raises(ValueError, match="overwrite the log `val_loss`"):
        fit(
            CombinedMetric({"a": {"mae": 1.0}}, name="loss"),
            validation_data=(x, y),
        )
    with pytest.warns(UserWarning, match="validation_data"):
        fit(DeltaMLog({"a": {"mae": 1.0}}))
    plain = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    plain.compile(optimizer="sgd", loss="mse")
    with pytest.raises(TypeError, match="MTLModel"):
        plain.fit(x, y["a"], verbose=0, callbacks=[MTLTensorBoard(tmp_path)])


def test_callbacks_are_exported_and_documented():
    assert keras_mtl.callbacks.GradientConflict is (
        keras_mtl.evaluation.GradientConflict
    )
    assert keras_mtl.callbacks.ExpertUtilization is (
        keras_mtl.evaluation.ExpertUtilization
    )
    entries = re.findall(
        r"^::: keras_mtl\.callbacks\.(\w+)$",
        (ROOT / "docs" / "api" / "callbacks.md").read_text(),
        re.M,
    )
    assert sorted(entries) == sorted(keras_mtl.callbacks.__all__)
    assert "api/callbacks.md" in (ROOT / "mkdocs.yml").read_text()
    assert "callbacks" in keras_mtl.__all__
