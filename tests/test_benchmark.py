"""htgnn benchmark: scoring against the metrics code, the run cache, the tables."""
import json
import os

import numpy as np

import htgnn_tf  # noqa: F401
from htgnn_tf import benchmark, metrics
from htgnn_tf.data import graph_schema as gs
from tests.helpers import tiny_data  # noqa: F401  (fixture)


def test_score_equals_the_metrics_functions_on_labelled_users():
    rng = np.random.default_rng(0)
    n = 50
    rows = {"lt_30": rng.integers(1, 5, n).astype(float), "ltv_30": rng.gamma(1, 10, n),
            "label_mask_30": (rng.random(n) > 0.2).astype(float),
            "last_active_day_30": rng.integers(0, 29, n), gs.OBS_DAYS: np.full(n, 7)}
    predictions = {"lt_30": rows["lt_30"] + rng.random(n), "ltv_30": rng.gamma(1, 10, n),
                   "p_active_after_obs_30": rng.random(n)}
    scored = benchmark.score(rows, predictions, [30])
    known = rows["label_mask_30"] > 0
    y, p = rows["ltv_30"][known], predictions["ltv_30"][known]
    assert scored["ltv_30"]["nrmse"] == metrics.nrmse(y, p).value
    assert scored["ltv_30"]["nmae"] == metrics.nmae(y, p).value
    assert scored["ltv_30"]["gini"] == metrics.normalized_gini(y, p).value
    active = (rows["last_active_day_30"] >= 7)[known].astype(float)
    assert scored["lt_30"]["auc"] == metrics.auc(
        active, predictions["p_active_after_obs_30"][known]).value
    # Independent check of one value.
    np.testing.assert_allclose(scored["ltv_30"]["nmae"], np.mean(np.abs(y - p)) / np.mean(y))


def test_runs_are_cached_and_tables_written(tiny_data, tmp_path):
    calls = []

    def counting_reference(data_dir, seed, work_dir, obs_days):
        calls.append(seed)
        return benchmark.run_reference(data_dir, seed, work_dir, obs_days)

    original = benchmark.runners
    benchmark.runners = lambda epochs: {"reference": counting_reference}
    try:
        out = str(tmp_path / "bench")
        first = benchmark.benchmark(tiny_data, out, ["reference"], seeds=2, obs_days=3,
                                    epochs=1)
        again = benchmark.benchmark(tiny_data, out, ["reference"], seeds=2, obs_days=3,
                                    epochs=1)
    finally:
        benchmark.runners = original
    assert calls == [0, 1]  # the second benchmark call trained nothing
    assert first["summary"] == again["summary"]
    mean, std, count = first["summary"]["reference"]["ltv_30"]["nmae"]
    assert std == 0.0 and count == 2  # the reference has no randomness
    rows = benchmark.test_rows(tiny_data, 3)
    predictions = dict(np.load(os.path.join(out, "runs", "reference", "seed-0",
                                            "predictions.npz")))
    assert np.isclose(mean, benchmark.score(rows, predictions, [30])["ltv_30"]["nmae"])
    table = open(os.path.join(out, "benchmark.md")).read()
    assert "| reference | " in table and f"{mean:.4f} ± 0.0000" in table
    assert json.load(open(os.path.join(out, "benchmark.json")))["seeds"] == 2
    assert "| reference | 2 | " in table  # the seeds column
    assert "## Wall time per run" in table and "| reference | " in table.split("## Wall")[1]
    stratified = table.split("## Table I under the paper's stratified protocol")[1]
    assert "| reference | " in stratified.split("## Wall")[0]


def test_cached_only_scores_finished_seeds_and_trains_nothing(tiny_data, tmp_path):
    import pytest

    def must_not_train(*args):
        raise AssertionError("--cached-only trained a model")

    out = str(tmp_path / "bench")
    benchmark.benchmark(tiny_data, out, ["reference"], seeds=2, obs_days=3, epochs=1)
    original = benchmark.runners
    benchmark.runners = lambda epochs: {"reference": must_not_train, "htgnn": must_not_train}
    try:
        result = benchmark.benchmark(tiny_data, out, ["reference", "htgnn"], seeds=3,
                                     obs_days=3, epochs=1, cached_only=True)
        with pytest.raises(ValueError, match="no finished run"):
            benchmark.benchmark(tiny_data, str(tmp_path / "empty"), None, seeds=1,
                                obs_days=3, epochs=1, cached_only=True)
    finally:
        benchmark.runners = original
    assert list(result["summary"]) == ["reference"]  # htgnn has no finished run
    assert result["summary"]["reference"]["ltv_30"]["nmae"][2] == 2
    assert "| reference | 2 | " in result["markdown"]
    assert "finished runs of up to 3 seed(s)" in result["markdown"]


def test_code_fingerprint_covers_the_right_sources():
    assert benchmark.code_fingerprint("htgnn") == benchmark.code_fingerprint("gcn")
    assert benchmark.code_fingerprint("xgboost") != benchmark.code_fingerprint("ziln")


