"""ZILN loss and expected value against scipy / numpy; the deep ZILN baseline on the
tiny dataset."""
import numpy as np
import pytest
import tensorflow as tf
from scipy import stats

from htgnn_tf.baselines import ziln
from tests.baselines import checks
from tests.baselines.deep_settings import FAST


def _softplus(x):
    return np.log1p(np.exp(x))


def _reference_loss(labels, logits, mask=None):
    """Per-example BCE + lognormal NLL (scipy), masked mean."""
    p = 1.0 / (1.0 + np.exp(-logits[..., 0]))
    mu = logits[..., 1]
    sigma = np.maximum(_softplus(logits[..., 2]), np.sqrt(1e-7))
    positive = labels > 0
    bce = -(positive * np.log(p) + (~positive) * np.log(1 - p))
    logpdf = stats.lognorm.logpdf(np.where(positive, labels, 1.0), s=sigma, scale=np.exp(mu))
    per_example = bce - positive * logpdf
    mask = np.ones_like(labels) if mask is None else mask
    return (per_example * mask).sum() / mask.sum()


RNG = np.random.default_rng(3)
LABELS = np.array([[0.0, 2.5], [0.7, 0.0], [13.0, 0.2]])
LOGITS = RNG.normal(size=[3, 2, 3])


def test_lognormal_log_pdf_matches_scipy():
    y = np.array([0.1, 1.0, 7.5])
    mu, sigma = np.array([0.0, -0.3, 1.2]), np.array([0.5, 1.0, 2.0])
    np.testing.assert_allclose(ziln.lognormal_log_pdf(y, mu, sigma).numpy(),
                               stats.lognorm.logpdf(y, s=sigma, scale=np.exp(mu)), rtol=1e-5)


def test_loss_matches_scipy_reference():
    np.testing.assert_allclose(ziln.ziln_loss(LABELS, LOGITS).numpy(),
                               _reference_loss(LABELS, LOGITS), rtol=1e-5)


def test_loss_with_mask_averages_over_labelled_examples():
    mask = np.array([[1.0, 0.0], [1.0, 1.0], [0.0, 1.0]])
    np.testing.assert_allclose(ziln.ziln_loss(LABELS, LOGITS, mask).numpy(),
                               _reference_loss(LABELS, LOGITS, mask), rtol=1e-5)
    assert ziln.ziln_loss(LABELS, LOGITS, np.zeros_like(mask)).numpy() == 0.0


def test_expected_value_is_p_times_lognormal_mean():
    p = 1.0 / (1.0 + np.exp(-LOGITS[..., 0]))
    sigma = _softplus(LOGITS[..., 2])
    mean = stats.lognorm.mean(s=sigma, scale=np.exp(LOGITS[..., 1]))
    np.testing.assert_allclose(ziln.ziln_expected_value(LOGITS).numpy(), p * mean, rtol=1e-5)
    np.testing.assert_allclose(ziln.ziln_positive_probability(LOGITS).numpy(), p, rtol=1e-6)


def test_all_zero_batch_has_finite_loss_and_gradients():
    logits = tf.Variable(np.array([[5.0, 30.0, -40.0], [-2.0, -8.0, 9.0]], np.float32))
    labels = np.zeros([2], np.float32)
    with tf.GradientTape() as tape:
        loss = ziln.ziln_loss(labels, logits)
    grads = tape.gradient(loss, logits).numpy()
    assert np.isfinite(loss.numpy()) and np.all(np.isfinite(grads))
    # Only the classification part is trained on zeros.
    np.testing.assert_array_equal(grads[:, 1:], 0.0)
    np.testing.assert_allclose(loss.numpy(), np.mean(_softplus(np.array([5.0, -2.0]))),
                               rtol=1e-5)


def test_fit_predict_on_the_tiny_dataset(fit_rows, valid_rows):
    model = ziln.fit(fit_rows, valid_rows, seed=0, **FAST)
    predictions = ziln.predict(model, fit_rows)
    checks.check_prediction_contract(predictions, fit_rows)
    checks.check_beats_constant(predictions, fit_rows)


def test_expected_value_is_capped_per_task_at_the_largest_train_label():
    params = ziln.fit_head_params({"lt_30": np.array([0.0, 0.5, 2.0]),
                                   "ltv_30": np.array([0.0, 7.0, 1.0]), "lt_180": np.array([])})
    assert params == {"max_future": [2.0, 7.0, 1.0]}
    # One user with a huge sigma (mean e^50) and one with a small mean, three tasks.
    logits = np.array([[[0.0, 0.0, 10.0], [0.0, 0.0, 10.0], [0.0, 0.0, 10.0]],
                       [[0.0, -3.0, -5.0], [0.0, -3.0, -5.0], [0.0, -3.0, -5.0]]], np.float32)
    small = 0.5 * np.exp(-3.0 + 0.5 * _softplus(-5.0) ** 2)
    np.testing.assert_allclose(ziln.expected_value(logits, **params).numpy(),
                               [[2.0, 7.0, 1.0], [small, small, small]], rtol=1e-5)
    np.testing.assert_allclose(ziln.positive_probability(logits, **params).numpy(), 0.5)
    # The loss of the head interface is the published loss: the cap does not enter it.
    np.testing.assert_allclose(ziln.loss(LABELS, LOGITS, None, max_future=[1.0, 1.0]).numpy(),
                               _reference_loss(LABELS, LOGITS), rtol=1e-5)
