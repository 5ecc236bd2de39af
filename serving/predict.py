"""`htgnn predict`: score users through a TF-Serving-protocol server over gRPC.

Two inputs:

* ``--tfrecords GLOB``: serialized cohort examples as the dataset job writes them
  (label features, if present, are ignored by the model);
* ``--raw-spec SPEC.yaml``: a raw activity log described by a dataset spec. It is read
  with the dataset job's own functions (:mod:`htgnn_tf.data.rows`,
  :func:`htgnn_tf.data.users.aggregate_user`, :mod:`htgnn_tf.data.transform`,
  :func:`htgnn_tf.data.hypergraph.cohort_example_bytes`) and the train-split statistics of
  the model (``transform.json`` from ``--artifacts``), so training and serving encode a user
  the same way. Users are grouped into cohorts of about ``spec.cohort_size`` by the job's
  hash (:func:`beam_pipelines.build_dataset.cohort_key` / ``num_cohorts``).

Output: one row per user (``user_id``, ``obs_days_used``, ``lt_30`` ... ``ltv_365``,
``p_active_after_obs_*``, ``p_value_after_obs_*``), CSV or JSONL by the file suffix.
Numbers are written as the shortest decimal that reads back to the same float32.

Decisions:

* ``--today`` is the scoring date: it replaces the spec's snapshot date, so a raw
  user's ``obs_days`` is the number of days from acquisition to today inclusive, capped
  at W (:func:`htgnn_tf.data.users.observed_days`), and rows dated after today are
  rejected (``date_after_snapshot``). Default: the spec's snapshot date.
* Raw users are not split into train/test: every user with a valid event is scored, and
  the cohort count is ``num_cohorts(all users, cohort_size)``. A log holding exactly the
  users of one split of the dataset job therefore gets that job's cohorts.
* The raw spec must have the feature layout the model was trained on (metrics,
  categorical and statistical features, W); ``cohort_size``, ``knn_k`` and ``seed`` are
  read from the raw spec.
* Rejected rows (the job's reasons, plus ``duplicate_profile`` and
  ``profile_without_events``) go to ``<out>.rejected.jsonl``; the counts satisfy
  ``rows_in = rows_used + rows_rejected`` per input. Nothing is dropped silently.
* The whole raw log is held in memory (this is a client); score large logs by building
  TFRecords and running :mod:`beam_pipelines.score`.
"""
from __future__ import annotations

import argparse
import collections
import csv
import dataclasses
import datetime
import json
import os
import sys
from typing import Iterable, Mapping, Sequence

import numpy as np

import htgnn_tf  # noqa: F401  (Keras 2 switch before TensorFlow loads)
from htgnn_tf.data import graph_schema as gs
from htgnn_tf.data import rows as rowlib
from htgnn_tf.data import transform
from htgnn_tf.data.spec import DatasetSpec, SpecError, load_spec

ARTIFACTS_FILE = "transform.json"
OUTPUT_FORMATS = (".csv", ".jsonl")
EVENTS, PROFILES = "events", "profiles"


class PredictError(ValueError):
    """Bad input to the client; the message says what to do."""


@dataclasses.dataclass(frozen=True)
class RawCohorts:
    """A raw log encoded for the model.

    Attributes:
      examples: serialized cohort examples (no labels), in cohort-index order.
      rejected: dead-letter dicts of the rejected rows (input, source, line, raw,
        reason, detail).
      rows: per input, ``rows_in``, ``rows_used``, ``rows_rejected`` and
        ``rejected_by_reason``.
      num_users: users in the cohorts.
    """

    examples: list[bytes]
    rejected: list[dict]
    rows: dict[str, dict]
    num_users: int


