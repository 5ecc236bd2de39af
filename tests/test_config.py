"""Tests for htgnn_tf.config: blocks agree with the layers they build, round trips, and
the sizes ModelConfig.from_artifacts takes from transform.json."""
import dataclasses
import inspect
import json

import pytest

from htgnn_tf import config as config_lib
from htgnn_tf import losses
from htgnn_tf.config import ModelConfig, layer_kwargs
from htgnn_tf.layers.dynamic_tower import DynamicTower
from htgnn_tf.layers.feature_embedding import FeatureEmbedding
from htgnn_tf.layers.hypergraph_conv import HypergraphConv
from htgnn_tf.layers.moe import TaskAdaptiveMoE
from htgnn_tf.layers.sequence_encoder import ObservedLengthEmbedding, SequenceEncoder

# block -> (the class it builds, constructor arguments the model sets itself,
#           config fields that are not constructor arguments)
BLOCKS = {
    "features": (config_lib.FeatureConfig, FeatureEmbedding, set(), set()),
    "hypergraph": (config_lib.HypergraphConfig, HypergraphConv, set(), {"num_layers"}),
    "sequence": (config_lib.SequenceConfig, SequenceEncoder, set(), set()),
    "mask": (config_lib.MaskConfig, ObservedLengthEmbedding, set(), set()),
    "moe": (config_lib.MoEConfig, TaskAdaptiveMoE, set(), set()),
    "tower": (config_lib.TowerConfig, DynamicTower, {"kind"}, set()),
    "loss": (config_lib.LossConfig, losses.MultiLoss, set(), set()),
}


def keyword_arguments(cls) -> set[str]:
    return {name for name, p in inspect.signature(cls.__init__).parameters.items()
            if p.kind == inspect.Parameter.KEYWORD_ONLY}


@pytest.mark.parametrize("block", sorted(BLOCKS))
def test_block_fields_are_the_layer_keyword_arguments(block):
    block_cls, layer_cls, set_by_model, bookkeeping = BLOCKS[block]
    fields = {f.name for f in dataclasses.fields(block_cls)}
    assert fields - bookkeeping == keyword_arguments(layer_cls) - set_by_model
    assert set(layer_kwargs(block_cls())) == fields - bookkeeping


ARTIFACTS = {
    "spec": {"metrics": ["clicks", "revenue", "items"], "value_metric": "revenue",
             "horizons": [10, 40], "observation_days": 5},
    "categorical_features": ["region", "device"],
    "categorical_vocab": {"device": ["ios", "android", "web"], "region": ["eu", "us"]},
    "statistical_features": ["day0_clicks", "day0_revenue", "age"],
    "statistical_edges": {"day0_clicks": [0.5, 1.0], "day0_revenue": [], "age": [1, 2, 3, 4]},
    "sequence_edges": {"clicks": [0.1], "revenue": [0.2, 0.4, 0.6], "items": []},
    "label_means": {"lt_10": 2.5, "ltv_10": 31.0, "lt_40": 4.0, "ltv_40": 0.0},
}


def test_from_artifacts_fills_dataset_sizes():
    config = ModelConfig.from_artifacts(ARTIFACTS)
    assert config.horizons == [10, 40]
    assert config.task_names == ["lt_10", "lt_40", "ltv_10", "ltv_40"]
    assert config.value_metric_index == 1
    # Vocabulary + the OOV id 0, in the order of categorical_features.
    assert config.features.categorical_vocab_sizes == [3, 4]
    # Interior edges + 1 bins, in the order of statistical_features.
    assert config.features.statistical_num_bins == [3, 1, 5]
    # Tokens: not observed, zero, then the bins of the longest edge list (3 edges -> 4).
    assert config.sequence.vocab_size == 2 + 4
    assert config.sequence.num_types == 3
    assert config.sequence.max_len == 5 and config.mask.max_len == 5
    assert config.moe.num_tasks == 4 and config.tower.num_tasks == 4
    assert config.tower.input_dim == config.moe.expert_units
    # Train means of the labels, floored at 1e-3 (a mean of 0 would zero the output).
    assert config.label_scales == {"lt_10": 2.5, "ltv_10": 31.0, "lt_40": 4.0, "ltv_40": 1e-3}


def test_from_artifacts_overrides_merge_into_blocks_and_keep_sizes():
    config = ModelConfig.from_artifacts(
        ARTIFACTS, use_hypergraph=False, seed=3, sequence={"dim": 8, "num_heads": 4},
        moe={"expert_units": 12}, tower=config_lib.TowerConfig(hidden_units=(5, 3)))
    assert config.use_hypergraph is False and config.seed == 3
    defaults = config_lib.SequenceConfig()
    assert (config.sequence.dim, config.sequence.num_heads) == (8, 4)
    assert config.sequence.ffn_units == defaults.ffn_units
    assert config.sequence.num_types == 3  # dataset sizes win over the override block
    assert config.moe.expert_units == 12 and config.tower.input_dim == 12
    assert config.tower.hidden_units == (5, 3) and config.tower.num_tasks == 4
    # The class defaults are untouched.
    assert ModelConfig().sequence == defaults and ModelConfig().moe.expert_units == 64


def sample_config() -> ModelConfig:
    return ModelConfig.from_artifacts(
        ARTIFACTS, use_hypergraph=False, loss={"mode": "mse", "beta1": 0.3},
        tower={"hidden_units": (6, 2), "use_dynamic_towers": False},
        moe={"use_dynamic_weighting": False, "num_layers": 3})


def test_to_dict_from_dict_round_trip_through_json():
    config = sample_config()
    raw = json.loads(json.dumps(config.to_dict()))
    restored = ModelConfig.from_dict(raw)
    assert restored == config
    assert isinstance(restored.tower, config_lib.TowerConfig)
    assert restored.tower.hidden_units == (6, 2)
    assert restored.loss.mode == "mse" and restored.loss.beta1 == 0.3


def test_save_load_round_trip(tmp_path):
    config = sample_config()
    path = tmp_path / "model_config.json"
    config.save(str(path))
    assert ModelConfig.load(str(path)) == config
    assert json.loads(path.read_text())["label_scales"]["ltv_40"] == 1e-3


@pytest.mark.parametrize("block", ["features", "hypergraph", "sequence", "mask", "moe"])
def test_layer_built_from_block_reports_the_block_in_get_config(block):
    config = ModelConfig.from_artifacts(ARTIFACTS)
    _, layer_cls, _, _ = BLOCKS[block]
    kwargs = layer_kwargs(getattr(config, block))
    layer_config = layer_cls(**kwargs).get_config()
    for name, value in kwargs.items():
        got = layer_config[name]
        assert (list(got) if isinstance(got, tuple) else got) == (
            list(value) if isinstance(value, tuple) else value), name


def test_tower_and_loss_built_from_blocks_report_them():
    config = ModelConfig.from_artifacts(ARTIFACTS)
    tower = DynamicTower(**layer_kwargs(config.tower), kind="classification").get_config()
    assert tower["num_tasks"] == 4 and tower["input_dim"] == config.moe.expert_units
    assert tuple(tower["hidden_units"]) == config.tower.hidden_units
    assert tower["use_dynamic_towers"] is True
    loss_config = losses.MultiLoss(**layer_kwargs(config.loss)).get_config()
    assert {k: loss_config[k] for k in layer_kwargs(config.loss)} == layer_kwargs(config.loss)
