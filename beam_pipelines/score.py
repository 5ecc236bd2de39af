"""Beam batch scoring: TFRecords of cohort examples -> one prediction record per user.

Steps (every one labelled):

1. ``ReadCohorts``: ``beam.io.ReadFromTFRecord`` of the serialized cohort examples the
   dataset job writes (label features, if present, are ignored by the model).
2. ``Score`` (:class:`ScoreCohorts`): ``RunInference`` with :class:`SavedModelHandler`, a
   small ``ModelHandler`` whose ``load_model`` is ``tf.saved_model.load(path)`` and whose
   ``run_inference`` calls ``signatures["serving_default"](examples=...)`` on a batch of
   cohorts; then ``ExplodeUsers``: one ``(user_id, record)`` per user, where the record
   holds every output of the signature, formatted like ``htgnn predict`` does
   (:func:`serving.predict.prediction_records`).
3. ``Write`` (:class:`WritePredictions`): JSONL (or CSV with a header per shard) shards
   ``<PREFIX>-SSSSS-of-NNNNN.jsonl``.

Bad input loses nothing: a record that is not a cohort example (``ValidateCohorts``) and
every cohort of a batch the model rejects (RunInference's exception handling) go to
``<PREFIX>-rejected-SSSSS-of-NNNNN.jsonl`` with the reason and the record (base64), and
are counted (``rejected_cohorts`` in the job's answer).

The exported model is loaded with TensorFlow only (no tensorflow_gnn in the workers).
``apache_beam.ml.inference.tensorflow_inference`` is not used: it needs tensorflow_hub and
cannot load these SavedModels (DESIGN.md, measured facts).

Run locally with ``--runner FnApiRunner`` (default) or ``DirectRunner``; every extra flag
is passed to Beam's PipelineOptions, as for the dataset job (e.g. ``--runner
DataflowRunner --project P --region R --temp_location gs://B/tmp``).
"""
from __future__ import annotations

import argparse
import base64
import csv
import io
import json
import os
import sys
from typing import Any, Iterable, Sequence

import apache_beam as beam
import numpy as np
from apache_beam.io.filesystems import FileSystems
from apache_beam.ml.inference.base import ModelHandler, PredictionResult, RunInference
from apache_beam.options.pipeline_options import PipelineOptions

import htgnn_tf  # noqa: F401  (Keras 2 switch before TensorFlow loads)
from htgnn_tf.data import graph_schema as gs
from serving.predict import output_columns, prediction_records

SIGNATURE = "serving_default"
SAVED_MODEL_FILE = "saved_model.pb"
USER_SIZE_FEATURE = f"nodes/{gs.USER}.#size"  # tfgnn.write_example's node-set size key
FORMATS = ("jsonl", "csv")


class ScoreError(ValueError):
    """Bad job input; the message says what to do."""


def resolve_model_path(path: str) -> str:
    """`path` if it holds saved_model.pb, else its highest numeric version directory."""
    if FileSystems.exists(FileSystems.join(path, SAVED_MODEL_FILE)):
        return path
    versions = sorted(
        int(os.path.basename(os.path.dirname(m.path)))
        for r in FileSystems.match([FileSystems.join(path, "*", SAVED_MODEL_FILE)])
        for m in r.metadata_list if os.path.basename(os.path.dirname(m.path)).isdigit())
    if not versions:
        raise ScoreError(f"no {SAVED_MODEL_FILE} in {path!r} nor in a version directory "
                         f"under it: give --model <base>/<version> of `htgnn export`")
    return FileSystems.join(path, str(versions[-1]))


def signature_output_names(model_path: str, signature: str = SIGNATURE) -> list[str]:
    """Output aliases of a signature, read from saved_model.pb (no model loading)."""
    import tensorflow as tf
    from tensorflow.core.protobuf import saved_model_pb2

    saved_model = saved_model_pb2.SavedModel()
    with tf.io.gfile.GFile(FileSystems.join(model_path, SAVED_MODEL_FILE), "rb") as f:
        saved_model.ParseFromString(f.read())
    for meta_graph in saved_model.meta_graphs:
        if signature in meta_graph.signature_def:
            return list(meta_graph.signature_def[signature].outputs)
    raise ScoreError(f"the SavedModel {model_path!r} has no signature {signature!r}")


def users_in_cohort(example: bytes) -> int:
    """Number of user nodes of one serialized cohort GraphTensor."""
    import tensorflow as tf

    feature = tf.train.Example.FromString(example).features.feature
    if USER_SIZE_FEATURE not in feature:
        raise ValueError(f"a serialized example has no {USER_SIZE_FEATURE!r} feature: it is "
                         f"not a cohort GraphTensor of the dataset job")
    return int(sum(feature[USER_SIZE_FEATURE].int64_list.value))