# ---------------------------------------------------------------- artifacts and inputs
def load_artifacts(path: str) -> dict:
    """transform.json from a dataset output dir, a SavedModel version dir or its
    ``assets.extra`` dir (or the file itself)."""
    candidates = [path, os.path.join(path, ARTIFACTS_FILE),
                  os.path.join(path, "assets.extra", ARTIFACTS_FILE)]
    for candidate in candidates:
        if os.path.isfile(candidate):
            with open(candidate) as f:
                return json.load(f)
    raise PredictError(
        f"no {ARTIFACTS_FILE} at {path!r}: give --artifacts the dataset directory of "
        f"`htgnn build-dataset` or the exported model's <base>/<version>/assets.extra")


def check_layout(spec: DatasetSpec, artifacts: Mapping) -> None:
    """Raises PredictError when the raw spec encodes users differently from the model."""
    trained = artifacts["spec"]
    pairs = {
        "metrics": (list(spec.metrics), list(trained["metrics"])),
        "categorical features": (list(spec.categorical_features),
                                 list(artifacts["categorical_features"])),
        "statistical features": (list(spec.statistical_features),
                                  list(artifacts["statistical_features"])),
        "observation_days": (spec.observation_days, trained["observation_days"]),
    }
    for what, (raw, model) in pairs.items():
        if raw != model:
            raise PredictError(f"the raw spec's {what} {raw!r} differ from the model's "
                               f"{model!r}: score with the spec the model was trained on")


def tfrecord_paths(patterns: str | Sequence[str]) -> list[str]:
    """Sorted files matching one glob (or several); PredictError when none match."""
    import tensorflow as tf

    patterns = [patterns] if isinstance(patterns, str) else list(patterns)
    files = sorted({f for p in patterns for f in tf.io.gfile.glob(p)})
    if not files:
        raise PredictError(f"no TFRecord files match {patterns!r}; check --tfrecords "
                           f"(e.g. DATA/test/graphs-*.tfrecord)")
    return files


# ---------------------------------------------------------------- raw log -> cohorts
def _rows_report(rows_in: Mapping[str, int], rejected: Sequence[dict]) -> dict:
    report = {}
    for input_name, count in rows_in.items():
        reasons = collections.Counter(d["reason"] for d in rejected if d["input"] == input_name)
        report[input_name] = {"rows_in": count, "rows_used": count - sum(reasons.values()),
                              "rows_rejected": sum(reasons.values()),
                              "rejected_by_reason": dict(sorted(reasons.items()))}
    return report


def encode_raw(spec: DatasetSpec, artifacts: Mapping,
               today: datetime.date | None = None) -> RawCohorts:
    """Reads, validates and encodes the raw log of `spec` into cohort examples.

    Args:
      spec: dataset spec of the raw log (same feature layout as the model).
      artifacts: the model's transform.json as a dict.
      today: scoring date; default the spec's snapshot date (see the module docstring).
    """
    from beam_pipelines.build_dataset import InputError, check_inputs, cohort_key, num_cohorts
    from htgnn_tf.data.hypergraph import cohort_example_bytes
    from htgnn_tf.data.users import aggregate_user

    check_layout(spec, artifacts)
    spec = dataclasses.replace(spec, snapshot_date=today or spec.snapshot_date)
    try:
        spec, inputs = check_inputs(spec)
    except InputError as e:
        raise PredictError(str(e)) from None

    rejected: list[dict] = []
    rows_in = collections.Counter()
    events: dict[str, list] = collections.defaultdict(list)
    profiles: dict[str, list] = collections.defaultdict(list)
    for input_name, table, parse, grouped in (
            (EVENTS, spec.events, rowlib.parse_event, events),
            (PROFILES, spec.profiles, rowlib.parse_profile, profiles)):
        for path in inputs.get(input_name, []):
            for row in rowlib.read_rows(path, table):
                rows_in[input_name] += 1
                try:
                    record = parse(row, spec)
                except rowlib.RowError as e:
                    rejected.append(rowlib.dead_letter(row, input_name, e))
                    continue
                grouped[record.user_id].append(record)
    for user_id, user_profiles in profiles.items():
        user_profiles.sort(key=lambda p: (p.source, p.line))
        has_events = user_id in events
        for extra in (user_profiles[1:] if has_events else user_profiles):
            reason = "duplicate_profile" if has_events else "profile_without_events"
            rejected.append(rowlib.dead_letter(
                rowlib.RawRow(extra.source, extra.line, extra.text), PROFILES,
                rowlib.RowError(reason, f"user_id={user_id!r}")))

    lookup = transform.with_lookup_index(dict(artifacts))
    count = num_cohorts(len(events), spec.cohort_size)
    cohorts: dict[int, list] = collections.defaultdict(list)
    for user_id, user_events in events.items():
        profile = profiles[user_id][0] if profiles.get(user_id) else None
        record = aggregate_user(user_id, user_events, profile, spec, with_labels=False,
                                today=spec.snapshot_date)
        _, index = cohort_key(user_id, "score", count, spec)
        cohorts[index].append(transform.encode_user(record, lookup))

    dims = transform.feature_dims(spec)
    examples = []
    for index in sorted(cohorts):
        users = sorted(cohorts[index], key=lambda u: u[gs.USER_ID])
        points = transform.knn_points(users, artifacts)
        examples.append(cohort_example_bytes(users, points, spec.knn_k, dims,
                                             with_labels=False))
    inputs_seen = {EVENTS: rows_in[EVENTS]}
    if spec.profiles:
        inputs_seen[PROFILES] = rows_in[PROFILES]
    return RawCohorts(examples=examples, rejected=rejected,
                      rows=_rows_report(inputs_seen, rejected), num_users=len(events))


