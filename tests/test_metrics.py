"""Tests of htgnn_tf.metrics against independent numpy/scipy references."""
import itertools

import numpy as np
import pytest
import scipy.stats

from htgnn_tf import metrics

RNG = np.random.default_rng(11)
Y = RNG.lognormal(1.0, 1.2, size=200) * (RNG.random(200) > 0.5)
P = Y * RNG.lognormal(0.0, 0.8, size=200) + RNG.exponential(1.0, size=200)


def ref_gini_distinct(y, p):
    """google/lifetime_value's normalized Gini for predictions without ties."""
    def raw(order):
        curve = np.cumsum(y[order]) / y.sum()
        return 2.0 * curve.mean() - 1.0
    return raw(np.argsort(-p)) / raw(np.argsort(-y))


def test_nrmse_nmae_match_definitions():
    assert metrics.nrmse(Y, P).value == pytest.approx(np.sqrt(np.mean((Y - P) ** 2)) / Y.mean())
    assert metrics.nmae(Y, P).value == pytest.approx(np.mean(np.abs(Y - P)) / Y.mean())
    assert metrics.nrmse(Y, P).note is None


@pytest.mark.parametrize("fn", [metrics.nrmse, metrics.nmae], ids=["nrmse", "nmae"])
@pytest.mark.parametrize("y,p,note", [
    ([0.0, 0.0], [1.0, 2.0], "all labels zero"),
    ([], [], "empty slice"),
    ([-1.0, 0.5], [0.0, 0.0], "mean label not positive"),
], ids=["all_zero", "empty", "negative_mean"])
def test_normalized_errors_undefined(fn, y, p, note):
    result = fn(y, p)
    assert result.value is None and result.note == note
    assert result.format() == f"n/a ({note})"


def test_gain_curve_without_ties():
    y, p = np.array([1.0, 4.0, 0.0, 5.0]), np.array([0.3, 0.1, 0.9, 0.5])
    # order by p desc: 0.9 (y=0), 0.5 (y=5), 0.3 (y=1), 0.1 (y=4); total 10
    np.testing.assert_allclose(metrics.gain_curve(y, p), [0.0, 0.5, 0.6, 1.0])


def test_gain_curve_ties_equal_average_over_all_orders():
    y = np.array([3.0, 0.0, 1.0, 7.0, 2.0, 0.0])
    p = np.array([1.0, 2.0, 1.0, 1.0, 2.0, 0.5])  # two tie groups
    curves = []
    for perm in itertools.permutations(range(6)):
        perm = np.array(perm)
        # keep the order by p descending, any order inside tie groups
        if np.all(np.diff(p[perm]) <= 0):
            curves.append(np.cumsum(y[perm]) / y.sum())
    assert len(curves) == 2 * 6  # 2! * 3! orders
    np.testing.assert_allclose(metrics.gain_curve(y, p), np.mean(curves, axis=0))
    # and the result does not depend on the input order
    shuffle = RNG.permutation(6)
    np.testing.assert_allclose(metrics.gain_curve(y[shuffle], p[shuffle]),
                               metrics.gain_curve(y, p))


def test_normalized_gini_matches_reference():
    got = metrics.normalized_gini(Y, P)
    assert got.note is None
    assert got.value == pytest.approx(ref_gini_distinct(Y, P), rel=1e-12)


@pytest.mark.parametrize("p,want", [
    (lambda y: y, 1.0),
    (lambda y: np.log1p(y) + 3.0, 1.0),  # monotone transforms rank identically
], ids=["perfect", "monotone"])
def test_normalized_gini_perfect_rank(p, want):
    assert metrics.normalized_gini(Y, p(Y)).value == pytest.approx(want)


def test_normalized_gini_is_signed():
    y = np.array([0.0, 1.0, 2.0, 10.0])
    got = metrics.normalized_gini(y, -y).value
    assert got < 0
    assert got == pytest.approx(ref_gini_distinct(y, -y + 1e-9 * np.arange(4)))


