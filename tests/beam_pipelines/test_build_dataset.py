"""The Beam dataset job on hand-made logs: values computed by hand in the test."""
import datetime
import glob
import json
import os

import numpy as np
import pytest
import apache_beam as beam
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to

import htgnn_tf  # noqa: F401
from beam_pipelines import build_dataset as bd
from htgnn_tf.data import graph_schema as gs
from htgnn_tf.data.spec import parse_spec

HEADER = "user_id,date,value,items"
GOOD_ROWS = [
    "u1,2024-01-01,10,1",
    "u1,2024-01-01,5,1",     # same day: summed, one active day
    "u1,2024-01-03,7,2",
    "u1,2024-01-12,3,1",     # day 11: inside h=20, outside h=10
    "u2,2024-01-05,0,1",     # one-time buyer with a zero-value row
    "u3,2024-01-25,4,1",     # acquired late: h=20 censored by the snapshot
    "u3,2024-01-26,0,0",     # all-zero row: used, but its day is not active
]
BAD_ROWS = {
    ",2024-01-02,1,1": "missing_user_id",
    "u1,notadate,1,1": "unparsable_date",
    "u1,13/01/2024,1,1": "date_format_mismatch",
    "u1,2024-01-02,abc,1": "non_numeric_metric",
    "u1,2024-01-02,nan,1": "nan_metric",
    "u1,2024-01-02,inf,1": "inf_metric",
    "u1,2024-01-02,-1,1": "negative_metric",
    "u1,2024-02-09,1,1": "date_after_snapshot",
    "u1,2024-01-02,1": "malformed_row",
}


def make_spec(tmp_path, events_rows, profile_rows=None, **overrides):
    (tmp_path / "events.csv").write_text("\n".join([HEADER] + events_rows) + "\n")
    raw = {
        "name": "handmade",
        "events": {"files": ["events.csv"], "format": "csv"},
        "date": "date", "date_format": "%Y-%m-%d",
        "metrics": ["value", "items"], "value_metric": "value",
        "observation_days": 5, "horizons": [10, 20],
        "snapshot_date": "2024-02-05", "train_fraction": 0.5,
        "cohort_size": 4, "knn_k": 2, "max_bins": 8, "seed": 3,
        "derived_categoricals": ["acquisition_weekday"],
    }
    if profile_rows is not None:
        (tmp_path / "profiles.csv").write_text(
            "\n".join(["user_id,region,age"] + profile_rows) + "\n")
        raw["profiles"] = {"files": ["profiles.csv"], "categorical": ["region"],
                           "numeric": ["age"]}
    raw.update(overrides)
    return parse_spec(raw, base_dir=tmp_path)


def expected_users():
    """Hand-computed records (W=5, horizons 10 and 20, snapshot 2024-02-05)."""
    u1 = {"seq": [[15.0, 0, 7.0, 0, 0], [2.0, 0, 2.0, 0, 0]], "obs": 5, "stat": [15.0, 2.0],
          "lt_10": 2.0, "ltv_10": 22.0, "lt_20": 3.0, "ltv_20": 25.0,
          "mask_10": 1.0, "mask_20": 1.0, "last_10": 2, "last_20": 11, "lifetime": 11,
          "weekday": "Mon"}
    u2 = {"seq": [[0.0] * 5, [1.0, 0, 0, 0, 0]], "obs": 5, "stat": [0.0, 1.0],
          "lt_10": 1.0, "ltv_10": 0.0, "lt_20": 1.0, "ltv_20": 0.0,
          "mask_10": 1.0, "mask_20": 1.0, "last_10": 0, "last_20": 0, "lifetime": 0,
          "weekday": "Fri"}
    # u3: day 0 = Jan 25, snapshot Feb 5 -> 12 days exist, so obs = W = 5; h=10 ends
    # Feb 3 (labelled), h=20 ends Feb 13 (censored).
    u3 = {"seq": [[4.0, 0, 0, 0, 0], [1.0, 0, 0, 0, 0]], "obs": 5, "stat": [4.0, 1.0],
          "lt_10": 1.0, "ltv_10": 4.0, "lt_20": 1.0, "ltv_20": 4.0,
          "mask_10": 1.0, "mask_20": 0.0, "last_10": 0, "last_20": 0, "lifetime": 0,
          "weekday": "Thu"}
    return {"u1": u1, "u2": u2, "u3": u3}


def as_tuple(user):
    return (user[gs.USER_ID], json.dumps(user[gs.SEQ_VALUES]), user[gs.OBS_DAYS],
            tuple(user[gs.STAT_VALUES]), user["lt_10"], user["ltv_10"], user["lt_20"],
            user["ltv_20"], user["label_mask_10"], user["label_mask_20"],
            user["last_active_day_10"], user["last_active_day_20"], user["lifetime_days"],
            tuple(user["categorical_values"]))


