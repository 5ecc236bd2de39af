"""Tests of HypergraphConv (Eq. 5) against a dense numpy computation from H."""
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_gnn as tfgnn

from htgnn_tf.data import graph_schema as gs
from htgnn_tf.data import hypergraph
from htgnn_tf.layers.hypergraph_conv import HypergraphConv

DIMS = gs.FeatureDims(num_categorical=1, num_statistical=2, num_metrics=1,
                      observation_days=3, horizons=(30,))
COHORT_SIZES = (6, 5, 2)  # the last cohort is smaller than k + 1
K = 3


def _cohort_users(size, rng):
    return [{
        gs.USER_ID: f"u{rng.integers(1_000_000)}",
        gs.CATEGORICAL_IDS: [int(rng.integers(0, 4))],
        gs.STAT_VALUES: rng.normal(size=2).tolist(),
        gs.STAT_BINS: rng.integers(0, 5, size=2).tolist(),
        gs.SEQ_VALUES: rng.random((1, 3)).tolist(),
        gs.SEQ_TOKENS: rng.integers(0, 4, size=(1, 3)).tolist(),
        gs.OBS_DAYS: 3,
    } for _ in range(size)]


def merged_cohort_graphs(cohort_sizes=COHORT_SIZES, k=K, seed=0):
    """A merged GraphTensor of several cohorts, as training sees it, and numpy H.

    The cohorts are serialized with ``cohort_example_bytes``, parsed as one batch with
    the dataset's schema and merged to components. Returns ``(graph, incidence)`` where
    ``incidence`` is the dense [users, hyperedges] matrix H of Eq. (4), built from
    ``knn_hyperedges`` independently of the GraphTensor.
    """
    rng = np.random.default_rng(seed)
    serialized, member_blocks = [], []
    for size in cohort_sizes:
        users = _cohort_users(size, rng)
        points = rng.normal(size=(size, 2))
        serialized.append(hypergraph.cohort_example_bytes(users, points, k, DIMS, False))
        member_blocks.append(hypergraph.knn_hyperedges(points, k))
    spec = tfgnn.create_graph_spec_from_schema_pb(gs.graph_schema(DIMS, with_labels=False))
    graph = tfgnn.parse_example(spec, tf.constant(serialized)).merge_batch_to_components()

    total = sum(cohort_sizes)
    incidence = np.zeros([total, total])
    offset = 0
    for size, members in zip(cohort_sizes, member_blocks):
        for hyperedge, users in enumerate(members):
            incidence[offset + users, offset + hyperedge] = 1.0
        offset += size
    return graph, incidence


def dense_eq5(incidence, states, theta, bias, activation, weight_kernel=None, weight_bias=0.0):
    """sigma(Dv^-1/2 H W De^-1 H^T Dv^-1/2 X Theta + b) with dense matrices."""
    edge_degree = incidence.sum(axis=0)  # delta(e)
    if weight_kernel is None:
        w = np.ones(incidence.shape[1])
    else:
        member_mean = (incidence.T @ states) / edge_degree[:, None]
        w = 1.0 + np.tanh(member_mean @ weight_kernel + weight_bias).ravel()
    vertex_degree = incidence @ w  # d(v) = sum_e w(e) H_ve
    dv = np.diag(vertex_degree ** -0.5)
    propagation = dv @ incidence @ np.diag(w) @ np.diag(1.0 / edge_degree) @ incidence.T @ dv
    return activation(propagation @ states @ theta + bias)


def _relu(x):
    return np.maximum(x, 0.0)


def _set_weights_by_name(layer, values):
    """Assigns values[name] to the weight '<layer name>/<name>:0' of the layer."""
    for weight in layer.weights:
        weight.assign(values[weight.name[len(layer.name) + 1:-len(":0")]])


def _theta(in_dim, units):
    return (np.arange(in_dim * units).reshape(in_dim, units) % 7 - 3.0) / 4.0


@pytest.fixture(scope="module")
def graph_and_incidence():
    return merged_cohort_graphs()


def test_incidence_fixture_has_expected_structure(graph_and_incidence):
    graph, incidence = graph_and_incidence
    assert graph.node_sets[gs.USER].sizes.numpy().tolist() == list(COHORT_SIZES)
    # k+1 members per hyperedge, all members of the 2-user cohort otherwise.
    np.testing.assert_array_equal(incidence.sum(axis=0), [4] * 11 + [2, 2])


