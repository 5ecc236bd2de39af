"""Tests for htgnn_tf.evaluate: the train-ratio reference and the report slices on
hand-made rows, and evaluate() end to end on the tiny trained model."""
import json
import os

import numpy as np
import pytest

from htgnn_tf import evaluate, training
from htgnn_tf.data import graph_schema as gs
from tests.helpers import tiny_data, trained  # noqa: F401  (fixtures)

HORIZONS = [30, 180, 365]


def hand_made_rows() -> dict:
    """Nine users whose lifetimes sit on and around the strata limits."""
    lifetime = np.array([0, 29, 30, 100, 180, 181, 365, 366, 1000])
    n = lifetime.size
    rng = np.random.default_rng(0)
    rows = {gs.LIFETIME_DAYS: lifetime,
            "observed_active_days": np.array([1, 2, 1, 3, 2, 1, 4, 2, 5], float),
            "observed_value": np.array([0, 5, 10, 0, 7.5, 3, 20, 1, 12], float),
            "pred_obs_days_used": np.array([7, 7, 3, 7, 5, 7, 7, 1, 7])}
    for h in HORIZONS:
        rows[f"lt_{h}"] = rng.integers(1, 20, n).astype(float)
        rows[f"ltv_{h}"] = rng.uniform(0, 100, n)
        rows[gs.label_mask_name(h)] = (rng.uniform(size=n) > 0.3).astype(float)
        rows[gs.last_active_name(h)] = rng.integers(0, h, n)
        for name in (f"lt_{h}", f"ltv_{h}", f"p_active_after_obs_{h}", f"p_value_after_obs_{h}"):
            rows[f"pred_{name}"] = rng.uniform(0, 1, n) * (1 if name.startswith("p_") else 50)
    return rows


def test_train_ratios_against_numpy():
    rows = hand_made_rows()
    ratios = evaluate.train_ratios(rows, HORIZONS)
    assert sorted(ratios) == sorted([f"lt_{h}" for h in HORIZONS] + [f"ltv_{h}" for h in HORIZONS])
    for h in HORIZONS:
        known = rows[gs.label_mask_name(h)] > 0
        assert ratios[f"lt_{h}"] == pytest.approx(
            rows[f"lt_{h}"][known].sum() / rows["observed_active_days"][known].sum())
        assert ratios[f"ltv_{h}"] == pytest.approx(
            rows[f"ltv_{h}"][known].sum() / rows["observed_value"][known].sum())


def test_train_ratio_without_observed_value_is_zero():
    rows = hand_made_rows()
    rows["observed_value"] = np.zeros_like(rows["observed_value"])
    ratios = evaluate.train_ratios(rows, HORIZONS)
    assert all(ratios[f"ltv_{h}"] == 0.0 for h in HORIZONS)
    assert all(ratios[f"lt_{h}"] > 0 for h in HORIZONS)


def test_slices_populations_members_and_reference():
    rows = hand_made_rows()
    ratios = {f"{kind}_{h}": 1.5 + i for i, (kind, h) in enumerate(
        [(k, h) for k in ("lt", "ltv") for h in HORIZONS])}
    result = evaluate.slices(rows, ratios, HORIZONS, obs_days=7)
    lifetime = rows[gs.LIFETIME_DAYS]
    members = {"test": {h: np.ones(lifetime.size, bool) for h in HORIZONS},
               "lifetime 30-180 d": {30: (lifetime >= 30) & (lifetime <= 180)},
               "lifetime 181-365 d": {180: (lifetime >= 181) & (lifetime <= 365)},
               "lifetime 366-max d": {365: lifetime > 365}}
    assert members["lifetime 30-180 d"][30].tolist() == [0, 0, 1, 1, 1, 0, 0, 0, 0]
    assert members["lifetime 181-365 d"][180].tolist() == [0, 0, 0, 0, 0, 1, 1, 0, 0]
    assert members["lifetime 366-max d"][365].tolist() == [0, 0, 0, 0, 0, 0, 0, 1, 1]
    want_keys = [(population, kind, h) for population, by_h in members.items()
                 for h in by_h for kind in ("LT", "LTV")]
    assert sorted((r["population"], r["task"], r["horizon"]) for r in result) == sorted(want_keys)

    for r in result:
        keep = members[r["population"]][r["horizon"]]
        h, kind = r["horizon"], r["task"].lower()
        task = f"{kind}_{h}"
        observed = rows["observed_active_days" if kind == "lt" else "observed_value"]
        prob = f"pred_p_{'active' if kind == 'lt' else 'value'}_after_obs_{h}"
        assert r["obs_days"] == 7
        np.testing.assert_array_equal(r["y_true"], rows[task][keep])
        np.testing.assert_array_equal(r["y_pred"], rows[f"pred_{task}"][keep])
        np.testing.assert_array_equal(r["label_mask"], rows[gs.label_mask_name(h)][keep])
        np.testing.assert_allclose(r["reference"], observed[keep] * ratios[task])
        np.testing.assert_array_equal(
            r["active_true"],
            (rows[gs.last_active_name(h)] >= rows["pred_obs_days_used"])[keep].astype(float))
        np.testing.assert_array_equal(r["active_prob"], rows[prob][keep])


