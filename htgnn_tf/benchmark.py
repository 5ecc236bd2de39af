"""`htgnn benchmark`: the paper's Tables I-IV, side by side on the same data.

Every model reads the same dataset (the TFRecords of `htgnn build-dataset`), the same
split (train: fit + validation carved as `training.cohort_dataset` does; the test split
only for scoring), the same observed days s (default 7) and is scored by the same code
(:mod:`htgnn_tf.metrics`): NRMSE, NMAE, normalized Gini and AUC for LT and LTV at every
horizon, over the labelled test users, and Table I again under the paper's stratified
protocol (Sec. V-A: each horizon scored on the users of its lifetime stratum). Each
(model, seed) run is cached as ``<out>/runs/<model>/seed-<k>/predictions.npz`` under a
key of the model's settings and source files, the bytes of the dataset and s, so a rerun
trains only what changed. The tables
(mean ± std over seeds, rows = models) go to ``<out>/benchmark.md`` and
``<out>/benchmark.json``.

Models: ``reference`` (observed value x train ratio), HT-GNN and its ablations
(``htgnn``, ``htgnn_wo_hg``, ``htgnn_wo_dw``, ``htgnn_wo_dt``, ``htgnn_mse``,
``htgnn_huber``), GNN variants of the graph module (``gcn``, ``graphsage``, ``gatv2``,
``hgt``) and the baselines of :mod:`htgnn_tf.baselines` that are installed.
Tuning budget, the same for every model: one configuration (the defaults of its config
or module) and validation-based selection of how long it trains, on the validation part
carved from train, never on the test split: the neural models (HT-GNN, its variants, ZILN,
MDME, expLTV) train at most ``--epochs`` (20) epochs with early stopping (patience 6, best
weights restored); XGBoost early-stops its rounds; BTYD picks its penalizer. The patience
is 6 because the validation loss is noisy: in this command's per-epoch log, HT-GNN
seed 0 on the 30k simulated log has val_loss 4.60 at epoch 2, 7.10 and 7.23 at epochs 3-4
and its best, 3.90, at epoch 8, so a short patience is a few noisy epochs away from
keeping an early, worse epoch.
"""
from __future__ import annotations

import argparse
import functools
import hashlib
import json
import os
import sys
import time
from typing import Callable

import numpy as np

import htgnn_tf  # noqa: F401  (Keras 2 switch before TensorFlow loads)
from htgnn_tf import metrics as metrics_lib
from htgnn_tf.data import graph_schema as gs

METRICS = ("nrmse", "nmae", "gini", "auc")
LOWER_IS_BETTER = {"nrmse": True, "nmae": True, "gini": False, "auc": False}

# HT-GNN variants: name -> (ModelConfig overrides, paper table).
HTGNN_VARIANTS: dict[str, dict] = {
    "htgnn": {},
    "htgnn_wo_hg": {"use_hypergraph": False},
    "htgnn_wo_dw": {"moe": {"use_dynamic_weighting": False}},
    "htgnn_wo_dt": {"tower": {"use_dynamic_towers": False}},
    "htgnn_mse": {"loss": {"mode": "mse"}},
    "htgnn_huber": {"loss": {"mode": "huber"}},
}
GNN_VARIANTS = ("gcn", "graphsage", "gatv2", "hgt")
TABLES = {
    "Table I: baselines": ["reference", "btyd", "xgboost", "ziln", "mdme", "expltv", "hgt",
                           "htgnn"],
    "Table II: ablations": ["htgnn_wo_hg", "htgnn_wo_dw", "htgnn_wo_dt", "htgnn"],
    "Table III: losses": ["htgnn_mse", "htgnn_huber", "htgnn"],
    "Table IV: graph modules": ["gcn", "graphsage", "gatv2", "htgnn"],
}


# ------------------------------------------------------------------ test rows
def test_rows(data_dir: str, obs_days: int) -> dict[str, np.ndarray]:
    """Labels, observed totals and obs_days (capped at s) of the test users, file order."""
    from htgnn_tf import evaluate, training
    from htgnn_tf.config import ModelConfig

    config = ModelConfig.from_artifacts(training.read_artifacts(data_dir))
    return evaluate.split_rows(data_dir, "test", obs_days, config)


