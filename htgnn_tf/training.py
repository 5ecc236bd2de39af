"""`htgnn train`: tf.data from the dataset job's TFRecords, `model.fit`, checkpoints.

* Input: ``<data>/train/graphs-*.tfrecord`` parsed with ``tfgnn.parse_example`` against
  ``<data>/graph_schema.pbtxt``, ``batch_cohorts`` cohorts per step (merged to components
  inside the model). A validation split is carved from train: every cohort whose index
  in the file order falls on ``validation_every`` goes to validation (deterministic; the
  test split is never used for training or model selection).
* ``model.fit`` with a progress bar, a checkpoint of the weights every epoch
  (``checkpoints/epoch-NNN``), ``BackupAndRestore`` (a run killed mid-training and
  restarted with the same ``--out`` continues where it was), TensorBoard logs
  (``tensorboard/``), early stopping on the validation loss (best weights restored).
* Writes ``model_config.json``, ``train_config.json``, ``transform.json`` and the
  schemas beside the final weights (``weights/final``), so evaluation and export rebuild
  the model from the config alone.
* GPU paths: ``--mixed-precision`` (mixed_float16 policy), ``--xla`` (the dense blocks
  jit-compiled, see ``model.JitCompiled``),
  ``--strategy mirrored`` (tf.distribute); all run on CPU too (tests/test_gpu_paths.py).
"""
from __future__ import annotations

import argparse
import dataclasses
import glob
import json
import os
import shutil
import sys
import time

import htgnn_tf  # noqa: F401  (Keras 2 switch before TensorFlow loads)
import tensorflow as tf
import tensorflow_gnn as tfgnn

from htgnn_tf import model as model_lib
from htgnn_tf.config import GRAPH_MODULES, ModelConfig, TrainConfig
from htgnn_tf.data import graph_schema as gs

VALIDATION_EVERY = 10


def tfrecord_files(data_dir: str, split: str) -> list[str]:
    files = sorted(glob.glob(os.path.join(data_dir, split, "graphs-*.tfrecord")))
    if not files:
        raise FileNotFoundError(f"no {split} TFRecords under {data_dir}/{split}: run "
                                f"`htgnn build-dataset --out {data_dir}` first")
    return files


def read_schema(data_dir: str, with_labels: bool = True):
    name = "graph_schema.pbtxt" if with_labels else "serving_graph_schema.pbtxt"
    return tfgnn.read_schema(os.path.join(data_dir, name))


def read_artifacts(data_dir: str) -> dict:
    with open(os.path.join(data_dir, "transform.json")) as f:
        return json.load(f)


def cohort_dataset(data_dir: str, split: str, part: str = "all") -> tf.data.Dataset:
    """Serialized cohort examples of a split; `part` = all | fit | validation."""
    ds = tf.data.TFRecordDataset(tfrecord_files(data_dir, split))
    if part == "all":
        return ds
    keep_validation = part == "validation"
    return (ds.enumerate()
            .filter(lambda i, _: tf.equal(i % VALIDATION_EVERY == VALIDATION_EVERY - 1,
                                          keep_validation))
            .map(lambda _, x: x))


def parsed(ds: tf.data.Dataset, schema, batch_cohorts: int, obs_days: int | None = None):
    """Batches and parses serialized cohorts; optionally caps obs_days at `obs_days`
    (evaluation at a fixed number of observed days)."""
    spec = tfgnn.create_graph_spec_from_schema_pb(schema)
    ds = ds.batch(batch_cohorts).map(lambda x: tfgnn.parse_example(spec, x),
                                     num_parallel_calls=tf.data.AUTOTUNE)
    if obs_days is not None:
        ds = ds.map(lambda g: cap_obs_days(g, obs_days))
    return ds.prefetch(tf.data.AUTOTUNE)


