"""The ``htgnn`` command: one subcommand per job, each a thin wrapper over a module.

``htgnn <command> --help`` shows the flags of that command.
"""
from __future__ import annotations

import importlib
import sys

import htgnn_tf  # noqa: F401  (Keras 2 switch before TensorFlow loads)

# subcommand -> (module whose main(argv) runs it, one-line help)
COMMANDS = {
    "build-dataset": ("beam_pipelines.build_dataset",
                      "raw logs -> TFRecords of cohort hypergraph GraphTensors (Beam)"),
    "simulate": ("beam_pipelines.simulate",
                 "write a seeded simulated raw log (events, profiles, spec)"),
    "train": ("htgnn_tf.training", "train HT-GNN with model.fit (resumable)"),
    "evaluate": ("htgnn_tf.evaluate",
                 "test-split metrics, stratified protocol, report.md with plots"),
    "benchmark": ("htgnn_tf.benchmark",
                  "baselines, ablations and GNN variants on one split (paper Tables I-IV)"),
    "export": ("htgnn_tf.export", "export a trained model as a TF Serving SavedModel"),
    "serve": ("serving.server", "TF-Serving-protocol gRPC/REST model server"),
    "predict": ("serving.predict", "score users over gRPC from cohort TFRecords or a raw log"),
    "score": ("beam_pipelines.score", "Beam batch scoring of cohort TFRecords with a SavedModel"),
}


def usage() -> str:
    width = max(len(c) for c in COMMANDS)
    lines = ["usage: htgnn <command> [flags]   (htgnn <command> --help for its flags)", "",
             "commands:"]
    lines += [f"  {name.ljust(width)}  {help_}" for name, (_, help_) in COMMANDS.items()]
    return "\n".join(lines)


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(usage())
        return 0
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        print(f"htgnn: unknown command {command!r}\n\n{usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[command][0])
    return int(module.main(rest) or 0)


if __name__ == "__main__":
    sys.exit(main())