class SavedModelHandler(ModelHandler[bytes, PredictionResult, Any]):
    """RunInference handler for the exported HT-GNN SavedModel.

    One element is one serialized cohort; its inference is {output name: array over the
    cohort's users}. The signature answers per user over the whole batch, cohort after
    cohort; the answer is cut back into cohorts with their user counts.

    Args:
      model_path: the SavedModel version directory.
      signature_name: the signature to call.
      max_batch_cohorts: largest number of cohorts per call.
    """

    def __init__(self, model_path: str, *, signature_name: str = SIGNATURE,
                 max_batch_cohorts: int = 4):
        if max_batch_cohorts < 1:
            raise ValueError(f"max_batch_cohorts must be >= 1, got {max_batch_cohorts!r}")
        super().__init__(min_batch_size=1, max_batch_size=max_batch_cohorts)
        self._model_path = model_path
        self._signature_name = signature_name

    def load_model(self):
        import tensorflow as tf

        return tf.saved_model.load(self._model_path)

    def run_inference(self, batch: Sequence[bytes], model,
                      inference_args: dict | None = None) -> Iterable[PredictionResult]:
        import tensorflow as tf

        signature = model.signatures[self._signature_name]
        outputs = {name: value.numpy() for name, value in signature(
            examples=tf.constant(list(batch), dtype=tf.string)).items()}  # [users of batch]
        offsets = np.cumsum([0] + [users_in_cohort(e) for e in batch])
        answered = len(outputs[gs.USER_ID])
        if offsets[-1] != answered:
            raise ValueError(f"the model answered for {answered} users, the cohorts hold "
                             f"{offsets[-1]}")
        return [PredictionResult(example, {name: value[offsets[i]:offsets[i + 1]]
                                           for name, value in outputs.items()},
                                 model_id=self._model_path)
                for i, example in enumerate(batch)]

    def get_num_bytes(self, batch: Sequence[bytes]) -> int:
        return sum(len(e) for e in batch)

    def get_metrics_namespace(self) -> str:
        return "htgnn_score"


def _explode_users(result: PredictionResult):
    for record in prediction_records(result.inference):
        beam.metrics.Metrics.counter("htgnn_score", "users").inc()
        yield record[gs.USER_ID], record


REJECTED = "rejected"


def rejected_record(example: bytes, reason: str, detail: str) -> dict:
    beam.metrics.Metrics.counter("htgnn_score", "rejected_cohorts").inc()
    return {"reason": reason, "detail": detail[:2000],
            "example_b64": base64.b64encode(example).decode()}


def _validate(example: bytes):
    try:
        users_in_cohort(example)
    except Exception as error:  # any undecodable record is rejected, never dropped
        yield beam.pvalue.TaggedOutput(REJECTED, rejected_record(
            example, "not_a_cohort_example", f"{type(error).__name__}: {error}"))
        return
    yield example


def _failed_batch(failure):
    batch, error = failure
    for example in batch:
        yield rejected_record(example, "model_rejected_batch",
                              f"{type(error).__name__}: {error}")


class ScoreCohorts(beam.PTransform):
    """Serialized cohorts -> (user_id, {output: value}) per user; tagged output
    ``rejected``: dead-letter records of cohorts that could not be scored."""

    def __init__(self, model_path: str, batch_cohorts: int = 4):
        super().__init__()
        self._handler = SavedModelHandler(model_path, max_batch_cohorts=batch_cohorts)

    def expand(self, examples):
        valid = examples | "ValidateCohorts" >> beam.FlatMap(_validate).with_outputs(
            REJECTED, main="valid")
        inferred, failed = (valid.valid
                            | "RunInference" >> RunInference(
                                self._handler).with_exception_handling())
        scored = inferred | "ExplodeUsers" >> beam.FlatMap(_explode_users)
        rejected = ((valid[REJECTED],
                     failed.failed_inferences | "FailedBatches" >> beam.FlatMap(_failed_batch))
                    | "FlattenRejected" >> beam.Flatten())
        return {"scored": scored, REJECTED: rejected}


def csv_line(record: dict, columns: Sequence[str]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="").writerow([record[c] for c in columns])
    return buffer.getvalue()


class WritePredictions(beam.PTransform):
    """(user_id, record) -> JSONL or CSV shards ``<prefix>-SSSSS-of-NNNNN.<fmt>``."""

    def __init__(self, prefix: str, fmt: str, columns: Sequence[str]):
        super().__init__()
        if fmt not in FORMATS:
            raise ValueError(f"fmt must be one of {FORMATS}, got {fmt!r}")
        self._prefix, self._fmt, self._columns = prefix, fmt, list(columns)

    def expand(self, scored):
        columns = self._columns
        if self._fmt == "jsonl":
            lines = scored | "ToJson" >> beam.MapTuple(lambda _, r: json.dumps(r))
            header = None
        else:
            lines = scored | "ToCsv" >> beam.MapTuple(lambda _, r: csv_line(r, columns))
            header = ",".join(columns)
        return lines | "WriteShards" >> beam.io.WriteToText(
            self._prefix, file_name_suffix=f".{self._fmt}", header=header)


