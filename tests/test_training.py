"""Tests for htgnn_tf.training: the run directory of a short train(), resuming a killed
run (BackupAndRestore), cap_obs_days and the fit / validation split against numpy."""
import dataclasses
import glob
import json
import os
import re
import signal
import subprocess
import sys
import time

import numpy as np

import htgnn_tf  # noqa: F401
import tensorflow as tf

from htgnn_tf import training
from htgnn_tf.config import ModelConfig, TrainConfig
from htgnn_tf.data import graph_schema as gs
from tests.helpers import (TRAIN_EPOCHS, TRAIN_STEPS, parse_batch, serialized_cohorts,
                           tiny_config, tiny_data, trained, user_arrays)  # noqa: F401

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def optimizer_iterations(checkpoint_prefix: str) -> int:
    """Adam's step counter saved with the weights. tf-keras also counts the step that
    hits the end of a dataset of unknown size in the first epoch of a fit (without
    updating the weights), so epoch 1 may count one more than its steps."""
    reader = tf.train.load_checkpoint(checkpoint_prefix)
    keys = [k for k in reader.get_variable_to_shape_map()
            if k.endswith("optimizer/_iterations/.ATTRIBUTES/VARIABLE_VALUE")]
    assert len(keys) == 1, keys
    return int(reader.get_tensor(keys[0]))


def tensorboard_scalars(directory: str) -> dict[str, list[tuple[int, float]]]:
    """epoch_* tag -> [(step, value)] from the event files of one TensorBoard run
    directory."""
    scalars: dict[str, list] = {}
    for path in sorted(glob.glob(os.path.join(directory, "events.out.tfevents.*"))):
        for record in tf.data.TFRecordDataset(path):
            event = tf.compat.v1.Event.FromString(record.numpy())
            for value in event.summary.value:
                if not value.tag.startswith("epoch_"):
                    continue  # the model graph / config text summaries
                number = (float(tf.make_ndarray(value.tensor)) if value.HasField("tensor")
                          else value.simple_value)
                scalars.setdefault(value.tag, []).append((event.step, number))
    return scalars


def test_train_writes_the_run_directory(tiny_data, trained):
    out, _, history = trained
    assert ModelConfig.load(os.path.join(out, "model_config.json")) == tiny_config(tiny_data)
    with open(os.path.join(out, "train_config.json")) as f:
        assert TrainConfig(**json.load(f)) == TrainConfig(
            epochs=TRAIN_EPOCHS, batch_cohorts=2, early_stopping_patience=5)
    for name in ("transform.json", "graph_schema.pbtxt", "serving_graph_schema.pbtxt"):
        with open(os.path.join(out, name)) as copy, open(os.path.join(tiny_data, name)) as src:
            assert copy.read() == src.read(), name
    iterations = [optimizer_iterations(os.path.join(out, "checkpoints", f"epoch-{e:03d}"))
                  for e in range(1, TRAIN_EPOCHS + 1)]
    assert iterations[0] in (TRAIN_STEPS, TRAIN_STEPS + 1)
    assert np.all(np.diff(iterations) == TRAIN_STEPS)  # max_steps_per_epoch per epoch
    assert optimizer_iterations(os.path.join(out, "weights", "final")) == iterations[-1]
    # BackupAndRestore removes its backup once training has finished.
    assert not glob.glob(os.path.join(out, "backup", "**", "*.index"), recursive=True)

    with open(os.path.join(out, "history.json")) as f:
        saved = json.load(f)
    assert sorted(saved) == sorted(history)
    for name, values in history.items():
        np.testing.assert_allclose(saved[name], values, rtol=1e-7, err_msg=name)
    for name in ("loss", "val_loss", "js", "bce", "regression", "val_regression"):
        assert len(saved[name]) == TRAIN_EPOCHS and np.all(np.isfinite(saved[name])), name
    assert saved["js"][0] > 0  # the hypergraph JS term is part of the default loss

    for run, prefix in (("train", ""), ("validation", "val_")):
        scalars = tensorboard_scalars(os.path.join(out, "tensorboard", run))
        steps, values = zip(*scalars["epoch_loss"])
        assert list(steps) == list(range(TRAIN_EPOCHS))
        np.testing.assert_allclose(values, saved[f"{prefix}loss"], rtol=1e-6)


