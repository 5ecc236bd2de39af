"""Tests of htgnn_tf.losses against independent numpy references."""
import numpy as np
import pytest
import tensorflow as tf

from htgnn_tf import losses

RNG = np.random.default_rng(7)
LABELS = RNG.exponential(3.0, size=(23, 3)).astype(np.float32) * (RNG.random((23, 3)) > 0.4)
PREDS = (LABELS + RNG.normal(0.0, 2.0, size=(23, 3))).astype(np.float32)
MASK = (RNG.random((23, 3)) > 0.3).astype(np.float32)
MASK[:2] = 1.0  # every column has known labels
PROBS = RNG.uniform(0.0, 1.0, size=(23, 3)).astype(np.float32)
PROBS[0, 0], PROBS[1, 1] = 0.0, 1.0  # exercise the clipping
CLASSES = (LABELS > 0).astype(np.float32)


def _with_nan_censored(labels, mask):
    """Censored labels as NaN: a loss must never read them."""
    return np.where(mask > 0, labels, np.nan).astype(np.float32)


def np_huber(errors, delta):
    abs_errors = np.abs(errors)
    return np.where(abs_errors <= delta, 0.5 * errors ** 2, delta * abs_errors - 0.5 * delta ** 2)


def np_column_means(per_user, mask):
    return np.array([per_user[mask[:, j] > 0, j].mean() for j in range(per_user.shape[1])])


def np_dynamic_delta(labels, preds, mask, quantile, epsilon=1e-6):
    errors = np.abs(preds - labels)
    return np.array([max(np.percentile(errors[mask[:, j] > 0, j], 100 * quantile), epsilon)
                     for j in range(labels.shape[1])])


@pytest.mark.parametrize("quantile", [0.0, 0.3, 0.5, 0.95, 1.0])
def test_masked_quantile_matches_numpy_percentile(quantile):
    values = RNG.normal(size=(17, 4)).astype(np.float32)
    values[:6, 2] = 1.5  # ties
    mask = (RNG.random((17, 4)) > 0.4).astype(np.float32)
    mask[:3] = 1.0
    got = losses.masked_quantile(values, mask, quantile).numpy()
    want = [np.percentile(values[mask[:, j] > 0, j], 100 * quantile) for j in range(4)]
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("values,mask,want", [
    ([4.0], [1.0], 4.0),                       # one element
    ([4.0, -2.0, 9.0], [0.0, 0.0, 0.0], 0.0),  # all censored
    ([], [], 0.0),                             # empty batch
    ([-5.0, -1.0, 3.0], [1.0, 1.0, 0.0], np.percentile([-5.0, -1.0], 95)),  # negatives
], ids=["one", "all_masked", "empty", "negative"])
def test_masked_quantile_edge_cases(values, mask, want):
    got = losses.masked_quantile(np.array(values, np.float32), np.array(mask, np.float32), 0.95)
    assert got.shape == ()
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-6)


def test_masked_quantile_rejects_bad_quantile():
    with pytest.raises(ValueError, match="95"):
        losses.masked_quantile([1.0], [1.0], 95)


def test_masked_bce_matches_numpy():
    got = losses.masked_bce(_with_nan_censored(CLASSES, MASK), PROBS, MASK).numpy()
    p = np.clip(PROBS.astype(np.float64), 1e-7, 1 - 1e-7)
    per_user = -(CLASSES * np.log(p) + (1 - CLASSES) * np.log(1 - p))
    np.testing.assert_allclose(got, np_column_means(per_user, MASK), rtol=1e-5)


def test_masked_bce_single_task_is_scalar():
    got = losses.masked_bce(CLASSES[:, 0], PROBS[:, 0], MASK[:, 0])
    p = np.clip(PROBS[:, 0].astype(np.float64), 1e-7, 1 - 1e-7)
    c = CLASSES[:, 0]
    per_user = -(c * np.log(p) + (1 - c) * np.log(1 - p))
    assert got.shape == ()
    np.testing.assert_allclose(got.numpy(), per_user[MASK[:, 0] > 0].mean(), rtol=1e-5)


def test_masked_mse_matches_numpy():
    got = losses.masked_mse(_with_nan_censored(LABELS, MASK), PREDS, MASK).numpy()
    np.testing.assert_allclose(got, np_column_means((PREDS - LABELS) ** 2, MASK), rtol=1e-5)