def build_pipeline(pipeline: beam.Pipeline, model_path: str, tfrecords: str, out: str,
                   fmt: str = "jsonl", batch_cohorts: int = 4):
    """Adds the scoring job to `pipeline`; returns the scored PCollection (for tests)."""
    columns = output_columns(dict.fromkeys(signature_output_names(model_path)))
    outputs = (pipeline
               | "ReadCohorts" >> beam.io.ReadFromTFRecord(tfrecords)
               | "Score" >> ScoreCohorts(model_path, batch_cohorts))
    scored = outputs["scored"]
    _ = scored | "Write" >> WritePredictions(out, fmt, columns)
    _ = (outputs[REJECTED]
         | "RejectedToJson" >> beam.Map(lambda r: json.dumps(r, sort_keys=True))
         | "WriteRejected" >> beam.io.WriteToText(f"{out}-rejected", file_name_suffix=".jsonl"))
    return scored


def run(model: str, tfrecords: str, out: str, fmt: str = "jsonl",
        runner: str = "FnApiRunner", beam_args: list[str] | None = None,
        batch_cohorts: int = 4) -> dict:
    """Runs the job; returns {"model": version dir, "users": scored users,
    "rejected_cohorts": dead-lettered records, "files": [prediction shards]}."""
    model_path = resolve_model_path(model)
    if not any(r.metadata_list for r in FileSystems.match([tfrecords])):
        raise ScoreError(f"no TFRecord files match {tfrecords!r}; check --tfrecords "
                         f"(e.g. DATA/test/graphs-*.tfrecord)")
    if fmt not in FORMATS:
        raise ScoreError(f"--format must be one of {list(FORMATS)}, got {fmt!r}")
    if batch_cohorts < 1:
        raise ScoreError(f"--batch-cohorts must be >= 1, got {batch_cohorts}")
    options = PipelineOptions(list(beam_args or []), runner=runner)
    pipeline = beam.Pipeline(options=options)
    build_pipeline(pipeline, model_path, tfrecords, out, fmt, batch_cohorts)
    result = pipeline.run()
    result.wait_until_finish()
    def counter(name):
        found = result.metrics().query(beam.metrics.MetricsFilter().with_name(name))
        return sum(c.committed or 0 for c in found["counters"])

    users, rejected = counter("users"), counter("rejected_cohorts")
    files = sorted(m.path for r in FileSystems.match([f"{out}-[0-9]*-of-*.{fmt}"])
                   for m in r.metadata_list)
    return {"model": model_path, "users": users, "rejected_cohorts": rejected, "files": files}


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        prog="htgnn score",
        description="Beam batch scoring: run an exported HT-GNN SavedModel over TFRecords "
                    "of cohort examples and write one prediction record per user.",
        epilog="Any other flag is passed to Beam, e.g. for Dataflow: --runner DataflowRunner "
               "--project P --region R --temp_location gs://B/tmp; for Flink: --runner "
               "FlinkRunner --flink_master HOST:PORT; for Spark: --runner SparkRunner.")
    p.add_argument("--model", required=True,
                   help="SavedModel version directory <base>/<version> of `htgnn export` "
                        "(a base path means its highest version)")
    p.add_argument("--tfrecords", required=True, metavar="GLOB",
                   help="serialized cohort examples, e.g. DATA/test/graphs-*.tfrecord "
                        "(quote the glob; any Beam filesystem, e.g. gs://)")
    p.add_argument("--out", required=True, metavar="PREFIX",
                   help="output prefix; shards are PREFIX-SSSSS-of-NNNNN.jsonl (or .csv)")
    p.add_argument("--format", default="jsonl", choices=FORMATS,
                   help="jsonl (default): one JSON object per user; csv: a header per shard")
    p.add_argument("--batch-cohorts", type=int, default=4,
                   help="largest number of cohorts per model call (default 4)")
    p.add_argument("--runner", default="FnApiRunner",
                   help="Beam runner: FnApiRunner (default, local), DirectRunner, "
                        "DataflowRunner, FlinkRunner, SparkRunner")
    return p.parse_known_args(argv)


def main(argv=None) -> int:
    args, beam_args = parse_args(argv)
    try:
        report = run(args.model, args.tfrecords, args.out, args.format, args.runner,
                     beam_args, args.batch_cohorts)
    except ScoreError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
