"""`htgnn predict` against the real model server (a subprocess on loopback) serving the tiny
trained model exported with `htgnn_tf.export.export`.

References: the in-process serving model (`training.load_trained(model_dir)[2]`) on the
same cohorts; for raw logs, users encoded in this test from a pandas reading of the CSV
log with the pipeline's functions, and obs_days worked out from the dates with numpy.
"""
from __future__ import annotations

import datetime
import json
import os
import threading

import grpc
import numpy as np
import pandas as pd
import pytest
import yaml

import htgnn_tf  # noqa: F401
from beam_pipelines.build_dataset import cohort_key, num_cohorts, split_of
from htgnn_tf import demo, training
from htgnn_tf.data import graph_schema as gs
from htgnn_tf.data import transform
from htgnn_tf.data.hypergraph import cohort_example_bytes
from htgnn_tf.data.rows import Event, Profile
from htgnn_tf.data.spec import spec_from_json_dict
from htgnn_tf.data.users import aggregate_user
from serving import predict
from serving.client import PredictClient
from tests.helpers import SERVED_MODEL as MODEL
from tests.helpers import (model_server, serialized_cohorts, tiny_data, trained,  # noqa: F401
                           version_dir)

RTOL, ATOL = 1e-5, 1e-6


# ---------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def target(version_dir):
    """host:port of a real `python -m serving.server` process serving the tiny model."""
    with model_server(version_dir) as address:
        yield address


@pytest.fixture()
def client(target):
    with PredictClient(target, MODEL, timeout=60.0) as open_client:
        yield open_client


@pytest.fixture(scope="module")
def serving_model(trained):
    return training.load_trained(trained[0])[2]


@pytest.fixture(scope="module")
def artifacts(version_dir):
    return predict.load_artifacts(os.path.join(version_dir, "assets.extra"))


@pytest.fixture(scope="module")
def raw_log(tiny_data):
    """(events, profiles) of the simulated log the tiny dataset was built from, as text."""
    raw = os.path.join(os.path.dirname(tiny_data), "raw")
    read = dict(dtype=str, keep_default_na=False)
    return (pd.read_csv(os.path.join(raw, "events.csv"), **read),
            pd.read_csv(os.path.join(raw, "profiles.csv"), **read))


@pytest.fixture(scope="module")
def test_split_reference(tiny_data, serving_model):
    """The in-process serving model on every test cohort of the tiny dataset."""
    examples = serialized_cohorts(tiny_data, "test")
    return run_model(serving_model, examples)


# ---------------------------------------------------------------- helpers
def run_model(serving_model, examples) -> dict[str, np.ndarray]:
    return {name: value.numpy()
            for name, value in serving_model(np.array(examples, dtype=object),
                                             training=False).items()}


def by_user(outputs) -> dict[str, np.ndarray]:
    """Outputs reordered by user id (user_id as str)."""
    ids = np.array([u.decode() if isinstance(u, bytes) else u for u in outputs[gs.USER_ID]])
    order = np.argsort(ids, kind="stable")
    result = {name: np.asarray(value)[order] for name, value in outputs.items()}
    result[gs.USER_ID] = ids[order]
    return result


def assert_outputs_equal(actual, expected, rtol=RTOL, atol=ATOL):
    actual, expected = by_user(actual), by_user(expected)
    assert set(actual) == set(expected)
    assert list(actual[gs.USER_ID]) == list(expected[gs.USER_ID])
    for name in expected:
        if name != gs.USER_ID:
            np.testing.assert_allclose(np.asarray(actual[name], np.float64),
                                       np.asarray(expected[name], np.float64),
                                       rtol=rtol, atol=atol, err_msg=name)


def write_raw_log(directory, artifacts, events: pd.DataFrame, profiles: pd.DataFrame,
                  extra_event_lines=(), extra_profile_lines=()) -> str:
    """events.csv, profiles.csv and a spec.yaml with the model's spec; returns the spec."""
    os.makedirs(directory, exist_ok=True)
    paths = {}
    for name, frame, extra in (("events", events, extra_event_lines),
                               ("profiles", profiles, extra_profile_lines)):
        paths[name] = os.path.join(directory, f"{name}.csv")
        frame.to_csv(paths[name], index=False)
        with open(paths[name], "a") as f:
            f.writelines(line + "\n" for line in extra)
    raw = json.loads(json.dumps(artifacts["spec"]))  # a copy
    raw["events"] = {**raw["events"], "files": [paths["events"]], "columns": []}
    raw["profiles"] = {**raw["profiles"], "files": [paths["profiles"]], "columns": []}
    spec_path = os.path.join(directory, "spec.yaml")
    with open(spec_path, "w") as f:
        yaml.safe_dump(raw, f)
    return spec_path


