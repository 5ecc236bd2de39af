"""ZILN: the zero-inflated lognormal loss and its expected value.

Implements Wang, Liu and Miao (2019), "A deep probabilistic model for customer lifetime
value prediction" (arXiv:1912.07753; google/lifetime_value): the network outputs three
numbers per task, ``[p_logit, mu, sigma_raw]``; ``p = sigmoid(p_logit)`` is the
probability of a positive label, and a positive label is ``LogNormal(mu, sigma)`` with
``sigma = max(softplus(sigma_raw), sqrt(epsilon))``. The loss is

    BCE(1[y > 0], p) - 1[y > 0] * log f_LogNormal(y; mu, sigma)

averaged over the (unmasked) examples, and the prediction is the mean
``p * exp(mu + sigma^2 / 2)``.

Departures: the model (``deep.py``) applies ZILN to the part of each label after the
``s`` observed days, divided by the task's label scale (train mean), and adds the
observed part back (like HT-GNN's residual readout), so the point mass at zero is
"no activity after the observed days"; censored labels are masked out. The lognormal
log-density is written out in closed form instead of via ``tfp.distributions`` (TFP is
not part of the stack). Zero labels use a safe stand-in of 1 inside the log-density,
so an all-zero batch has a finite loss and finite gradients.
"""
from __future__ import annotations

import math

import tensorflow as tf

NUM_OUTPUTS = 3
EPSILON = 1e-7


def _split(logits):
    logits = tf.convert_to_tensor(logits, tf.float32)
    p_logit, mu, sigma_raw = logits[..., 0], logits[..., 1], logits[..., 2]
    sigma = tf.maximum(tf.nn.softplus(sigma_raw), math.sqrt(EPSILON))
    return p_logit, mu, sigma


def lognormal_log_pdf(y, mu, sigma):
    """``log f(y)`` of ``LogNormal(mu, sigma)`` for ``y > 0``."""
    log_y = tf.math.log(y)
    return (-log_y - tf.math.log(sigma) - 0.5 * math.log(2.0 * math.pi)
            - tf.square(log_y - mu) / (2.0 * tf.square(sigma)))


def ziln_loss(labels, logits, mask=None):
    """Mean ZILN loss. `labels` ``[...]`` (>= 0), `logits` ``[..., 3]``, optional
    `mask` ``[...]`` (1 = labelled). Returns a float32 scalar (0 if nothing is labelled)."""
    labels = tf.convert_to_tensor(labels, tf.float32)
    p_logit, mu, sigma = _split(logits)
    positive = tf.cast(labels > 0, tf.float32)  # [...]
    bce = tf.nn.sigmoid_cross_entropy_with_logits(labels=positive, logits=p_logit)  # [...]
    safe_labels = positive * labels + (1.0 - positive)  # [...]
    nll = -positive * lognormal_log_pdf(safe_labels, mu, sigma)  # [...]
    mask = tf.ones_like(labels) if mask is None else tf.cast(mask, tf.float32)
    return tf.math.divide_no_nan(tf.reduce_sum((bce + nll) * mask), tf.reduce_sum(mask))


def ziln_expected_value(logits):
    """``p * exp(mu + sigma^2 / 2)``, shape ``[...]``."""
    p_logit, mu, sigma = _split(logits)
    return tf.sigmoid(p_logit) * tf.exp(mu + 0.5 * tf.square(sigma))


def ziln_positive_probability(logits):
    """``p = sigmoid(p_logit)``, the probability of a positive label, ``[...]``."""
    return tf.sigmoid(_split(logits)[0])


# The head interface used by deep.py.
def num_outputs() -> int:
    return NUM_OUTPUTS


def fit_head_params(future_scaled) -> dict:
    """ZILN has no label-dependent head parameters."""
    del future_scaled
    return {}


loss = ziln_loss
expected_value = ziln_expected_value
positive_probability = ziln_positive_probability


def fit(train_rows, valid_rows, seed: int = 17, **kwargs):
    """Trains the ZILN deep baseline (see ``deep.fit``)."""
    from htgnn_tf.baselines import deep
    return deep.fit("ziln", train_rows, valid_rows, seed, **kwargs)


def predict(model, rows):
    from htgnn_tf.baselines import deep
    return deep.predict(model, rows)