def test_load_trained_reproduces_the_trained_model(tiny_data, trained):
    out, model, _ = trained
    config, reloaded, serving = training.load_trained(out)
    assert config == tiny_config(tiny_data)
    batch = parse_batch(tiny_data, serialized_cohorts(tiny_data, "test")[:3])
    want = model(batch, training=False)
    got = reloaded(batch, training=False)
    for name in config.task_names:
        np.testing.assert_array_equal(got[name].numpy(), want[name].numpy(), err_msg=name)
    assert {w.name for w in serving.weights} <= {w.name for w in reloaded.weights}


def test_cap_obs_days_against_numpy(tiny_data):
    batch = parse_batch(tiny_data, serialized_cohorts(tiny_data, "train"))
    before = user_arrays(batch)
    # Most users have all W days observed; recently acquired ones have fewer.
    cap = int(before[gs.OBS_DAYS].min()) + 1
    assert (before[gs.OBS_DAYS] > cap).any() and (before[gs.OBS_DAYS] < cap).any()
    capped = training.cap_obs_days(batch, cap)
    after = user_arrays(capped)
    want_s = np.minimum(before[gs.OBS_DAYS], cap)
    np.testing.assert_array_equal(after[gs.OBS_DAYS], want_s)
    days = np.arange(before[gs.SEQ_VALUES].shape[-1])
    for name in (gs.SEQ_VALUES, gs.SEQ_TOKENS):
        want = before[name].copy()
        want[np.broadcast_to(days[None, None, :] >= want_s[:, None, None], want.shape)] = 0
        np.testing.assert_array_equal(after[name], want, err_msg=name)
    assert after[gs.SEQ_VALUES].sum() < before[gs.SEQ_VALUES].sum()
    for name in (gs.USER_ID, gs.STAT_BINS, gs.CATEGORICAL_IDS, "ltv_365", "label_mask_30"):
        np.testing.assert_array_equal(after[name], before[name], err_msg=name)
    np.testing.assert_array_equal(capped.edge_sets[gs.INCIDENCE].adjacency.source.flat_values,
                                  batch.edge_sets[gs.INCIDENCE].adjacency.source.flat_values)


def test_fit_and_validation_parts_split_the_train_cohorts(tiny_data):
    every = serialized_cohorts(tiny_data, "train")
    fit = [x.numpy() for x in training.cohort_dataset(tiny_data, "train", "fit")]
    validation = [x.numpy() for x in training.cohort_dataset(tiny_data, "train", "validation")]
    n = training.VALIDATION_EVERY
    assert validation == [x for i, x in enumerate(every) if i % n == n - 1]
    assert fit == [x for i, x in enumerate(every) if i % n != n - 1]
    assert validation  # the tiny dataset has more than VALIDATION_EVERY train cohorts


def test_cli_flags_map_to_the_configs(tiny_data):
    args = training.parse_args([
        "--data", tiny_data, "--out", "unused", "--epochs", "3", "--batch-cohorts", "5",
        "--learning-rate", "0.01", "--patience", "2", "--seed", "9", "--loss", "mse",
        "--no-hypergraph", "--no-dynamic-weighting", "--no-dynamic-towers"])
    model_config, train_config = training.config_from_args(
        args, training.read_artifacts(tiny_data))
    assert train_config == dataclasses.replace(
        TrainConfig(), epochs=3, batch_cohorts=5, learning_rate=0.01,
        early_stopping_patience=2, seed=9)
    assert model_config.use_hypergraph is False and model_config.seed == 9
    assert model_config.loss.mode == "mse"
    assert model_config.moe.use_dynamic_weighting is False
    assert model_config.tower.use_dynamic_towers is False
    defaults = training.config_from_args(training.parse_args(
        ["--data", tiny_data, "--out", "unused"]), training.read_artifacts(tiny_data))
    assert defaults[1] == TrainConfig()
    assert defaults[0] == ModelConfig.from_artifacts(training.read_artifacts(tiny_data))