def cap_obs_days(graph: tfgnn.GraphTensor, obs_days: int) -> tfgnn.GraphTensor:
    """A batch of cohort graphs as it would look after `obs_days` observed days:
    obs_days capped, and values and tokens of later days cleared (the encoder masks
    them too). Works on the ragged per-user features of a parsed batch."""
    users = dict(graph.node_sets[gs.USER].features)
    capped = tf.minimum(users[gs.OBS_DAYS].flat_values, obs_days)  # [N]
    days = users[gs.SEQ_VALUES].flat_values.shape[-1]
    seen = tf.sequence_mask(capped, days)[:, None, :]  # [N, 1, W]
    users[gs.OBS_DAYS] = users[gs.OBS_DAYS].with_flat_values(capped)
    for name in (gs.SEQ_VALUES, gs.SEQ_TOKENS):
        flat = users[name].flat_values  # [N, T, W]
        users[name] = users[name].with_flat_values(flat * tf.cast(seen, flat.dtype))
    return graph.replace_features(node_sets={gs.USER: users})


def distribution_strategy(name: str) -> tf.distribute.Strategy:
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "default":
        return tf.distribute.get_strategy()
    raise ValueError(f"strategy must be default or mirrored, got {name!r} (BackupAndRestore "
                     "supports no other single-host strategy)")


def build_models(config: ModelConfig, data_dir: str):
    """(training model, serving model) sharing one set of layers."""
    layers = model_lib.HTGNNLayers(config)
    training = model_lib.build_training_model(config, read_schema(data_dir, True), layers)
    serving = model_lib.build_serving_model(config, read_schema(data_dir, False), layers)
    return training, serving


def train(data_dir: str, out_dir: str, model_config: ModelConfig,
          train_config: TrainConfig, verbose: int = 1, max_steps_per_epoch: int | None = None):
    """Trains (or resumes) a model; returns (training model, history dict)."""
    tf.keras.utils.set_random_seed(train_config.seed)
    if train_config.mixed_precision:
        tf.keras.mixed_precision.set_global_policy("mixed_float16")
    os.makedirs(out_dir, exist_ok=True)
    model_config.save(os.path.join(out_dir, "model_config.json"))
    with open(os.path.join(out_dir, "train_config.json"), "w") as f:
        json.dump(dataclasses.asdict(train_config), f, indent=1)
    for name in ("transform.json", "graph_schema.pbtxt", "serving_graph_schema.pbtxt"):
        shutil.copy(os.path.join(data_dir, name), os.path.join(out_dir, name))

    schema = read_schema(data_dir)
    num_validation = sum(1 for _ in cohort_dataset(data_dir, "train", "validation"))
    fit_ds = parsed(cohort_dataset(data_dir, "train", "fit").shuffle(
        256, seed=train_config.seed, reshuffle_each_iteration=True),
        schema, train_config.batch_cohorts)
    val_ds = parsed(cohort_dataset(data_dir, "train", "validation"), schema,
                    train_config.batch_cohorts) if num_validation else None
    monitor = "val_loss" if num_validation else "loss"
    if not num_validation:
        print(f"note: fewer than {VALIDATION_EVERY} train cohorts, so no validation cohort: "
              "early stopping watches the training loss; for model selection build the "
              "dataset with a smaller cohort_size", file=sys.stderr)
    if max_steps_per_epoch:
        fit_ds = fit_ds.take(max_steps_per_epoch)

    with distribution_strategy(train_config.strategy).scope():
        model, _ = build_models(model_config, data_dir)
        optimizer = tf.keras.optimizers.Adam(train_config.learning_rate, clipnorm=1.0)
        model.compile(optimizer=optimizer)
    callbacks = [
        tf.keras.callbacks.BackupAndRestore(os.path.join(out_dir, "backup")),
        tf.keras.callbacks.ModelCheckpoint(
            os.path.join(out_dir, "checkpoints", "epoch-{epoch:03d}"), save_weights_only=True),
        tf.keras.callbacks.TensorBoard(os.path.join(out_dir, "tensorboard"),
                                       update_freq="epoch", profile_batch=0),
        tf.keras.callbacks.EarlyStopping(monitor=monitor,
                                         patience=train_config.early_stopping_patience,
                                         restore_best_weights=True),
    ]
    history = model.fit(fit_ds, validation_data=val_ds, epochs=train_config.epochs,
                        callbacks=callbacks, verbose=verbose)
    model.save_weights(os.path.join(out_dir, "weights", "final"))
    with open(os.path.join(out_dir, "history.json"), "w") as f:
        json.dump({k: [float(v) for v in vals] for k, vals in history.history.items()}, f)
    return model, history.history


