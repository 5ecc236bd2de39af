"""Tests of htgnn_tf.report: the files exist and hold independently computed numbers."""
import json

import numpy as np
import pytest

from htgnn_tf import report

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
NUM_USERS = 120


def _slice(rng, task, horizon, obs_days):
    y = np.round(rng.lognormal(1.0, 1.0, NUM_USERS) * (rng.random(NUM_USERS) > 0.5), 2)
    return {
        "task": task, "horizon": horizon, "obs_days": obs_days,
        "y_true": y,
        "y_pred": y * rng.lognormal(0.0, 0.5, NUM_USERS) + rng.exponential(1.0, NUM_USERS),
        "label_mask": (rng.random(NUM_USERS) > 0.2).astype(np.float32),
        "reference": np.round(y * 0.6, 0) + 1.0,
        "active_true": (y > 0).astype(int),
        "active_prob": rng.random(NUM_USERS),
    }


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    rng = np.random.default_rng(5)
    results = [_slice(rng, task, horizon, s)
               for task in ("lt", "ltv") for horizon in (30, 180) for s in (7, 14)]
    results.append({"task": "ltv", "horizon": 30, "obs_days": 7,
                    "population": "lifetime 30-180 d", "y_true": np.zeros(15),
                    "y_pred": np.linspace(0, 1, 15)})
    out_dir = tmp_path_factory.mktemp("report")
    paths = report.write_report(
        out_dir, results, obs_days=7, num_bootstrap=30, seed=2,
        derived_features={"acquisition_month": "calendar month of the first purchase",
                          "first_basket_band": "band of the first day's CD count"})
    return results, out_dir, paths


def np_gini(y, p):
    def raw(order):
        return 2.0 * np.mean(np.cumsum(y[order]) / y.sum()) - 1.0
    return raw(np.argsort(-p, kind="stable")) / raw(np.argsort(-y))


def np_auc(labels, scores):
    pos, neg = scores[labels == 1], scores[labels == 0]
    wins = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    return wins / (pos.size * neg.size)


def _known(item, key):
    return np.asarray(item[key], np.float64)[np.asarray(item["label_mask"]) > 0]


def _table_cells(markdown, population, task, horizon, predictor):
    section = markdown.split(f"## Population: {population} ")[1].split("\n## ")[0]
    table = section.split(f"### {task.upper()}\n")[1].strip().split("\n\n")[0]
    for line in table.splitlines():
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        if cells[:2] == [str(horizon), predictor]:
            return cells
    raise AssertionError(f"no row {horizon} {predictor}")


def test_files_exist(written):
    _, out_dir, paths = written
    assert paths["metrics_json"] == out_dir / "metrics.json"
    assert paths["report_md"] == out_dir / "report.md"
    names = sorted(path.name for path in paths["plots"])
    assert names == sorted([
        "gain_test_lt.png", "gain_test_ltv.png", "deciles_test_lt.png", "deciles_test_ltv.png",
        "gain_lifetime-30-180-d_ltv.png", "deciles_lifetime-30-180-d_ltv.png",
        "obs_days_test_lt.png", "obs_days_test_ltv.png"])
    for path in paths["plots"]:
        data = path.read_bytes()
        assert data.startswith(PNG_SIGNATURE) and len(data) > 5000
    summary = json.loads((out_dir / "metrics.json").read_text())
    assert sorted(summary["plots"]) == names
    markdown = (out_dir / "report.md").read_text()
    for name in names:
        assert f"]({name})" in markdown


