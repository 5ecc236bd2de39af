"""Tests for htgnn_tf.model: readout layers and the loss layer against numpy, the
training and serving models on real cohorts from the Beam dataset job, save / reload,
and the ablation switches (checked by outputs and losses)."""
import numpy as np
import pytest

import htgnn_tf  # noqa: F401
import tensorflow as tf
import tensorflow_gnn as tfgnn

from htgnn_tf import model as model_lib
from htgnn_tf import training
from htgnn_tf.data import graph_schema as gs
from htgnn_tf.layers.hypergraph_conv import HypergraphConv
from htgnn_tf.model import HTGNNLoss, ObservedTotals, ResidualReadout, classification_output_names
from tests.helpers import (parse_batch, replace_user_features, serialized_cohorts, tiny_config,
                           tiny_data, user_arrays)  # noqa: F401  (tiny_data is a fixture)

PROB_EPSILON = 1e-7  # losses.masked_bce clips probabilities to [eps, 1 - eps]


def softplus(x):
    return np.logaddexp(0.0, x)


def bce(target, prob):
    prob = np.clip(prob, PROB_EPSILON, 1 - PROB_EPSILON)
    return -(target * np.log(prob) + (1 - target) * np.log(1 - prob))


def masked_mean(values, known):
    return values[known].mean() if known.any() else 0.0


# ---------------------------------------------------------------- hand-made tensors

def test_observed_totals_against_numpy():
    rng = np.random.default_rng(0)
    seq = rng.choice([0.0, 0.0, 1.5, 4.0], size=(5, 3, 6)).astype(np.float32)  # [U, T, W]
    seq[2] = 0.0  # a user with no activity at all
    s = np.array([1, 6, 3, 4, 2], np.int64)
    got = ObservedTotals(value_metric_index=1)((tf.constant(seq), tf.constant(s))).numpy()
    want_days = [np.sum(seq[u, :, :s[u]].max(axis=0) > 0) for u in range(5)]
    want_value = [seq[u, 1, :s[u]].sum() for u in range(5)]
    np.testing.assert_array_equal(got, np.stack([want_days, want_value], 1).astype(np.float32))


def test_residual_readout_against_numpy():
    rng = np.random.default_rng(1)
    scales = [2.0, 5.0, 30.0, 120.0]  # lt_10, lt_40, ltv_10, ltv_40
    z = rng.normal(0, 3, (4, 4)).astype(np.float32)
    observed = np.array([[1, 10.0], [0, 0.0], [3, 2.5], [7, 99.0]], np.float32)
    got = ResidualReadout(scales=scales)((tf.constant(z), tf.constant(observed))).numpy()
    base = np.concatenate([np.repeat(observed[:, :1], 2, 1), np.repeat(observed[:, 1:], 2, 1)], 1)
    np.testing.assert_allclose(got, base + softplus(z) * np.array(scales), rtol=1e-6)
    assert np.all(got >= base)


def test_loss_layer_classification_target_is_activity_after_s():
    """With predictions = labels the regression term is 0, so the loss is the BCE against
    the target last_active_day_h >= s, masked by label_mask_h (LT and LTV share it)."""
    rng = np.random.default_rng(2)
    users, horizons = 8, 2
    scales = [2.0, 5.0, 30.0, 120.0]
    labels = rng.uniform(0, 50, (users, 4)).astype(np.float32)
    mask_h = np.array([[1, 1], [1, 0], [0, 0], [1, 1], [1, 1], [1, 0], [1, 1], [1, 1]],
                      np.float32)
    mask = np.concatenate([mask_h, mask_h], 1)
    last_active = np.array([[0, 0], [3, 9], [5, 5], [2, 30], [6, 6], [1, 1], [4, 4], [7, 39]])
    s = np.array([1, 3, 2, 3, 7, 1, 5, 7])
    probs = rng.uniform(0.05, 0.95, (users, 4)).astype(np.float32)
    layer = HTGNNLoss(scales=scales, loss_config={"mode": "mse", "beta2": 0.7}, use_js=False)
    out = layer({"labels": tf.constant(labels), "mask": tf.constant(mask),
                 "last_active": tf.constant(last_active, tf.int64), "s": tf.constant(s),
                 "predictions": tf.constant(labels), "probs": tf.constant(probs),
                 "embeddings": None, "component_ids": None})
    np.testing.assert_array_equal(out.numpy(), labels)
    target_h = (last_active >= s[:, None]).astype(np.float64)
    target = np.concatenate([target_h, target_h], 1)
    want = 0.7 * sum(masked_mean(bce(target[:, t], probs[:, t]), mask[:, t] > 0)
                     for t in range(2 * horizons))
    assert len(layer.losses) == 1
    np.testing.assert_allclose(layer.losses[0].numpy(), want, rtol=1e-5)


