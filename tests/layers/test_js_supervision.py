"""Tests of the JS supervision loss (Eq. 6-10) against scipy and a numpy reference."""
import numpy as np
import pytest
import tensorflow as tf
from scipy.spatial.distance import jensenshannon
from scipy.special import softmax

from htgnn_tf.layers.js_supervision import (graph_component_ids, js_supervision_loss,
                                            pairwise_js_divergence, surrogate_weight)
from tests.layers.test_hypergraph_conv import merged_cohort_graphs


def _cosine(embeddings):
    norms = np.sqrt(np.maximum((embeddings ** 2).sum(axis=1, keepdims=True), 1e-12))
    unit = embeddings / norms
    return unit @ unit.T


def _row_distributions(component_ids, embeddings, targets, i):
    """M_i (Eq. 6) and N_i over the other users of i's cohort, or None if i is alone."""
    others = [j for j in range(len(component_ids))
              if component_ids[j] == component_ids[i] and j != i]
    if not others:
        return None, None
    m = softmax(1.0 - _cosine(embeddings)[i, others])
    n = softmax(np.abs(targets[i] - targets[others]))
    return m, n


def reference_loss(component_ids, embeddings, labels, label_mask, predictions):
    """Numpy reimplementation of the loss, KL written out term by term."""
    known = np.asarray(label_mask) > 0.5
    targets = np.log1p(np.maximum(np.where(known, labels, predictions), 0.0))
    js = np.zeros(len(labels))
    has_neighbours = np.zeros(len(labels), bool)
    for i in range(len(labels)):
        m, n = _row_distributions(component_ids, embeddings, targets, i)
        if m is None:
            continue
        a = (m + n) / 2
        js[i] = 0.5 * np.sum(m * np.log(m / a)) + 0.5 * np.sum(n * np.log(n / a))
        has_neighbours[i] = True

    def group_mean(rows):
        return js[rows].mean() if rows.any() else 0.0

    if known.any():
        mu_t, sigma_t = targets[known].mean(), targets[known].std()
        mu_p, sigma_p = ((targets[~known].mean(), targets[~known].std()) if (~known).any()
                         else (0.0, 0.0))
        weight = np.exp(-abs(mu_p - mu_t) * abs(sigma_p - sigma_t))
    else:
        weight = 0.0
    return (group_mean(known & has_neighbours)
            + weight * group_mean(~known & has_neighbours)), weight


def _batch(seed, component_ids, mask=None):
    rng = np.random.default_rng(seed)
    users = len(component_ids)
    embeddings = rng.normal(size=(users, 4))
    labels = np.exp(rng.normal(2.0, 1.5, size=users)) * (rng.random(users) > 0.3)
    predictions = np.exp(rng.normal(2.0, 1.0, size=users)) - 1.0  # some below zero
    if mask is None:
        mask = (rng.random(users) > 0.4).astype(float)
    return (np.asarray(component_ids), embeddings, labels, np.asarray(mask, float),
            predictions)


def _tf_loss(component_ids, embeddings, labels, label_mask, predictions):
    return js_supervision_loss(tf.constant(component_ids), tf.constant(embeddings, tf.float32),
                               tf.constant(labels, tf.float32),
                               tf.constant(label_mask, tf.float32),
                               tf.constant(predictions, tf.float32)).numpy()


def test_row_js_matches_scipy():
    component_ids = np.array([0, 0, 0, 0, 1, 1, 1, 1, 1, 2, 3, 3])  # cohorts 2, 3: 1, 2 users
    rng = np.random.default_rng(0)
    embeddings = rng.normal(size=(12, 5))
    targets = rng.gamma(1.0, 2.0, size=12)
    js, has_neighbours = pairwise_js_divergence(
        tf.constant(component_ids), tf.constant(embeddings, tf.float32),
        tf.constant(targets, tf.float32))
    for i in range(12):
        m, n = _row_distributions(component_ids, embeddings, targets, i)
        expected = 0.0 if m is None else jensenshannon(m, n) ** 2  # natural log
        assert has_neighbours.numpy()[i] == (m is not None)
        np.testing.assert_allclose(js.numpy()[i], expected, rtol=1e-4, atol=1e-7,
                                   err_msg=f"row {i}")
    # Non-trivial rows; with one or two users per cohort M_i = N_i (a single point).
    assert (js.numpy()[component_ids <= 1] > 1e-4).all()
    np.testing.assert_array_equal(js.numpy()[component_ids >= 2], 0.0)


