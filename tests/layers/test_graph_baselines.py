"""Tests of the Table IV / HST-GT graph baselines (htgnn_tf.layers.graph_baselines): the
user-user graph against a brute-force kNN edge list, GCN and GraphSAGE layers with hand-set
weights against numpy, and every variant inside the full model (one fit step, outputs that
follow the graph, serving = training, save / reload)."""
import numpy as np
import pytest

import htgnn_tf  # noqa: F401
import tensorflow as tf

from htgnn_tf import model as model_lib
from htgnn_tf import training
from htgnn_tf.config import GRAPH_MODULES, ModelConfig
from htgnn_tf.data import graph_schema as gs
from htgnn_tf.data import hypergraph, transform
from htgnn_tf.layers.graph_baselines import (GRAPH_BASELINES, USER_USER, GraphBaselineConv,
                                             user_user_graph)
from htgnn_tf.layers.hypergraph_conv import HypergraphConv
from tests.helpers import (parse_batch, serialized_cohorts, tiny_config,
                           tiny_data)  # noqa: F401  (tiny_data is a fixture)
from tests.layers.test_hypergraph_conv import merged_cohort_graphs
from tests.test_model import self_loops_only, without_labels

def _relu(x):
    return np.maximum(x, 0.0)


def _hand_set(layer, rng):
    """Every weight of the layer set to fixed random values; returns {suffix: value}."""
    values = {}
    for weight in layer.weights:
        value = rng.normal(0.0, 0.5, weight.shape).astype(np.float32)
        weight.assign(value)
        values[weight.name[len(layer.name) + 1:-len(":0")]] = value
    return values


# ---------------------------------------------------------------- the user-user graph

def test_user_user_graph_equals_knn_edges_of_the_cohorts(tiny_data):
    """Edges e -> m for every member m of hyperedge e = {e} ∪ kNN_k(e), recomputed with
    knn_hyperedges from the users' features, cohort by cohort (self-loops kept)."""
    examples = serialized_cohorts(tiny_data, "train")[:6]
    graph = parse_batch(tiny_data, examples).merge_batch_to_components()
    users = {name: value.numpy() for name, value in graph.node_sets[gs.USER].features.items()}
    states = tf.zeros([graph.node_sets[gs.USER].total_size, 3])
    homogeneous = user_user_graph(graph, states)
    got = np.stack([homogeneous.edge_sets[USER_USER].adjacency.source.numpy(),
                    homogeneous.edge_sets[USER_USER].adjacency.target.numpy()], axis=1)

    artifacts = training.read_artifacts(tiny_data)
    k = artifacts["spec"]["knn_k"]
    want, offset = [], 0
    for size in graph.node_sets[gs.USER].sizes.numpy():
        cohort = [{gs.STAT_VALUES: users[gs.STAT_VALUES][offset + i].astype(np.float64),
                   gs.CATEGORICAL_IDS: users[gs.CATEGORICAL_IDS][offset + i]}
                  for i in range(size)]
        members = hypergraph.knn_hyperedges(transform.knn_points(cohort, artifacts), k)
        for e in range(size):
            for m in members[e]:
                want.append((offset + e, offset + m))
        offset += size
    want = np.array(want)
    np.testing.assert_array_equal(got, want)
    assert np.sum(got[:, 0] == got[:, 1]) == offset  # one self-loop per user
    np.testing.assert_array_equal(homogeneous.node_sets[gs.USER].sizes.numpy(),
                                  graph.node_sets[gs.USER].sizes.numpy())
    np.testing.assert_array_equal(homogeneous.edge_sets[USER_USER].sizes.numpy(),
                                  graph.edge_sets[gs.INCIDENCE].sizes.numpy())


# ---------------------------------------------------------------- layers against numpy

def _adjacency(incidence):
    """A[e, m] = 1 for the user-user edge e -> m: the transpose of H [users, hyperedges]."""
    return incidence.T