# ------------------------------------------------------------------ runners
Runner = Callable[[str, int, str, int], dict]
"""(data_dir, seed, work_dir, obs_days) -> {output name: array over test users in file
order}: ``lt_h``, ``ltv_h`` and, where the model has one, ``p_active_after_obs_h``."""


def run_reference(data_dir: str, seed: int, work_dir: str, obs_days: int) -> dict:
    """Observed value (active days) in the first s days x the train ratio."""
    from htgnn_tf import evaluate, training
    from htgnn_tf.config import ModelConfig

    config = ModelConfig.from_artifacts(training.read_artifacts(data_dir))
    ratios = evaluate.train_ratios(evaluate.split_rows(data_dir, "train", obs_days, config),
                                   config.horizons)
    test = evaluate.split_rows(data_dir, "test", obs_days, config)
    out = {}
    for h in config.horizons:
        out[f"lt_{h}"] = test["observed_active_days"] * ratios[f"lt_{h}"]
        out[f"ltv_{h}"] = test["observed_value"] * ratios[f"ltv_{h}"]
    return out


def htgnn_runner(overrides: dict, epochs: int) -> Runner:
    def run(data_dir: str, seed: int, work_dir: str, obs_days: int) -> dict:
        from htgnn_tf import evaluate, training
        from htgnn_tf.config import ModelConfig, TrainConfig

        config = ModelConfig.from_artifacts(training.read_artifacts(data_dir), seed=seed,
                                            **overrides)
        model, _ = training.train(data_dir, work_dir, config,
                                  TrainConfig(epochs=epochs, seed=seed), verbose=2)
        rows = evaluate.split_rows(data_dir, "test", obs_days, config, model)
        return {name[len("pred_"):]: value for name, value in rows.items()
                if name.startswith("pred_") and name != f"pred_{gs.USER_ID}"}
    return run


def runners(epochs: int) -> dict[str, Runner]:
    """Every model, in the order a benchmark runs them: the reference, HT-GNN, the
    baselines, then the ablations and the graph-module variants (so an interrupted run
    has the main comparison first)."""
    found: dict[str, Runner] = {"reference": run_reference,
                                "htgnn": htgnn_runner(HTGNN_VARIANTS["htgnn"], epochs)}
    found.update(baseline_runners(epochs))
    for name, overrides in HTGNN_VARIANTS.items():
        found.setdefault(name, htgnn_runner(overrides, epochs))
    for name in GNN_VARIANTS:
        found[name] = htgnn_runner({"graph_module": name}, epochs)
    return found


def baseline_runners(epochs: int) -> dict[str, Runner]:
    """The baselines of :mod:`htgnn_tf.baselines` (``baselines.run``), same epochs cap."""
    from htgnn_tf import baselines

    def runner(name):
        def run(data_dir: str, seed: int, work_dir: str, obs_days: int) -> dict:
            del work_dir  # the baselines keep nothing on disk
            return baselines.run(name, data_dir, seed=seed, obs_days=obs_days, epochs=epochs)
        return run

    return {name: runner(name) for name in baselines.BASELINES}


# ------------------------------------------------------------------ scoring
def score(rows: dict, predictions: dict, horizons, stratified: bool = False) -> dict:
    """{task: {metric: value or None}} over the labelled test users or, if `stratified`,
    over those of the paper's stratum of each horizon (Sec. V-A, ``evaluate.STRATA``:
    lifetime 30-180 days for the 30-day tasks, 181-365 for 180, > 365 for 365; a horizon
    without a stratum has no values)."""
    from htgnn_tf.evaluate import STRATA

    strata = {h: (low, high or np.inf) for h, low, high in STRATA}
    result = {}
    for h in horizons:
        known = rows[gs.label_mask_name(h)] > 0
        if stratified:
            low, high = strata.get(h, (np.inf, np.inf))
            known &= (rows[gs.LIFETIME_DAYS] >= low) & (rows[gs.LIFETIME_DAYS] <= high)
        active = (rows[gs.last_active_name(h)] >= rows[gs.OBS_DAYS])[known].astype(float)
        prob = predictions.get(f"p_active_after_obs_{h}")
        for kind in ("lt", "ltv"):
            task = f"{kind}_{h}"
            y, p = rows[task][known], np.asarray(predictions[task], np.float64)[known]
            values = {"nrmse": metrics_lib.nrmse(y, p), "nmae": metrics_lib.nmae(y, p),
                      "gini": metrics_lib.normalized_gini(y, p)}
            values["auc"] = (metrics_lib.auc(active, np.asarray(prob)[known])
                             if prob is not None else metrics_lib.MetricValue(None, "no tower"))
            result[task] = {m: v.value for m, v in values.items()}
    return result


PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))
NEURAL_SOURCES = ("model.py", "config.py", "training.py", "losses.py", "layers")


def code_fingerprint(name: str) -> str:
    """sha256 of the source files a model's results depend on, so editing them
    invalidates its cached runs."""
    if name == "reference":
        parts = ["evaluate.py"]
    elif name.startswith("htgnn") or name in GNN_VARIANTS:
        parts = list(NEURAL_SOURCES)
    else:
        parts = [f"baselines/{name if name != 'xgboost' else 'xgboost_two_stage'}.py",
                 "baselines/tabular.py", "baselines/deep.py", *NEURAL_SOURCES]
    digest = hashlib.sha256()
    for part in parts:
        path = os.path.join(PACKAGE_DIR, part)
        files = ([os.path.join(path, f) for f in sorted(os.listdir(path)) if f.endswith(".py")]
                 if os.path.isdir(path) else [path])
        for file in files:
            with open(file, "rb") as f:
                digest.update(f.read())
    return digest.hexdigest()


@functools.lru_cache(maxsize=None)
def data_fingerprint(data_dir: str) -> str:
    """sha256 of what the models read: the TFRecords of both splits, transform.json and
    graph_schema.pbtxt (contents and relative paths, not where the directory lives), so a
    rebuilt dataset that differs in any byte invalidates the cached runs."""
    from htgnn_tf import training

    files = [*training.tfrecord_files(data_dir, "train"),
             *training.tfrecord_files(data_dir, "test"),
             os.path.join(data_dir, "transform.json"),
             os.path.join(data_dir, "graph_schema.pbtxt")]
    digest = hashlib.sha256()
    for path in files:
        digest.update(os.path.relpath(path, data_dir).encode())
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def cache_key(name: str, data_dir: str, obs_days: int, epochs: int, seed: int) -> str:
    payload = json.dumps({"model": name, "data": data_fingerprint(data_dir),
                          "obs_days": obs_days, "epochs": epochs, "seed": seed,
                          "settings": HTGNN_VARIANTS.get(name),
                          "code": code_fingerprint(name)}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def run_directory(out: str, name: str, seed: int) -> str:
    """Where one model and seed keeps its cached run (predictions.npz, key, seconds)."""
    return os.path.join(out, "runs", name, f"seed-{seed}")


def load_cached(name: str, data_dir: str, out: str, seed: int, obs_days: int,
                epochs: int) -> tuple[dict, float] | None:
    """The cached predictions and wall seconds of one model and seed, or None when the
    run is missing or its key (settings, code, data, s, epochs, seed) has changed."""
    run_dir = run_directory(out, name, seed)
    cached = os.path.join(run_dir, "predictions.npz")
    if not os.path.exists(cached):
        return None
    with open(os.path.join(run_dir, "key")) as f:
        if f.read() != cache_key(name, data_dir, obs_days, epochs, seed):
            return None
    with open(os.path.join(run_dir, "seconds")) as f:
        return dict(np.load(cached)), float(f.read())


def run_model(name: str, runner: Runner, data_dir: str, out: str, seed: int, obs_days: int,
              epochs: int, rows: dict) -> tuple[dict, float]:
    """Trains one model and seed and caches the run; returns its predictions and the
    wall seconds the run took."""
    run_dir = run_directory(out, name, seed)
    key = cache_key(name, data_dir, obs_days, epochs, seed)
    cached = os.path.join(run_dir, "predictions.npz")
    os.makedirs(run_dir, exist_ok=True)
    start = time.time()
    predictions = runner(data_dir, seed, os.path.join(run_dir, "work"), obs_days)
    n = len(rows[gs.LIFETIME_DAYS])
    for task, values in predictions.items():
        if len(values) != n:
            raise ValueError(f"{name}: {task} has {len(values)} predictions for {n} test users")
    np.savez(cached, **{k: np.asarray(v) for k, v in predictions.items()})
    with open(os.path.join(run_dir, "key"), "w") as f:
        f.write(key)
    seconds = time.time() - start
    with open(os.path.join(run_dir, "seconds"), "w") as f:
        f.write(f"{seconds:.1f}")
    return predictions, seconds


def summarize(scores: dict[str, list[dict]]) -> dict:
    """{model: {task: {metric: (mean, std, n)}}} over seeds (None values skipped)."""
    out = {}
    for model, runs in scores.items():
        out[model] = {}
        for task in runs[0]:
            out[model][task] = {}
            for metric in METRICS:
                values = [r[task][metric] for r in runs if r[task][metric] is not None]
                out[model][task][metric] = ((float(np.mean(values)), float(np.std(values)),
                                             len(values)) if values else None)
    return out


def _table(summary: dict, models: list[str], horizons) -> list[str]:
    """The LT and the LTV table of `models` (paper layout); best mean per column in bold."""
    lines = []
    for kind in ("lt", "ltv"):
        header = ["model", "seeds"] + [f"{kind.upper()}{h} {m.upper()}" for h in horizons
                                       for m in METRICS]
        lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        best = {}
        for h in horizons:
            for metric in METRICS:
                means = [summary[m][f"{kind}_{h}"][metric][0] for m in models
                         if summary[m][f"{kind}_{h}"][metric] is not None]
                if means:
                    best[h, metric] = (min if LOWER_IS_BETTER[metric] else max)(means)
        for model in models:
            cells = [model, str(max(v[2] for metric in summary[model].values()
                                    for v in metric.values() if v is not None))]
            for h in horizons:
                for metric in METRICS:
                    value = summary[model][f"{kind}_{h}"][metric]
                    if value is None:
                        cells.append("—")
                        continue
                    # one seed has no spread: the mean alone, not a "± 0.0000"
                    cell = (f"{value[0]:.4f} ± {value[1]:.4f}" if value[2] > 1
                            else f"{value[0]:.4f}")
                    cells.append(f"**{cell}**" if value[0] == best[h, metric] else cell)
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    return lines


def markdown(summary: dict, horizons, title: str, seconds: dict[str, list[float]],
             stratified: dict | None = None) -> str:
    """Tables I-IV in the paper's layout over all labelled test users, Table I again
    under the paper's stratified protocol (`stratified`, a summary like `summary`) and
    the wall time per model."""
    lines = [f"# {title}", "",
             "mean ± std over seeds; NRMSE, NMAE lower is better, Gini, AUC higher is better; "
             "the best mean of each column of a table is in bold.", ""]
    for table, models in TABLES.items():
        models = [m for m in models if m in summary]
        if models:
            lines += [f"## {table}", "", *_table(summary, models, horizons)]
    models = [m for m in TABLES["Table I: baselines"] if m in (stratified or {})]
    if models:
        lines += ["## Table I under the paper's stratified protocol", "",
                  "Test users with lifetime 30-180 days scored on the 30-day tasks, 181-365 "
                  "on the 180-day tasks, > 365 on the 365-day tasks (Sec. V-A).", "",
                  *_table(stratified, models, horizons)]
    lines += ["## Wall time per run (training + scoring, seconds, when the run was made)", "",
              "| model | mean | min | max | runs |", "|---|---|---|---|---|"]
    for model, values in seconds.items():
        lines.append(f"| {model} | {np.mean(values):.0f} | {np.min(values):.0f} | "
                     f"{np.max(values):.0f} | {len(values)} |")
    lines.append("")
    return "\n".join(lines)


def benchmark(data_dir: str, out: str, models: list[str] | None, seeds: int, obs_days: int,
              epochs: int, cached_only: bool = False) -> dict:
    """Runs (or, with `cached_only`, only loads from the cache) every model x seed and
    writes the tables. With `cached_only` nothing is trained: a model is scored over the
    seeds it has finished (the tables' "seeds" column) and one with none is left out."""
    from htgnn_tf import training

    available = runners(epochs)
    models = models or list(available)
    missing = [m for m in models if m not in available]
    if missing:
        raise ValueError(f"unknown or unavailable models {missing}; available: "
                         f"{sorted(available)}")
    if not os.path.isfile(os.path.join(data_dir, "transform.json")):
        raise FileNotFoundError(
            f"--data {data_dir} is not a dataset directory (it has no transform.json): pass "
            "the --out directory of `htgnn build-dataset`, e.g. runs/demo/data after "
            "`make demo`")
    horizons = training.read_artifacts(data_dir)["spec"]["horizons"]
    rows = test_rows(data_dir, obs_days)
    scores: dict[str, list[dict]] = {}
    stratified: dict[str, list[dict]] = {}
    seconds: dict[str, list[float]] = {}
    for model in models:
        for seed in range(seeds):
            found = load_cached(model, data_dir, out, seed, obs_days, epochs)
            if found is not None:
                print(f"--- {model}, seed {seed}: from the cache", flush=True)
            elif cached_only:
                print(f"--- {model}, seed {seed}: not in the cache, skipped", flush=True)
                continue
            else:
                print(f"--- {model}, seed {seed}: training", flush=True)
                found = run_model(model, available[model], data_dir, out, seed, obs_days,
                                  epochs, rows)
            predictions, took = found
            scores.setdefault(model, []).append(score(rows, predictions, horizons))
            stratified.setdefault(model, []).append(
                score(rows, predictions, horizons, stratified=True))
            seconds.setdefault(model, []).append(took)
    if not scores:
        raise ValueError(f"no finished run of {models} in {out}/runs; run without "
                         "--cached-only to train them")
    summary, stratified_summary = summarize(scores), summarize(stratified)
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "benchmark.json"), "w") as f:
        json.dump({"obs_days": obs_days, "seeds": seeds, "epochs": epochs, "scores": scores,
                   "stratified_scores": stratified, "seconds": seconds, "summary": summary,
                   "stratified_summary": stratified_summary}, f, indent=1)
    runs = f"finished runs of up to {seeds} seed(s)" if cached_only else f"{seeds} seed(s)"
    text = markdown(summary, horizons, f"Benchmark on {data_dir} at s = {obs_days} days, "
                                       f"{runs}", seconds, stratified_summary)
    with open(os.path.join(out, "benchmark.md"), "w") as f:
        f.write(text)
    return {"summary": summary, "stratified_summary": stratified_summary, "markdown": text}


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="htgnn benchmark", description=(
        "Train and evaluate HT-GNN, its ablations, GNN variants and the baselines on the "
        "same split, observed days and metrics; tables in the paper's layout. Finished "
        "runs are cached, so a rerun trains only what changed."))
    p.add_argument("--data", required=True, help="output directory of `htgnn build-dataset`")
    p.add_argument("--out", required=True,
                   help="benchmark directory (runs, cache, tables); one per dataset, since "
                        "each model and seed has one cache slot there")
    p.add_argument("--models", nargs="*", default=None,
                   help="models to run (default: all): reference, htgnn, htgnn_wo_hg, "
                        "htgnn_wo_dw, htgnn_wo_dt, htgnn_mse, htgnn_huber, gcn, graphsage, "
                        "gatv2, hgt, btyd, xgboost, ziln, mdme, expltv")
    p.add_argument("--seeds", type=positive_int, default=3,
                   help="seeds per model: seeds 0 .. N-1 (default 3)")
    p.add_argument("--obs-days", type=positive_int, default=7,
                   help="observed days s (default 7)")
    p.add_argument("--epochs", type=positive_int, default=20,
                   help="training budget of every neural model: at most this many epochs, "
                        "early stopping on the validation part with TrainConfig's patience "
                        "(default 20)")
    p.add_argument("--cached-only", action="store_true",
                   help="train nothing: build the tables from the runs already in the cache "
                        "(a model is scored over the seeds it has finished, see the tables' "
                        "seeds column; one with none is left out)")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        result = benchmark(args.data, args.out, args.models, args.seeds, args.obs_days,
                           args.epochs, args.cached_only)
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(result["markdown"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