# ---------------------------------------------------------------- real cohorts

@pytest.fixture(scope="module")
def test_examples(tiny_data):
    return serialized_cohorts(tiny_data, "test")


@pytest.fixture(scope="module")
def batch(tiny_data, test_examples):
    return parse_batch(tiny_data, test_examples)


@pytest.fixture(scope="module")
def default_models(tiny_data):
    return training.build_models(tiny_config(tiny_data), tiny_data)


def training_model(config, data_dir):
    """The training model alone (cheaper to build than training.build_models)."""
    return model_lib.build_training_model(config, training.read_schema(data_dir))


def outputs_numpy(model, inputs) -> dict:
    return {name: value.numpy() for name, value in model(inputs, training=False).items()}


def without_labels(data_dir, example: bytes) -> bytes:
    """The cohort example re-written with the input features only (what a client sends)."""
    spec = tfgnn.create_graph_spec_from_schema_pb(training.read_schema(data_dir))
    graph = tfgnn.parse_single_example(spec, tf.constant(example))
    users = graph.node_sets[gs.USER].features
    inputs = {name: value for name, value in users.items()
              if name not in gs.label_feature_names(training.read_artifacts(data_dir)
                                                    ["spec"]["horizons"])}
    graph = graph.replace_features(node_sets={gs.USER: inputs})
    return tfgnn.write_example(graph).SerializeToString()


def test_serving_model_on_unlabelled_examples_equals_training_model(
        tiny_data, test_examples, batch, default_models):
    training_model, serving_model = default_models
    unlabelled = [without_labels(tiny_data, x) for x in test_examples]
    keys = set(tf.train.Example.FromString(unlabelled[0]).features.feature)
    assert "nodes/user.ltv_30" not in keys and "nodes/user.seq_values" in keys
    want = outputs_numpy(training_model, batch)
    got = outputs_numpy(serving_model, tf.constant(unlabelled))
    assert sorted(got) == sorted(want)
    np.testing.assert_array_equal(got[gs.USER_ID], want[gs.USER_ID])
    np.testing.assert_array_equal(got["obs_days_used"], user_arrays(batch)[gs.OBS_DAYS])
    for name in want:
        if name != gs.USER_ID:
            np.testing.assert_allclose(got[name], want[name], rtol=1e-6, atol=1e-6, err_msg=name)


def test_predictions_are_at_least_what_is_observed(tiny_data, batch, default_models):
    config = tiny_config(tiny_data)
    users = user_arrays(batch)
    out = outputs_numpy(default_models[0], batch)
    seq, s = users[gs.SEQ_VALUES], users[gs.OBS_DAYS]
    seen = np.arange(seq.shape[-1])[None, :] < s[:, None]  # [U, W]
    observed_days = ((seq > 0).any(axis=1) & seen).sum(-1)
    observed_value = (seq[:, config.value_metric_index] * seen).sum(-1)
    assert observed_value.max() > 0 and observed_days.max() >= 2
    for h in config.horizons:
        assert np.all(out[f"lt_{h}"] > observed_days - 1e-4)
        assert np.all(out[f"ltv_{h}"] > observed_value - 1e-3)
    for name in classification_output_names(config.horizons):
        assert np.all((out[name] > 0) & (out[name] < 1))


def test_save_weights_and_reload_gives_identical_outputs(tiny_data, batch, tmp_path):
    config = tiny_config(tiny_data)
    first = training_model(config, tiny_data)
    rng = np.random.default_rng(3)
    first.set_weights([rng.uniform(0.5, 1.5, w.shape) if "moving_variance" in w.name
                       else rng.normal(0, 0.3, w.shape) for w in first.weights])
    want = outputs_numpy(first, batch)
    first.save_weights(str(tmp_path / "weights"))

    second = training_model(config, tiny_data)
    before = outputs_numpy(second, batch)
    assert not np.allclose(before["ltv_30"], want["ltv_30"])
    second.load_weights(str(tmp_path / "weights"))
    after = outputs_numpy(second, batch)
    for name in want:
        np.testing.assert_array_equal(after[name], want[name], err_msg=name)


