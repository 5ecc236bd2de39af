"""MDME: multi-distribution multi-experts LTV model (distribution segmentation).

Implements Li et al., CIKM 2022, "Billion-user Customer Lifetime Value Prediction: An
Industrial-scale Solution from Kuaishou": the label distribution is segmented into
``num_segments`` sub-distributions, each cut into ``num_buckets`` buckets (fitted on the
train labels); per task the network solves (1) sub-distribution classification, (2)
bucket classification within the sub-distribution, (3) regression of the normalized
offset inside the bucket, ``(y - lower) / (upper - lower)`` in ``[0, 1]``. A label is
encoded as ``(segment, bucket, offset)`` and decoded back exactly.

Departures and decisions:

* Like the other deep baselines (``deep.py``), MDME models the part of each label
  after the ``s`` observed days divided by the task's label scale, and the observed part
  is added back; censored labels are masked out.
* Buckets live on ``z = log1p(y)`` (heavy tails otherwise put almost every user in
  one bucket). The first bucket of the first segment is ``[0, smallest positive train
  z)``: the zero mass of the zero-inflated label, so ``P(y > 0) = 1 - P(segment 0) *
  P(bucket 0 | segment 0)``. The other edges are quantiles of the positive train
  values; tied quantiles (integer labels such as LT) are replaced by splitting the
  widest bucket in half until there are ``num_segments * num_buckets`` buckets, so edges
  are strictly increasing. Values beyond the last edge are encoded in the last bucket
  with offset 1 (decoded to the last edge).
* Prediction: a soft decode, the expectation over the predicted segment and bucket
  probabilities of each bucket decoded with its predicted offset (rather than the
  decode of the most likely segment and bucket alone), so the output is a mean, as
  the RMSE-type metrics expect.
* The paper's distribution-adaptive gates and its multi-expert towers are one shared
  MLP here (``deep.py``); the loss is the unweighted sum of the three terms.
"""
from __future__ import annotations

import numpy as np
import tensorflow as tf

DEFAULT_SEGMENTS = 4
DEFAULT_BUCKETS = 4


def fit_edges(values: np.ndarray, *, num_segments: int = DEFAULT_SEGMENTS,
              num_buckets: int = DEFAULT_BUCKETS) -> np.ndarray:
    """Bucket edges ``[num_segments * num_buckets + 1]`` on ``z = log1p(values)``."""
    if num_segments < 1 or num_buckets < 1 or num_segments * num_buckets < 2:
        raise ValueError(f"need num_segments, num_buckets >= 1 and at least 2 buckets, got "
                         f"num_segments={num_segments!r}, num_buckets={num_buckets!r}")
    n = num_segments * num_buckets
    z = np.log1p(np.maximum(np.asarray(values, np.float64), 0.0))
    positive = z[z > 0]
    if len(positive) == 0:
        return np.linspace(0.0, 1.0, n + 1)
    quantiles = np.quantile(positive, np.linspace(0.0, 1.0, n))  # sorted, may tie
    # Ties (up to rounding in the quantile interpolation) are dropped.
    distinct = np.concatenate([[True], np.diff(quantiles) > 1e-9 * (1.0 + quantiles[1:])])
    edges = np.concatenate([[0.0], quantiles[distinct]])
    while len(edges) < n + 1:
        widest = int(np.argmax(np.diff(edges)))
        edges = np.insert(edges, widest + 1, 0.5 * (edges[widest] + edges[widest + 1]))
    return edges


def encode(y: np.ndarray, edges: np.ndarray, num_buckets: int):
    """``y`` -> ``(segment, bucket, offset)`` (int, int, float in [0, 1])."""
    z = np.log1p(np.maximum(np.asarray(y, np.float64), 0.0))
    n = len(edges) - 1
    flat = np.clip(np.searchsorted(edges, z, side="right") - 1, 0, n - 1)
    offset = np.clip((z - edges[flat]) / (edges[flat + 1] - edges[flat]), 0.0, 1.0)
    return flat // num_buckets, flat % num_buckets, offset


def decode(segment, bucket, offset, edges: np.ndarray, num_buckets: int) -> np.ndarray:
    """The inverse of :func:`encode` (exact inside the edge range)."""
    flat = np.asarray(segment) * num_buckets + np.asarray(bucket)
    z = edges[flat] + np.asarray(offset) * (edges[flat + 1] - edges[flat])
    return np.expm1(z)


def _split(outputs, num_segments: int, num_buckets: int):
    """Per-task outputs ``[U, tasks, S + 2 S B]`` -> segment logits ``[U, tasks, S]``,
    bucket logits and offsets ``[U, tasks, S, B]``."""
    outputs = tf.convert_to_tensor(outputs, tf.float32)
    s, b = num_segments, num_buckets
    shape = tf.concat([tf.shape(outputs)[:-1], [s, b]], axis=0)
    segment_logits = outputs[..., :s]  # [U, tasks, S]
    bucket_logits = tf.reshape(outputs[..., s:s + s * b], shape)  # [U, tasks, S, B]
    offsets = tf.sigmoid(tf.reshape(outputs[..., s + s * b:], shape))  # [U, tasks, S, B]
    return segment_logits, bucket_logits, offsets