def test_masked_huber_matches_numpy():
    got = losses.masked_huber(_with_nan_censored(LABELS, MASK), PREDS, MASK, delta=1.5).numpy()
    want = np_column_means(np_huber(PREDS - LABELS, 1.5), MASK)
    np.testing.assert_allclose(got, want, rtol=1e-5)


@pytest.mark.parametrize("quantile", [0.95, 0.5])
def test_dynamic_huber_matches_numpy(quantile):
    labels = _with_nan_censored(LABELS, MASK)
    delta = np_dynamic_delta(LABELS, PREDS, MASK, quantile)
    got_delta = losses.dynamic_huber_delta(labels, PREDS, MASK, quantile).numpy()
    np.testing.assert_allclose(got_delta, delta, rtol=1e-5)
    got = losses.dynamic_huber(labels, PREDS, MASK, quantile).numpy()
    want = np_column_means(np_huber(PREDS - LABELS, delta[None, :]), MASK)
    np.testing.assert_allclose(got, want, rtol=1e-5)
    # Some errors exceed delta, so the linear branch is exercised.
    assert np.any(np.abs(PREDS - LABELS)[MASK > 0] > np.repeat(delta[None], 23, 0)[MASK > 0])


def test_dynamic_huber_gradient_treats_delta_as_constant():
    preds = tf.Variable(PREDS)
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(losses.dynamic_huber(LABELS, preds, MASK))
    grad = tape.gradient(loss, preds).numpy()
    delta = np_dynamic_delta(LABELS, PREDS, MASK, 0.95)
    counts = MASK.sum(axis=0)
    want = np.clip(PREDS - LABELS, -delta, delta) / counts * MASK
    np.testing.assert_allclose(grad, want, rtol=1e-5, atol=1e-7)


def test_dynamic_huber_in_tf_function_with_unknown_shapes():
    spec = tf.TensorSpec([None, None], tf.float32)
    fn = tf.function(losses.dynamic_huber, input_signature=[spec, spec, spec])
    np.testing.assert_allclose(fn(LABELS, PREDS, MASK).numpy(),
                               losses.dynamic_huber(LABELS, PREDS, MASK).numpy(), rtol=1e-6)


ALL_LOSSES = {
    "bce": lambda y, p, m: losses.masked_bce(y, p, m),
    "mse": losses.masked_mse,
    "huber": lambda y, p, m: losses.masked_huber(y, p, m, delta=1.0),
    "dynamic_huber": losses.dynamic_huber,
}


@pytest.mark.parametrize("name", sorted(ALL_LOSSES))
@pytest.mark.parametrize("labels,preds,mask,want", [
    (np.zeros(5), np.zeros(5), np.ones(5), None),        # all-zero batch
    (np.full(4, np.nan), np.full(4, 0.3), np.zeros(4), 0.0),  # every label censored
    (np.array([1.0]), np.array([0.25]), np.array([1.0]), None),  # one element
], ids=["all_zero", "all_masked", "one_element"])
def test_losses_finite_on_degenerate_batches(name, labels, preds, mask, want):
    preds_var = tf.Variable(preds.astype(np.float32))
    with tf.GradientTape() as tape:
        value = ALL_LOSSES[name](labels.astype(np.float32), preds_var, mask.astype(np.float32))
    grad = tape.gradient(value, preds_var)
    assert np.isfinite(value.numpy()) and np.all(np.isfinite(grad.numpy()))
    if want is not None:
        assert value.numpy() == want
        np.testing.assert_array_equal(grad.numpy(), 0.0)


@pytest.mark.parametrize("name,labels,preds,want", [
    ("bce", [1.0], [0.25], -np.log(0.25)),
    ("mse", [1.0], [0.25], 0.75 ** 2),
    ("huber", [1.0], [0.25], 0.5 * 0.75 ** 2),
    ("huber", [3.0], [0.5], 1.0 * 2.5 - 0.5),
    ("dynamic_huber", [3.0], [0.5], 0.5 * 2.5 ** 2),  # delta = |e| itself: quadratic branch
    ("dynamic_huber", [0.0], [0.0], 0.0),
], ids=["bce", "mse", "huber_quadratic", "huber_linear", "dynamic_one", "dynamic_zero"])
def test_losses_one_element_exact(name, labels, preds, want):
    value = ALL_LOSSES[name](np.array(labels, np.float32), np.array(preds, np.float32),
                             np.ones(1, np.float32))
    np.testing.assert_allclose(value.numpy(), want, rtol=1e-6)


