"""expLTV: a whale detector routing users to value experts.

Implements Zhang et al., CIKM 2023, "Out of the box thinking: improving customer
lifetime value modelling via expert routing and game whale detection": a purchase
classifier, a "game whale" (high-value user) detector, and value experts for whales and
for ordinary payers, gated by the detector. Per task the network outputs
``[p_logit, w_logit, m_normal, m_whale]``:

* ``p = sigmoid(p_logit)``: probability of a positive label;
* ``w = sigmoid(w_logit)``: probability that a positive label is a whale, i.e.
  ``y >= threshold`` (threshold fitted on train: the ``whale_quantile`` quantile of
  the positive train labels of the task);
* expert values ``v_e = expm1(softplus(m_e))`` (non-negative; the experts regress
  ``log1p(y)``);
* prediction ``p * (w * v_whale + (1 - w) * v_normal)``.

Loss (mean over labelled examples): ``BCE(1[y > 0], p)`` + over positive labels
``BCE(1[y >= threshold], w)`` + the squared ``log1p`` error of the expert the true
whale label routes the user to (each expert learns only its own population; at
prediction the detector routes softly).

Departures: the detector and the experts are small heads on the shared encoders of
``deep.py`` rather than the paper's own networks and features.
As for the other deep baselines the label is the part after the ``s`` observed days
divided by the task's label scale; censored labels are masked out. The hard routing by
the true whale label during training is our reading of "expert routing".
"""
from __future__ import annotations

import numpy as np
import tensorflow as tf

NUM_OUTPUTS = 4
DEFAULT_WHALE_QUANTILE = 0.9


def _split(outputs):
    outputs = tf.convert_to_tensor(outputs, tf.float32)
    p_logit, w_logit = outputs[..., 0], outputs[..., 1]
    values = tf.math.expm1(tf.nn.softplus(outputs[..., 2:4]))  # [..., 2]: normal, whale
    return p_logit, w_logit, values


def expltv_loss(labels, outputs, mask=None, *, whale_thresholds):
    """`labels` ``[U, tasks]`` (>= 0), `outputs` ``[U, tasks, 4]``, `whale_thresholds`
    ``[tasks]``, optional `mask` ``[U, tasks]``. Returns a float32 scalar."""
    labels = tf.convert_to_tensor(labels, tf.float32)
    p_logit, w_logit, values = _split(outputs)
    positive = tf.cast(labels > 0, tf.float32)  # [U, tasks]
    whale = tf.cast(labels >= tf.constant(whale_thresholds, tf.float32), tf.float32) * positive
    purchase_bce = tf.nn.sigmoid_cross_entropy_with_logits(labels=positive, logits=p_logit)
    whale_bce = tf.nn.sigmoid_cross_entropy_with_logits(labels=whale, logits=w_logit)
    routed = whale * values[..., 1] + (1.0 - whale) * values[..., 0]  # [U, tasks]
    expert_error = tf.square(tf.math.log1p(routed) - tf.math.log1p(tf.maximum(labels, 0.0)))
    per_example = purchase_bce + positive * (whale_bce + expert_error)  # [U, tasks]
    mask = tf.ones_like(labels) if mask is None else tf.cast(mask, tf.float32)
    return tf.math.divide_no_nan(tf.reduce_sum(per_example * mask), tf.reduce_sum(mask))


def expltv_expected_value(outputs, *, whale_thresholds=None):
    """``p * (w * v_whale + (1 - w) * v_normal)``, ``[U, tasks]``."""
    del whale_thresholds
    p_logit, w_logit, values = _split(outputs)
    w = tf.sigmoid(w_logit)
    return tf.sigmoid(p_logit) * (w * values[..., 1] + (1.0 - w) * values[..., 0])


def expltv_positive_probability(outputs, *, whale_thresholds=None):
    del whale_thresholds
    return tf.sigmoid(_split(outputs)[0])


# The head interface used by deep.py.
def num_outputs(*, whale_thresholds) -> int:
    del whale_thresholds
    return NUM_OUTPUTS


def fit_head_params(future_scaled: dict[str, np.ndarray], *,
                    whale_quantile: float = DEFAULT_WHALE_QUANTILE) -> dict:
    """The whale threshold of every task: a quantile of its positive train labels
    (1.0 when a task has no positive label)."""
    if not 0.0 < whale_quantile < 1.0:
        raise ValueError(f"whale_quantile must be in (0, 1), got {whale_quantile!r}")
    thresholds = []
    for values in future_scaled.values():
        positive = values[values > 0]
        thresholds.append(float(np.quantile(positive, whale_quantile)) if len(positive) else 1.0)
    return {"whale_thresholds": thresholds}


loss = expltv_loss
expected_value = expltv_expected_value
positive_probability = expltv_positive_probability


def fit(train_rows, valid_rows, seed: int = 17, **kwargs):
    """Trains the expLTV deep baseline (see ``deep.fit``)."""
    from htgnn_tf.baselines import deep
    return deep.fit("expltv", train_rows, valid_rows, seed, **kwargs)


def predict(model, rows):
    from htgnn_tf.baselines import deep
    return deep.predict(model, rows)