def model_spec(artifacts):
    return spec_from_json_dict(json.loads(json.dumps(artifacts["spec"])))


def expected_obs_days(events: pd.DataFrame, today: datetime.date, window: int) -> dict:
    first = pd.to_datetime(events.groupby("user_id")["date"].min())
    days = (pd.Timestamp(today) - first).dt.days.to_numpy() + 1
    return dict(zip(first.index, np.minimum(window, days)))


# ---------------------------------------------------------------- (a) TFRecords
def test_predict_tfrecords_equals_in_process_model(client, tiny_data, test_split_reference):
    served = predict.predict_tfrecords(client, os.path.join(tiny_data, "test", "*.tfrecord"),
                                       batch_cohorts=4)
    assert list(served[gs.USER_ID]) == list(test_split_reference[gs.USER_ID])
    assert_outputs_equal(served, test_split_reference)


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_cli_writes_every_output_of_every_user(tmp_path, target, client, tiny_data,
                                               test_split_reference, suffix, capsys):
    out = str(tmp_path / f"predictions{suffix}")
    code = predict.main(["--target", target, "--model-name", MODEL, "--tfrecords",
                         os.path.join(tiny_data, "test", "graphs-*.tfrecord"), "--out", out,
                         "--batch-cohorts", "2", "--no-progress"])
    assert code == 0, capsys.readouterr().err
    written = predict.read_predictions(out)
    assert list(written)[:2] == [gs.USER_ID, "obs_days_used"]
    assert_outputs_equal(written, test_split_reference)
    # the file holds the shortest decimal that reads back to the same float32 as the
    # client received (same batches: batching moves the last bit of some outputs)
    reference = by_user(predict.predict_tfrecords(
        client, os.path.join(tiny_data, "test", "graphs-*.tfrecord"), batch_cohorts=2))
    for name, value in by_user(written).items():
        if name != gs.USER_ID:
            np.testing.assert_array_equal(value.astype(np.float32),
                                          reference[name].astype(np.float32), err_msg=name)


# ---------------------------------------------------------------- (b) raw logs
def test_raw_log_of_the_test_users_equals_the_tfrecord_path(tmp_path, client, artifacts,
                                                            raw_log, version_dir,
                                                            test_split_reference):
    events, profiles = raw_log
    spec = model_spec(artifacts)
    is_test = lambda ids: np.array([split_of(u, spec) == "test" for u in ids])  # noqa: E731
    spec_path = write_raw_log(tmp_path / "raw", artifacts, events[is_test(events.user_id)],
                              profiles[is_test(profiles.user_id)])
    served = predict.predict_raw(client, spec_path, os.path.join(version_dir, "assets.extra"))
    # same users, same cohorts (same hash, same count), same obs_days (today = snapshot)
    assert_outputs_equal(served, test_split_reference)
    expected = expected_obs_days(events, spec.snapshot_date, spec.observation_days)
    ordered = by_user(served)
    np.testing.assert_array_equal(ordered["obs_days_used"],
                                  [expected[u] for u in ordered[gs.USER_ID]])


