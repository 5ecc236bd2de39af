"""Beam job: raw activity logs -> TFRecords of cohort hypergraph GraphTensors.

Paper Sec. IV-B / IV-C; DESIGN.md "Data flow". Steps (every one labelled):

1. ``ReadEvents`` / ``ReadProfiles``: the files of the spec, one element per data line.
2. ``ParseEvents`` / ``ParseProfiles``: validation; rejected rows go to the dead-letter
   output with their reason (:mod:`htgnn_tf.data.rows`).
3. ``AggregateUsers``: events and profiles joined per user; daily sequences, static
   features, labels and censoring (:mod:`htgnn_tf.data.users`).
4. ``Split``: a deterministic train/test split by a hash of the user id.
5. ``TrainStatistics``: Scott's-rule bins, vocabularies, kNN standardization and label
   means on the train split only, one dict used as a side input
   (:mod:`htgnn_tf.data.transform`).
6. ``Encode`` + ``Cohorts``: users grouped into cohorts of about B users (hash of the id),
   one hyperedge per user ``{i} ∪ kNN_k(i)``, one GraphTensor per cohort
   (:mod:`htgnn_tf.data.hypergraph`) written with ``tfgnn.write_example``.
7. ``Write*``: sharded TFRecords per split, the dead letters (JSONL), the transform
   artifacts and the counts, from which the driver writes ``run_report.json``.

Outputs under ``--out``: ``train/graphs-*.tfrecord``, ``test/graphs-*.tfrecord``,
``graph_schema.pbtxt`` (with labels), ``serving_graph_schema.pbtxt`` (inputs only),
``transform.json``, ``dead_letter/rejected-*.jsonl``, ``run_report.json``.

Run locally with the default ``--runner FnApiRunner`` (or ``DirectRunner``); the same
command with ``--runner DataflowRunner`` / ``FlinkRunner`` / ``SparkRunner`` and that
runner's usual options (project, region, temp_location, flink_master ...) scales out;
every extra flag is passed to Beam's PipelineOptions.
"""
from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import sys
import time
from typing import Iterable

import apache_beam as beam
import numpy as np
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import PipelineOptions

import htgnn_tf  # noqa: F401  (Keras 2 switch before TensorFlow loads)
from htgnn_tf.data import graph_schema as gs
from htgnn_tf.data import rows as rowlib
from htgnn_tf.data import sources, transform
from htgnn_tf.data.spec import DatasetSpec, SpecError, load_spec
from htgnn_tf.data.users import CATEGORICAL_VALUES, aggregate_user

EVENTS = "events"
PROFILES = "profiles"
DEAD = "dead"
TRAIN = "train"
TEST = "test"
SPLITS = (TRAIN, TEST)


class InputError(ValueError):
    """An input file is missing, empty or lacks a column the spec names."""


# ---------------------------------------------------------------- pre-flight checks
def check_inputs(spec: DatasetSpec) -> tuple[DatasetSpec, dict[str, list[str]]]:
    """Resolves the input files and checks them before the job starts.

    Raises InputError for a missing file, an empty file, files of one input with
    different headers and a column the spec names that the file lacks. Returns the spec
    with the column names of header files filled in, and {"events": [paths],
    "profiles": [paths]}.
    """
    tables = {EVENTS: spec.events}
    if spec.profiles:
        tables[PROFILES] = spec.profiles
    resolved = {}
    for input_name, table in tables.items():
        paths, headers = [], set()
        for name in table.files:
            try:
                path = sources.resolve(name)
            except sources.SourceError as e:
                raise InputError(str(e)) from None
            matches = [m.path for r in FileSystems.match([path]) for m in r.metadata_list]
            if not matches:
                raise InputError(f"{input_name} file {path!r} does not exist")
            for match in matches:
                headers.add(_check_file(match, input_name, table, spec))
            paths += matches
        if len(headers) > 1:
            raise InputError(f"the {input_name} files have different headers: "
                             f"{sorted(headers)}; give them one header")
        header = headers.pop()
        if header and not table.columns:
            table = dataclasses.replace(table, columns=header)
            spec = dataclasses.replace(spec, **{input_name: table})
        resolved[input_name] = paths
    return spec, resolved