def test_predicted_value_clips_at_zero():
    np.testing.assert_array_equal(losses.predicted_value([-2.0, 0.0, 3.5]).numpy(),
                                  [0.0, 0.0, 3.5])


def _terms():
    return dict(regression_labels=_with_nan_censored(LABELS, MASK), regression_preds=PREDS,
                regression_mask=MASK, classification_labels=CLASSES,
                classification_probs=PROBS, js_loss=tf.constant([0.2, 0.3, 0.1]))


@pytest.mark.parametrize("mode", ["multi", "huber", "mse"])
def test_multi_loss_combines_terms_per_eq21(mode):
    betas = dict(beta1=0.7, beta2=1.3, beta3=0.4)
    out = losses.MultiLoss(mode=mode, huber_delta=2.0, **betas)(**_terms())
    errors = PREDS - LABELS
    if mode == "multi":
        regression = np_column_means(
            np_huber(errors, np_dynamic_delta(LABELS, PREDS, MASK, 0.95)[None]), MASK).sum()
        js = 0.6
    elif mode == "huber":
        regression = np_column_means(np_huber(errors, 2.0), MASK).sum()
        js = 0.0
    else:
        regression = np_column_means(errors ** 2, MASK).sum()
        js = 0.0
    p = np.clip(PROBS.astype(np.float64), 1e-7, 1 - 1e-7)
    bce = np_column_means(-(CLASSES * np.log(p) + (1 - CLASSES) * np.log(1 - p)), MASK).sum()
    np.testing.assert_allclose(out["regression"].numpy(), regression, rtol=1e-5)
    np.testing.assert_allclose(out["bce"].numpy(), bce, rtol=1e-5)
    np.testing.assert_allclose(out["js"].numpy(), js, rtol=1e-6)
    np.testing.assert_allclose(out["loss"].numpy(), 0.7 * js + 1.3 * bce + 0.4 * regression,
                               rtol=1e-5)
    total = losses.total_loss(mode=mode, huber_delta=2.0, **betas, **_terms())
    np.testing.assert_allclose(total.numpy(), out["loss"].numpy(), rtol=1e-6)


def test_multi_loss_without_classification_or_js():
    out = losses.MultiLoss()(regression_labels=LABELS, regression_preds=PREDS,
                             regression_mask=MASK)
    assert out["bce"].numpy() == 0.0 and out["js"].numpy() == 0.0
    np.testing.assert_allclose(out["loss"].numpy(),
                               losses.dynamic_huber(LABELS, PREDS, MASK).numpy().sum(),
                               rtol=1e-6)


@pytest.mark.parametrize("kwargs,message", [
    (dict(mode="mae"), r"\('multi', 'huber', 'mse'\), got 'mae'"),
    (dict(beta1=-1.0), "beta1 .* got -1.0"),
    (dict(beta3=float("nan")), "beta3 .* got nan"),
    (dict(quantile=1.5), "got 1.5"),
    (dict(huber_delta=0.0), "huber_delta .* got 0.0"),
    (dict(epsilon=0.0), "epsilon .* got 0.0"),
], ids=["mode", "beta1", "beta3", "quantile", "huber_delta", "epsilon"])
def test_multi_loss_validates_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        losses.MultiLoss(**kwargs)


def test_multi_loss_config_round_trip():
    loss = losses.MultiLoss(mode="huber", beta1=0.1, beta2=0.2, beta3=0.3, quantile=0.9,
                            huber_delta=5.0, epsilon=1e-4)
    config = loss.get_config()
    assert config == {"mode": "huber", "beta1": 0.1, "beta2": 0.2, "beta3": 0.3,
                      "quantile": 0.9, "huber_delta": 5.0, "epsilon": 1e-4}
    registered = tf.keras.utils.get_registered_object("htgnn>MultiLoss")
    assert registered is losses.MultiLoss
    rebuilt = registered.from_config(config)
    np.testing.assert_allclose(rebuilt(**_terms())["loss"].numpy(),
                               loss(**_terms())["loss"].numpy(), rtol=1e-7)
    assert losses.LOSS_MODES == ("multi", "huber", "mse")