# ---------------------------------------------------------------- losses and ablations

def reference_terms(config, users, out, mode):
    """The Eq. (19)-(21) terms recomputed in numpy from the model's outputs."""
    s = users[gs.OBS_DAYS]
    regression, classification = 0.0, 0.0
    for t, task in enumerate(config.task_names):
        h = config.horizons[t % len(config.horizons)]
        known = users[gs.label_mask_name(h)] > 0
        scale = config.label_scales[task]
        errors = (users[task] - out[task].astype(np.float64)) / scale
        if mode == "mse":
            per_user = errors ** 2
        else:
            if mode == "multi":  # delta = 95th percentile of |errors|, floored
                delta = max(np.percentile(np.abs(errors[known]), 95), 1e-6) if known.any() else 1e-6
            else:
                delta = config.loss.huber_delta
            a = np.abs(errors)
            per_user = np.where(a <= delta, 0.5 * a ** 2, delta * a - 0.5 * delta ** 2)
        regression += masked_mean(per_user, known)
        prob = out[classification_output_names(config.horizons)[t]].astype(np.float64)
        target = (users[gs.last_active_name(h)] >= s).astype(np.float64)
        classification += masked_mean(bce(target, prob), known)
    return regression, classification


@pytest.mark.parametrize("mode", ["mse", "multi"])
def test_loss_terms_against_numpy(tiny_data, batch, default_models, mode):
    betas = {"beta1": 0.3, "beta2": 0.5, "beta3": 2.0}
    if mode == "multi":
        config, model = tiny_config(tiny_data), default_models[0]
        betas = {name: getattr(config.loss, name) for name in betas}
    else:
        config = tiny_config(tiny_data, loss={"mode": mode, **betas})
        model = training_model(config, tiny_data)
    model.compile()
    terms = model.test_on_batch(batch, return_dict=True)
    regression, classification = reference_terms(config, user_arrays(batch),
                                                 outputs_numpy(model, batch), mode)
    np.testing.assert_allclose(terms["regression"], regression, rtol=2e-4)
    np.testing.assert_allclose(terms["bce"], classification, rtol=2e-4)
    if mode == "multi":
        assert terms["js"] > 0
    else:
        assert terms["js"] == 0  # the JS term belongs to the multi-loss only
    np.testing.assert_allclose(terms["loss"], betas["beta1"] * terms["js"] + betas["beta2"]
                               * classification + betas["beta3"] * regression, rtol=2e-4)


def self_loops_only(data_dir, example: bytes) -> bytes:
    """The cohort with every hyperedge reduced to its own user: a different hypergraph
    over the same users and features."""
    spec = tfgnn.create_graph_spec_from_schema_pb(training.read_schema(data_dir))
    graph = tfgnn.parse_single_example(spec, tf.constant(example))
    incidence = graph.edge_sets[gs.INCIDENCE]
    sizes = graph.node_sets[gs.USER].sizes
    ids = tf.range(sizes[0], dtype=incidence.adjacency.source.dtype)
    rewired = tfgnn.GraphTensor.from_pieces(
        node_sets={gs.USER: graph.node_sets[gs.USER], gs.HYPEREDGE: graph.node_sets[gs.HYPEREDGE]},
        edge_sets={gs.INCIDENCE: tfgnn.EdgeSet.from_fields(
            sizes=sizes, adjacency=tfgnn.Adjacency.from_indices(
                source=(gs.HYPEREDGE, ids), target=(gs.USER, ids)))})
    return tfgnn.write_example(rewired).SerializeToString()