def _check_file(path: str, input_name: str, table, spec: DatasetSpec) -> tuple[str, ...]:
    """Checks one file; returns its header columns (empty without a header)."""
    first_line, has_data = None, False
    for raw in _lines(path):
        if first_line is None:
            first_line = raw
            if not table.has_header:
                has_data = True
                break
            continue
        has_data = True
        break
    if not has_data:
        raise InputError(f"{input_name} file {path!r} is empty (no data rows); "
                         f"check the path in the spec or remove the file")
    required = rowlib.required_columns(spec, input_name)
    if table.format == "jsonl":
        return ()  # columns are checked per row (missing keys reject the row)
    header = rowlib.header_columns(first_line, table) if table.has_header else ()
    if table.has_header and table.columns and len(header) != len(table.columns):
        raise InputError(f"{input_name} file {path!r}: header has {len(header)} columns "
                         f"{list(header)} but the spec lists {len(table.columns)} in "
                         f"'{input_name}.columns'")
    names = table.columns or header
    missing = [c for c in required if c not in names]
    if missing:
        raise InputError(f"{input_name} file {path!r} has no column(s) {missing}; its "
                         f"columns are {list(names)}. Fix the column names in the spec.")
    return tuple(header)


def _lines(path: str) -> Iterable[str]:
    with FileSystems.open(path) as f:
        for raw in f:
            text = raw.decode("utf-8", errors="replace").rstrip("\r\n")
            if text.strip():
                yield text


