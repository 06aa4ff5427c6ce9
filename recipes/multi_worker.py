"""Multi-worker training of an MTLModel with a gradient-level method.

Every worker runs this same script with its own `TF_CONFIG`; inside,
`tf.distribute.MultiWorkerMirroredStrategy()` joins them into one cluster,
and `model.fit` works as on one machine: each step, every task's gradient
is summed over all workers before PCGrad (or any method) combines them.

On real machines, start the script once per machine with, e.g. on the
second of two:

    TF_CONFIG='{"cluster": {"worker": ["host1:12345", "host2:12345"]},
                "task": {"type": "worker", "index": 1}}' \\
        python recipes/multi_worker.py --worker

Without `--worker`, the script plays the whole cluster on this machine: it
starts `--workers` copies of itself on free ports of 127.0.0.1 (bounded by
`--timeout` seconds), then checks they end with the same weights.

Run: `PYTHONPATH=. python recipes/multi_worker.py [--workers 2]
[--weighting pcgrad]`
"""

import argparse
import json
import os
import subprocess
import sys

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def train(weighting, epochs):
    """One worker: build under the strategy's scope, fit, report."""
    import keras
    import numpy as np
    import tensorflow as tf

    import keras_mtl

    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    rng = np.random.default_rng(0)
    x = rng.normal(size=(512, 16)).astype("float32")
    y = {
        "price": (x[:, :1] * 2.0 - x[:, 1:2]).astype("float32"),
        "churn": (x[:, 2:3] - x[:, 0:1] > 0).astype("float32"),
    }
    tasks = [
        keras_mtl.Task("price", loss="mse", metrics=["mae"]),
        keras_mtl.Task(
            "churn",
            loss="binary_crossentropy",
            metrics=["accuracy"],
            activation="sigmoid",
        ),
    ]
    keras.utils.set_random_seed(0)
    with strategy.scope():
        model = keras_mtl.build_mtl_model(
            keras.Input((16,)), tasks, trunk=[32, 32], weighting=weighting
        )
        model.compile(optimizer=keras.optimizers.Adam(1e-2))
    # `batch_size` is the global batch, split over the workers.
    history = model.fit(x, y, batch_size=64, epochs=epochs, verbose=0)
    checksum = float(sum(np.sum(v.numpy()) for v in model.weights))
    logs = {k: round(v[-1], 4) for k, v in history.history.items()}
    print(json.dumps({"logs": logs, "checksum": checksum}))


def launch(num_workers, weighting, epochs, timeout):
    """Starts the cluster on 127.0.0.1 and waits for every worker."""
    import socket

    ports = []
    for _ in range(num_workers):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            ports.append(probe.getsockname()[1])
    cluster = {"worker": [f"127.0.0.1:{port}" for port in ports]}
    processes = []
    for index in range(num_workers):
        config = {
            "cluster": cluster,
            "task": {"type": "worker", "index": index},
        }
        env = dict(os.environ, TF_CONFIG=json.dumps(config))
        command = [sys.executable, __file__, "--worker"]
        command += ["--weighting", weighting, "--epochs", str(epochs)]
        processes.append(
            subprocess.Popen(
                command, env=env, stdout=subprocess.PIPE, text=True
            )
        )
    reports = []
    try:
        for index, process in enumerate(processes):
            out, _ = process.communicate(timeout=timeout)
            if process.returncode != 0:
                raise SystemExit(f"worker {index} failed")
            reports.append(json.loads(out.strip().splitlines()[-1]))
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
    for index, report in enumerate(reports):
        print(f"worker {index}: {report['logs']}")
    same = len({r["checksum"] for r in reports}) == 1
    print(f"all workers hold the same weights: {same}")


def build_parser():
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--worker",
        action="store_true",
        help="train as one worker of the cluster that TF_CONFIG describes",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=2,
        help="local workers to start (without --worker)",
    )
    parser.add_argument(
        "--weighting",
        default="pcgrad",
        help="weighting method, a name that keras_mtl.weighting.get takes",
    )
    parser.add_argument(
        "--epochs", type=int, default=3, help="training epochs per worker"
    )
    parser.add_argument(
        "--timeout",
        type=int,
        default=300,
        help="seconds to wait for each local worker (without --worker)",
    )
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    if args.worker:
        train(args.weighting, args.epochs)
    else:
        launch(args.workers, args.weighting, args.epochs, args.timeout)


if __name__ == "__main__":
    main()
