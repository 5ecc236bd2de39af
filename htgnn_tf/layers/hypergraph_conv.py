"""Hypergraph convolution of the HT-GNN paper, Eq. (4)-(5).

Implements Eq. (5) of the HT-GNN paper (the HGNN convolution),

    X' = sigma(D_v^-1/2 H W D_e^-1 H^T D_v^-1/2 X Theta),

on the cohort hypergraphs of Eq. (4), as a star expansion over the ``incidence`` edge set
(source ``hyperedge``, target ``user``; one edge per non-zero of H): no dense
``[users, users]`` or ``[users, hyperedges]`` matrix is built.

* ``delta(e)`` = number of members of e, so ``D_e^-1 H^T Y`` is the mean over the members
  of each hyperedge (user -> hyperedge mean pooling);
* ``H (.)`` sums hyperedge values back into their members (hyperedge -> user sum);
* ``d(v) = sum_e w(e) H_ve``, the weighted number of hyperedges containing v.

Departures from the paper:

* W: the paper has one learned diagonal weight per hyperedge, initialised to 1. Cohort
  graphs differ from batch to batch (and at serving time), so a fixed per-hyperedge
  parameter is impossible. With ``learn_hyperedge_weights=True`` the weight is a learned
  function of the hyperedge, ``w(e) = 1 + tanh(Dense(mean of member states))`` with the
  Dense zero-initialised: W = I at initialisation, as in the paper, and w(e) stays in
  (0, 2). With ``learn_hyperedge_weights=False``, W = I always.
* ``use_bias`` adds a bias after the propagation, before sigma (as in HGNN's code); the
  paper's Eq. (5) has none.
"""
from __future__ import annotations

import tensorflow as tf
import tensorflow_gnn as tfgnn

from htgnn_tf.data import graph_schema as gs


@tf.keras.utils.register_keras_serializable(package="htgnn")
class HypergraphConv(tf.keras.layers.Layer):
    """One hypergraph convolution layer, Eq. (5).

    Call arguments:
      inputs: a pair ``(graph, user_states)``: a scalar GraphTensor (cohorts as
        components, e.g. after ``merge_batch_to_components()``) with node sets ``user``,
        ``hyperedge`` and edge set ``incidence`` (hyperedge -> user), and the user states
        X, float ``[users, in_dim]``.

    Returns:
      The new user states, float32 ``[users, units]``.
    """

    def __init__(self, *, units: int, activation="relu", use_bias: bool = True,
                 learn_hyperedge_weights: bool = True, **kwargs):
        super().__init__(**kwargs)
        if isinstance(units, bool) or not isinstance(units, int) or units < 1:
            raise ValueError(f"units must be a positive int, got {units!r}")
        try:
            self._activation_fn = tf.keras.activations.get(activation)
        except ValueError as error:
            raise ValueError(f"unknown activation {activation!r}") from error
        if not isinstance(use_bias, bool):
            raise ValueError(f"use_bias must be a bool, got {use_bias!r}")
        if not isinstance(learn_hyperedge_weights, bool):
            raise ValueError(
                f"learn_hyperedge_weights must be a bool, got {learn_hyperedge_weights!r}")
        self._units = units
        self._activation = tf.keras.activations.serialize(self._activation_fn)
        self._use_bias = use_bias
        self._learn_hyperedge_weights = learn_hyperedge_weights
        self._theta = tf.keras.layers.Dense(units, use_bias=False, name="theta")
        if learn_hyperedge_weights:
            self._hyperedge_weight = tf.keras.layers.Dense(
                1, kernel_initializer="zeros", bias_initializer="zeros",
                name="hyperedge_weight")

    def build(self, input_shape):
        if self._use_bias:
            self.bias = self.add_weight(name="bias", shape=[self._units], initializer="zeros")
        super().build(input_shape)

    def call(self, inputs):
        graph, user_states = inputs
        user_states = tf.cast(user_states, tf.float32)  # [users, in_dim]

        def to_hyperedges_mean(values):  # D_e^-1 H^T: [users, d] -> [hyperedges, d]
            return tfgnn.pool_edges_to_node(
                graph, gs.INCIDENCE, tfgnn.SOURCE, "mean",
                feature_value=tfgnn.broadcast_node_to_edges(
                    graph, gs.INCIDENCE, tfgnn.TARGET, feature_value=values))

        def to_users_sum(values):  # H: [hyperedges, d] -> [users, d]
            return tfgnn.pool_edges_to_node(
                graph, gs.INCIDENCE, tfgnn.TARGET, "sum",
                feature_value=tfgnn.broadcast_node_to_edges(
                    graph, gs.INCIDENCE, tfgnn.SOURCE, feature_value=values))

        if self._learn_hyperedge_weights:
            member_mean = to_hyperedges_mean(user_states)  # [hyperedges, in_dim]
            weights = 1.0 + tf.tanh(self._hyperedge_weight(member_mean))  # [hyperedges, 1]
        else:
            weights = tf.ones([graph.node_sets[gs.HYPEREDGE].total_size, 1])  # [hyperedges, 1]
        user_degree = to_users_sum(weights)  # [users, 1], d(v)
        inv_sqrt_degree = tf.math.divide_no_nan(1.0, tf.sqrt(user_degree))  # [users, 1]

        projected = inv_sqrt_degree * self._theta(user_states)  # [users, units]
        hyperedge_states = weights * to_hyperedges_mean(projected)  # [hyperedges, units]
        result = inv_sqrt_degree * to_users_sum(hyperedge_states)  # [users, units]
        if self._use_bias:
            result = result + self.bias  # [users, units]
        return self._activation_fn(result)

    def get_config(self):
        return dict(super().get_config(), units=self._units, activation=self._activation,
                    use_bias=self._use_bias,
                    learn_hyperedge_weights=self._learn_hyperedge_weights)