# ---------------------------------------------------------------- scoring
def predict_examples(client, examples: Iterable[bytes], *, batch_cohorts: int = 4,
                     total: int | None = None, progress: bool = False) -> dict[str, np.ndarray]:
    """Sends serialized cohorts in batches of `batch_cohorts`; returns output name ->
    array over all users (``user_id`` as bytes), in input order."""
    from tqdm import tqdm

    if batch_cohorts < 1:
        raise ValueError(f"batch_cohorts must be >= 1, got {batch_cohorts!r}")
    parts: dict[str, list] = collections.defaultdict(list)
    batch: list[bytes] = []
    with tqdm(total=total, unit="cohort", desc="scoring", disable=not progress) as bar:
        def flush():
            for name, value in client.predict({"examples": batch}).items():
                parts[name].append(value)
            bar.update(len(batch))
            batch.clear()

        for example in examples:
            batch.append(example)
            if len(batch) == batch_cohorts:
                flush()
        if batch:
            flush()
    return {name: np.concatenate(values) for name, values in parts.items()}


def predict_tfrecords(client, files: str | Sequence[str], *, batch_cohorts: int = 4,
                      progress: bool = False) -> dict[str, np.ndarray]:
    """Scores every cohort of the TFRecord files (paths or globs)."""
    import tensorflow as tf

    records = tf.data.TFRecordDataset(tfrecord_paths(files))
    return predict_examples(client, (r.numpy() for r in records),
                            batch_cohorts=batch_cohorts, progress=progress)


def predict_raw(client, spec: DatasetSpec | str, artifacts: Mapping | str,
                today: datetime.date | None = None, *, batch_cohorts: int = 4,
                rejected_path: str | None = None, progress: bool = False
                ) -> dict[str, np.ndarray]:
    """Scores the users of a raw log (spec object or path; artifacts dict or path).

    Rejected rows are written to `rejected_path` (JSONL) when given; use
    :func:`encode_raw` to get them and the row counts as objects.
    """
    spec = load_spec(spec) if isinstance(spec, str) else spec
    artifacts = load_artifacts(artifacts) if isinstance(artifacts, str) else artifacts
    cohorts = encode_raw(spec, artifacts, today)
    if rejected_path:
        write_rejected(rejected_path, cohorts.rejected)
    return predict_examples(client, cohorts.examples, batch_cohorts=batch_cohorts,
                            total=len(cohorts.examples), progress=progress)