@pytest.mark.parametrize("activation,act", [("relu", _relu), ("tanh", np.tanh)])
def test_gcn_against_numpy(activation, act):
    """TF-GNN GCNConv, "in_out" normalization, no extra self-loops (they are edges):
    act(D_in^-1/2 A^T D_out^-1/2 X W + b)."""
    graph, incidence = merged_cohort_graphs()
    states = np.random.default_rng(11).normal(size=(incidence.shape[0], 5)).astype(np.float32)
    layer = GraphBaselineConv(kind="gcn", units=4, activation=activation, name="gcn")
    layer((graph, tf.constant(states)))
    values = _hand_set(layer, np.random.default_rng(0))
    got = layer((graph, tf.constant(states))).numpy()

    a = _adjacency(incidence)
    out_degree, in_degree = a.sum(axis=1), a.sum(axis=0)
    pooled = np.diag(in_degree ** -0.5) @ a.T @ np.diag(out_degree ** -0.5) @ states
    kernel = next(v for n, v in values.items() if n.endswith("kernel"))
    bias = next(v for n, v in values.items() if n.endswith("bias"))
    want = act(pooled @ kernel + bias)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    # The last cohort (2 users, k = 3) is a clique: each of its users hears both.
    assert np.all(a[-2:, -2:] == 1)


def test_graphsage_against_numpy():
    """GraphSAGE mean aggregator + next state:
    l2_normalize(relu(X W_self + mean_{e -> m} X_e W_neigh + b))."""
    graph, incidence = merged_cohort_graphs()
    states = np.random.default_rng(11).normal(size=(incidence.shape[0], 5)).astype(np.float32)
    layer = GraphBaselineConv(kind="graphsage", units=4, name="sage")
    layer((graph, tf.constant(states)))
    values = _hand_set(layer, np.random.default_rng(1))
    got = layer((graph, tf.constant(states))).numpy()

    a = _adjacency(incidence)
    neighbour_mean = (a.T @ states) / a.sum(axis=0)[:, None]  # includes the self-loop
    self_kernel = next(v for n, v in values.items() if n.startswith("graph_sage_next_state/dense"))
    neighbour_kernel = next(v for n, v in values.items() if n.startswith("graph_sage_mean_conv/"))
    hidden = _relu(states @ self_kernel + neighbour_mean @ neighbour_kernel
                   + values["graph_sage_next_state/bias"])
    want = hidden / np.maximum(np.linalg.norm(hidden, axis=1, keepdims=True), 1e-6)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kind", GRAPH_BASELINES)
def test_output_of_a_user_depends_only_on_its_cohort(kind):
    """Changing the states of one cohort leaves the other cohorts' outputs unchanged
    (the graphs keep the components), and changes that cohort's outputs."""
    graph, incidence = merged_cohort_graphs()
    states = np.random.default_rng(11).normal(size=(incidence.shape[0], 8)).astype(np.float32)
    layer = GraphBaselineConv(kind=kind, units=8, num_heads=2)
    before = layer((graph, tf.constant(states))).numpy()
    changed = states.copy()
    changed[:6] += 1.0  # the first cohort has 6 users
    after = layer((graph, tf.constant(changed))).numpy()
    np.testing.assert_allclose(after[6:], before[6:], rtol=1e-6, atol=1e-6)
    assert not np.allclose(after[:6], before[:6])


def test_layer_arguments_are_checked_and_in_get_config():
    with pytest.raises(ValueError, match="'gin'"):
        GraphBaselineConv(kind="gin", units=4)
    with pytest.raises(ValueError, match="units"):
        GraphBaselineConv(kind="gcn", units=0)
    with pytest.raises(ValueError, match="num_heads 3"):
        GraphBaselineConv(kind="gatv2", units=8, num_heads=3)
    layer = GraphBaselineConv(kind="hgt", units=8, activation="tanh", use_bias=False,
                              num_heads=2, name="h")
    config = layer.get_config()
    assert {k: config[k] for k in ("kind", "units", "activation", "use_bias", "num_heads")} == \
        {"kind": "hgt", "units": 8, "activation": "tanh", "use_bias": False, "num_heads": 2}
    assert GraphBaselineConv.from_config(config).get_config() == config


