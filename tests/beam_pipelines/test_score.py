"""Beam batch scoring against the client: the scored PCollection (TestPipeline +
assert_that) and the written shards equal what `htgnn predict` gets from the real model
server (a subprocess on loopback) for the same cohort examples."""
from __future__ import annotations

import base64
import csv
import glob
import json
import os

import numpy as np
import pytest
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import BeamAssertException, assert_that, equal_to

import apache_beam as beam
import htgnn_tf  # noqa: F401
from beam_pipelines import score
from htgnn_tf.data import graph_schema as gs
from serving import predict
from serving.client import PredictClient
from tests.helpers import SERVED_MODEL as MODEL
from tests.helpers import (model_server, serialized_cohorts, tiny_data, trained,  # noqa: F401
                           version_dir)

RTOL, ATOL = 1e-5, 1e-6


@pytest.fixture(scope="module")
def client_records(version_dir, tiny_data):
    """user_id -> record of `htgnn predict` over gRPC for the test cohorts."""
    with model_server(version_dir) as address, \
            PredictClient(address, MODEL, timeout=60.0) as client:
        outputs = predict.predict_tfrecords(client, os.path.join(tiny_data, "test", "*.tfrecord"))
    return {r[gs.USER_ID]: r for r in predict.prediction_records(outputs)}


def assert_records_equal(actual: dict, expected: dict) -> None:
    """Same users, same columns, values within float32 rounding of batching."""
    if sorted(actual) != sorted(expected):
        raise BeamAssertException(f"users differ: {sorted(set(actual) ^ set(expected))}")
    for user_id, record in expected.items():
        got = actual[user_id]
        if list(got) != list(record):
            raise BeamAssertException(f"columns {list(got)} != {list(record)}")
        for name, value in record.items():
            if name == gs.USER_ID:
                continue
            if not np.isclose(float(got[name]), value, rtol=RTOL, atol=ATOL):
                raise BeamAssertException(f"{user_id} {name}: {got[name]} != {value}")


def test_users_in_cohort_counts_the_user_nodes(tiny_data):
    from tests.helpers import parse_batch

    examples = serialized_cohorts(tiny_data, "test")
    graph = parse_batch(tiny_data, examples)
    sizes = graph.node_sets[gs.USER].sizes.numpy().reshape(-1)
    assert [score.users_in_cohort(e) for e in examples] == sizes.tolist()
    with pytest.raises(ValueError, match="not a cohort GraphTensor"):
        score.users_in_cohort(b"")


def test_scored_pcollection_equals_the_client(version_dir, tiny_data, client_records):
    examples = serialized_cohorts(tiny_data, "test")
    assert len(examples) >= 3  # batches of 2 cohorts cut into cohorts and users

    def matches(scored):
        assert_records_equal({user_id: record for user_id, record in scored}, client_records)
        keys = [user_id for user_id, record in scored if record[gs.USER_ID] != user_id]
        if keys:
            raise BeamAssertException(f"records keyed by another user: {keys}")

    with TestPipeline(runner="FnApiRunner") as pipeline:
        scored = (pipeline
                  | "Examples" >> beam.Create(examples)
                  | "Score" >> score.ScoreCohorts(version_dir, batch_cohorts=2))
        assert_that(scored["scored"], matches)
        assert_that(scored[score.REJECTED], equal_to([]), label="NothingRejected")


def test_job_writes_jsonl_shards_equal_to_the_client(tmp_path, version_dir, tiny_data,
                                                     client_records, capsys):
    out = str(tmp_path / "scores" / "part")
    code = score.main(["--model", os.path.dirname(version_dir),  # base path: highest version
                       "--tfrecords", os.path.join(tiny_data, "test", "graphs-*.tfrecord"),
                       "--out", out, "--batch-cohorts", "3", "--direct_num_workers", "1"])
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    assert report["model"] == version_dir and report["users"] == len(client_records)
    assert report["files"] == sorted(glob.glob(out + "-[0-9]*-of-*.jsonl"))
    assert report["rejected_cohorts"] == 0
    records = [json.loads(line) for path in report["files"] for line in open(path)]
    assert len(records) == len(client_records)
    assert_records_equal({r[gs.USER_ID]: r for r in records}, client_records)


def test_job_writes_csv_shards_equal_to_the_client(tmp_path, version_dir, tiny_data,
                                                   client_records):
    out = str(tmp_path / "scores")
    report = score.run(version_dir, os.path.join(tiny_data, "test", "*.tfrecord"), out,
                       fmt="csv", runner="DirectRunner")
    rows = []
    for path in report["files"]:
        with open(path, newline="") as f:
            rows += list(csv.DictReader(f))  # a header in every shard
    columns = list(next(iter(client_records.values())))
    assert all(list(row) == columns for row in rows)
    parsed = {row[gs.USER_ID]: {k: (v if k == gs.USER_ID else float(v)) for k, v in row.items()}
              for row in rows}
    assert len(parsed) == len(rows) == len(client_records)
    assert_records_equal(parsed, client_records)


def test_bad_inputs_say_what_to_do(tmp_path, version_dir):
    with pytest.raises(score.ScoreError, match="no saved_model.pb"):
        score.run(str(tmp_path), "x", str(tmp_path / "o"))
    with pytest.raises(score.ScoreError, match="no TFRecord files match"):
        score.run(version_dir, str(tmp_path / "none-*.tfrecord"), str(tmp_path / "o"))


def test_bad_records_go_to_the_dead_letter_output(tmp_path, version_dir, tiny_data,
                                                  client_records):
    import tensorflow as tf

    good = serialized_cohorts(tiny_data, "test")
    not_an_example = b"\x00garbage"
    # A tf.train.Example that claims 2 users but has none of the model's features.
    broken = tf.train.Example()
    broken.features.feature[score.USER_SIZE_FEATURE].int64_list.value.append(2)
    records = good + [not_an_example, broken.SerializeToString()]
    path = str(tmp_path / "mixed.tfrecord")
    with tf.io.TFRecordWriter(path) as writer:
        for record in records:
            writer.write(record)
    out = str(tmp_path / "scores")
    report = score.run(version_dir, path, out, batch_cohorts=1)
    assert report["users"] == len(client_records) and report["rejected_cohorts"] == 2
    rejected = [json.loads(line) for f in glob.glob(out + "-rejected-*.jsonl") for line in open(f)]
    by_reason = {r["reason"]: base64.b64decode(r["example_b64"]) for r in rejected}
    assert by_reason == {"not_a_cohort_example": not_an_example,
                         "model_rejected_batch": broken.SerializeToString()}
    scored = [json.loads(line) for f in report["files"] for line in open(f)]
    assert_records_equal({r[gs.USER_ID]: r for r in scored}, client_records)