# ---------------------------------------------------------------- output files
def output_columns(outputs: Mapping[str, np.ndarray]) -> list[str]:
    """``user_id``, ``obs_days_used``, then the other outputs by name."""
    first = [n for n in (gs.USER_ID, "obs_days_used") if n in outputs]
    return first + sorted(n for n in outputs if n not in first)


def format_value(value) -> str | int | float:
    """user_id as text, integers as int, floats as the shortest float32 round trip."""
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, (np.integer, int)):
        return int(value)
    return float(np.format_float_positional(np.float32(value), unique=True, trim="-"))


def prediction_records(outputs: Mapping[str, np.ndarray]) -> Iterable[dict]:
    """One {column: value} dict per user (values as :func:`format_value` gives them)."""
    columns = output_columns(outputs)
    for i in range(len(outputs[gs.USER_ID])):
        yield {name: format_value(outputs[name][i]) for name in columns}


def write_predictions(path: str, outputs: Mapping[str, np.ndarray]) -> int:
    """Writes one row per user, CSV or JSONL by the suffix of `path`; returns the rows."""
    suffix = os.path.splitext(path)[1].lower()
    if suffix not in OUTPUT_FORMATS:
        raise PredictError(f"--out {path!r} must end in one of {list(OUTPUT_FORMATS)}")
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    count = 0
    with open(path, "w", newline="") as f:
        if suffix == ".csv":
            writer = csv.DictWriter(f, fieldnames=output_columns(outputs))
            writer.writeheader()
        for record in prediction_records(outputs):
            if suffix == ".csv":
                writer.writerow(record)
            else:
                f.write(json.dumps(record) + "\n")
            count += 1
    return count


