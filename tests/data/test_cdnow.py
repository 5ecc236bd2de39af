"""The real CDNOW log through the whole dataset job (the issue's acceptance check)."""
import glob
import json
import os

import pytest

import htgnn_tf  # noqa: F401
from beam_pipelines import build_dataset as bd
from htgnn_tf.data import sources
from htgnn_tf.data.spec import load_spec

CDNOW_ROWS, CDNOW_CUSTOMERS = 69_659, 23_570


def test_cdnow_file_is_found_and_hash_checked():
    path = sources.resolve(sources.CDNOW_MASTER)
    assert sources.sha256_of(path).startswith("eff6889e")


def test_missing_distribution_says_how_to_install():
    with pytest.raises(sources.SourceError, match="not installed; install it with: pip"):
        sources.resolve("package://no-such-dist-xyz/data.txt")


def test_cdnow_job_covers_every_customer_and_row(tmp_path):
    import tensorflow as tf
    import tensorflow_gnn as tfgnn

    out = str(tmp_path / "cdnow")
    report = bd.run(load_spec("cdnow"), out)
    rows = report["rows"]["events"]
    assert rows["rows_in"] == CDNOW_ROWS
    assert rows["rows_in"] == rows["rows_used"] + rows["rows_rejected"]
    assert report["users"]["train"] + report["users"]["test"] == CDNOW_CUSTOMERS
    assert 0.88 < report["users"]["train"] / CDNOW_CUSTOMERS < 0.92
    assert json.load(open(os.path.join(out, "run_report.json")))["rows"] == report["rows"]

    graph_spec = tfgnn.create_graph_spec_from_schema_pb(
        tfgnn.read_schema(os.path.join(out, "graph_schema.pbtxt")))
    ids, cohorts = set(), 0
    for split in bd.SPLITS:
        files = glob.glob(os.path.join(out, split, "*.tfrecord"))
        dataset = tf.data.TFRecordDataset(files).batch(16).map(
            lambda x: tfgnn.parse_example(graph_spec, x))
        for graph in dataset:
            cohorts += int(graph.num_components.numpy().sum())
            ids.update(graph.node_sets["user"]["user_id"].flat_values.numpy().tolist())
    assert len(ids) == CDNOW_CUSTOMERS and b"00001" in ids
    assert cohorts == report["cohorts"]["train"] + report["cohorts"]["test"]
