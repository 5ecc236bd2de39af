"""deep.py: the shared builder on HT-GNN's encoders, its readout and loss with hand-set
head weights against numpy, and the user-order guard of predict."""
import dataclasses

import numpy as np
import pytest
import tensorflow as tf
from scipy import stats

from htgnn_tf import training
from htgnn_tf.baselines import deep, tabular, ziln
from htgnn_tf.config import ModelConfig, layer_kwargs
from htgnn_tf.data import graph_schema as gs
from tests.baselines.deep_settings import FAST
from tests.helpers import parse_batch, serialized_cohorts, user_arrays

HEAD_BIAS = np.array([0.3, -0.5, 0.2])  # p_logit, mu, sigma_raw of every task


@pytest.fixture(scope="module")
def built(tiny_data):
    config = ModelConfig.from_artifacts(training.read_artifacts(tiny_data), use_hypergraph=False,
                                        **FAST["model_overrides"])
    model = deep.build_model("ziln", config, training.read_schema(tiny_data), head_params={})
    head = model.get_layer("ziln_head")
    kernel = head.get_weights()[0]
    head.set_weights([np.zeros_like(kernel), np.tile(HEAD_BIAS, len(config.task_names))])
    batch = parse_batch(tiny_data, serialized_cohorts(tiny_data, "train")[:3])
    return config, model, batch


def _observed(users, config):
    summaries = tabular.observed_summaries(users[gs.SEQ_VALUES], users[gs.OBS_DAYS],
                                           config.value_metric_index)
    half = len(config.horizons)
    return np.concatenate([np.repeat(summaries["observed_active_days"][:, None], half, 1),
                           np.repeat(summaries["observed_value"][:, None], half, 1)], axis=1)


def test_encoders_come_from_the_config_blocks(built):
    config, model, _ = built
    for layer_name, block in (("feature_embedding", config.features),
                              ("sequence_encoder", config.sequence),
                              ("observed_length", config.mask)):
        layer_config = model.get_layer(layer_name).get_config()
        for key, value in layer_kwargs(block).items():
            assert layer_config[key] == (list(value) if isinstance(value, tuple) else value)
    assert not [layer for layer in model.layers if "hypergraph" in layer.name]


def test_readout_is_observed_plus_scaled_ziln_mean(built):
    config, model, batch = built
    outputs = model(batch, training=False)
    users = user_arrays(batch)
    p = 1 / (1 + np.exp(-HEAD_BIAS[0]))
    sigma = np.log1p(np.exp(HEAD_BIAS[2]))
    mean = p * stats.lognorm.mean(s=sigma, scale=np.exp(HEAD_BIAS[1]))
    observed = _observed(users, config)
    for t, task in enumerate(config.task_names):
        np.testing.assert_allclose(outputs[task].numpy(),
                                   observed[:, t] + mean * config.label_scales[task], rtol=1e-5)
    for h in config.horizons:
        np.testing.assert_allclose(outputs[f"p_active_after_obs_{h}"].numpy(), p, rtol=1e-6)
    np.testing.assert_array_equal(outputs[gs.USER_ID].numpy(), users[gs.USER_ID])


def test_loss_is_ziln_on_scaled_future_labels(built):
    config, model, batch = built
    model(batch, training=False)
    users = user_arrays(batch)
    labels = np.stack([users[t] for t in config.task_names], axis=1)  # [U, tasks]
    mask = np.stack([users[gs.label_mask_name(h)] for h in config.horizons] * 2, axis=1)
    scales = np.array([config.label_scales[t] for t in config.task_names])
    future = np.maximum(labels - _observed(users, config), 0) / scales
    positive = future > 0
    p = 1 / (1 + np.exp(-HEAD_BIAS[0]))
    sigma = np.log1p(np.exp(HEAD_BIAS[2]))
    per_example = (-(positive * np.log(p) + (~positive) * np.log(1 - p))
                   - positive * stats.lognorm.logpdf(np.where(positive, future, 1.0), s=sigma,
                                                     scale=np.exp(HEAD_BIAS[1])))
    expected = (per_example * mask).sum() / mask.sum()
    np.testing.assert_allclose(float(tf.add_n(model.losses)), expected, rtol=1e-5)


def test_layers_round_trip_through_their_config():
    readout = deep.DeepBaselineReadout(kind="mdme", head_params={"edges": [[0.0, 1.0, 2.0]],
                                       "num_segments": 1, "num_buckets": 2},
                                       scales=[2.0, 3.0], name="r")
    clone = deep.DeepBaselineReadout.from_config(readout.get_config())
    assert clone.get_config() == readout.get_config()
    with pytest.raises(ValueError, match="'gbdt'"):
        deep.DeepBaselineLoss(kind="gbdt", head_params={}, scales=[1.0])


def test_predict_rejects_rows_of_other_users(fit_rows, valid_rows):
    model = ziln.fit(fit_rows, valid_rows, seed=0,
                     train_config=dataclasses.replace(FAST["train_config"], epochs=1),
                     model_overrides=FAST["model_overrides"])
    wrong = dataclasses.replace(valid_rows, part="fit")  # arrays of other users
    with pytest.raises(ValueError, match="other users"):
        deep.predict(model, wrong)