def test_killed_run_resumes_from_its_backup(tiny_data, tmp_path):
    """SIGKILL after the first epoch's checkpoint, re-run the same command: Keras
    continues at the epoch after the backup, and the optimizer step count of the final
    weights is that of one uninterrupted run."""
    out, epochs, steps = str(tmp_path / "run"), 4, 2
    command = [sys.executable, "-c",
               "import sys; from htgnn_tf import training; "
               "sys.exit(training.main(sys.argv[1:]))",
               "--data", tiny_data, "--out", out, "--epochs", str(epochs),
               "--max-steps-per-epoch", str(steps), "--batch-cohorts", "2"]
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="", TF_CPP_MIN_LOG_LEVEL="2",
               PYTHONUNBUFFERED="1")
    first_log = tmp_path / "first.log"
    with open(first_log, "w") as log:
        first = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env,
                                 cwd=REPO)
        checkpoint = os.path.join(out, "checkpoints", "epoch-001.index")
        deadline = time.time() + 300
        while not os.path.exists(checkpoint):
            assert first.poll() is None, first_log.read_text()[-2000:]
            assert time.time() < deadline, "no checkpoint after 300 s"
            time.sleep(0.02)
        first.send_signal(signal.SIGKILL)
        first.wait()
    assert first.returncode == -signal.SIGKILL
    assert "Epoch 1/4" in first_log.read_text()
    assert not os.path.exists(os.path.join(out, "weights", "final.index"))

    backup = glob.glob(os.path.join(out, "backup", "*"))
    assert len(backup) == 1
    reader = tf.train.load_checkpoint(backup[0])
    saved_epoch = int(reader.get_tensor("ckpt_saved_epoch/.ATTRIBUTES/VARIABLE_VALUE"))  # 0-based
    assert 0 <= saved_epoch < epochs - 1
    backup_iterations = optimizer_iterations(backup[0])
    assert backup_iterations >= (saved_epoch + 1) * steps
    done = [os.path.join(out, "checkpoints", f"epoch-{e:03d}.index")
            for e in range(1, saved_epoch + 2)]
    mtimes = [os.path.getmtime(path) for path in done]

    second = subprocess.run(command, capture_output=True, text=True, env=env, cwd=REPO,
                            timeout=300)
    assert second.returncode == 0, second.stdout[-2000:] + second.stderr[-2000:]
    started = [int(e) for e in re.findall(rf"Epoch (\d+)/{epochs}", second.stdout)]
    assert started == list(range(saved_epoch + 2, epochs + 1))
    assert f"trained {epochs - saved_epoch - 1} epochs" in second.stdout
    with open(os.path.join(out, "history.json")) as f:
        assert len(json.load(f)["loss"]) == epochs - saved_epoch - 1
    # Completed epochs were not redone, and the optimizer state came back with the
    # weights: the step counter continues from the backup (a fresh start of the
    # remaining epochs would count at most remaining * steps + 1).
    assert [os.path.getmtime(path) for path in done] == mtimes
    remaining = epochs - saved_epoch - 1
    final = optimizer_iterations(os.path.join(out, "weights", "final"))
    assert final in (backup_iterations + remaining * steps,
                     backup_iterations + remaining * steps + 1)
    assert final > remaining * steps + 1


def test_train_with_fewer_train_cohorts_than_validation_every(tiny_data, tmp_path, capsys):
    """No cohort lands in the validation part: training still finishes and reports it
    (instead of failing on a missing val_loss)."""
    data = tmp_path / "small"
    (data / "train").mkdir(parents=True)
    for name in ("transform.json", "graph_schema.pbtxt", "serving_graph_schema.pbtxt"):
        (data / name).write_bytes(open(os.path.join(tiny_data, name), "rb").read())
    kept = serialized_cohorts(tiny_data, "train")[:training.VALIDATION_EVERY - 1]
    with tf.io.TFRecordWriter(str(data / "train" / "graphs-00000-of-00001.tfrecord")) as f:
        for example in kept:
            f.write(example)
    out = tmp_path / "model"
    code = training.main(["--data", str(data), "--out", str(out), "--epochs", "1",
                          "--max-steps-per-epoch", "1", "--batch-cohorts", "4"])
    assert code == 0
    assert "no validation" in capsys.readouterr().out
    with open(out / "history.json") as f:
        history = json.load(f)
    assert len(history["loss"]) == 1 and "val_loss" not in history
    assert optimizer_iterations(str(out / "weights" / "final")) >= 1
