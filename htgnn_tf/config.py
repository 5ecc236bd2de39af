"""One config object for the HT-GNN model and its training: the single source of truth.

Each block is a dataclass whose fields are the keyword arguments of the layer it builds
(a test checks that they agree); the dataset-dependent sizes (vocabularies, bins,
metric types, W, horizons, label scales) come from the transform artifacts through
:func:`ModelConfig.from_artifacts`. The config is saved beside the model as
``model_config.json``, and the CLI and the benchmarks build models only from it.
"""
from __future__ import annotations

import dataclasses
import json
from typing import Literal, get_args

from htgnn_tf.data import transform

LossModeName = Literal["multi", "huber", "mse"]
GraphModuleName = Literal["hypergraph", "gcn", "graphsage", "gatv2", "hgt"]
GRAPH_MODULES = get_args(GraphModuleName)


@dataclasses.dataclass
class FeatureConfig:
    """FeatureEmbedding (Eq. 1-3)."""

    categorical_vocab_sizes: list[int] = dataclasses.field(default_factory=list)
    statistical_num_bins: list[int] = dataclasses.field(default_factory=list)
    embedding_dim: int = 8


@dataclasses.dataclass
class HypergraphConfig:
    """HypergraphConv (Eq. 4-5), stacked `num_layers` times."""

    units: int = 64
    activation: str = "relu"
    use_bias: bool = True
    learn_hyperedge_weights: bool = True
    num_layers: int = 2


@dataclasses.dataclass
class SequenceConfig:
    """SequenceEncoder (Eq. 11)."""

    num_types: int = 1
    max_len: int = 14
    vocab_size: int = 3
    dim: int = 32
    num_heads: int = 2
    ffn_units: int = 64
    dropout: float = 0.1


@dataclasses.dataclass
class MaskConfig:
    """ObservedLengthEmbedding: u_mask, the embedding of the observed length s."""

    max_len: int = 14
    dim: int = 16


@dataclasses.dataclass
class MoEConfig:
    """TaskAdaptiveMoE (Eq. 12-17)."""

    num_tasks: int = 6
    num_task_experts: int = 2
    num_shared_experts: int = 2
    expert_units: int = 64
    num_layers: int = 2
    use_dynamic_weighting: bool = True


@dataclasses.dataclass
class TowerConfig:
    """DynamicTower (Eq. 18); one regression and one classification tower per task."""

    num_tasks: int = 6
    input_dim: int = 64
    hidden_units: tuple[int, int] = (32, 16)
    use_dynamic_towers: bool = True


@dataclasses.dataclass
class LossConfig:
    """MultiLoss (Eq. 19-21)."""

    mode: LossModeName = "multi"
    beta1: float = 0.1
    beta2: float = 1.0
    beta3: float = 1.0
    quantile: float = 0.95
    huber_delta: float = 1.0
    epsilon: float = 1e-6