def write_rejected(path: str, rejected: Sequence[dict]) -> None:
    """The dead-letter dicts of rejected raw rows, one JSON object a line."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        for entry in rejected:
            f.write(json.dumps(entry, sort_keys=True) + "\n")


def read_predictions(path: str) -> dict[str, np.ndarray]:
    """Reads a file of :func:`write_predictions` back into output arrays."""
    with open(path, newline="") as f:
        if path.lower().endswith(".csv"):
            records = list(csv.DictReader(f))
        else:
            records = [json.loads(line) for line in f if line.strip()]
    if not records:
        return {}
    out = {gs.USER_ID: np.array([r[gs.USER_ID].encode() for r in records], dtype=object)}
    for name in records[0]:
        if name != gs.USER_ID:
            out[name] = np.array([float(r[name]) for r in records], np.float64)
    return out


# ---------------------------------------------------------------- command line
def parse_args(argv=None):
    p = argparse.ArgumentParser(
        prog="htgnn predict",
        description="Score users with a served HT-GNN model over the TF Serving gRPC API "
                    "(htgnn serve or tensorflow_model_server), from cohort TFRecords or "
                    "from a raw activity log. Writes one row per user.")
    p.add_argument("--target", default="127.0.0.1:8500",
                   help="host:port of the model server's gRPC API (default 127.0.0.1:8500)")
    p.add_argument("--model-name", default="htgnn",
                   help="name the model is served under (--model_name of the server; "
                        "default htgnn)")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--tfrecords", metavar="GLOB",
                        help="TFRecords of serialized cohort examples, e.g. "
                             "DATA/test/graphs-*.tfrecord (quote the glob)")
    source.add_argument("--raw-spec", metavar="SPEC.yaml",
                        help="dataset spec (YAML/JSON) of a raw log to score; needs "
                             "--artifacts")
    p.add_argument("--out", required=True,
                   help="output file, FILE.csv or FILE.jsonl; in raw mode rejected rows "
                        "go to FILE.csv.rejected.jsonl / FILE.jsonl.rejected.jsonl")
    p.add_argument("--artifacts", metavar="DIR",
                   help="raw mode: where the model's transform.json is: the dataset "
                        "directory of `htgnn build-dataset` or the SavedModel's "
                        "<base>/<version>/assets.extra (nothing is fetched from the server)")
    p.add_argument("--batch-cohorts", type=int, default=4,
                   help="cohort graphs per Predict request (default 4)")
    p.add_argument("--today", metavar="YYYY-MM-DD",
                   help="raw mode: scoring date; obs_days = days from acquisition to it, "
                        "capped at W; rows dated later are rejected (default: the spec's "
                        "snapshot_date)")
    p.add_argument("--timeout", type=float, default=60.0,
                   help="seconds per Predict request (default 60)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p.parse_args(argv)


def _rpc_error_message(error, target: str, model_name: str) -> str:
    import grpc

    code = error.code()
    hints = {
        grpc.StatusCode.UNAVAILABLE: (
            f"cannot reach a model server at {target}: start one with `htgnn serve "
            f"--model_name {model_name} --model_base_path BASE --port PORT` or fix --target"),
        grpc.StatusCode.NOT_FOUND: (
            f"the server at {target} does not serve a model named {model_name!r}: check "
            f"--model-name against the server's --model_name"),
        grpc.StatusCode.INVALID_ARGUMENT: (
            "the model rejected the examples: check that they come from the dataset job "
            "(or --artifacts) of the model being served"),
        grpc.StatusCode.DEADLINE_EXCEEDED: (
            "a request took longer than --timeout: raise --timeout or lower --batch-cohorts"),
    }
    return f"{hints.get(code, 'the Predict call failed')} ({code.name}: {error.details()})"


def main(argv=None) -> int:
    import grpc

    from serving.client import PredictClient

    args = parse_args(argv)
    progress = not args.no_progress
    try:
        if args.batch_cohorts < 1:
            raise PredictError(f"--batch-cohorts must be >= 1, got {args.batch_cohorts}")
        if os.path.splitext(args.out)[1].lower() not in OUTPUT_FORMATS:
            raise PredictError(f"--out {args.out!r} must end in .csv or .jsonl")
        today = None
        if args.today:
            try:
                today = datetime.date.fromisoformat(args.today)
            except ValueError:
                raise PredictError(f"--today must be YYYY-MM-DD, got {args.today!r}") from None
        if args.tfrecords and today:
            raise PredictError("--today applies to --raw-spec only: TFRecords carry obs_days "
                               "already")
        if args.raw_spec and not args.artifacts:
            raise PredictError(
                "--raw-spec needs --artifacts DIR: the dataset directory of `htgnn "
                "build-dataset` or the served model's <base>/<version>/assets.extra "
                "(the client fetches nothing from the server)")
        with PredictClient(args.target, args.model_name, timeout=args.timeout) as client:
            if args.tfrecords:
                outputs = predict_tfrecords(client, args.tfrecords,
                                            batch_cohorts=args.batch_cohorts, progress=progress)
            else:
                cohorts = encode_raw(load_spec(args.raw_spec), load_artifacts(args.artifacts),
                                     today)
                rejected_path = args.out + ".rejected.jsonl"
                write_rejected(rejected_path, cohorts.rejected)
                print(json.dumps({"rows": cohorts.rows, "users": cohorts.num_users,
                                  "cohorts": len(cohorts.examples)}, indent=1))
                print(f"rejected rows: {rejected_path}")
                outputs = predict_examples(client, cohorts.examples,
                                           batch_cohorts=args.batch_cohorts,
                                           total=len(cohorts.examples), progress=progress)
    except (PredictError, SpecError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except grpc.RpcError as e:
        print(f"error: {_rpc_error_message(e, args.target, args.model_name)}", file=sys.stderr)
        return 1
    if not outputs:
        print("error: no cohorts to score (empty input)", file=sys.stderr)
        return 2
    count = write_predictions(args.out, outputs)
    print(f"wrote {count} users to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