# ---------------------------------------------------------------- transforms
def hash_fraction(*parts: object) -> float:
    """A deterministic number in [0, 1) from the parts (sha256)."""
    digest = hashlib.sha256(":".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0 ** 64


def split_of(user_id: str, spec: DatasetSpec) -> str:
    return TRAIN if hash_fraction(spec.seed, "split", user_id) < spec.train_fraction else TEST


class ReadLines(beam.PTransform):
    """Data lines of the given files as RawRow(source, line, text)."""

    def __init__(self, paths: list[str], table):
        super().__init__()
        self._paths, self._table = paths, table

    def expand(self, pbegin):
        table = self._table
        return (pbegin
                | "Files" >> beam.Create(self._paths)
                | "Lines" >> beam.FlatMap(lambda path: rowlib.read_rows(path, table)))


class ParseRows(beam.PTransform):
    """Parses rows of one input; main output the records, tagged output DEAD the
    dead-letter dicts."""

    def __init__(self, spec: DatasetSpec, input_name: str):
        super().__init__()
        self._spec, self._input = spec, input_name

    def expand(self, rows):
        return rows | "Parse" >> beam.ParDo(
            _ParseFn(self._spec, self._input)).with_outputs(DEAD, main="records")


class _ParseFn(beam.DoFn):
    def __init__(self, spec, input_name):
        self._spec, self._input = spec, input_name
        self._parse = rowlib.parse_event if input_name == EVENTS else rowlib.parse_profile

    def process(self, row):
        try:
            record = self._parse(row, self._spec)
        except rowlib.RowError as e:
            yield beam.pvalue.TaggedOutput(DEAD, rowlib.dead_letter(row, self._input, e))
            return
        yield record.user_id, record


class _AggregateFn(beam.DoFn):
    """(user_id, {events, profiles}) -> user record; extra profile rows -> DEAD."""

    def __init__(self, spec):
        self._spec = spec

    def process(self, element):
        user_id, grouped = element
        events = list(grouped[EVENTS])
        profiles = sorted(grouped.get(PROFILES, []), key=lambda p: (p.source, p.line))
        for extra in (profiles[1:] if events else profiles):
            reason = "duplicate_profile" if events else "profile_without_events"
            raw = rowlib.RawRow(extra.source, extra.line, extra.text)
            yield beam.pvalue.TaggedOutput(DEAD, rowlib.dead_letter(
                raw, PROFILES, rowlib.RowError(reason, f"user_id={user_id!r}")))
        if not events:
            return
        profile = profiles[0] if profiles else None
        record = aggregate_user(user_id, events, profile, self._spec)
        record["has_profile"] = profile is not None
        record["split"] = split_of(user_id, self._spec)
        yield record


class TrainStatistics(beam.PTransform):
    """One dict of transform artifacts from the train users (see transform.py)."""

    def __init__(self, spec: DatasetSpec):
        super().__init__()
        self._spec = spec

    def expand(self, train_users):
        spec = self._spec
        moments = (train_users
                   | "MomentParts" >> beam.FlatMap(_moment_parts, spec)
                   | "SumMoments" >> beam.CombinePerKey(_MergeMoments()))
        vocab_counts = (train_users
                        | "CategoricalValues" >> beam.FlatMap(
                            lambda u: enumerate(u[CATEGORICAL_VALUES]))
                        | "CountValues" >> beam.combiners.Count.PerElement())
        labels = (train_users
                  | "LabelParts" >> beam.FlatMap(_label_parts, spec)
                  | "MeanLabels" >> beam.combiners.Mean.PerKey())
        return ({"moments": moments, "vocab": vocab_counts, "labels": labels}
                | "Collect" >> _CollectKeyed()
                | "Artifacts" >> beam.Map(_make_artifacts, spec))


def _moment_parts(user, spec):
    stats = transform.signed_log1p(user[gs.STAT_VALUES])
    for name, value in zip(spec.statistical_features, stats):
        yield ("stat", name), transform.Moments().add_many([value])
    seq = np.asarray(user[gs.SEQ_VALUES])
    for metric, row in zip(spec.metrics, seq):
        positive = row[: user[gs.OBS_DAYS]]
        positive = positive[positive > 0]
        yield ("seq", metric), transform.Moments().add_many(transform.signed_log1p(positive))


def _label_parts(user, spec):
    for h in spec.horizons:
        if user[gs.label_mask_name(h)] > 0:
            yield gs.lt_name(h), user[gs.lt_name(h)]
            yield gs.ltv_name(h), user[gs.ltv_name(h)]


class _MergeMoments(beam.CombineFn):
    def create_accumulator(self):
        return transform.Moments()

    def add_input(self, acc, value):
        return acc.merge(value)

    def merge_accumulators(self, accs):
        out = transform.Moments()
        for acc in accs:
            out = out.merge(acc)
        return out

    def extract_output(self, acc):
        return acc


class _CollectKeyed(beam.PTransform):
    """{name: PCollection of (key, value)} -> one {name: {key: value}} dict."""

    def expand(self, named):
        tagged = [pc | f"Tag{name}" >> beam.Map(lambda kv, n=name: (n, kv))
                  for name, pc in named.items()]
        return (tagged
                | "Flatten" >> beam.Flatten()
                | "ToList" >> beam.combiners.ToList()
                | "ToDict" >> beam.Map(_to_nested_dict, list(named)))


def _to_nested_dict(items, names):
    out = {name: {} for name in names}
    for name, (key, value) in items:
        out[name][key] = value
    return out


def _make_artifacts(collected, spec: DatasetSpec) -> dict:
    moments = collected["moments"]
    empty = transform.Moments()
    vocab_counts = {name: {} for name in spec.categorical_features}
    for (index, value), count in collected["vocab"].items():
        vocab_counts[spec.categorical_features[index]][value] = count
    stat_moments = [moments.get(("stat", n), empty) for n in spec.statistical_features]
    return {
        "version": transform.ARTIFACTS_VERSION,
        "spec": spec.to_json_dict(),
        "categorical_features": list(spec.categorical_features),
        "statistical_features": list(spec.statistical_features),
        "categorical_vocab": {n: transform.build_vocabulary(c) for n, c in vocab_counts.items()},
        "statistical_edges": {n: transform.scott_bin_edges(m, spec.max_bins)
                              for n, m in zip(spec.statistical_features, stat_moments)},
        "sequence_edges": {m: transform.scott_bin_edges(moments.get(("seq", m), empty),
                                                        spec.max_bins)
                           for m in spec.metrics},
        "knn": {"mean": [m.mean for m in stat_moments], "std": [m.std for m in stat_moments]},
        "label_means": {k: float(v) for k, v in sorted(collected["labels"].items())},
        "num_train_users": stat_moments[0].n if stat_moments else 0,
    }


def cohort_key(user_id: str, split: str, num_cohorts: int, spec: DatasetSpec) -> tuple:
    return split, int(hash_fraction(spec.seed, "cohort", user_id) * num_cohorts)


def num_cohorts(num_users: int, cohort_size: int) -> int:
    return max(1, round(num_users / cohort_size))


class _CohortGraphFn(beam.DoFn):
    """((split, cohort), encoded users) -> (split, serialized GraphTensor example)."""

    def __init__(self, spec: DatasetSpec):
        self._spec = spec
        self._dims = transform.feature_dims(spec)

    def process(self, element, artifacts):
        from htgnn_tf.data.hypergraph import cohort_example_bytes

        (split, _), users = element
        users = sorted(users, key=lambda u: u[gs.USER_ID])
        points = transform.knn_points(users, artifacts)
        yield split, cohort_example_bytes(users, points, self._spec.knn_k, self._dims,
                                          with_labels=True)


class CountAll(beam.PTransform):
    """Counts for the run report as one {key: count} dict."""

    def __init__(self, spec: DatasetSpec):
        super().__init__()
        self._spec = spec

    def expand(self, pcolls):
        spec = self._spec
        keyed = [
            pcolls["event_rows"] | "KeyEventRows" >> beam.Map(lambda _: "rows_in/events"),
            pcolls["dead"] | "KeyDead" >> beam.Map(
                lambda d: f"rows_rejected/{d['input']}/{d['reason']}"),
            pcolls["users"] | "KeyUsers" >> beam.FlatMap(_user_count_keys, spec),
            pcolls["graphs"] | "KeyGraphs" >> beam.Map(lambda kv: f"cohorts/{kv[0]}"),
        ]
        if "profile_rows" in pcolls:
            keyed.append(pcolls["profile_rows"]
                         | "KeyProfileRows" >> beam.Map(lambda _: "rows_in/profiles"))
        return (keyed
                | "FlattenKeys" >> beam.Flatten()
                | "Count" >> beam.combiners.Count.PerElement()
                | "ToDict" >> beam.combiners.ToDict())


def _user_count_keys(user, spec):
    split = user["split"]
    yield f"users/{split}"
    if spec.profiles and not user["has_profile"]:
        yield "users_without_profile"
    for h in spec.horizons:
        if user[gs.label_mask_name(h)] == 0:
            yield f"censored/{split}/{h}"


def _write_json(obj, path: str) -> None:
    with FileSystems.create(path) as f:
        f.write(json.dumps(obj, indent=1, sort_keys=True).encode())


def build_pipeline(pipeline: beam.Pipeline, spec: DatasetSpec, inputs: dict, out: str):
    """Adds the whole job to `pipeline`. Returns the main PCollections (for tests)."""
    event_rows = pipeline | "ReadEvents" >> ReadLines(inputs[EVENTS], spec.events)
    events = event_rows | "ParseEvents" >> ParseRows(spec, EVENTS)
    keyed = {EVENTS: events.records}
    dead = [events[DEAD]]
    profile_rows = None
    if spec.profiles:
        profile_rows = pipeline | "ReadProfiles" >> ReadLines(inputs[PROFILES], spec.profiles)
        profiles = profile_rows | "ParseProfiles" >> ParseRows(spec, PROFILES)
        keyed[PROFILES] = profiles.records
        dead.append(profiles[DEAD])
    aggregated = (keyed
                  | "JoinByUser" >> beam.CoGroupByKey()
                  | "AggregateUsers" >> beam.ParDo(_AggregateFn(spec)).with_outputs(
                      DEAD, main="users"))
    users = aggregated.users
    dead.append(aggregated[DEAD])
    dead = dead | "FlattenDead" >> beam.Flatten()

    train_users = users | "TrainUsers" >> beam.Filter(lambda u: u["split"] == TRAIN)
    artifacts = train_users | "TrainStatistics" >> TrainStatistics(spec)
    artifacts_side = beam.pvalue.AsSingleton(artifacts)

    users_per_split = (users
                       | "KeySplit" >> beam.Map(lambda u: u["split"])
                       | "CountSplit" >> beam.combiners.Count.PerElement()
                       | "SplitCounts" >> beam.combiners.ToDict())
    graphs = (users
              | "Encode" >> beam.Map(
                  lambda u, a: transform.encode_user(u, a),
                  beam.pvalue.AsSingleton(artifacts | "LookupIndex" >> beam.Map(
                      transform.with_lookup_index)))
              | "CohortKey" >> beam.Map(
                  lambda u, counts: (cohort_key(u[gs.USER_ID], u["split"], num_cohorts(
                      counts.get(u["split"], 0), spec.cohort_size), spec), u),
                  beam.pvalue.AsSingleton(users_per_split))
              | "Cohorts" >> beam.GroupByKey()
              | "CohortGraphs" >> beam.ParDo(_CohortGraphFn(spec), artifacts_side))
    for split in SPLITS:
        _ = (graphs
             | f"Only{split.title()}" >> beam.Filter(lambda kv, s=split: kv[0] == s)
             | f"Bytes{split.title()}" >> beam.Map(lambda kv: kv[1])
             | f"Write{split.title()}" >> beam.io.WriteToTFRecord(
                 FileSystems.join(out, split, "graphs"), file_name_suffix=".tfrecord"))
    _ = (dead
         | "DeadToJson" >> beam.Map(lambda d: json.dumps(d, sort_keys=True))
         | "WriteDeadLetter" >> beam.io.WriteToText(
             FileSystems.join(out, "dead_letter", "rejected"), file_name_suffix=".jsonl"))
    _ = artifacts | "WriteTransform" >> beam.Map(
        _write_json, FileSystems.join(out, "transform.json"))
    count_inputs = {"event_rows": event_rows, "dead": dead, "users": users, "graphs": graphs}
    if profile_rows is not None:
        count_inputs["profile_rows"] = profile_rows
    counts = count_inputs | "CountAll" >> CountAll(spec)
    _ = counts | "WriteCounts" >> beam.Map(_write_json, FileSystems.join(out, "counts.json"))
    return {"users": users, "dead": dead, "artifacts": artifacts, "graphs": graphs,
            "counts": counts}


def run_report(counts: dict, spec: DatasetSpec, inputs: dict, wall_seconds: float) -> dict:
    """The run report from the job's counts; checks rows_in = used + rejected."""
    report = {"spec": spec.name, "inputs": inputs, "wall_seconds": round(wall_seconds, 2),
              "rows": {}, "users": {}, "cohorts": {}, "censored_labels": {}}
    for input_name in inputs:
        rows_in = counts.get(f"rows_in/{input_name}", 0)
        prefix = f"rows_rejected/{input_name}/"
        rejected = {k[len(prefix):]: v for k, v in counts.items() if k.startswith(prefix)}
        used = rows_in - sum(rejected.values())
        report["rows"][input_name] = {"rows_in": rows_in, "rows_used": used,
                                      "rows_rejected": sum(rejected.values()),
                                      "rejected_by_reason": dict(sorted(rejected.items()))}
    for split in SPLITS:
        report["users"][split] = counts.get(f"users/{split}", 0)
        report["cohorts"][split] = counts.get(f"cohorts/{split}", 0)
        report["censored_labels"][split] = {
            str(h): counts.get(f"censored/{split}/{h}", 0) for h in spec.horizons}
    report["users"]["without_profile"] = counts.get("users_without_profile", 0)
    report["derived_categorical_features"] = list(spec.derived_categoricals)
    return report


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        prog="htgnn build-dataset",
        description="Turn a raw activity log into TFRecords of cohort hypergraph "
                    "GraphTensors (train/test), with a dead-letter output and a run report.",
        epilog="Any other flag is passed to Beam, e.g. for Dataflow: --runner DataflowRunner "
               "--project P --region R --temp_location gs://B/tmp; for Flink: --runner "
               "FlinkRunner --flink_master HOST:PORT; for Spark: --runner SparkRunner.")
    parser.add_argument("--spec", required=True,
                        help="built-in spec name (cdnow) or path to a YAML/JSON dataset spec")
    parser.add_argument("--out", required=True,
                        help="output directory (local path or any Beam filesystem, e.g. gs://)")
    parser.add_argument("--runner", default="FnApiRunner",
                        help="Beam runner: FnApiRunner (default, local), DirectRunner, "
                             "DataflowRunner, FlinkRunner, SparkRunner")
    return parser.parse_known_args(argv)