@dataclasses.dataclass
class ModelConfig:
    """The whole model. `use_hypergraph=False` is the paper's "w/o HG" ablation;
    `moe.use_dynamic_weighting=False` is "w/o DW"; `tower.use_dynamic_towers=False` is
    "w/o DT"; `loss.mode` selects Table III's losses. `graph_module` selects the graph
    module when `use_hypergraph` is on: the hypergraph convolution of Eq. (4)-(5), or a
    Table IV / HST-GT baseline (layers/graph_baselines.py) built from the `hypergraph`
    block's units, activation, use_bias and num_layers on the same kNN hyperedges."""

    horizons: list[int] = dataclasses.field(default_factory=lambda: [30, 180, 365])
    value_metric_index: int = 0
    # Output scale of each regression task (train mean of the label), so the towers
    # work in units of about 1.
    label_scales: dict[str, float] = dataclasses.field(default_factory=dict)
    use_hypergraph: bool = True
    graph_module: GraphModuleName = "hypergraph"
    seed: int = 17
    # XLA-compile the dense blocks (see model.JitCompiled); set by `htgnn train --xla`.
    xla: bool = False
    features: FeatureConfig = dataclasses.field(default_factory=FeatureConfig)
    hypergraph: HypergraphConfig = dataclasses.field(default_factory=HypergraphConfig)
    sequence: SequenceConfig = dataclasses.field(default_factory=SequenceConfig)
    mask: MaskConfig = dataclasses.field(default_factory=MaskConfig)
    moe: MoEConfig = dataclasses.field(default_factory=MoEConfig)
    tower: TowerConfig = dataclasses.field(default_factory=TowerConfig)
    loss: LossConfig = dataclasses.field(default_factory=LossConfig)

    def __post_init__(self):
        check_graph_module(self.graph_module)

    @property
    def task_names(self) -> list[str]:
        """Regression tasks: LT then LTV, each over the horizons."""
        return [f"lt_{h}" for h in self.horizons] + [f"ltv_{h}" for h in self.horizons]

    @classmethod
    def from_artifacts(cls, artifacts: dict, **overrides) -> "ModelConfig":
        """Fills the dataset-dependent sizes from transform.json; `overrides` set any
        other field (nested blocks as dataclasses or dicts)."""
        spec = artifacts["spec"]
        config = cls()
        for name, value in overrides.items():
            current = getattr(config, name)
            if dataclasses.is_dataclass(current) and isinstance(value, dict):
                value = dataclasses.replace(current, **value)
            setattr(config, name, value)
        check_graph_module(config.graph_module)
        config.horizons = list(spec["horizons"])
        config.value_metric_index = spec["metrics"].index(spec["value_metric"])
        config.label_scales = {task: max(float(artifacts["label_means"].get(task, 1.0)), 1e-3)
                               for task in config.task_names}
        config.features.categorical_vocab_sizes = transform.vocab_sizes(artifacts)
        config.features.statistical_num_bins = transform.statistical_num_bins(artifacts)
        config.sequence.num_types = len(spec["metrics"])
        config.sequence.max_len = spec["observation_days"]
        config.sequence.vocab_size = transform.sequence_vocab_size(artifacts)
        config.mask.max_len = spec["observation_days"]
        num_tasks = len(config.task_names)
        config.moe.num_tasks = num_tasks
        config.tower.num_tasks = num_tasks
        config.tower.input_dim = config.moe.expert_units
        return config

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, raw: dict) -> "ModelConfig":
        blocks = {f.name: f.type for f in dataclasses.fields(cls)}
        kwargs = {}
        for name, value in raw.items():
            block_cls = globals().get(blocks.get(name, ""), None)
            if isinstance(value, dict) and dataclasses.is_dataclass(block_cls):
                if "hidden_units" in value:
                    value = {**value, "hidden_units": tuple(value["hidden_units"])}
                value = block_cls(**value)
            kwargs[name] = value
        return cls(**kwargs)

    def save(self, path: str) -> None:
        with open(path, "w") as f:
            json.dump(self.to_dict(), f, indent=1)

    @classmethod
    def load(cls, path: str) -> "ModelConfig":
        with open(path) as f:
            return cls.from_dict(json.load(f))


def check_graph_module(name) -> None:
    if name not in GRAPH_MODULES:
        raise ValueError(f"graph_module must be one of {GRAPH_MODULES}, got {name!r}")


def layer_kwargs(block) -> dict:
    """The block's fields as the layer's keyword arguments (without bookkeeping
    fields that are not constructor arguments)."""
    kwargs = dataclasses.asdict(block)
    if isinstance(block, HypergraphConfig):
        kwargs.pop("num_layers")  # the model stacks that many layers
    return kwargs


@dataclasses.dataclass
class TrainConfig:
    """`htgnn train` settings."""

    epochs: int = 20
    batch_cohorts: int = 4
    learning_rate: float = 2e-3
    early_stopping_patience: int = 6
    seed: int = 17
    mixed_precision: bool = False
    xla: bool = False
    strategy: Literal["default", "mirrored"] = "default"