def test_loss_matches_numpy_reference():
    batch = _batch(1, [0] * 7 + [1] * 6 + [2] * 5)
    expected, weight = reference_loss(*batch)
    assert 0.0 < weight < 1.0
    np.testing.assert_allclose(_tf_loss(*batch), expected, rtol=1e-4, atol=1e-7)


def test_surrogate_weight_matches_formula():
    targets = np.array([1.0, 2.0, 4.0, 0.5, 3.5])
    mask = np.array([1.0, 1.0, 1.0, 0.0, 0.0])
    mu_t, sigma_t = np.mean([1.0, 2.0, 4.0]), np.std([1.0, 2.0, 4.0])
    mu_p, sigma_p = 2.0, 1.5
    expected = np.exp(-abs(mu_p - mu_t) * abs(sigma_p - sigma_t))
    np.testing.assert_allclose(surrogate_weight(tf.constant(targets, tf.float32),
                                                tf.constant(mask, tf.float32)).numpy(),
                               expected, rtol=1e-6)


@pytest.mark.parametrize("component_ids,mask,equal_labels", [
    ([0] * 5 + [1] * 4, [0.0] * 9, False),
    ([0] * 5 + [1] * 4, [1.0] * 9, False),
    ([0] * 5 + [1] + [2] * 3, None, False),
    ([0] * 5 + [1] * 4, [1.0] * 9, True),
    ([0], [1.0], False),
    ([0, 1, 2], [1.0, 0.0, 1.0], False),
], ids=["all_censored", "none_censored", "single_user_cohort", "all_labels_equal",
        "one_user", "all_singletons"])
def test_edge_cases_are_finite_and_match_reference(component_ids, mask, equal_labels):
    component_ids, embeddings, labels, mask, predictions = _batch(2, component_ids, mask)
    if equal_labels:
        labels = np.full_like(labels, 3.0)
    embeddings[0] = 0.0  # a zero representation must not produce NaN either
    batch = (component_ids, embeddings, labels, mask, predictions)
    embeddings_var = tf.Variable(embeddings, dtype=tf.float32)
    with tf.GradientTape() as tape:
        loss = js_supervision_loss(tf.constant(component_ids), embeddings_var,
                                   tf.constant(labels, tf.float32), tf.constant(mask, tf.float32),
                                   tf.constant(predictions, tf.float32))
    gradient = tape.gradient(loss, embeddings_var)
    assert np.isfinite(loss.numpy())
    assert np.isfinite(gradient.numpy()).all()
    np.testing.assert_allclose(loss.numpy(), reference_loss(*batch)[0], rtol=1e-4, atol=1e-7)


def test_gradient_reaches_embeddings_not_predictions():
    component_ids, embeddings, labels, mask, predictions = _batch(3, [0] * 6 + [1] * 6)
    embeddings_var = tf.Variable(embeddings, dtype=tf.float32)
    predictions_var = tf.Variable(predictions, dtype=tf.float32)
    with tf.GradientTape() as tape:
        loss = js_supervision_loss(tf.constant(component_ids), embeddings_var,
                                   tf.constant(labels, tf.float32), tf.constant(mask, tf.float32),
                                   predictions_var)
    embedding_gradient, prediction_gradient = tape.gradient(
        loss, [embeddings_var, predictions_var])
    assert prediction_gradient is None
    assert np.abs(embedding_gradient.numpy()).max() > 1e-4


def test_cohorts_do_not_interact():
    component_ids, embeddings, labels, mask, predictions = _batch(4, [0] * 5 + [1] * 5)
    js_before, _ = pairwise_js_divergence(component_ids, tf.constant(embeddings, tf.float32),
                                          tf.constant(np.log1p(labels), tf.float32))
    embeddings[5:] = -embeddings[5:] * 3.0  # change cohort 1 only
    labels[5:] = labels[5:] * 10.0
    js_after, _ = pairwise_js_divergence(component_ids, tf.constant(embeddings, tf.float32),
                                         tf.constant(np.log1p(labels), tf.float32))
    np.testing.assert_allclose(js_after.numpy()[:5], js_before.numpy()[:5], rtol=1e-6)


def test_component_ids_of_merged_graph():
    graph, _ = merged_cohort_graphs(cohort_sizes=(4, 1, 3))
    np.testing.assert_array_equal(graph_component_ids(graph).numpy(),
                                  [0, 0, 0, 0, 1, 2, 2, 2])