@pytest.mark.parametrize("y,p,value,note", [
    ([1.0, 0.0, 3.0], [2.0, 2.0, 2.0], 0.0, "constant predictions"),
    ([0.0, 0.0, 0.0], [1.0, 2.0, 3.0], None, "all labels zero"),
    ([], [], None, "empty slice"),
    ([2.0, 2.0, 2.0], [1.0, 2.0, 3.0], None, "all labels equal"),
    ([-3.0, 1.0], [1.0, 2.0], None, "total label value not positive"),
], ids=["constant_pred", "all_zero", "empty", "constant_labels", "negative_total"])
def test_normalized_gini_degenerate(y, p, value, note):
    result = metrics.normalized_gini(y, p)
    assert (result.value, result.note) == (value, note)


def test_metric_value_format():
    assert metrics.MetricValue(0.123456).format() == "0.1235"
    assert metrics.MetricValue(0.0, "constant predictions").format(2) == "0.00 (constant predictions)"
    assert metrics.MetricValue(None, "only one class").format() == "n/a (only one class)"
    assert metrics.MetricValue(None, "only one class").to_dict() == {
        "value": None, "note": "only one class"}


def brute_force_auc(labels, scores):
    pos, neg = scores[labels == 1], scores[labels == 0]
    wins = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    return wins / (pos.size * neg.size)


@pytest.mark.parametrize("decimals", [None, 0], ids=["no_ties", "many_ties"])
def test_auc_matches_mann_whitney_and_pair_count(decimals):
    labels = (Y > 0).astype(int)
    scores = P if decimals is None else np.round(P, decimals)
    got = metrics.auc(labels, scores).value
    u = scipy.stats.mannwhitneyu(scores[labels == 1], scores[labels == 0]).statistic
    assert got == pytest.approx(u / (labels.sum() * (labels.size - labels.sum())), rel=1e-12)
    assert got == pytest.approx(brute_force_auc(labels, scores), rel=1e-12)


def test_auc_exact_small_case():
    # pairs (pos, neg): (0.8,0.3) win, (0.8,0.5) win, (0.5,0.3) win, (0.5,0.5) tie -> 3.5/4
    assert metrics.auc([1, 0, 1, 0], [0.8, 0.3, 0.5, 0.5]).value == pytest.approx(0.875)


@pytest.mark.parametrize("labels,scores,note", [
    ([1, 1, 1], [0.1, 0.2, 0.3], "only one class"),
    ([0, 0], [0.1, 0.2], "only one class"),
    ([], [], "empty slice"),
], ids=["all_pos", "all_neg", "empty"])
def test_auc_undefined(labels, scores, note):
    assert metrics.auc(labels, scores) == metrics.MetricValue(None, note)


def test_auc_rejects_non_binary_labels():
    with pytest.raises(ValueError, match="0/1"):
        metrics.auc([0, 2], [0.1, 0.2])


@pytest.mark.parametrize("y,p,message", [
    ([1.0, np.nan], [1.0, 2.0], "y has 1 non-finite"),
    ([1.0, 2.0], [1.0, np.inf], "p has 1 non-finite"),
    ([1.0, 2.0], [1.0], "differ in length: 2 vs 1"),
], ids=["nan", "inf", "length"])
def test_bad_inputs_raise(y, p, message):
    with pytest.raises(ValueError, match=message):
        metrics.nrmse(y, p)


def test_bootstrap_ci_percentiles_of_resampled_metric():
    got = metrics.bootstrap_ci(metrics.nmae, Y, P, n=50, seed=3, alpha=0.1)
    rng = np.random.default_rng(3)
    values = []
    for _ in range(50):
        rows = rng.integers(0, Y.size, size=Y.size)
        values.append(np.mean(np.abs(Y[rows] - P[rows])) / Y[rows].mean())
    assert got.low == pytest.approx(np.percentile(values, 5), rel=1e-12)
    assert got.high == pytest.approx(np.percentile(values, 95), rel=1e-12)
    assert got.point.value == pytest.approx(np.mean(np.abs(Y - P)) / Y.mean())
    assert (got.num_resamples, got.num_defined, got.note) == (50, 50, None)
    assert got.low < got.point.value < got.high