@pytest.mark.parametrize("use_bias", [False, True], ids=["no_bias", "bias"])
def test_fixed_weights_match_dense_eq5(graph_and_incidence, use_bias):
    graph, incidence = graph_and_incidence
    rng = np.random.default_rng(1)
    states = rng.normal(size=(incidence.shape[0], 4)).astype(np.float32)
    theta = _theta(4, 3)
    bias = np.array([0.5, -0.25, 0.1]) if use_bias else np.zeros(3)
    layer = HypergraphConv(units=3, use_bias=use_bias, learn_hyperedge_weights=False)
    layer((graph, states))
    _set_weights_by_name(layer, {"theta/kernel": theta, "bias": bias})
    expected = dense_eq5(incidence, states, theta, bias, _relu)
    np.testing.assert_allclose(layer((graph, states)).numpy(), expected, rtol=1e-5, atol=1e-5)


def test_learned_weights_with_hand_set_values_match_dense_eq5(graph_and_incidence):
    graph, incidence = graph_and_incidence
    rng = np.random.default_rng(2)
    states = rng.normal(size=(incidence.shape[0], 4)).astype(np.float32)
    theta = _theta(4, 5)
    bias = np.linspace(-0.5, 0.5, 5)
    weight_kernel = np.array([[0.9], [-0.6], [0.3], [1.2]])
    weight_bias = np.array([-0.2])
    layer = HypergraphConv(units=5, activation="tanh", learn_hyperedge_weights=True)
    layer((graph, states))
    _set_weights_by_name(layer, {"theta/kernel": theta, "hyperedge_weight/kernel": weight_kernel,
                                 "hyperedge_weight/bias": weight_bias, "bias": bias})
    expected = dense_eq5(incidence, states, theta, bias, np.tanh, weight_kernel, weight_bias)
    # The hand-set weights must make W differ from the identity.
    member_mean = (incidence.T @ states) / incidence.sum(axis=0)[:, None]
    assert np.ptp(np.tanh(member_mean @ weight_kernel + weight_bias)) > 0.5
    np.testing.assert_allclose(layer((graph, states)).numpy(), expected, rtol=1e-5, atol=1e-5)


def test_learned_weights_start_at_identity(graph_and_incidence):
    graph, incidence = graph_and_incidence
    states = np.random.default_rng(3).normal(size=(incidence.shape[0], 4)).astype(np.float32)
    layer = HypergraphConv(units=3, activation=None, use_bias=False)
    output = layer((graph, states)).numpy()
    (theta,) = [w.numpy() for w in layer.weights if w.name.endswith("theta/kernel:0")]
    expected = dense_eq5(incidence, states, theta, 0.0, lambda x: x)
    np.testing.assert_allclose(output, expected, rtol=1e-5, atol=1e-5)


def test_functional_model_save_and_reload(tmp_path, graph_and_incidence):
    graph, incidence = graph_and_incidence
    inputs = tf.keras.Input(type_spec=graph.spec)
    states = inputs.node_sets[gs.USER][gs.STAT_VALUES]
    outputs = HypergraphConv(units=3, name="hgc")((inputs, states))
    outputs = HypergraphConv(units=2, activation="linear", name="hgc2")((inputs, outputs))
    model = tf.keras.Model(inputs, outputs)
    (kernel,) = [w for w in model.get_layer("hgc2").weights
                 if w.name.endswith("hyperedge_weight/kernel:0")]
    kernel.assign(tf.fill(kernel.shape, 0.7))  # non-zero hyperedge weights
    expected = model(graph).numpy()
    # The .keras format cannot store a GraphTensor Input; the project exports SavedModels.
    model.save(str(tmp_path / "model"), save_format="tf")
    reloaded = tf.keras.models.load_model(str(tmp_path / "model"))
    np.testing.assert_allclose(reloaded(graph).numpy(), expected, rtol=1e-6)
    config = model.get_layer("hgc2").get_config()
    assert {k: config[k] for k in ("units", "activation", "use_bias",
                                   "learn_hyperedge_weights")} == {
        "units": 2, "activation": "linear", "use_bias": True, "learn_hyperedge_weights": True}


@pytest.mark.parametrize("kwargs,bad", [
    ({"units": 0}, "0"),
    ({"units": 2.5}, "2.5"),
    ({"units": 2, "activation": "no_such_fn"}, "no_such_fn"),
    ({"units": 2, "use_bias": "yes"}, "yes"),
    ({"units": 2, "learn_hyperedge_weights": 1}, "1"),
], ids=["zero_units", "float_units", "activation", "use_bias", "learn_weights"])
def test_invalid_arguments_are_rejected(kwargs, bad):
    with pytest.raises(ValueError, match=bad):
        HypergraphConv(**kwargs)
