"""GNN baselines in place of the hypergraph convolution (paper Table IV, and HST-GT).

The paper compares its hypergraph module with ordinary GNNs run on the same users
(Table IV) and with HST-GT. :class:`GraphBaselineConv` is a drop-in replacement for one
:class:`~htgnn_tf.layers.hypergraph_conv.HypergraphConv` layer: it takes the same
``(graph, user_states)`` on the same merged cohort GraphTensor and returns
``[users, units]``, so the model stacks ``num_layers`` of them and everything downstream
(the JS supervision of Eq. 6-10 on ``u_H``, the MoE, the towers) is unchanged. The
layers are TF-GNN's model zoo (tensorflow-gnn 1.0.3):

* ``"gcn"``: ``tensorflow_gnn.models.gcn.GCNConv`` — the Graph Convolutional Network of
  Kipf & Welling (ICLR 2017), ``act(D_in^-1/2 A^T D_out^-1/2 X W + b)``;
* ``"graphsage"``: ``tensorflow_gnn.models.graph_sage`` — GraphSAGE of Hamilton et al.
  (NeurIPS 2017) with the mean aggregator: ``GraphSAGEAggregatorConv`` +
  ``GraphSAGENextState``, ``l2_normalize(act(W_self h_v + W_neigh mean_u h_u + b))``;
* ``"gatv2"``: ``tensorflow_gnn.models.gat_v2.GATv2Conv`` — GATv2 of Brody et al.
  (ICLR 2022), ``num_heads`` heads of ``units / num_heads`` channels, concatenated;
* ``"hgt"``: ``tensorflow_gnn.models.hgt.HGTGraphUpdate`` — the Heterogeneous Graph
  Transformer of Hu et al. (WWW 2020), the stand-in for the paper's HST-GT, which has no
  public implementation.

The graphs, built inside the layer from the merged GraphTensor (so training, serving and
the exported SavedModel need nothing new in the data):

* user-user graph (GCN, GraphSAGE, GATv2): one edge ``e -> m`` for every ``incidence``
  edge, i.e. for every member m of user e's hyperedge ``{e} ∪ kNN_k(e)``. Hyperedge e is
  user e's (graph_schema), so the hyperedge index is the user index. Messages flow along
  the edges, as in HypergraphConv (hyperedge -> user): user m hears from every user
  whose hyperedge contains m. The self-loops ``e -> e`` (each hyperedge contains its
  user) are KEPT: they are GCN's ``A + I`` renormalization trick, so ``GCNConv`` runs
  with ``add_self_loops=False``, and GAT's neighbourhood ``N(i)`` that contains i.
* heterogeneous graph (HGT): node sets ``user`` and ``hyperedge``, edge set
  ``incidence`` (hyperedge -> user) and its reverse (user -> hyperedge).

Departures from the papers and design choices:

* The kNN graph is directed (m in kNN(e) does not imply e in kNN(m)); GCN's
  normalization is TF-GNN's ``"in_out"``, the directed generalisation of
  ``D^-1/2 A D^-1/2`` (out-degree of e = |hyperedge e|, k + 1 in a
  cohort of more than k users).
* GraphSAGE: the mean aggregate runs over the stored edges, so it includes the user
  itself (the self-loop), besides GraphSAGE's separate self transform. All neighbours
  are used (no neighbour sampling: a cohort is small).
* HGT: one layer here is two HGT half-rounds, user -> hyperedge then hyperedge -> user
  (the two steps of the hypergraph convolution, each with HGT's type-specific attention,
  so every weight is used in every layer). A hyperedge starts from its user's state
  (hyperedge e = user e). HGT's weighted skip connection needs the input width to equal
  ``units``: a layer whose input is wider or narrower first projects the user states
  linearly (as HGT's per-type input projection). ``activation`` is HGT's inner
  nonlinearity (TF-GNN default gelu, here the config's); the output is layer-normed.
* No dropout anywhere (HypergraphConv has none; the comparison keeps the rest equal).
* ``num_heads`` is used by GATv2 and HGT only and must divide ``units``.
"""
from __future__ import annotations

from typing import Literal, get_args

import tensorflow as tf
import tensorflow_gnn as tfgnn
from tensorflow_gnn.models import gat_v2, gcn, graph_sage, hgt

from htgnn_tf.data import graph_schema as gs

GraphBaselineName = Literal["gcn", "graphsage", "gatv2", "hgt"]
GRAPH_BASELINES = get_args(GraphBaselineName)
USER_USER = "user_user"  # edge set of the homogeneous user-user graph
INCIDENCE_REVERSED = "incidence_reversed"  # user -> hyperedge


