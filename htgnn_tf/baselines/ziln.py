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

The expected value is capped at the largest (scaled) future label of the task in the
fit part of train (``max_future``, fitted by :func:`fit_head_params`). The lognormal mean
grows as ``exp(sigma^2 / 2)`` and users with an uncertain value get a large sigma, so,
uncapped, a few users' expected values can dominate RMSE-type metrics. Even capped, ZILN
has the largest LTV30 and LTV180 NRMSE of ``htgnn benchmark``'s Table I on both datasets
(BENCHMARKS.md). The cap changes no ranking below it and leaves the loss as published.
"""
from __future__ import annotations

import math

import numpy as np
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


def ziln_expected_value(logits, max_future=None):
    """``p * exp(mu + sigma^2 / 2)``, shape ``[...]``; capped at `max_future` (broadcast
    against the last axis of the result: one cap per task) when given."""
    p_logit, mu, sigma = _split(logits)
    mean = tf.sigmoid(p_logit) * tf.exp(mu + 0.5 * tf.square(sigma))  # [...]
    if max_future is None:
        return mean
    return tf.minimum(mean, tf.constant(max_future, tf.float32))


def ziln_positive_probability(logits, max_future=None):
    """``p = sigmoid(p_logit)``, the probability of a positive label, ``[...]``."""
    del max_future  # the cap is on the value only
    return tf.sigmoid(_split(logits)[0])


# The head interface used by deep.py.
def num_outputs(*, max_future=None) -> int:
    del max_future
    return NUM_OUTPUTS


def fit_head_params(future_scaled: dict) -> dict:
    """The cap of the expected value: the largest scaled future label of every task (in
    task order; 1.0 for a task without a labelled user)."""
    return {"max_future": [float(np.max(v)) if len(v) else 1.0
                           for v in future_scaled.values()]}


def loss(labels, logits, mask=None, *, max_future=None):
    """:func:`ziln_loss`, as published (the cap applies to predictions only)."""
    del max_future
    return ziln_loss(labels, logits, mask)


expected_value = ziln_expected_value
positive_probability = ziln_positive_probability


def fit(train_rows, valid_rows, seed: int = 17, **kwargs):
    """Trains the ZILN deep baseline (see ``deep.fit``)."""
    from htgnn_tf.baselines import deep
    return deep.fit("ziln", train_rows, valid_rows, seed, **kwargs)


def predict(model, rows):
    from htgnn_tf.baselines import deep
    return deep.predict(model, rows)
