"""Jensen-Shannon supervision of the hypergraph representations, Eq. (6)-(10).

Implements Eq. (6)-(9) of the HT-GNN paper for one regression task. Within each cohort
(graph component), excluding the pair i = j:

* ``M_i`` = row softmax of ``1 - cos(u_i^H, u_j^H)`` over the cohort's other users (Eq. 6);
* ``N_i`` = row softmax of the label differences ``|t_i - t_j|`` over the same users;
* per row, the Jensen-Shannon divergence
  ``JS(M_i, N_i) = 0.5 KL(M_i || A_i) + 0.5 KL(N_i || A_i)``, ``A_i = (M_i + N_i) / 2``;
* ``loss = mean_{i labelled} JS_i + w * mean_{j censored} JS_j`` (Eq. 9), with
  ``w = exp(-|mu_p - mu_t| * |sigma_p - sigma_t|)`` (Eq. 8), mu / sigma the mean and
  (population) standard deviation of t over the censored users (their surrogate t, "p")
  and over the labelled users ("t") of the batch.

Departures from the paper (and choices where it is ambiguous):

* Eq. (7) keeps only the ``KL(M || A)`` half and Eq. (10) writes yet another mix of the
  two halves; we use the standard symmetric JS divergence above (DESIGN.md).
* Labels are compared on ``t = log1p(max(y, 0))``, not in raw units: differences of
  dollars (hundreds) would saturate the softmax into a one-hot N_i.
* Censored users (``label_mask == 0``) use ``stop_gradient(prediction)`` as surrogate
  label, the paper's "model's predicted values"; the gradient reaches the embeddings only.
* The means run over users with at least one other user in their cohort; a single-user
  cohort has no distribution and contributes nothing. An empty group contributes 0.
* A batch without any labelled user has no "true" distribution to compare with, so
  ``w = 0`` there (the surrogates are not trusted); the loss is then 0.
* "Within each batch" is read as within each cohort: cohorts are the graphs the
  hypergraph convolution sees, and users of different cohorts are never compared.
"""
from __future__ import annotations

import tensorflow as tf

from htgnn_tf.data import graph_schema as gs

_MASKED_LOGIT = -1e9


def graph_component_ids(graph, node_set_name: str = gs.USER) -> tf.Tensor:
    """The component (cohort) index of every node of a merged scalar GraphTensor.

    Args:
      graph: a scalar GraphTensor, e.g. after ``merge_batch_to_components()``.
      node_set_name: the node set to label (default ``user``).

    Returns:
      int32 ``[nodes]``: for each node, the index of its component.
    """
    if graph.rank != 0:
        raise ValueError(f"expected a scalar GraphTensor (merge_batch_to_components()), "
                         f"got rank {graph.rank}")
    sizes = graph.node_sets[node_set_name].sizes  # [components]
    return tf.repeat(tf.range(tf.shape(sizes)[0], dtype=tf.int32), sizes)  # [nodes]


def _masked_log_softmax(logits, mask):
    """Row log-softmax over the entries where mask is True; 0 elsewhere."""
    log_probs = tf.nn.log_softmax(tf.where(mask, logits, _MASKED_LOGIT), axis=-1)  # [U, U]
    return tf.where(mask, log_probs, 0.0)  # [U, U]