def _encode_tf(labels, edges):
    """TF twin of :func:`encode` for ``labels [U, tasks]``, ``edges [tasks, n + 1]``;
    returns the flat bucket ``[U, tasks]`` and the offset."""
    z = tf.math.log1p(tf.maximum(labels, 0.0))  # [U, tasks]
    n = edges.shape[-1] - 1
    flat = tf.searchsorted(edges, tf.transpose(z), side="right") - 1  # [tasks, U]
    flat = tf.transpose(tf.clip_by_value(flat, 0, n - 1))  # [U, tasks]
    task_edges = tf.broadcast_to(edges[None], tf.concat([tf.shape(flat), [n + 1]], 0))
    lower = tf.gather(task_edges, flat, batch_dims=2)  # [U, tasks]
    upper = tf.gather(task_edges, flat + 1, batch_dims=2)  # [U, tasks]
    offset = tf.clip_by_value((z - lower) / (upper - lower), 0.0, 1.0)  # [U, tasks]
    return flat, offset


def mdme_loss(labels, outputs, mask=None, *, edges, num_segments: int, num_buckets: int):
    """Segment CE + bucket CE (given the true segment) + squared offset error (at the
    true bucket), averaged over labelled examples. `labels` ``[U, tasks]``, `edges`
    ``[tasks, S B + 1]``."""
    labels = tf.convert_to_tensor(labels, tf.float32)
    edges = tf.constant(edges, tf.float32)
    segment_logits, bucket_logits, offsets = _split(outputs, num_segments, num_buckets)
    flat, offset_true = _encode_tf(labels, edges)
    segment = flat // num_buckets  # [U, tasks]
    bucket = flat % num_buckets  # [U, tasks]
    segment_ce = tf.nn.sparse_softmax_cross_entropy_with_logits(
        labels=segment, logits=segment_logits)  # [U, tasks]
    true_bucket_logits = tf.gather(bucket_logits, segment, batch_dims=2)  # [U, tasks, B]
    bucket_ce = tf.nn.sparse_softmax_cross_entropy_with_logits(
        labels=bucket, logits=true_bucket_logits)  # [U, tasks]
    flat_offsets = tf.reshape(offsets, tf.concat([tf.shape(offsets)[:2], [-1]], 0))
    offset_pred = tf.gather(flat_offsets, flat, batch_dims=2)  # [U, tasks]
    per_example = segment_ce + bucket_ce + tf.square(offset_pred - offset_true)  # [U, tasks]
    mask = tf.ones_like(labels) if mask is None else tf.cast(mask, tf.float32)
    return tf.math.divide_no_nan(tf.reduce_sum(per_example * mask), tf.reduce_sum(mask))


def _bucket_probabilities(outputs, num_segments, num_buckets):
    segment_logits, bucket_logits, offsets = _split(outputs, num_segments, num_buckets)
    probs = (tf.nn.softmax(segment_logits)[..., None]
             * tf.nn.softmax(bucket_logits))  # [U, tasks, S, B]
    return probs, offsets


def mdme_expected_value(outputs, *, edges, num_segments: int, num_buckets: int):
    """``sum_k P(k) * decode(k, offset_k)`` over all buckets k, ``[U, tasks]``."""
    edges = tf.constant(edges, tf.float32)  # [tasks, n + 1]
    probs, offsets = _bucket_probabilities(outputs, num_segments, num_buckets)
    shape = tf.concat([tf.shape(probs)[:2], [-1]], 0)
    probs, offsets = tf.reshape(probs, shape), tf.reshape(offsets, shape)  # [U, tasks, n]
    lower, width = edges[:, :-1], edges[:, 1:] - edges[:, :-1]  # [tasks, n]
    values = tf.math.expm1(lower + offsets * width)  # [U, tasks, n]
    return tf.reduce_sum(probs * values, axis=-1)


def mdme_positive_probability(outputs, *, edges, num_segments: int, num_buckets: int):
    """``1 - P(segment 0, bucket 0)``: the probability of a positive label."""
    del edges
    probs, _ = _bucket_probabilities(outputs, num_segments, num_buckets)
    return 1.0 - probs[..., 0, 0]


# The head interface used by deep.py.
def num_outputs(*, edges, num_segments: int, num_buckets: int) -> int:
    del edges
    return num_segments + 2 * num_segments * num_buckets


def fit_head_params(future_scaled: dict[str, np.ndarray], *, num_segments: int = DEFAULT_SEGMENTS,
                    num_buckets: int = DEFAULT_BUCKETS) -> dict:
    """Head parameters from the train labels (task -> scaled future labels, in task
    order): the edges of every task."""
    edges = [fit_edges(v, num_segments=num_segments, num_buckets=num_buckets).tolist()
             for v in future_scaled.values()]
    return {"edges": edges, "num_segments": num_segments, "num_buckets": num_buckets}


loss = mdme_loss
expected_value = mdme_expected_value
positive_probability = mdme_positive_probability


def fit(train_rows, valid_rows, seed: int = 17, **kwargs):
    """Trains the MDME deep baseline (see ``deep.fit``)."""
    from htgnn_tf.baselines import deep
    return deep.fit("mdme", train_rows, valid_rows, seed, **kwargs)


def predict(model, rows):
    from htgnn_tf.baselines import deep
    return deep.predict(model, rows)