def expected_tuples():
    out = []
    for uid, e in expected_users().items():
        out.append((uid, json.dumps(np.asarray(e["seq"], float).tolist()), e["obs"], tuple(e["stat"]), e["lt_10"],
                    e["ltv_10"], e["lt_20"], e["ltv_20"], e["mask_10"], e["mask_20"],
                    e["last_10"], e["last_20"], e["lifetime"], (e["weekday"],)))
    return out


def test_users_and_dead_letters_in_test_pipeline(tmp_path):
    spec = make_spec(tmp_path, GOOD_ROWS + list(BAD_ROWS))
    spec, inputs = bd.check_inputs(spec)
    with TestPipeline(runner="FnApiRunner") as p:
        out = bd.build_pipeline(p, spec, inputs, str(tmp_path / "out"))
        assert_that(out["users"] | beam.Map(as_tuple), equal_to(expected_tuples()),
                    label="Users")
        assert_that(out["dead"] | beam.Map(lambda d: (d["raw"], d["reason"], d["input"])),
                    equal_to([(raw, reason, "events") for raw, reason in BAD_ROWS.items()]),
                    label="DeadLetters")


def test_date_in_other_format_is_rejected_not_misread():
    from htgnn_tf.data.rows import RowError, parse_date

    assert parse_date("2024-03-04", "%Y-%m-%d") == datetime.date(2024, 3, 4)
    with pytest.raises(RowError) as e:
        parse_date("25/12/2024", "%m/%d/%Y")  # a dd/mm date, spec says mm/dd
    assert e.value.reason == "date_format_mismatch"


def run_job(tmp_path, spec):
    out = str(tmp_path / "out")
    report = bd.run(spec, out)
    return out, report


def read_graphs(out, split):
    import tensorflow as tf
    import tensorflow_gnn as tfgnn

    schema = tfgnn.read_schema(os.path.join(out, "graph_schema.pbtxt"))
    graph_spec = tfgnn.create_graph_spec_from_schema_pb(schema)
    files = sorted(glob.glob(os.path.join(out, split, "graphs-*.tfrecord")))
    return [tfgnn.parse_single_example(graph_spec, record)
            for record in tf.data.TFRecordDataset(files)]


def test_full_job_writes_parseable_graphs_and_accounts_for_every_row(tmp_path):
    profiles = ["u1,north,30", "u1,south,31", "u3,,40", "u9,east,50"]
    spec = make_spec(tmp_path, GOOD_ROWS + list(BAD_ROWS), profiles)
    out, report = run_job(tmp_path, spec)
    events = report["rows"]["events"]
    assert events["rows_in"] == len(GOOD_ROWS) + len(BAD_ROWS)
    assert events["rows_in"] == events["rows_used"] + events["rows_rejected"]
    assert events["rows_rejected"] == len(BAD_ROWS)
    assert events["rejected_by_reason"] == {r: 1 for r in BAD_ROWS.values()}
    prof = report["rows"]["profiles"]
    assert prof["rows_in"] == 4 and prof["rows_used"] == 2
    assert prof["rejected_by_reason"] == {"duplicate_profile": 1, "profile_without_events": 1}
    assert report["users"]["without_profile"] == 1  # u2
    assert report["users"]["train"] + report["users"]["test"] == 3
    dead = [json.loads(line) for f in glob.glob(f"{out}/dead_letter/*.jsonl")
            for line in open(f)]
    assert len(dead) == events["rows_rejected"] + prof["rows_rejected"]
    assert {d["raw"] for d in dead if d["input"] == "profiles"} == {"u1,south,31", "u9,east,50"}

    expected = expected_users()
    seen = {}
    for split in bd.SPLITS:
        for graph in read_graphs(out, split):
            users = graph.node_sets[gs.USER]
            for i, uid in enumerate(users[gs.USER_ID].numpy()):
                uid = uid.decode()
                assert bd.split_of(uid, spec) == split
                seen[uid] = {name: users[name][i].numpy() for name in users.features}
    assert set(seen) == set(expected)
    for uid, e in expected.items():
        got = seen[uid]
        np.testing.assert_allclose(got[gs.SEQ_VALUES], e["seq"])
        np.testing.assert_allclose(got[gs.STAT_VALUES], e["stat"] + [
            {"u1": 30.0, "u2": 0.0, "u3": 40.0}[uid]])
        for h in (10, 20):
            assert got[f"lt_{h}"] == e[f"lt_{h}"] and got[f"ltv_{h}"] == e[f"ltv_{h}"]
            assert got[f"label_mask_{h}"] == e[f"mask_{h}"]
            assert got[f"last_active_day_{h}"] == e[f"last_{h}"]
        assert got[gs.LIFETIME_DAYS] == e["lifetime"]
        # Tokens: 0 past obs_days, 1 for zero days, >= 2 for positive values.
        seq = np.asarray(e["seq"])
        tokens = got[gs.SEQ_TOKENS]
        assert np.all((tokens == 1) == (seq == 0)) and np.all(tokens[seq > 0] >= 2)
    assert report["censored_labels"]["train"]["20"] + report["censored_labels"]["test"]["20"] == 1