def pairwise_js_divergence(component_ids, embeddings, targets):
    """Per-user JS divergence between M_i (Eq. 6) and N_i, within each cohort.

    Args:
      component_ids: int ``[users]``, the cohort of each user.
      embeddings: float ``[users, dim]``, the final hypergraph representations u^H.
      targets: float ``[users]``, the (already log1p-scaled) labels t.

    Returns:
      ``(js, has_neighbours)``: float32 ``[users]`` JS(M_i, N_i) in nats (0 for a user
      alone in its cohort) and bool ``[users]``, whether the user has another user in
      its cohort.
    """
    component_ids = tf.reshape(component_ids, [-1])  # [U]
    targets = tf.reshape(tf.cast(targets, tf.float32), [-1])  # [U]
    num_users = tf.shape(component_ids)[0]
    same_cohort = tf.equal(component_ids[:, None], component_ids[None, :])  # [U, U]
    pair_mask = same_cohort & ~tf.eye(num_users, dtype=tf.bool)  # [U, U]

    unit = tf.math.l2_normalize(tf.cast(embeddings, tf.float32), axis=-1)  # [U, dim]
    cosine = tf.matmul(unit, unit, transpose_b=True)  # [U, U]
    log_m = _masked_log_softmax(1.0 - cosine, pair_mask)  # [U, U]
    log_n = _masked_log_softmax(tf.abs(targets[:, None] - targets[None, :]), pair_mask)  # [U, U]
    m = tf.where(pair_mask, tf.exp(log_m), 0.0)  # [U, U]
    n = tf.where(pair_mask, tf.exp(log_n), 0.0)  # [U, U]
    log_a = tf.math.log(tf.where(pair_mask, 0.5 * (m + n), 1.0))  # [U, U]
    js = 0.5 * tf.reduce_sum(m * (log_m - log_a) + n * (log_n - log_a), axis=-1)  # [U]
    return tf.maximum(js, 0.0), tf.reduce_any(pair_mask, axis=-1)


def _mean_std(values, mask):
    count = tf.reduce_sum(mask)
    mean = tf.math.divide_no_nan(tf.reduce_sum(values * mask), count)
    variance = tf.math.divide_no_nan(tf.reduce_sum(tf.square(values - mean) * mask), count)
    return mean, tf.sqrt(variance)


def surrogate_weight(targets, label_mask):
    """``w = exp(-|mu_p - mu_t| * |sigma_p - sigma_t|)`` of Eq. (8), stop-gradient.

    Args:
      targets: float ``[users]``, t of every user (surrogate t for censored users).
      label_mask: float ``[users]``, 1 = label known, 0 = censored.

    Returns:
      float32 scalar; 0 when no user of the batch is labelled.
    """
    targets = tf.stop_gradient(tf.cast(targets, tf.float32))  # [U]
    known = tf.cast(tf.cast(label_mask, tf.float32) > 0.5, tf.float32)  # [U]
    mu_t, sigma_t = _mean_std(targets, known)
    mu_p, sigma_p = _mean_std(targets, 1.0 - known)
    weight = tf.exp(-tf.abs(mu_p - mu_t) * tf.abs(sigma_p - sigma_t))
    return tf.where(tf.reduce_sum(known) > 0, weight, 0.0)


def js_supervision_loss(component_ids, embeddings, labels, label_mask, predictions):
    """The JS supervision loss of Eq. (9) for one regression task.

    Args:
      component_ids: int ``[users]``, the cohort of each user
        (:func:`graph_component_ids`).
      embeddings: float ``[users, dim]``, output of the last hypergraph layer.
      labels: float ``[users]``, the task's labels in their own units (days, dollars).
      label_mask: float ``[users]``, 1 = label known, 0 = censored.
      predictions: float ``[users]``, the task's regression output, same units as labels.

    Returns:
      float32 scalar, finite for any mix of labelled / censored users.
    """
    labels = tf.reshape(tf.cast(labels, tf.float32), [-1])  # [U]
    predictions = tf.reshape(tf.cast(predictions, tf.float32), [-1])  # [U]
    known = tf.reshape(tf.cast(label_mask, tf.float32) > 0.5, [-1])  # [U]
    values = tf.where(known, labels, tf.stop_gradient(predictions))  # [U]
    targets = tf.math.log1p(tf.maximum(values, 0.0))  # [U]

    js, has_neighbours = pairwise_js_divergence(component_ids, embeddings, targets)  # [U]
    labelled = tf.cast(known & has_neighbours, tf.float32)  # [U]
    censored = tf.cast(~known & has_neighbours, tf.float32)  # [U]
    labelled_term = tf.math.divide_no_nan(tf.reduce_sum(js * labelled), tf.reduce_sum(labelled))
    censored_term = tf.math.divide_no_nan(tf.reduce_sum(js * censored), tf.reduce_sum(censored))
    weight = surrogate_weight(targets, tf.cast(known, tf.float32))
    return labelled_term + weight * censored_term