def test_slices_skip_strata_of_horizons_not_trained():
    rows = hand_made_rows()
    ratios = {"lt_30": 2.0, "ltv_30": 3.0}
    result = evaluate.slices(rows, ratios, [30], obs_days=3)
    assert sorted((r["population"], r["task"]) for r in result) == [
        ("lifetime 30-180 d", "LT"), ("lifetime 30-180 d", "LTV"), ("test", "LT"), ("test", "LTV")]


def nrmse_nmae(y, p):
    return np.sqrt(np.mean((y - p) ** 2)) / y.mean(), np.mean(np.abs(y - p)) / y.mean()


def test_evaluate_end_to_end_matches_metrics_recomputed_from_collect(tiny_data, trained, tmp_path):
    model_dir = trained[0]
    obs_days = 3
    result = evaluate.evaluate(model_dir, tiny_data, str(tmp_path / "eval"), obs_days=obs_days,
                               curve=False, batch_cohorts=4, num_bootstrap=10)
    out = tmp_path / "eval"
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics == result["metrics"] and metrics["obs_days"] == obs_days
    assert (out / "report.md").read_text().startswith("# HT-GNN evaluation")
    assert metrics["plots"] and all((out / name).is_file() for name in metrics["plots"])
    assert {"gain_test_ltv.png", "deciles_test_lt.png"} <= set(metrics["plots"])

    # Recompute from collect() on the same data at the same s.
    config, model, _ = training.load_trained(model_dir)
    schema = training.read_schema(model_dir)

    def rows(split):
        ds = training.parsed(training.cohort_dataset(tiny_data, split), schema, 4,
                             obs_days=obs_days)
        return evaluate.collect(model, ds, config)

    train_rows, test_rows = rows("train"), rows("test")
    assert test_rows["pred_obs_days_used"].max() == obs_days
    ratios = evaluate.train_ratios(train_rows, config.horizons)
    assert result["ratios"] == pytest.approx(ratios)

    by_key = {(s["population"], s["task"], s["horizon"]): s for s in metrics["slices"]}
    assert len(by_key) == len(metrics["slices"]) == 2 * len(config.horizons) + 2 * 3
    for population, h, keep in (
            ("test", 30, np.ones(test_rows[gs.LIFETIME_DAYS].size, bool)),
            ("lifetime 30-180 d", 30, (test_rows[gs.LIFETIME_DAYS] >= 30)
             & (test_rows[gs.LIFETIME_DAYS] <= 180))):
        known = keep & (test_rows[gs.label_mask_name(h)] > 0)
        assert known.sum() >= 5
        entry = by_key[(population, "LTV", h)]
        assert entry["num_censored"] == int((keep & ~known).sum())
        y = test_rows[f"ltv_{h}"][known].astype(np.float64)
        model_nrmse, model_nmae = nrmse_nmae(y, test_rows[f"pred_ltv_{h}"][known])
        reference = test_rows["observed_value"][known] * ratios[f"ltv_{h}"]
        ref_nrmse, ref_nmae = nrmse_nmae(y, reference)
        assert entry["model"]["nrmse"]["value"] == pytest.approx(model_nrmse, rel=1e-5)
        assert entry["model"]["nmae"]["value"] == pytest.approx(model_nmae, rel=1e-5)
        assert entry["reference"]["nrmse"]["value"] == pytest.approx(ref_nrmse, rel=1e-5)
        assert entry["reference"]["nmae"]["value"] == pytest.approx(ref_nmae, rel=1e-5)


def test_evaluate_rejects_obs_days_outside_the_window(tiny_data, trained, tmp_path):
    with pytest.raises(ValueError, match="1..7"):
        evaluate.evaluate(trained[0], tiny_data, str(tmp_path / "eval"), obs_days=8,
                          curve=False)
    assert not os.path.exists(tmp_path / "eval")