def test_metrics_json_numbers(written):
    results, out_dir, _ = written

    def reject(constant):
        raise AssertionError(f"metrics.json contains {constant}")

    summary = json.loads((out_dir / "metrics.json").read_text(), parse_constant=reject)
    assert (summary["obs_days"], summary["num_bootstrap"], summary["seed"]) == (7, 30, 2)
    assert len(summary["slices"]) == len(results)
    for item, entry in zip(results[:-1], summary["slices"]):
        assert (entry["task"], entry["horizon"], entry["obs_days"], entry["population"]) == (
            item["task"], item["horizon"], item["obs_days"], "test")
        y, p, ref = _known(item, "y_true"), _known(item, "y_pred"), _known(item, "reference")
        labels, probs = _known(item, "active_true"), _known(item, "active_prob")
        model, reference = entry["model"], entry["reference"]
        assert entry["num_censored"] == int(NUM_USERS - (item["label_mask"] > 0).sum())
        assert model["count"] == y.size
        assert model["nrmse"]["value"] == pytest.approx(np.sqrt(np.mean((y - p) ** 2)) / y.mean())
        assert model["nmae"]["value"] == pytest.approx(np.mean(np.abs(y - p)) / y.mean())
        assert model["gini"]["value"] == pytest.approx(np_gini(y, p))
        assert model["auc"]["value"] == pytest.approx(np_auc(labels, probs))
        assert reference["nmae"]["value"] == pytest.approx(np.mean(np.abs(y - ref)) / y.mean())
        assert reference["auc"] is None
        deciles = model["deciles"]["rows"]
        assert sum(row["count"] for row in deciles) == y.size
        top = np.argsort(p)[-(y.size // 10):]  # distinct predictions: the top tenth
        assert deciles[-1]["mean_actual"] == pytest.approx(y[top].mean())
        if item["obs_days"] == 7:
            ci = model["gini_ci"]
            assert ci["num_resamples"] == 30 and ci["low"] <= ci["high"]
            assert ci["low"] <= model["gini"]["value"] <= ci["high"]
        else:
            assert model["gini_ci"] is None
    degenerate = summary["slices"][-1]["model"]
    assert degenerate["nrmse"] == {"value": None, "note": "all labels zero"}
    assert degenerate["gini"] == {"value": None, "note": "all labels zero"}
    assert summary["slices"][-1]["reference"] is None


def test_gini_interval_is_the_bootstrap_of_the_slice(written):
    results, out_dir, _ = written
    summary = json.loads((out_dir / "metrics.json").read_text())
    item, entry = results[0], summary["slices"][0]
    y, p = _known(item, "y_true"), _known(item, "y_pred")
    rng = np.random.default_rng(2)
    values = []
    for _ in range(30):
        rows = rng.integers(0, y.size, size=y.size)
        values.append(np_gini(y[rows], p[rows]))  # tie-free: p distinct per user
    assert entry["model"]["gini_ci"]["low"] == pytest.approx(np.percentile(values, 2.5))
    assert entry["model"]["gini_ci"]["high"] == pytest.approx(np.percentile(values, 97.5))


def test_report_md_tables(written):
    results, out_dir, _ = written
    markdown = (out_dir / "report.md").read_text()
    for item in results[:-1]:
        if item["obs_days"] != 7:
            continue
        y, p, ref = _known(item, "y_true"), _known(item, "y_pred"), _known(item, "reference")
        cells = _table_cells(markdown, "test", item["task"], item["horizon"], "HT-GNN")
        assert cells[2] == str(y.size)
        assert cells[6] == f"{np.sqrt(np.mean((y - p) ** 2)) / y.mean():.4f}"
        assert cells[7] == f"{np.mean(np.abs(y - p)) / y.mean():.4f}"
        assert cells[8] == f"{np_gini(y, p):.4f}"
        assert cells[10] == f"{np_auc(_known(item, 'active_true'), _known(item, 'active_prob')):.4f}"
        ref_cells = _table_cells(markdown, "test", item["task"], item["horizon"],
                                 "observed value x train ratio")
        assert ref_cells[6] == f"{np.sqrt(np.mean((y - ref) ** 2)) / y.mean():.4f}"
        assert ref_cells[10] == "—"
    cells = _table_cells(markdown, "lifetime 30-180 d", "ltv", 30, "HT-GNN")
    assert cells[6:9] == ["n/a (all labels zero)"] * 3
    assert "- LTV30 HT-GNN: NRMSE n/a (all labels zero)" in markdown


def test_report_md_obs_days_and_derived_sections(written):
    results, out_dir, _ = written
    markdown = (out_dir / "report.md").read_text()
    curve = markdown.split("## Metrics vs observed days s")[1].split("\n## ")[0]
    item = results[3]  # lt, 180 d, s = 14
    y, p = _known(item, "y_true"), _known(item, "y_pred")
    assert (f"| test | LT | 180 | 14 | {y.size} | "
            f"{np.sqrt(np.mean((y - p) ** 2)) / y.mean():.4f} | ") in curve
    derived = markdown.split("## Derived categorical features")[1]
    assert "- `acquisition_month`: calendar month of the first purchase" in derived
    assert "- `first_basket_band`: band of the first day's CD count" in derived


def test_no_derived_section_unless_asked(tmp_path):
    rng = np.random.default_rng(0)
    report.write_report(tmp_path, [_slice(rng, "ltv", 30, 7)], num_bootstrap=0)
    markdown = (tmp_path / "report.md").read_text()
    assert "Derived categorical features" not in markdown
    assert "Metrics vs observed days" not in markdown
    assert not list(tmp_path.glob("obs_days_*.png"))


@pytest.mark.parametrize("change,message", [
    (dict(obs_days=3), r"no slice has obs_days=7; slices have \[3\]"),
    (dict(horizon=0), "horizon must be a positive int, got 0"),
    (dict(y_pred=np.ones(5)), "y_pred has 5 values, y_true has 120"),
    (dict(extra=1), r"unknown keys \['extra'\]"),
], ids=["no_main_s", "horizon", "length", "unknown_key"])
def test_invalid_results_raise(tmp_path, change, message):
    item = {**_slice(np.random.default_rng(0), "ltv", 30, 7), **change}
    with pytest.raises(ValueError, match=message):
        report.write_report(tmp_path, [item], num_bootstrap=0)


def test_duplicate_slices_raise(tmp_path):
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="duplicate slices"):
        report.write_report(tmp_path, [_slice(rng, "lt", 30, 7), _slice(rng, "lt", 30, 7)])