def test_without_hypergraph_outputs_ignore_the_hypergraph(
        tiny_data, test_examples, batch, default_models):
    rewired = parse_batch(tiny_data, [self_loops_only(tiny_data, x) for x in test_examples])
    assert (rewired.edge_sets[gs.INCIDENCE].sizes.numpy().sum()
            < batch.edge_sets[gs.INCIDENCE].sizes.numpy().sum())

    with_hg = default_models[0]
    config = tiny_config(tiny_data)
    assert len([l for l in with_hg.layers if isinstance(l, HypergraphConv)]) == \
        config.hypergraph.num_layers
    assert not np.allclose(outputs_numpy(with_hg, batch)["ltv_180"],
                           outputs_numpy(with_hg, rewired)["ltv_180"])

    config = tiny_config(tiny_data, use_hypergraph=False)
    without_hg = training_model(config, tiny_data)
    assert not [l for l in without_hg.layers if isinstance(l, HypergraphConv)]
    original, changed = outputs_numpy(without_hg, batch), outputs_numpy(without_hg, rewired)
    for name in original:
        np.testing.assert_array_equal(original[name], changed[name], err_msg=name)
    without_hg.compile()
    terms = without_hg.test_on_batch(batch, return_dict=True)
    assert terms["js"] == 0.0
    regression, classification = reference_terms(config, user_arrays(batch), original, "multi")
    np.testing.assert_allclose(terms["loss"], config.loss.beta2 * classification
                               + config.loss.beta3 * regression, rtol=2e-4)


def test_without_dynamic_towers_heads_are_plain_linear(tiny_data, default_models):
    config = tiny_config(tiny_data, tower={"use_dynamic_towers": False})
    model = training_model(config, tiny_data)
    rng = np.random.default_rng(4)
    tasks, width = config.tower.num_tasks, config.tower.input_dim
    x = rng.normal(size=(5, tasks, width)).astype(np.float32)
    mask_a = rng.normal(size=(5, config.mask.dim)).astype(np.float32)
    mask_b = rng.normal(size=(5, config.mask.dim)).astype(np.float32)
    for name, link in (("regression_towers", lambda v: v),
                       ("classification_towers", lambda v: 1 / (1 + np.exp(-v)))):
        tower = model.get_layer(name)
        assert not hasattr(tower, "weight_generator")
        kernel, bias = tower.linear_kernel.numpy(), tower.linear_bias.numpy()
        tower.linear_bias.assign(rng.normal(size=bias.shape))
        bias = tower.linear_bias.numpy()
        want = link(np.einsum("uti,ti->ut", x, kernel) + bias)
        got_a = tower((tf.constant(x), tf.constant(mask_a))).numpy()
        got_b = tower((tf.constant(x), tf.constant(mask_b))).numpy()
        np.testing.assert_allclose(got_a, want, rtol=1e-5, atol=1e-6)
        np.testing.assert_array_equal(got_a, got_b)  # u_mask does not reach the heads

    # With dynamic towers, the same inputs give outputs that depend on u_mask once the
    # hypernetwork W_d is non-zero.
    tower = default_models[0].get_layer("regression_towers")
    generator = tower.weight_generator.kernel
    initial = generator.numpy()
    try:
        generator.assign(rng.normal(0, 0.5, generator.shape))
        assert not np.allclose(tower((tf.constant(x), tf.constant(mask_a))).numpy(),
                               tower((tf.constant(x), tf.constant(mask_b))).numpy())
    finally:
        generator.assign(initial)


def test_every_loss_term_finite_on_censored_and_all_zero_batches(tiny_data, batch,
                                                                 default_models):
    model = default_models[0]
    model.compile()
    config = tiny_config(tiny_data)
    longest = config.horizons[-1]
    censored = replace_user_features(
        batch, **{gs.label_mask_name(longest): tf.zeros_like})
    zero_labels = replace_user_features(batch, **{
        name: tf.zeros_like for name in gs.label_feature_names(config.horizons)
        if not name.startswith("label_mask")})
    for name, graph in (("censored", censored), ("zero labels", zero_labels)):
        terms = model.test_on_batch(graph, return_dict=True)
        for term in ("loss", "js", "bce", "regression"):
            assert np.isfinite(terms[term]), (name, term, terms[term])
        regression, classification = reference_terms(
            config, user_arrays(graph), outputs_numpy(model, graph), "multi")
        np.testing.assert_allclose(terms["regression"], regression, rtol=2e-4, err_msg=name)
        np.testing.assert_allclose(terms["bce"], classification, rtol=2e-4, err_msg=name)
    # The references give a fully censored task 0 (masked_mean of nothing), so the
    # comparison above checks that the censored horizon contributes exactly nothing.
    assert user_arrays(censored)[gs.label_mask_name(longest)].sum() == 0