def test_bootstrap_ci_skips_undefined_resamples():
    y = np.zeros(20)
    y[0] = 5.0  # about 36% of resamples miss the one buyer: NRMSE undefined there
    p = np.linspace(0.0, 1.0, 20)
    got = metrics.bootstrap_ci(metrics.nrmse, y, p, n=100, seed=0)
    rng = np.random.default_rng(0)
    defined = []
    for _ in range(100):
        rows = rng.integers(0, 20, size=20)
        if y[rows].sum() > 0:
            defined.append(np.sqrt(np.mean((y[rows] - p[rows]) ** 2)) / y[rows].mean())
    assert 50 <= len(defined) < 100
    assert got.num_defined == len(defined)
    assert got.note == f"{100 - len(defined)} of 100 resamples undefined"
    assert got.low == pytest.approx(np.percentile(defined, 2.5), rel=1e-12)


def test_bootstrap_ci_undefined_point():
    got = metrics.bootstrap_ci(metrics.normalized_gini, [0.0, 0.0], [1.0, 2.0], n=10)
    assert (got.low, got.high, got.note) == (None, None, "all labels zero")
    assert got.format() == "n/a (all labels zero)"


def test_decile_table_distinct_predictions():
    table = metrics.decile_table(Y, P)
    order = np.argsort(P)
    assert table.note is None
    assert [row.decile for row in table.rows] == list(range(1, 11))
    for row, members in zip(table.rows, np.array_split(order, 10)):
        assert row.count == 20
        assert row.mean_predicted == pytest.approx(P[members].mean())
        assert row.mean_actual == pytest.approx(Y[members].mean())


def test_decile_table_keeps_ties_together():
    # 20 users; predictions 0 (x8), 1 (x2), 2..11; average rank of the zeros = 4.5
    p = np.r_[np.zeros(8), np.ones(2), np.arange(2.0, 12.0)]
    y = np.arange(20.0)
    table = metrics.decile_table(y, p)
    # bucket = floor((avg_rank - 1) * 10 / 20) + 1
    assert table.rows[0].decile == 2 and table.rows[0].count == 8  # (4.5-1)/2 -> 1 -> 2
    assert table.rows[0].mean_actual == pytest.approx(3.5)
    assert table.rows[1].decile == 5 and table.rows[1].count == 2  # ranks 9, 10 -> 9.5
    counts = {row.decile: row.count for row in table.rows}
    assert counts == {2: 8, 5: 2, 6: 2, 7: 2, 8: 2, 9: 2, 10: 2}
    assert table.note == "3 of 10 buckets empty (tied predictions or few users)"


def test_decile_table_empty():
    assert metrics.decile_table([], []).to_dict() == {"rows": [], "note": "empty slice"}


def test_evaluate_slice_collects_all_metrics():
    labels = (Y > 0).astype(int)
    probs = RNG.random(Y.size)
    result = metrics.evaluate_slice(Y, P, active_true=labels, active_prob=probs,
                                    num_bootstrap=20, seed=1)
    assert result.count == 200
    assert result.label_mean.value == pytest.approx(Y.mean())
    assert result.pred_mean.value == pytest.approx(P.mean())
    assert result.nrmse.value == pytest.approx(np.sqrt(np.mean((Y - P) ** 2)) / Y.mean())
    assert result.nmae.value == pytest.approx(np.mean(np.abs(Y - P)) / Y.mean())
    assert result.gini.value == pytest.approx(ref_gini_distinct(Y, P))
    assert result.auc.value == pytest.approx(brute_force_auc(labels, probs))
    assert result.gini_ci.num_resamples == 20
    assert len(result.deciles.rows) == 10
    as_dict = result.to_dict()
    assert as_dict["gini"]["value"] == result.gini.value
    assert as_dict["auc"] == {"value": result.auc.value, "note": None}


def test_evaluate_slice_empty_and_without_auc():
    result = metrics.evaluate_slice([], [], num_bootstrap=0)
    assert result.count == 0
    assert result.label_mean == metrics.MetricValue(None, "empty slice")
    assert result.gini == metrics.MetricValue(None, "empty slice")
    assert result.auc is None and result.gini_ci is None
    with pytest.raises(ValueError, match="both"):
        metrics.evaluate_slice([1.0], [1.0], active_true=[1])