def _same_user_and_hyperedge_sizes(graph: tfgnn.GraphTensor):
    """Hyperedge e is user e's: both node sets have the same size in every cohort."""
    return tf.debugging.assert_equal(
        graph.node_sets[gs.HYPEREDGE].sizes, graph.node_sets[gs.USER].sizes,
        message="every cohort needs one hyperedge per user (hyperedge e = user e)")


def user_user_graph(graph: tfgnn.GraphTensor, user_states: tf.Tensor) -> tfgnn.GraphTensor:
    """The homogeneous user-user graph of the kNN hyperedges.

    Args:
      graph: a scalar cohort GraphTensor (cohorts as components) with node sets
        ``user``, ``hyperedge`` and edge set ``incidence`` (hyperedge -> user).
      user_states: float ``[users, dim]``.

    Returns:
      A GraphTensor with node set ``user`` (feature ``hidden_state`` = user_states) and
      edge set ``user_user``: ``e -> m`` for every incidence edge (hyperedge e, member m),
      self-loops included, in the order of ``incidence``; same components.
    """
    incidence = graph.edge_sets[gs.INCIDENCE]
    with tf.control_dependencies([_same_user_and_hyperedge_sizes(graph)]):
        source = tf.identity(incidence.adjacency.source)  # [edges], hyperedge = user index
    return tfgnn.GraphTensor.from_pieces(
        context=graph.context,
        node_sets={gs.USER: tfgnn.NodeSet.from_fields(
            sizes=graph.node_sets[gs.USER].sizes,
            features={tfgnn.HIDDEN_STATE: user_states})},
        edge_sets={USER_USER: tfgnn.EdgeSet.from_fields(
            sizes=incidence.sizes,
            adjacency=tfgnn.Adjacency.from_indices(
                source=(gs.USER, source), target=(gs.USER, incidence.adjacency.target)))})


def user_hyperedge_graph(graph: tfgnn.GraphTensor, user_states: tf.Tensor,
                         hyperedge_states: tf.Tensor, edge_set_name: str) -> tfgnn.GraphTensor:
    """The heterogeneous user / hyperedge graph with one incidence direction.

    Args:
      graph: as for :func:`user_user_graph`.
      user_states: float ``[users, dim]``; hyperedge_states: float ``[hyperedges, dim]``.
      edge_set_name: ``"incidence"`` (hyperedge -> user) or ``"incidence_reversed"``
        (user -> hyperedge).

    Returns:
      A GraphTensor with node sets ``user`` and ``hyperedge`` (feature ``hidden_state``)
      and the one edge set.
    """
    incidence = graph.edge_sets[gs.INCIDENCE]
    hyperedges = (gs.HYPEREDGE, incidence.adjacency.source)  # [edges]
    users = (gs.USER, incidence.adjacency.target)  # [edges]
    source, target = (hyperedges, users) if edge_set_name == gs.INCIDENCE else (users, hyperedges)
    return tfgnn.GraphTensor.from_pieces(
        context=graph.context,
        node_sets={
            gs.USER: tfgnn.NodeSet.from_fields(
                sizes=graph.node_sets[gs.USER].sizes,
                features={tfgnn.HIDDEN_STATE: user_states}),
            gs.HYPEREDGE: tfgnn.NodeSet.from_fields(
                sizes=graph.node_sets[gs.HYPEREDGE].sizes,
                features={tfgnn.HIDDEN_STATE: hyperedge_states})},
        edge_sets={edge_set_name: tfgnn.EdgeSet.from_fields(
            sizes=incidence.sizes,
            adjacency=tfgnn.Adjacency.from_indices(source=source, target=target))})


