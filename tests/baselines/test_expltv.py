"""expLTV: loss, gated prediction and whale thresholds against numpy; the deep expLTV
baseline on the tiny dataset."""
import numpy as np
import pytest

from htgnn_tf.baselines import expltv
from tests.baselines import checks
from tests.baselines.deep_settings import FAST


def _sigmoid(x):
    return 1 / (1 + np.exp(-x))


def _bce(target, logit):
    p = _sigmoid(logit)
    return -(target * np.log(p) + (1 - target) * np.log(1 - p))


THRESHOLDS = np.array([2.0, 10.0])
LABELS = np.array([[0.0, 12.0], [3.0, 0.0], [1.0, 4.0]])
OUTPUTS = np.random.default_rng(5).normal(size=[3, 2, 4])


def test_loss_matches_numpy_reference():
    mask = np.array([[1.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
    total = 0.0
    for u in range(3):
        for t in range(2):
            y = LABELS[u, t]
            p_logit, w_logit, m_normal, m_whale = OUTPUTS[u, t]
            term = _bce(float(y > 0), p_logit)
            if y > 0:
                whale = float(y >= THRESHOLDS[t])
                value = np.expm1(np.log1p(np.exp(m_whale if whale else m_normal)))
                term += _bce(whale, w_logit) + (np.log1p(value) - np.log1p(y)) ** 2
            total += mask[u, t] * term
    loss = expltv.expltv_loss(LABELS, OUTPUTS, mask, whale_thresholds=THRESHOLDS)
    np.testing.assert_allclose(loss.numpy(), total / mask.sum(), rtol=1e-5)


def test_prediction_is_purchase_probability_times_gated_experts():
    p, w = _sigmoid(OUTPUTS[..., 0]), _sigmoid(OUTPUTS[..., 1])
    normal = np.expm1(np.log1p(np.exp(OUTPUTS[..., 2])))
    whale = np.expm1(np.log1p(np.exp(OUTPUTS[..., 3])))
    np.testing.assert_allclose(
        expltv.expltv_expected_value(OUTPUTS, whale_thresholds=THRESHOLDS).numpy(),
        p * (w * whale + (1 - w) * normal), rtol=1e-5)
    np.testing.assert_allclose(expltv.expltv_positive_probability(OUTPUTS).numpy(), p, rtol=1e-6)


def test_whale_thresholds_are_quantiles_of_positive_labels():
    params = expltv.fit_head_params({"a": np.array([0, 0, 1, 2, 3, 4, 5.0]),
                                     "b": np.zeros(4)}, whale_quantile=0.75)
    assert params["whale_thresholds"] == [pytest.approx(4.0), 1.0]
    with pytest.raises(ValueError, match="1.5"):
        expltv.fit_head_params({}, whale_quantile=1.5)


def test_fit_predict_on_the_tiny_dataset(fit_rows, valid_rows):
    model = expltv.fit(fit_rows, valid_rows, seed=0, **FAST)
    predictions = expltv.predict(model, fit_rows)
    checks.check_prediction_contract(predictions, fit_rows)
    checks.check_beats_constant(predictions, fit_rows)