def test_raw_log_with_today_equals_in_process_encoding(tmp_path, client, artifacts, raw_log,
                                                       serving_model):
    events, profiles = raw_log
    spec = model_spec(artifacts)
    # a day on which a user was acquired (obs_days 1 for that user), about 40 days back
    firsts = sorted(datetime.date.fromisoformat(d) for d in events.groupby("user_id").date.min())
    today = max(d for d in firsts if d <= spec.snapshot_date - datetime.timedelta(days=40))
    spec_path = write_raw_log(tmp_path / "raw", artifacts, events, profiles)
    served = predict.predict_raw(client, spec_path, artifacts, today=today, batch_cohorts=3,
                                 rejected_path=str(tmp_path / "rejected.jsonl"))

    # reference: pandas reading, rows after `today` left out, the pipeline's functions
    kept = events[pd.to_datetime(events.date).dt.date <= today]
    metric_values = kept[list(spec.metrics)].astype(float).to_numpy()
    by_id: dict[str, list] = {}
    for user_id, date, values in zip(kept.user_id, kept.date, metric_values):
        by_id.setdefault(user_id, []).append(
            Event(user_id, datetime.date.fromisoformat(date), tuple(values)))
    profile_of = {row.user_id: Profile(row.user_id, tuple(row[c] for c in spec.profiles.categorical),
                                       tuple(float(row[c]) for c in spec.profiles.numeric))
                  for _, row in profiles.iterrows()}
    lookup = transform.with_lookup_index(artifacts)
    count = num_cohorts(len(by_id), spec.cohort_size)
    cohorts: dict[int, list] = {}
    for user_id, user_events in by_id.items():
        record = aggregate_user(user_id, user_events, profile_of.get(user_id), spec,
                                with_labels=False, today=today)
        cohorts.setdefault(cohort_key(user_id, "any", count, spec)[1], []).append(
            transform.encode_user(record, lookup))
    examples = []
    for users in cohorts.values():
        users.sort(key=lambda u: u[gs.USER_ID])
        examples.append(cohort_example_bytes(users, transform.knn_points(users, artifacts),
                                             spec.knn_k, transform.feature_dims(spec), False))
    assert_outputs_equal(served, run_model(serving_model, examples))

    expected = expected_obs_days(kept, today, spec.observation_days)
    ordered = by_user(served)
    np.testing.assert_array_equal(ordered["obs_days_used"],
                                  [expected[u] for u in ordered[gs.USER_ID]])
    assert 1 in set(expected.values()) and spec.observation_days in set(expected.values())
    with open(tmp_path / "rejected.jsonl") as f:
        rejected = [json.loads(line) for line in f]
    after_today = [r for r in rejected if r["reason"] == "date_after_snapshot"]
    assert len(after_today) == len(events) - len(kept)


# ---------------------------------------------------------------- (c) rejected rows
def test_rejected_raw_rows_are_written_with_reasons_and_counts_add_up(
        tmp_path, target, artifacts, raw_log, version_dir, capsys):
    events, profiles = raw_log
    spec = model_spec(artifacts)
    today = spec.snapshot_date - datetime.timedelta(days=1)
    firsts = events.groupby("user_id").date.min()
    users = sorted(set(firsts[firsts < today.isoformat()].index) & set(profiles.user_id))[:5]
    good_events = events[events.user_id.isin(users)]
    good_events = good_events[pd.to_datetime(good_events.date).dt.date <= today]
    good_profiles = profiles[profiles.user_id.isin(users)]
    bad_events = {
        "x1,2025-13-45,1.0,1,10,0": "unparsable_date",
        "x2,03/01/2025,1.0,1,10,0": "date_format_mismatch",
        ",2025-03-01,1.0,1,10,0": "missing_user_id",
        f"{users[0]},2025-03-01,-5.0,1,10,0": "negative_metric",
        f"{users[0]},2025-03-01,abc,1,10,0": "non_numeric_metric",
        f"{users[0]},2025-03-01,nan,1,10,0": "nan_metric",
        f"{users[0]},2025-03-01,1.0,inf,10,0": "inf_metric",
        f"{users[0]},2025-03-01,1.0": "malformed_row",
        f"{users[1]},{spec.snapshot_date.isoformat()},1.0,1,10,0": "date_after_snapshot",
    }
    first_profile = good_profiles[good_profiles.user_id == users[0]].iloc[0]
    bad_profiles = {
        ",".join([users[0]] + [first_profile[c] for c in profiles.columns[1:]]):
            "duplicate_profile",
        "nobody,25-34,south,ios,search_ads,40.0": "profile_without_events",
        f"{users[2]},25-34,south,ios,search_ads,lots": "non_numeric_profile_value",
    }
    spec_path = write_raw_log(tmp_path / "raw", artifacts, good_events, good_profiles,
                              list(bad_events), list(bad_profiles))
    out = str(tmp_path / "scores.jsonl")
    code = predict.main(["--target", target, "--raw-spec", spec_path, "--artifacts",
                         version_dir, "--out", out, "--today", today.isoformat(),
                         "--no-progress"])
    stdout = capsys.readouterr().out
    assert code == 0
    report = json.loads(stdout[:stdout.index("\n}") + 2])

    with open(out + ".rejected.jsonl") as f:
        rejected = [json.loads(line) for line in f]
    got = {(r["input"], r["raw"]): r["reason"] for r in rejected}
    expected = {**{("events", raw): reason for raw, reason in bad_events.items()},
                **{("profiles", raw): reason for raw, reason in bad_profiles.items()}}
    assert got == expected
    for r in rejected:  # the line number points at the row in its file
        with open(r["source"]) as f:
            assert f.read().splitlines()[r["line"] - 1] == r["raw"]
    rows = report["rows"]
    assert rows["events"] == {
        "rows_in": len(good_events) + len(bad_events), "rows_used": len(good_events),
        "rows_rejected": len(bad_events),
        "rejected_by_reason": {reason: 1 for reason in sorted(bad_events.values())}}
    assert rows["profiles"]["rows_in"] == len(good_profiles) + len(bad_profiles)
    assert rows["profiles"]["rows_used"] == len(good_profiles)
    assert rows["profiles"]["rows_rejected"] == len(bad_profiles)
    # users[2]'s profile is kept (the bad one is rejected first, the good one parses)
    written = predict.read_predictions(out)
    assert sorted(u.decode() for u in written[gs.USER_ID]) == users
    assert report["users"] == len(users)