def run(spec: DatasetSpec, out: str, runner: str = "FnApiRunner",
        beam_args: list[str] | None = None) -> dict:
    """Checks the inputs, runs the job, writes schemas and run_report.json; returns it."""
    start = time.time()
    spec, inputs = check_inputs(spec)
    dims = transform.feature_dims(spec)
    if not FileSystems.exists(out):
        FileSystems.mkdirs(out)
    for name, with_labels in (("graph_schema.pbtxt", True),
                              ("serving_graph_schema.pbtxt", False)):
        with FileSystems.create(FileSystems.join(out, name)) as f:
            f.write(gs.graph_schema_pbtxt(dims, with_labels).encode())
    options = PipelineOptions(list(beam_args or []), runner=runner)
    with beam.Pipeline(options=options) as pipeline:
        build_pipeline(pipeline, spec, inputs, out)
    with FileSystems.open(FileSystems.join(out, "counts.json")) as f:
        counts = json.loads(f.read())
    report = run_report(counts, spec, inputs, time.time() - start)
    _write_json(report, FileSystems.join(out, "run_report.json"))
    return report


def main(argv=None) -> int:
    args, beam_args = parse_args(argv)
    try:
        spec = load_spec(args.spec)
        report = run(spec, args.out, args.runner, beam_args)
    except (SpecError, InputError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    rows = report["rows"]
    print(json.dumps({"rows": rows, "users": report["users"], "cohorts": report["cohorts"],
                      "wall_seconds": report["wall_seconds"]}, indent=1))
    print(f"wrote {args.out}/{{train,test}}/graphs-*.tfrecord, graph_schema.pbtxt, "
          f"serving_graph_schema.pbtxt, transform.json, counts.json, run_report.json, "
          f"dead_letter/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