def test_transform_artifacts_match_independent_statistics(tmp_path):
    rng = np.random.default_rng(0)
    rows = []
    for i in range(60):
        day = 1 + int(rng.integers(0, 20))
        rows.append(f"user{i:03d},2024-01-{day:02d},{rng.lognormal(2, 1):.2f},"
                    f"{int(rng.integers(1, 5))}")
    spec = make_spec(tmp_path, rows, train_fraction=0.7)
    out, _ = run_job(tmp_path, spec)
    artifacts = json.load(open(f"{out}/transform.json"))
    train_ids = {f"user{i:03d}" for i in range(60) if bd.split_of(f"user{i:03d}", spec) == "train"}
    values = np.array([float(r.split(",")[2]) for r in rows if r.split(",")[0] in train_ids])
    x = np.sign(values) * np.log1p(np.abs(values))
    width = 3.5 * np.std(x) / len(x) ** (1 / 3)
    bins = min(8, int(np.ceil((x.max() - x.min()) / width)))
    expected = np.linspace(x.min(), x.max(), bins + 1)[1:-1]
    np.testing.assert_allclose(artifacts["statistical_edges"]["day0_value"], expected)
    np.testing.assert_allclose(artifacts["knn"]["mean"][0], x.mean())
    np.testing.assert_allclose(artifacts["label_means"]["ltv_10"], values.mean())


def test_cohort_graph_hyperedges_are_brute_force_knn(tmp_path):
    rows = [f"c{i:02d},2024-01-0{1 + i % 7},{(i * 37) % 23 + 1},{1 + i % 3}" for i in range(24)]
    spec = make_spec(tmp_path, rows, train_fraction=0.99, cohort_size=12, knn_k=3,
                     derived_categoricals=["acquisition_weekday"])
    out, _ = run_job(tmp_path, spec)
    artifacts = json.load(open(f"{out}/transform.json"))
    mean, std = np.array(artifacts["knn"]["mean"]), np.array(artifacts["knn"]["std"])
    for graph in read_graphs(out, "train"):
        users = graph.node_sets[gs.USER]
        stats = users[gs.STAT_VALUES].numpy().astype(np.float64)
        z = (np.sign(stats) * np.log1p(np.abs(stats)) - mean) / std
        # One-hot weekday (vocabulary id, 0 = OOV) scaled by 1/sqrt(2).
        vocab_size = len(artifacts["categorical_vocab"]["acquisition_weekday"]) + 1
        weekday = np.eye(vocab_size)[users[gs.CATEGORICAL_IDS].numpy()[:, 0]] / np.sqrt(2)
        z = np.concatenate([z, weekday], axis=1)
        n = len(z)
        adjacency = graph.edge_sets[gs.INCIDENCE].adjacency
        src, tgt = adjacency.source.numpy(), adjacency.target.numpy()
        for i in range(n):
            members = tgt[src == i]
            distances = [(float(np.sum((z[i] - z[j]) ** 2)), j) for j in range(n) if j != i]
            distances.sort()
            assert members[0] == i
            assert list(members[1:]) == [j for _, j in distances[:min(3, n - 1)]]


def test_empty_file_and_missing_column_fail_before_the_job(tmp_path):
    (tmp_path / "empty.csv").write_text(HEADER + "\n")
    spec = make_spec(tmp_path, GOOD_ROWS)
    empty = parse_spec({**spec.to_json_dict(), "events": {
        "files": [str(tmp_path / "empty.csv")], "format": "csv"}})
    with pytest.raises(bd.InputError, match="is empty"):
        bd.check_inputs(empty)
    wrong = parse_spec({**spec.to_json_dict(), "metrics": ["value", "clicks"]})
    with pytest.raises(bd.InputError, match=r"no column\(s\) \['clicks'\]"):
        bd.check_inputs(wrong)


def test_direct_runner_writes_the_same_graphs_as_fnapi_runner(tmp_path):
    spec = make_spec(tmp_path, GOOD_ROWS + list(BAD_ROWS))
    reports, graphs = {}, {}
    for runner in ("FnApiRunner", "DirectRunner"):
        out = str(tmp_path / runner)
        reports[runner] = bd.run(spec, out, runner=runner)
        graphs[runner] = sorted(
            record for split in bd.SPLITS
            for path in glob.glob(os.path.join(out, split, "*.tfrecord"))
            for record in _records(path))
    for key in ("rows", "users", "cohorts", "censored_labels"):
        assert reports["FnApiRunner"][key] == reports["DirectRunner"][key]
    assert graphs["FnApiRunner"] == graphs["DirectRunner"] and graphs["FnApiRunner"]
    # Every record is in protobuf's deterministic (sorted feature map) order, so a rebuild
    # in another process writes the same bytes and keeps the benchmark's cache valid.
    from tensorflow.core.example import example_pb2
    for record in graphs["DirectRunner"]:
        assert record == example_pb2.Example.FromString(record).SerializeToString(
            deterministic=True)


def _records(path):
    import tensorflow as tf

    return [r.numpy() for r in tf.data.TFRecordDataset([path])]