# ---------------------------------------------------------------- (e) concurrency, (f) errors
def test_sixteen_concurrent_clients(target, tiny_data, test_split_reference):
    files = os.path.join(tiny_data, "test", "*.tfrecord")
    results, errors = [None] * 16, []

    def work(i):
        try:
            with PredictClient(target, MODEL, timeout=120.0) as own_client:
                results[i] = predict.predict_tfrecords(own_client, files,
                                                       batch_cohorts=1 + i % 3)
        except Exception as e:  # collected and asserted below
            errors.append(repr(e))

    threads = [threading.Thread(target=work, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert errors == []
    for result in results:
        assert_outputs_equal(result, test_split_reference)


def test_garbage_examples_get_invalid_argument_and_the_server_keeps_serving(
        client, tiny_data, test_split_reference):
    with pytest.raises(grpc.RpcError) as raised:
        client.predict({"examples": [b"\x08\x96\x01garbage\xff\xfe", b"not a proto"]})
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    served = predict.predict_tfrecords(client, os.path.join(tiny_data, "test", "*.tfrecord"))
    assert_outputs_equal(served, test_split_reference)


def test_cli_errors_say_what_to_do(tmp_path, target, tiny_data, artifacts, raw_log, capsys):
    out = str(tmp_path / "p.csv")
    spec_path = write_raw_log(tmp_path / "raw", artifacts, *raw_log)
    assert predict.main(["--target", target, "--raw-spec", spec_path, "--out", out]) == 2
    assert "--raw-spec needs --artifacts" in capsys.readouterr().err

    nowhere = f"127.0.0.1:{demo.free_port()}"
    assert predict.main(["--target", nowhere, "--tfrecords",
                         os.path.join(tiny_data, "test", "*.tfrecord"), "--out", out,
                         "--timeout", "5", "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert f"cannot reach a model server at {nowhere}" in err and "UNAVAILABLE" in err

    assert predict.main(["--target", target, "--model-name", "other", "--tfrecords",
                         os.path.join(tiny_data, "test", "*.tfrecord"), "--out", out,
                         "--no-progress"]) == 1
    assert "does not serve a model named 'other'" in capsys.readouterr().err

    assert predict.main(["--target", target, "--tfrecords", str(tmp_path / "none-*"),
                         "--out", out]) == 2
    assert "no TFRecord files match" in capsys.readouterr().err

    wrong = dict(artifacts, spec=dict(artifacts["spec"], observation_days=9))
    with pytest.raises(predict.PredictError, match="observation_days 7 differ .* 9"):
        predict.encode_raw(model_spec(artifacts), wrong)
