"""BTYD: RFM summaries on hand-made rows, BG/NBD expectations and activity
probabilities against formulas of Fader, Hardie & Lee (2005) written with scipy, and
fit / predict on the tiny dataset."""
import numpy as np
import pandas as pd
import pytest
from scipy import integrate, special, stats

from htgnn_tf.baselines import btyd, tabular
from htgnn_tf.data import graph_schema as gs
from tests.baselines import checks

lifetimes = pytest.importorskip("lifetimes")


def _hand_rows():
    """3 users, 1 metric (the value), W = 7, s = 7; horizon 30."""
    seq = np.zeros([3, 1, 7], np.float32)
    seq[0, 0, [0, 2, 5]] = [10.0, 4.0, 8.0]  # 2 repeat days, value 12 -> monetary 6
    seq[1, 0, 0] = 3.0                        # no repeat
    seq[2, 0, [0, 1]] = [1.0, 2.0]            # 1 repeat day of value 2
    obs_days = np.array([7, 7, 7])
    arrays = {gs.USER_ID: np.array(["a", "b", "c"], dtype=object), gs.SEQ_VALUES: seq,
              gs.OBS_DAYS: obs_days}
    arrays.update(tabular.observed_summaries(seq, obs_days, value_metric_index=0))
    return tabular.UserRows(arrays=arrays, data_dir="", split="test", part="all",
                            obs_days=7, horizons=[30], value_metric_index=0)


def test_rfm_of_hand_made_rows():
    data = btyd.rfm(_hand_rows())
    np.testing.assert_array_equal(data["frequency"], [2, 0, 1])
    np.testing.assert_array_equal(data["recency"], [5, 0, 1])
    np.testing.assert_array_equal(data["T"], [6, 6, 6])
    np.testing.assert_allclose(data["monetary_value"], [6.0, 0.0, 2.0])


R, ALPHA, A, B = 0.6, 3.0, 0.8, 2.5


def _bgnbd_reference(x, tx, T, t):
    """Fader, Hardie & Lee (2005): P(alive) (their eq. 12) and E[Y(t) | x, tx, T] (eq. 10)."""
    ratio = A / (B + x - 1) * ((ALPHA + T) / (ALPHA + tx)) ** (R + x)
    p_alive = 1.0 / (1.0 + (x > 0) * ratio)
    hyp = special.hyp2f1(R + x, B + x, A + B + x - 1, t / (ALPHA + T + t))
    expected = ((A + B + x - 1) / (A - 1)
                * (1 - ((ALPHA + T) / (ALPHA + T + t)) ** (R + x) * hyp)
                / (1 + (x > 0) * ratio))
    return p_alive, expected


def _no_purchase_given_alive(x, T, t):
    """E[exp(-lambda t)] with lambda ~ Gamma(r + x, rate alpha + T), by quadrature."""
    density = stats.gamma(R + x, scale=1.0 / (ALPHA + T)).pdf
    return integrate.quad(lambda lam: np.exp(-lam * t) * density(lam), 0, np.inf)[0]


def test_predict_maps_bgnbd_expectations_to_the_tasks():
    rows = _hand_rows()
    purchases = lifetimes.BetaGeoFitter()
    purchases.params_ = pd.Series({"r": R, "alpha": ALPHA, "a": A, "b": B})
    model = btyd.BTYDModel(purchases, None, mean_value_per_active_day=5.0,
                           monetary_source="fallback", penalizer=0.0)
    predictions = btyd.predict(model, rows)
    x, tx, T, t = np.array([2.0, 0.0, 1.0]), np.array([5.0, 0.0, 1.0]), 6.0, 23.0
    p_alive, expected = _bgnbd_reference(x, tx, T, t)
    np.testing.assert_allclose(predictions["lt_30"], rows["observed_active_days"] + expected,
                               rtol=1e-5)
    np.testing.assert_allclose(predictions["ltv_30"], rows["observed_value"] + 5.0 * expected,
                               rtol=1e-5)
    p_active = [p_alive[i] * (1 - _no_purchase_given_alive(x[i], T, t)) for i in range(3)]
    np.testing.assert_allclose(predictions["p_active_after_obs_30"], p_active, rtol=1e-5)


@pytest.mark.parametrize("q, num_repeaters, kept", [
    pytest.param(2.0, 12, True, id="q above 1"),
    pytest.param(0.9, 12, False, id="q at most 1: no population mean"),
    pytest.param(2.0, btyd.MIN_GAMMA_GAMMA_USERS - 1, False, id="too few repeaters"),
])
def test_gamma_gamma_is_used_only_with_a_population_mean(q, num_repeaters, kept):
    class FakeGammaGamma:
        def __init__(self, penalizer_coef):
            self.params_ = {"p": 1.0, "q": q, "v": 1.0}

        def fit(self, frequency, monetary_value):
            assert len(frequency) == num_repeaters and np.all(monetary_value > 0)

    fake_lifetimes = type("FakeLifetimes", (), {"GammaGammaFitter": FakeGammaGamma})
    data = {"frequency": np.concatenate([np.ones(num_repeaters), [0, 3]]),
            "monetary_value": np.concatenate([np.full(num_repeaters, 2.0), [0, 0]])}
    spend = btyd._fit_spend(fake_lifetimes, data, penalizer=0.0)
    assert (spend is not None) == kept


def test_fit_predict_on_the_tiny_dataset(fit_rows, valid_rows):
    model = btyd.fit(fit_rows, valid_rows)
    assert model.penalizer in btyd.PENALIZERS
    predictions = btyd.predict(model, fit_rows)
    checks.check_prediction_contract(predictions, fit_rows)
    # BG/NBD extrapolates seven days of activity to a year (no churn is visible in a
    # week), so its MSE is far above a constant's on this log; its ranking is not.
    checks.check_ranks_better_than_constant(predictions, fit_rows)
