"""HT-GNN layers, one paper component per module.

=============================  ==================================================
module                         paper component
=============================  ==================================================
``feature_embedding``          Eq. (1)-(3): categorical and Scott-bin embeddings
``hypergraph_conv``            Eq. (4)-(5): hypergraph convolution
``js_supervision``             Eq. (6)-(10): Jensen-Shannon supervision
``observed_days``              Sec. IV-C: random-length masks (observed length s)
``sequence_encoder``           Eq. (11): temporal encoder and u_mask
``moe``                        Eq. (12)-(17): task-adaptive mixture of experts
``dynamic_tower``              Eq. (18): dynamic towers
``graph_baselines``            Table IV: GCN, GraphSAGE, GATv2, HGT in place of Eq. (5)
=============================  ==================================================
"""
from htgnn_tf.layers.dynamic_tower import DynamicTower
from htgnn_tf.layers.feature_embedding import FeatureEmbedding
from htgnn_tf.layers.graph_baselines import GraphBaselineConv
from htgnn_tf.layers.hypergraph_conv import HypergraphConv
from htgnn_tf.layers.js_supervision import js_supervision_loss
from htgnn_tf.layers.moe import TaskAdaptiveMoE
from htgnn_tf.layers.observed_days import RandomObservedDays
from htgnn_tf.layers.sequence_encoder import ObservedLengthEmbedding, SequenceEncoder

__all__ = [
    "DynamicTower",
    "FeatureEmbedding",
    "GraphBaselineConv",
    "HypergraphConv",
    "ObservedLengthEmbedding",
    "RandomObservedDays",
    "SequenceEncoder",
    "TaskAdaptiveMoE",
    "js_supervision_loss",
]