# ---------------------------------------------------------------- config and CLI

def test_graph_module_config_and_flag(tiny_data):
    assert GRAPH_MODULES == ("hypergraph", *GRAPH_BASELINES)
    with pytest.raises(ValueError, match="graph_module must be one of .*'gin'"):
        ModelConfig(graph_module="gin")
    with pytest.raises(ValueError, match="'gin'"):
        tiny_config(tiny_data, graph_module="gin")
    args = training.parse_args(["--data", tiny_data, "--out", "x", "--graph-module", "gatv2"])
    config, _ = training.config_from_args(args, training.read_artifacts(tiny_data))
    assert config.graph_module == "gatv2" and config.use_hypergraph
    assert ModelConfig.from_dict(config.to_dict()).graph_module == "gatv2"
    with pytest.raises(SystemExit):
        training.parse_args(["--data", tiny_data, "--out", "x", "--graph-module", "gin"])


# ---------------------------------------------------------------- in the full model

@pytest.fixture(scope="module")
def test_examples(tiny_data):
    return serialized_cohorts(tiny_data, "test")[:2]


def outputs_numpy(model, inputs) -> dict:
    return {name: value.numpy() for name, value in model(inputs, training=False).items()}


@pytest.mark.parametrize("kind", GRAPH_BASELINES)
def test_variant_in_the_full_model(kind, tiny_data, test_examples, tmp_path):
    config = tiny_config(tiny_data, graph_module=kind)
    tf.keras.utils.set_random_seed(5)
    model, serving = training.build_models(config, tiny_data)
    graph_layers = [l for l in model.layers if isinstance(l, GraphBaselineConv)]
    assert len(graph_layers) == config.hypergraph.num_layers
    assert not [l for l in model.layers if isinstance(l, HypergraphConv)]
    batch = parse_batch(tiny_data, test_examples)

    # The graph matters: hyperedges reduced to self-loops change the predictions.
    rewired = parse_batch(tiny_data, [self_loops_only(tiny_data, x) for x in test_examples])
    original = outputs_numpy(model, batch)
    assert not np.allclose(original["ltv_180"], outputs_numpy(model, rewired)["ltv_180"])
    # The exported (serving) model shares the layers and gives the same outputs.
    served = outputs_numpy(serving, tf.constant([without_labels(tiny_data, x)
                                                 for x in test_examples]))
    np.testing.assert_allclose(served["ltv_180"], original["ltv_180"], rtol=1e-5, atol=1e-5)

    # One training step: finite losses (JS on the module's output), graph weights move.
    before = [w.numpy() for w in graph_layers[0].trainable_weights]
    # Eagerly: tracing the train step costs 10-25 s here; the step computed is the same.
    model.compile(optimizer=tf.keras.optimizers.Adam(1e-2), run_eagerly=True)
    history = model.fit(tf.data.Dataset.from_tensors(batch), epochs=1, verbose=0).history
    for name in ("loss", "js", "bce", "regression"):
        assert np.isfinite(history[name][0]), name
    assert history["js"][0] > 0
    after = [w.numpy() for w in graph_layers[0].trainable_weights]
    assert any(not np.array_equal(b, a) for b, a in zip(before, after))

    # Save / reload the weights into a fresh model: identical outputs.
    want = outputs_numpy(model, batch)
    model.save_weights(str(tmp_path / "weights"))
    second = model_lib.build_training_model(config, training.read_schema(tiny_data))
    assert not np.allclose(outputs_numpy(second, batch)["ltv_30"], want["ltv_30"])
    second.load_weights(str(tmp_path / "weights"))
    got = outputs_numpy(second, batch)
    for name in want:
        np.testing.assert_array_equal(got[name], want[name], err_msg=name)