@tf.keras.utils.register_keras_serializable(package="htgnn")
class GraphBaselineConv(tf.keras.layers.Layer):
    """One GNN layer of TF-GNN's model zoo on the cohort graphs (see module docstring).

    Init arguments (keyword-only):
      kind: ``"gcn"``, ``"graphsage"``, ``"gatv2"`` or ``"hgt"``.
      units: output width.
      activation: GCN's and GraphSAGE's output activation, GATv2's activation of the
        attention result, HGT's inner activation.
      use_bias: bias terms of the TF-GNN layer.
      num_heads: attention heads of GATv2 and HGT (must divide ``units``).

    Call arguments:
      inputs: a pair ``(graph, user_states)`` as for HypergraphConv: a scalar
        GraphTensor with node sets ``user``, ``hyperedge`` and edge set ``incidence``,
        and the user states, float ``[users, in_dim]``.

    Returns:
      The new user states, float ``[users, units]``.
    """

    def __init__(self, *, kind: GraphBaselineName, units: int, activation="relu",
                 use_bias: bool = True, num_heads: int = 4, **kwargs):
        super().__init__(**kwargs)
        if kind not in GRAPH_BASELINES:
            raise ValueError(f"kind must be one of {GRAPH_BASELINES}, got {kind!r}")
        if isinstance(units, bool) or not isinstance(units, int) or units < 1:
            raise ValueError(f"units must be a positive int, got {units!r}")
        try:
            activation_fn = tf.keras.activations.get(activation)
        except ValueError as error:
            raise ValueError(f"unknown activation {activation!r}") from error
        if not isinstance(use_bias, bool):
            raise ValueError(f"use_bias must be a bool, got {use_bias!r}")
        if isinstance(num_heads, bool) or not isinstance(num_heads, int) or num_heads < 1:
            raise ValueError(f"num_heads must be a positive int, got {num_heads!r}")
        if kind in ("gatv2", "hgt") and units % num_heads:
            raise ValueError(f"num_heads {num_heads!r} must divide units {units!r} for {kind}")
        self._kind = kind
        self._units = units
        self._activation = tf.keras.activations.serialize(activation_fn)
        self._use_bias = use_bias
        self._num_heads = num_heads
        if kind == "gcn":
            self._conv = gcn.GCNConv(
                units, receiver_tag=tfgnn.TARGET, activation=activation_fn,
                use_bias=use_bias, add_self_loops=False, degree_normalization="in_out",
                name="gcn_conv")
        elif kind == "graphsage":
            self._conv = graph_sage.GraphSAGEAggregatorConv(
                receiver_tag=tfgnn.TARGET, reduce_type="mean", units=units,
                name="graph_sage_mean_conv")
            self._next_state = graph_sage.GraphSAGENextState(
                units=units, use_bias=use_bias, activation=activation_fn,
                l2_normalize=True, combine_type="sum", name="graph_sage_next_state")
        elif kind == "gatv2":
            self._conv = gat_v2.GATv2Conv(
                num_heads=num_heads, per_head_channels=units // num_heads,
                receiver_tag=tfgnn.TARGET, use_bias=use_bias, activation=activation_fn,
                heads_merge_type="concat", name="gat_v2_conv")
        else:
            hgt_kwargs = dict(num_heads=num_heads, per_head_channels=units // num_heads,
                              receiver_tag=tfgnn.TARGET, dropout_rate=0.0,
                              use_bias=use_bias, activation=activation_fn)
            self._input_projection = tf.keras.layers.Dense(units, name="input_projection")
            self._to_hyperedges = hgt.HGTGraphUpdate(**hgt_kwargs, name="hgt_to_hyperedges")
            self._to_users = hgt.HGTGraphUpdate(**hgt_kwargs, name="hgt_to_users")

    def call(self, inputs):
        graph, user_states = inputs
        user_states = tf.cast(user_states, tf.float32)  # [users, in_dim]
        if self._kind == "hgt":
            return self._hgt(graph, user_states)
        homogeneous = user_user_graph(graph, user_states)
        messages = self._conv(homogeneous, edge_set_name=USER_USER)  # [users, units]
        if self._kind == "graphsage":
            new_states = self._next_state((user_states, {USER_USER: messages}, {}))
            return new_states[tfgnn.HIDDEN_STATE]  # [users, units]
        return messages

    def _hgt(self, graph, user_states):
        if user_states.shape[-1] != self._units:
            user_states = self._input_projection(user_states)  # [users, units]
        with tf.control_dependencies([_same_user_and_hyperedge_sizes(graph)]):
            hyperedge_states = tf.identity(user_states)  # [hyperedges, units], e = user e
        up = user_hyperedge_graph(graph, user_states, hyperedge_states, INCIDENCE_REVERSED)
        hyperedge_states = self._to_hyperedges(up).node_sets[gs.HYPEREDGE][
            tfgnn.HIDDEN_STATE]  # [hyperedges, units]
        down = user_hyperedge_graph(graph, user_states, hyperedge_states, gs.INCIDENCE)
        return self._to_users(down).node_sets[gs.USER][tfgnn.HIDDEN_STATE]  # [users, units]

    def get_config(self):
        return dict(super().get_config(), kind=self._kind, units=self._units,
                    activation=self._activation, use_bias=self._use_bias,
                    num_heads=self._num_heads)