def load_trained(model_dir: str):
    """(config, training model, serving model) with the final weights of a run."""
    config = ModelConfig.load(os.path.join(model_dir, "model_config.json"))
    training, serving = build_models(config, model_dir)
    training.load_weights(os.path.join(model_dir, "weights", "final")).expect_partial()
    return config, training, serving


def parse_args(argv=None):
    defaults = TrainConfig()
    p = argparse.ArgumentParser(
        formatter_class=argparse.ArgumentDefaultsHelpFormatter, prog="htgnn train", description=(
        "Train HT-GNN with model.fit on the TFRecords written by `htgnn build-dataset`. "
        "Re-running with the same --out resumes an interrupted run."))
    p.add_argument("--data", required=True, help="output directory of `htgnn build-dataset`")
    p.add_argument("--out", required=True, help="model directory (checkpoints, logs, weights)")
    p.add_argument("--epochs", type=int, default=defaults.epochs, help="maximum epochs")
    p.add_argument("--batch-cohorts", type=int, default=defaults.batch_cohorts,
                   help="cohort graphs per training step")
    p.add_argument("--learning-rate", type=float, default=defaults.learning_rate,
                   help="Adam learning rate")
    p.add_argument("--patience", type=int, default=defaults.early_stopping_patience,
                   help="early stopping: epochs without validation improvement")
    p.add_argument("--seed", type=int, default=defaults.seed, help="random seed")
    p.add_argument("--loss", choices=["multi", "huber", "mse"], default="multi",
                   help="loss mode: multi (Eq. 21), huber or mse (Table III ablations)")
    p.add_argument("--no-hypergraph", action="store_true",
                   help="ablation w/o HG: no hypergraph convolution, no JS term")
    p.add_argument("--graph-module", choices=list(GRAPH_MODULES), default="hypergraph",
                   help="graph module: the hypergraph convolution (Eq. 4-5), or GCN, GraphSAGE, "
                   "GATv2 (Table IV) or HGT (the HST-GT stand-in) on the same kNN hyperedges")
    p.add_argument("--no-dynamic-weighting", action="store_true",
                   help="ablation w/o DW: MoE gates independent of the observed length")
    p.add_argument("--no-dynamic-towers", action="store_true",
                   help="ablation w/o DT: plain linear / sigmoid heads")
    p.add_argument("--mixed-precision", action="store_true",
                   help="mixed_float16 compute (for GPUs)")
    p.add_argument("--xla", action="store_true",
                   help="XLA-compile the dense blocks (temporal encoder, towers)")
    p.add_argument("--strategy", choices=["default", "mirrored"], default="default",
                   help="tf.distribute strategy: mirrored = all local GPUs (or the CPU)")
    p.add_argument("--max-steps-per-epoch", type=int, default=None,
                   help="cap on steps per epoch (quick runs)")
    return p.parse_args(argv)


def config_from_args(args, artifacts) -> tuple[ModelConfig, TrainConfig]:
    model_config = ModelConfig.from_artifacts(
        artifacts, use_hypergraph=not args.no_hypergraph, graph_module=args.graph_module,
        seed=args.seed, xla=args.xla,
        loss={"mode": args.loss},
        moe={"use_dynamic_weighting": not args.no_dynamic_weighting},
        tower={"use_dynamic_towers": not args.no_dynamic_towers})
    train_config = TrainConfig(
        epochs=args.epochs, batch_cohorts=args.batch_cohorts,
        learning_rate=args.learning_rate, early_stopping_patience=args.patience,
        seed=args.seed, mixed_precision=args.mixed_precision, xla=args.xla,
        strategy=args.strategy)
    return model_config, train_config


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        artifacts = read_artifacts(args.data)
        model_config, train_config = config_from_args(args, artifacts)
        start = time.time()
        _, history = train(args.data, args.out, model_config, train_config,
                           max_steps_per_epoch=args.max_steps_per_epoch)
    except FileNotFoundError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    # Fewer than VALIDATION_EVERY train cohorts leave the validation part empty.
    validation = (f"best val_loss {min(history['val_loss']):.4f}" if "val_loss" in history
                  else f"no validation cohorts (fewer than {VALIDATION_EVERY} train cohorts)")
    print(f"trained {len(history['loss'])} epochs in {time.time() - start:.0f} s; "
          f"{validation}; model in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
