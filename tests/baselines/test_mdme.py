"""MDME: bucket edges, the encode/decode round trip, the loss and the expected value
against numpy references; the deep MDME baseline on the tiny dataset."""
import numpy as np
import pytest
import tensorflow as tf

from htgnn_tf.baselines import mdme
from tests.baselines import checks
from tests.baselines.deep_settings import FAST

S, B = 2, 3


def test_edges_zero_bucket_then_quantiles_of_positive_values():
    values = np.concatenate([np.zeros(50), np.expm1(np.linspace(0.1, 5.0, 101))])
    edges = mdme.fit_edges(values, num_segments=S, num_buckets=B)
    z = np.log1p(values[values > 0])
    np.testing.assert_allclose(edges, np.concatenate(
        [[0.0], np.quantile(z, np.linspace(0, 1, S * B))]))


def test_tied_quantiles_split_the_widest_bucket():
    values = np.array([0, 0, 1, 1, 1, 1, 9, 9], float)  # integer labels: ties
    edges = mdme.fit_edges(values, num_segments=S, num_buckets=B)
    # The distinct quantiles are 0 (zero bucket), log1p(1), log1p(9); halving the widest
    # bucket four times fills the 6 buckets.
    a, b = np.log1p(1.0), np.log1p(9.0)
    assert len(edges) == S * B + 1 and np.all(np.diff(edges) > 0)
    np.testing.assert_allclose(edges[[0, -1]], [0.0, b])
    assert np.isclose(edges, a).sum() == 1
    # Halvings of [0, a] or [a, b] leave widths that are those spans / 2^k.
    widths = np.diff(edges)
    spans = np.where(edges[1:] <= a + 1e-12, a, b - a)
    k = np.log2(spans / widths)
    np.testing.assert_allclose(k, np.round(k), atol=1e-9)
    assert widths.max() <= 0.5 * (b - a) + 1e-12


def test_encode_decode_round_trip():
    rng = np.random.default_rng(0)
    train = np.where(rng.random(400) < 0.4, 0.0, rng.lognormal(1.0, 1.5, 400))
    edges = mdme.fit_edges(train, num_segments=S, num_buckets=B)
    y = np.concatenate([[0.0], rng.uniform(0, np.expm1(edges[-1]), 300), train])
    segment, bucket, offset = mdme.encode(y, edges, B)
    assert segment.max() < S and bucket.max() < B and offset.min() >= 0 and offset.max() <= 1
    np.testing.assert_allclose(mdme.decode(segment, bucket, offset, edges, B), y,
                               rtol=1e-9, atol=1e-9)
    # Zero is the first bucket of the first segment, at offset 0.
    assert (segment[0], bucket[0], offset[0]) == (0, 0, 0.0)
    assert np.all((segment[1:] * B + bucket[1:] > 0) | (y[1:] < np.expm1(edges[1])))
    # Beyond the last edge: last bucket, offset 1.
    assert mdme.encode(np.array([1e9]), edges, B)[2][0] == 1.0


def test_tf_encoding_agrees_with_numpy():
    rng = np.random.default_rng(1)
    edges = np.stack([mdme.fit_edges(rng.lognormal(0, 1, 50), num_segments=S, num_buckets=B),
                      mdme.fit_edges(rng.lognormal(2, 1, 50), num_segments=S, num_buckets=B)])
    labels = np.stack([rng.lognormal(0, 1, 20), rng.lognormal(2, 1, 20)], axis=1)
    flat, offset = mdme._encode_tf(tf.constant(labels, tf.float32),
                                   tf.constant(edges, tf.float32))
    for t in range(2):
        segment, bucket, expected_offset = mdme.encode(labels[:, t], edges[t], B)
        np.testing.assert_array_equal(flat.numpy()[:, t], segment * B + bucket)
        np.testing.assert_allclose(offset.numpy()[:, t], expected_offset, atol=1e-4)


def _log_softmax(x):
    x = x - x.max(-1, keepdims=True)
    return x - np.log(np.exp(x).sum(-1, keepdims=True))


def _parts(outputs):
    seg = outputs[..., :S]
    buckets = outputs[..., S:S + S * B].reshape(outputs.shape[:-1] + (S, B))
    offsets = 1 / (1 + np.exp(-outputs[..., S + S * B:].reshape(outputs.shape[:-1] + (S, B))))
    return seg, buckets, offsets


EDGES = np.array([[0.0, 0.2, 0.5, 1.0, 1.5, 2.0, 3.0],
                  [0.0, 0.1, 0.3, 0.6, 1.2, 2.4, 4.8]])
LABELS = np.array([[0.0, 3.0], [1.5, 0.0], [np.expm1(0.75), 50.0]])
OUTPUTS = np.random.default_rng(2).normal(size=[3, 2, S + 2 * S * B])


def test_loss_matches_numpy_reference():
    seg_logits, bucket_logits, offsets = _parts(OUTPUTS)
    total, mask = 0.0, np.array([[1.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
    for u in range(3):
        for t in range(2):
            s, b, o = mdme.encode(np.array([LABELS[u, t]]), EDGES[t], B)
            s, b, o = int(s[0]), int(b[0]), float(o[0])
            term = (-_log_softmax(seg_logits[u, t])[s] - _log_softmax(bucket_logits[u, t, s])[b]
                    + (offsets[u, t, s, b] - o) ** 2)
            total += mask[u, t] * term
    loss = mdme.mdme_loss(LABELS, OUTPUTS, mask, edges=EDGES, num_segments=S, num_buckets=B)
    np.testing.assert_allclose(loss.numpy(), total / mask.sum(), rtol=1e-4)


def test_expected_value_and_positive_probability_match_numpy():
    seg_logits, bucket_logits, offsets = _parts(OUTPUTS)
    probs = np.exp(_log_softmax(seg_logits))[..., None] * np.exp(_log_softmax(bucket_logits))
    expected = np.zeros([3, 2])
    for t in range(2):
        for k in range(S * B):
            s, b = divmod(k, B)
            value = mdme.decode(s, b, offsets[:, t, s, b], EDGES[t], B)
            expected[:, t] += probs[:, t, s, b] * value
    params = dict(edges=EDGES, num_segments=S, num_buckets=B)
    np.testing.assert_allclose(mdme.mdme_expected_value(OUTPUTS, **params).numpy(), expected,
                               rtol=1e-4)
    np.testing.assert_allclose(mdme.mdme_positive_probability(OUTPUTS, **params).numpy(),
                               1 - probs[..., 0, 0], rtol=1e-5)


def test_invalid_segmentation_is_rejected():
    with pytest.raises(ValueError, match="num_segments=0"):
        mdme.fit_edges(np.ones(3), num_segments=0, num_buckets=4)


def test_fit_predict_on_the_tiny_dataset(fit_rows, valid_rows):
    model = mdme.fit(fit_rows, valid_rows, seed=0, **FAST)
    assert len(model.head_params["edges"]) == len(fit_rows.task_names())
    predictions = mdme.predict(model, fit_rows)
    checks.check_prediction_contract(predictions, fit_rows)
    checks.check_beats_constant(predictions, fit_rows)
