"""`htgnn evaluate`: the LTV metrics on the test split, and the report.

* Predictions of the trained model on the test split with obs_days capped at s
  (default 7) and, for the curve, at every s in 1..W.
* The reference row "observed value x train ratio": for horizon h, the value (or active
  days, for LT) observed in the first s days times ``sum(label_h) / sum(observed_s)``
  over the labelled users of the train split, computed in the same run.
* Populations: all test users, and the paper's stratified protocol (Sec. V-A): users
  with lifetime 30-180 days scored on the 30-day tasks, 181-365 on the 180-day tasks,
  > 365 on the 365-day tasks.
* Metrics and plots by :mod:`htgnn_tf.metrics` and :mod:`htgnn_tf.report`.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np

import htgnn_tf  # noqa: F401  (Keras 2 switch before TensorFlow loads)
from htgnn_tf import report as report_lib
from htgnn_tf import training
from htgnn_tf.data import graph_schema as gs

STRATA = ((30, 30, 180), (180, 181, 365), (365, 366, None))  # horizon, lifetime range


def observed_totals(seq_values: np.ndarray, obs_days: np.ndarray,
                    value_metric_index: int) -> dict[str, np.ndarray]:
    """What is already observed in [0, s) (numpy twin of ``model.ObservedTotals``):
    ``observed_value`` and ``observed_active_days`` ([N]) of ``seq_values`` [N, T, W]."""
    seen = np.arange(seq_values.shape[-1])[None, :] < obs_days[:, None]  # [N, W]
    return {"observed_value": (seq_values[:, value_metric_index, :] * seen).sum(-1),
            "observed_active_days": ((seq_values > 0).any(axis=1) & seen).sum(-1)}


def collect(model, ds, config) -> dict[str, np.ndarray]:
    """Per-user arrays of the labels and observed totals of a dataset of batched graphs,
    and of every model output (``pred_<name>``) unless `model` is None."""
    out: dict[str, list] = {}
    for graph in ds:
        merged = graph.merge_batch_to_components()
        users = merged.node_sets[gs.USER]
        rows = {}
        if model is not None:
            predictions = model(graph, training=False)
            rows = {f"pred_{name}": predictions[name].numpy() for name in predictions}
        for name in gs.label_feature_names(config.horizons):
            rows[name] = users[name].numpy()
        rows[gs.OBS_DAYS] = users[gs.OBS_DAYS].numpy()
        rows.update(observed_totals(users[gs.SEQ_VALUES].numpy(), rows[gs.OBS_DAYS],
                                    config.value_metric_index))
        for name, value in rows.items():
            out.setdefault(name, []).append(value)
    return {name: np.concatenate(values) for name, values in out.items()}


def split_rows(data_dir: str, split: str, obs_days: int, config, model=None, schema=None,
               batch_cohorts: int = 8) -> dict[str, np.ndarray]:
    """:func:`collect` over one split of a dataset at `obs_days` observed days (the
    dataset's labelled schema unless `schema` is given)."""
    ds = training.parsed(training.cohort_dataset(data_dir, split),
                         schema or training.read_schema(data_dir), batch_cohorts,
                         obs_days=obs_days)
    return collect(model, ds, config)


def train_ratios(train_rows: dict, horizons) -> dict[str, float]:
    """sum(label) / sum(observed) over labelled train users, per task."""
    ratios = {}
    for h in horizons:
        known = train_rows[gs.label_mask_name(h)] > 0
        for task, observed in ((f"lt_{h}", "observed_active_days"),
                               (f"ltv_{h}", "observed_value")):
            denominator = train_rows[observed][known].sum()
            ratios[task] = float(train_rows[task][known].sum() / denominator) if denominator else 0.0
    return ratios


def slices(rows: dict, ratios: dict, horizons, obs_days: int) -> list[dict]:
    """Report slices (see report.write_report) for all test users and the strata."""
    result = []
    lifetime = rows[gs.LIFETIME_DAYS]
    populations = [("test", None)] + [
        (f"lifetime {low}-{high or 'max'} d", (h, low, high)) for h, low, high in STRATA]
    for population, stratum in populations:
        for h in horizons:
            if stratum is not None and stratum[0] != h:
                continue
            keep = np.ones(len(lifetime), bool)
            if stratum is not None:
                _, low, high = stratum
                keep = (lifetime >= low) & (lifetime <= (high if high else np.inf))
            active = (rows[gs.last_active_name(h)] >= rows["pred_obs_days_used"]).astype(float)
            for kind, observed, prob in (("lt", "observed_active_days", "p_active_after_obs"),
                                         ("ltv", "observed_value", "p_value_after_obs")):
                task = f"{kind}_{h}"
                result.append({
                    "task": kind.upper(), "horizon": h, "obs_days": obs_days,
                    "population": population,
                    "y_true": rows[task][keep], "y_pred": rows[f"pred_{task}"][keep],
                    "label_mask": rows[gs.label_mask_name(h)][keep],
                    "reference": rows[observed][keep] * ratios[task],
                    "active_true": active[keep], "active_prob": rows[f"pred_{prob}_{h}"][keep],
                })
    return result


def evaluate(model_dir: str, data_dir: str, out_dir: str, obs_days: int = 7,
             curve: bool = True, batch_cohorts: int = 8, num_bootstrap: int = 200) -> dict:
    config, model, _ = training.load_trained(model_dir)
    schema = training.read_schema(model_dir)
    horizons = config.horizons
    window = config.sequence.max_len
    if not 1 <= obs_days <= window:
        raise ValueError(f"--obs-days must be in 1..{window} (the observation window W)")

    results = []
    for s in (range(1, window + 1) if curve else [obs_days]):
        ratios = train_ratios(split_rows(data_dir, "train", s, config, schema=schema,
                                         batch_cohorts=batch_cohorts), horizons)
        batch = slices(split_rows(data_dir, "test", s, config, model, schema, batch_cohorts),
                       ratios, horizons, s)
        # The strata at the main s only; the curve over s for all test users.
        results += batch if s == obs_days else [r for r in batch if r["population"] == "test"]
        if s == obs_days:
            main_ratios = ratios
    artifacts = training.read_artifacts(model_dir)
    derived = {name: "derived from the log (not a profile column)"
               for name in artifacts["spec"]["derived_categoricals"]}
    paths = report_lib.write_report(out_dir, results, obs_days=obs_days,
                                    derived_features=derived, num_bootstrap=num_bootstrap)
    with open(paths["metrics_json"]) as f:
        return {"paths": paths, "metrics": json.load(f), "ratios": main_ratios}


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        formatter_class=argparse.ArgumentDefaultsHelpFormatter, prog="htgnn evaluate", description=(
        "Evaluate a trained HT-GNN on the test split: NRMSE, NMAE, normalized Gini (with "
        "bootstrap CI) and AUC per task and horizon, the reference row and the paper's "
        "stratified protocol; writes metrics.json, report.md and PNG plots."))
    p.add_argument("--model", required=True, help="model directory of `htgnn train`")
    p.add_argument("--data", required=True, help="output directory of `htgnn build-dataset`")
    p.add_argument("--out", required=True, help="report directory")
    p.add_argument("--obs-days", type=int, default=7,
                   help="observed days s for the main tables (default 7)")
    p.add_argument("--no-curve", action="store_true",
                   help="skip the metric-vs-observed-days curve (s = 1..W)")
    p.add_argument("--bootstrap", type=int, default=200,
                   help="bootstrap resamples for the Gini confidence intervals")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        result = evaluate(args.model, args.data, args.out, args.obs_days,
                          curve=not args.no_curve, num_bootstrap=args.bootstrap)
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"report: {result['paths']['report_md']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
