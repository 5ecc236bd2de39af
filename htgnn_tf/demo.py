"""`make demo`: the whole product end to end on the CDNOW log.

raw CDNOW log -> Beam dataset job -> `model.fit` -> evaluation report -> SavedModel
export -> TF-Serving-protocol server on loopback (a separate process) -> the whole test
split scored over gRPC -> check that served predictions equal in-process ones -> the
metrics table -> server stopped.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

import numpy as np

import htgnn_tf  # noqa: F401  (Keras 2 switch before TensorFlow loads)

MODEL_NAME = "htgnn"


def step(title: str) -> float:
    print(f"\n=== {title}", flush=True)
    return time.time()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(base_path: str, port: int) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "serving.server", "--model_name", MODEL_NAME,
         "--model_base_path", os.path.abspath(base_path), "--port", str(port),
         "--rest_api_port", "0"])


def wait_until_serving(client, server: subprocess.Popen, timeout: float = 180.0) -> None:
    import grpc

    deadline = time.time() + timeout
    while time.time() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"the model server exited with code {server.returncode}")
        try:
            if any(v.state == "AVAILABLE" for v in client.status()):
                return
        except grpc.RpcError:
            pass
        time.sleep(1.0)
    raise TimeoutError("the model server did not become AVAILABLE in time")


def score_over_grpc(client, data_dir: str, batch_cohorts: int = 4):
    """Every test cohort sent as serialized examples; returns the served outputs."""
    import tensorflow as tf

    from htgnn_tf import training

    served: dict[str, list] = {}
    records = tf.data.TFRecordDataset(training.tfrecord_files(data_dir, "test"))
    for batch in records.batch(batch_cohorts):
        outputs = client.predict({"examples": np.array(batch.numpy(), dtype=object)})
        for name, value in outputs.items():
            served.setdefault(name, []).append(value)
    return {name: np.concatenate(v) for name, v in served.items()}


def in_process(serving_model, data_dir: str, batch_cohorts: int = 4):
    import tensorflow as tf

    from htgnn_tf import training

    out: dict[str, list] = {}
    records = tf.data.TFRecordDataset(training.tfrecord_files(data_dir, "test"))
    for batch in records.batch(batch_cohorts):
        for name, value in serving_model(batch, training=False).items():
            out.setdefault(name, []).append(value.numpy())
    return {name: np.concatenate(v) for name, v in out.items()}


def write_predictions(path: str, outputs: dict) -> None:
    names = ["user_id"] + sorted(n for n in outputs if n != "user_id")
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(names)
        for i in range(len(outputs["user_id"])):
            writer.writerow([outputs["user_id"][i].decode()] + [
                f"{outputs[n][i]:.6g}" for n in names[1:]])


def metrics_table(metrics_path: str, obs_days: int) -> str:
    with open(metrics_path) as f:
        metrics = json.load(f)
    lines = [f"{'population':<10} {'task':<5} {'h':>4} {'predictor':<30} {'NRMSE':>7} "
             f"{'NMAE':>7} {'Gini':>7} {'AUC':>7}"]
    for entry in metrics["slices"]:
        if entry["population"] != "test" or entry["obs_days"] != obs_days:
            continue
        for predictor, values in (("HT-GNN", entry["model"]),
                                  ("observed value x train ratio", entry["reference"])):
            def fmt(name):
                value = values.get(name, {}) or {}
                return "n/a" if value.get("value") is None else f"{value['value']:.4f}"
            lines.append(f"{entry['population']:<10} {entry['task']:<5} {entry['horizon']:>4} "
                         f"{predictor:<30} {fmt('nrmse'):>7} {fmt('nmae'):>7} "
                         f"{fmt('gini'):>7} {fmt('auc'):>7}")
    return "\n".join(lines)


def run(out: str, epochs: int, obs_days: int) -> int:
    from beam_pipelines import build_dataset
    from htgnn_tf import evaluate, export, training
    from htgnn_tf.data.spec import load_spec
    from serving.client import PredictClient

    start = time.time()
    shutil.rmtree(out, ignore_errors=True)
    data, model_dir = os.path.join(out, "data"), os.path.join(out, "model")
    report_dir, base_path = os.path.join(out, "report"), os.path.join(out, "serving", MODEL_NAME)

    t = step("1/6 Beam dataset job on the CDNOW log (lifetimes==0.11.3 data file)")
    report = build_dataset.run(load_spec("cdnow"), data)
    print(json.dumps({"rows": report["rows"], "users": report["users"]}, indent=1))
    print(f"({time.time() - t:.0f} s)")

    t = step(f"2/6 training HT-GNN with model.fit (up to {epochs} epochs)")
    training.main(["--data", data, "--out", model_dir, "--epochs", str(epochs)])
    print(f"({time.time() - t:.0f} s)")

    t = step(f"3/6 evaluation on the test split (s = {obs_days} days, curve over s)")
    result = evaluate.evaluate(model_dir, data, report_dir, obs_days=obs_days)
    print(f"({time.time() - t:.0f} s)")

    t = step("4/6 export SavedModel")
    version_dir = export.export(model_dir, base_path)
    print(f"{version_dir} ({time.time() - t:.0f} s)")

    t = step("5/6 model server on loopback; the whole test split scored over gRPC")
    port = free_port()
    server = start_server(base_path, port)
    try:
        with PredictClient(f"127.0.0.1:{port}", MODEL_NAME, timeout=120.0) as client:
            wait_until_serving(client, server)
            served = score_over_grpc(client, data)
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=60)
    predictions_path = os.path.join(out, "test_predictions.csv")
    write_predictions(predictions_path, served)
    print(f"{len(served['user_id'])} users scored; server stopped with code "
          f"{server.returncode} ({time.time() - t:.0f} s)")

    t = step("6/6 served vs in-process predictions")
    _, _, serving_model = training.load_trained(model_dir)
    local = in_process(serving_model, data)
    assert list(local["user_id"]) == list(served["user_id"])
    worst = max(float(np.max(np.abs(local[n] - served[n]) / (1.0 + np.abs(local[n]))))
                for n in local if n != "user_id")
    ok = worst <= 1e-5
    print(f"max relative difference over {len(local) - 1} outputs x {len(local['user_id'])} "
          f"users: {worst:.2e} -> {'EQUAL' if ok else 'DIFFERENT'}")

    print("\n=== test-split metrics at s = %d observed days" % obs_days)
    print(metrics_table(result["paths"]["metrics_json"], obs_days))
    print(f"\nreport:      {result['paths']['report_md']} (+ PNG plots beside it)")
    print(f"model:       {model_dir} (TensorBoard logs in {model_dir}/tensorboard)")
    print(f"SavedModel:  {version_dir}")
    print(f"predictions: {predictions_path}")
    print(f"total wall time: {time.time() - start:.0f} s")
    return 0 if ok else 1


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m htgnn_tf.demo", description=(
        "End-to-end demo on CDNOW: dataset job, training, evaluation, export, gRPC "
        "serving and the served-vs-in-process check."))
    p.add_argument("--out", default="runs/demo", help="output directory (replaced)")
    p.add_argument("--epochs", type=int, default=12, help="maximum training epochs")
    p.add_argument("--obs-days", type=int, default=7, help="observed days for the tables")
    args = p.parse_args(argv)
    return run(args.out, args.epochs, args.obs_days)


if __name__ == "__main__":
    sys.exit(main())