def test_markdown_bolds_the_best_mean_of_each_column_and_lists_wall_time():
    def cell(nrmse, gini):
        return {"nrmse": (nrmse, 0.01, 3), "nmae": (0.5, 0.0, 3), "gini": (gini, 0.02, 3),
                "auc": None}
    summary = {"htgnn": {"lt_30": cell(0.4, 0.3), "ltv_30": cell(0.9, 0.7)},
               "xgboost": {"lt_30": cell(0.5, 0.6), "ltv_30": cell(0.8, 0.6)}}
    text = benchmark.markdown(summary, [30], "t", {"htgnn": [100.0, 120.0], "xgboost": [5.0]})
    table_1 = text.split("## Table II")[0].splitlines()
    lt = [line for line in table_1 if line.startswith("| htgnn |")][0]  # the LT table
    assert lt.split(" | ")[1:5] == ["3", "**0.4000 ± 0.0100**", "**0.5000 ± 0.0000**",
                                    "0.3000 ± 0.0200"]
    xgb = [line for line in table_1 if line.startswith("| xgboost |")][0]
    assert "**0.6000 ± 0.0200**" in xgb and xgb.endswith("| — |")
    assert "| htgnn | 110 | 100 | 120 | 2 |" in text and "| xgboost | 5 | 5 | 5 | 1 |" in text


def test_data_fingerprint_follows_the_bytes_not_the_location(tiny_data, tmp_path):
    import shutil
    copy = str(tmp_path / "copy")
    shutil.copytree(tiny_data, copy)
    assert benchmark.data_fingerprint(copy) == benchmark.data_fingerprint(tiny_data)
    edited = str(tmp_path / "edited")
    shutil.copytree(tiny_data, edited)
    record = os.path.join(edited, "test", sorted(os.listdir(os.path.join(edited, "test")))[0])
    with open(record, "r+b") as f:
        first = f.read(1)
        f.seek(0)
        f.write(bytes([first[0] ^ 1]))
    assert benchmark.data_fingerprint(edited) != benchmark.data_fingerprint(tiny_data)
    assert (benchmark.cache_key("htgnn", edited, 7, 12, 0)
            != benchmark.cache_key("htgnn", copy, 7, 12, 0))


def test_every_table_row_has_a_runner_main_comparison_first():
    available = list(benchmark.runners(epochs=1))
    for table, models in benchmark.TABLES.items():
        assert set(models) <= set(available), table
    assert available[:7] == ["reference", "htgnn", "btyd", "xgboost", "ziln", "mdme", "expltv"]
    assert set(available) == {"reference", *benchmark.HTGNN_VARIANTS, *benchmark.GNN_VARIANTS,
                              "btyd", "xgboost", "ziln", "mdme", "expltv"}


def test_stratified_score_keeps_the_lifetime_stratum_of_each_horizon():
    rng = np.random.default_rng(1)
    n = 400
    lifetime = rng.integers(0, 500, n)
    rows = {gs.LIFETIME_DAYS: lifetime, gs.OBS_DAYS: np.full(n, 7)}
    predictions = {}
    for h in (30, 180, 365):
        rows[f"lt_{h}"] = rng.integers(1, 20, n).astype(float)
        rows[f"ltv_{h}"] = rng.gamma(1, 10, n)
        rows[f"label_mask_{h}"] = (rng.random(n) > 0.1).astype(float)
        rows[f"last_active_day_{h}"] = rng.integers(0, h, n)
        predictions[f"lt_{h}"] = rows[f"lt_{h}"] + rng.random(n)
        predictions[f"ltv_{h}"] = rng.gamma(1, 10, n)
        predictions[f"p_active_after_obs_{h}"] = rng.random(n)
    scored = benchmark.score(rows, predictions, [30, 180, 365], stratified=True)
    for h, low, high in ((30, 30, 180), (180, 181, 365), (365, 366, np.inf)):
        keep = (rows[f"label_mask_{h}"] > 0) & (lifetime >= low) & (lifetime <= high)
        y, p = rows[f"ltv_{h}"][keep], predictions[f"ltv_{h}"][keep]
        np.testing.assert_allclose(scored[f"ltv_{h}"]["nmae"],
                                   np.mean(np.abs(y - p)) / np.mean(y))
        y, p = rows[f"lt_{h}"][keep], predictions[f"lt_{h}"][keep]
        np.testing.assert_allclose(scored[f"lt_{h}"]["nrmse"],
                                   np.sqrt(np.mean((y - p) ** 2)) / np.mean(y))
    assert scored["ltv_30"] != benchmark.score(rows, predictions, [30])["ltv_30"]


def test_one_seed_cells_show_the_mean_without_a_spread():
    cell = {"nrmse": (0.4, 0.0, 1), "nmae": (0.5, 0.0, 1), "gini": (0.3, 0.0, 1), "auc": None}
    text = benchmark.markdown({"htgnn": {"lt_30": cell, "ltv_30": cell}}, [30], "t", {})
    row = [line for line in text.splitlines() if line.startswith("| htgnn |")][0]
    assert row.split(" | ")[1:5] == ["1", "**0.4000**", "**0.5000**", "**0.3000**"]


def test_cli_rejects_zero_seeds_and_a_directory_that_is_no_dataset(tmp_path, capsys):
    import pytest

    with pytest.raises(SystemExit):
        benchmark.parse_args(["--data", "d", "--out", "o", "--seeds", "0"])
    assert "--seeds: must be at least 1, got 0" in capsys.readouterr().err
    code = benchmark.main(["--data", str(tmp_path), "--out", str(tmp_path / "o")])
    assert code == 2
    assert "is not a dataset directory" in capsys.readouterr().err
