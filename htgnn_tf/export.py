"""`htgnn export`: a trained model as a TF Serving SavedModel, ``<base>/<version>/``.

The exported model is the serving model of :mod:`htgnn_tf.model`: its
``serving_default`` signature takes ``examples``, a ``tf.string [batch]`` tensor of
serialized cohort GraphTensors (the TFRecord format of the dataset job; label features,
if present, are ignored), parses them in-graph and returns, per user of all cohorts,
``user_id``, ``obs_days_used`` and every task output (``lt_30`` ... ``ltv_365``,
``p_active_after_obs_30`` ...). It loads with ``tf.saved_model.load`` in a process that
imports only TensorFlow (what TF Serving's C++ server needs).

The version directory is written under a temporary name and renamed when complete, so
a server polling the base path never sees half a model. ``assets.extra/`` holds the
transform artifacts, the model config and the serving schema, which the client uses
to build cohort graphs from raw user records.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import os
import shutil
import sys

import htgnn_tf  # noqa: F401  (Keras 2 switch before TensorFlow loads)
from htgnn_tf import training

EXTRA_FILES = ("transform.json", "model_config.json", "serving_graph_schema.pbtxt")


def next_version(base_path: str) -> int:
    versions = [int(d) for d in os.listdir(base_path) if d.isdigit()] if os.path.isdir(
        base_path) else []
    return max(versions, default=0) + 1


def export(model_dir: str, base_path: str, version: int | None = None) -> str:
    """Exports the final weights of `model_dir`; returns the version directory."""
    _, _, serving = training.load_trained(model_dir)
    os.makedirs(base_path, exist_ok=True)
    version = version or next_version(base_path)
    final = os.path.join(base_path, str(version))
    if os.path.exists(final):
        raise FileExistsError(f"{final} exists; choose another --version")
    staging = os.path.join(base_path, f".tmp-{version}")
    shutil.rmtree(staging, ignore_errors=True)
    with contextlib.redirect_stdout(io.StringIO()):  # Keras prints every captured variable
        serving.export(staging)
    extra = os.path.join(staging, "assets.extra")
    os.makedirs(extra, exist_ok=True)
    for name in EXTRA_FILES:
        shutil.copy(os.path.join(model_dir, name), os.path.join(extra, name))
    os.rename(staging, final)
    return final


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="htgnn export", description=(
        "Export a trained HT-GNN as a TF Serving SavedModel <base-path>/<version>/ with a "
        "serving_default signature on serialized cohort examples."))
    p.add_argument("--model", required=True, help="model directory of `htgnn train`")
    p.add_argument("--base-path", required=True,
                   help="model base path served by `htgnn serve` / tensorflow_model_server")
    p.add_argument("--version", type=int, default=None,
                   help="version number (default: highest existing + 1)")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        path = export(args.model, args.base_path, args.version)
    except (FileNotFoundError, FileExistsError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"exported {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
