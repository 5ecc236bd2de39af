"""The HT-GNN Keras functional model (paper Sec. IV, Fig. 3) over cohort GraphTensors.

Data flow (one merged GraphTensor; each component is a cohort):

    categorical_ids, stat_bins --FeatureEmbedding (Eq. 1-3)--> u_sc
    u_sc --HypergraphConv x L over `incidence` (Eq. 4-5)--> u_H   (JS supervision, Eq. 6-10)
         (or, with ModelConfig.graph_module, GCN / GraphSAGE / GATv2 / HGT x L: Table IV)
    obs_days --RandomObservedDays (training only)--> s
    seq_tokens, s --SequenceEncoder (Eq. 11)--> u_se;  s --ObservedLengthEmbedding--> u_mask
    [u_H; u_se], u_mask --TaskAdaptiveMoE (Eq. 12-17)--> per-task states
    per-task states, u_mask --DynamicTower x 2 (Eq. 18)--> regression z, probabilities

Outputs (dict, one value per user): for each horizon h, ``lt_{h}`` (active days) and
``ltv_{h}`` (value units), ``p_active_after_obs_{h}`` and ``p_value_after_obs_{h}`` (the
classification towers of the LT and the LTV task), plus ``user_id`` and ``obs_days_used``.

Departures (besides those of each layer):

* Residual readout: LT_h and LTV_h count the observed days too, which the model sees. A
  regression tower predicts the part after the s observed days, so
  ``ltv_h = observed value in [0, s) + softplus(z) * scale_h`` (and likewise LT with
  observed active days), with ``scale_h`` the train mean of the label. Predictions are
  therefore non-negative and never below what was already observed. The Huber / MSE
  terms compare ``y / scale_h`` with ``ŷ / scale_h``.
* Classification target (DESIGN.md): activity after the s observed days within h,
  ``last_active_day_h >= s``; the LT and the LTV classification towers share it.
* The JS term is computed for every regression task on ``u_H``, comparing within each
  cohort only.

Two functional models share every layer: the training model (input: a merged GraphTensor
with labels; the loss is added inside with ``add_loss``) and the serving model (input:
serialized ``tf.train.Example`` strings parsed in-graph with ``ParseExample``), which is
what gets exported.
"""
from __future__ import annotations

import tensorflow as tf
import tensorflow_gnn as tfgnn

from htgnn_tf import losses
from htgnn_tf.config import ModelConfig, check_graph_module, layer_kwargs
from htgnn_tf.data import graph_schema as gs
from htgnn_tf.layers.dynamic_tower import DynamicTower
from htgnn_tf.layers.feature_embedding import FeatureEmbedding
from htgnn_tf.layers.graph_baselines import GraphBaselineConv
from htgnn_tf.layers.hypergraph_conv import HypergraphConv
from htgnn_tf.layers.js_supervision import graph_component_ids, js_supervision_loss
from htgnn_tf.layers.moe import TaskAdaptiveMoE
from htgnn_tf.layers.observed_days import RandomObservedDays
from htgnn_tf.layers.sequence_encoder import ObservedLengthEmbedding, SequenceEncoder

SERVING_INPUT = "examples"


def classification_output_names(horizons) -> list[str]:
    return ([f"p_active_after_obs_{h}" for h in horizons]
            + [f"p_value_after_obs_{h}" for h in horizons])


@tf.keras.utils.register_keras_serializable(package="htgnn")
class ObservedTotals(tf.keras.layers.Layer):
    """What is already observed in [0, s): active days and value, per user.

    Call arguments: ``(seq_values [U, T, W], s [U])``. Returns ``[U, 2]``: observed
    active days (days with any positive metric) and observed value (metric
    `value_metric_index`).
    """

    def __init__(self, *, value_metric_index: int, **kwargs):
        super().__init__(**kwargs)
        self.value_metric_index = value_metric_index

    def call(self, inputs):
        seq_values, s = inputs
        days = tf.shape(seq_values)[-1]
        seen = tf.sequence_mask(s, days, dtype=seq_values.dtype)  # [U, W]
        active = tf.cast(tf.reduce_any(seq_values > 0, axis=1), seq_values.dtype)  # [U, W]
        observed_days = tf.reduce_sum(active * seen, axis=-1)  # [U]
        value = tf.reduce_sum(seq_values[:, self.value_metric_index, :] * seen, axis=-1)
        return tf.stack([observed_days, value], axis=-1)  # [U, 2]

    def get_config(self):
        return {**super().get_config(), "value_metric_index": self.value_metric_index}


def observed_per_task(observed, num_tasks: int):
    """``[U, 2]`` (observed active days, observed value) -> ``[U, tasks]``: the first half
    of the tasks are LT tasks (active days), the second half LTV tasks (value)."""
    half = num_tasks // 2
    return tf.concat([tf.repeat(observed[:, :1], half, axis=1),
                      tf.repeat(observed[:, 1:], half, axis=1)], axis=1)  # [U, tasks]


@tf.keras.utils.register_keras_serializable(package="htgnn")
class ResidualReadout(tf.keras.layers.Layer):
    """``y_hat = observed + softplus(z) * scale`` per task (see module docstring).

    Call arguments: ``(z [U, tasks], observed [U, 2])``; the first half of the tasks are
    LT tasks (observed active days), the second half LTV tasks (observed value).
    Returns ``[U, tasks]`` non-negative predictions in label units.
    """

    def __init__(self, *, scales: list[float], **kwargs):
        super().__init__(**kwargs)
        self.scales = [float(s) for s in scales]

    def call(self, inputs):
        z, observed = inputs
        base = observed_per_task(observed, len(self.scales))  # [U, tasks]
        return base + tf.nn.softplus(tf.cast(z, tf.float32)) * tf.constant(self.scales)

    def get_config(self):
        return {**super().get_config(), "scales": self.scales}


@tf.keras.utils.register_keras_serializable(package="htgnn")
class HTGNNLoss(tf.keras.layers.Layer):
    """Adds the multi-loss of Eq. (19)-(21) to the training model (``add_loss``) and
    logs its terms as metrics (``js``, ``bce``, ``regression``).

    Call arguments: a dict with ``labels``, ``mask`` ([U, tasks] regression labels and
    label masks), ``last_active`` ([U, horizons]), ``s`` ([U]), ``predictions``
    ([U, tasks]), ``probs`` ([U, tasks]), ``embeddings`` ([U, D] or None),
    ``component_ids`` ([U]). Returns ``predictions`` unchanged.
    """

    def __init__(self, *, scales: list[float], loss_config: dict, use_js: bool, **kwargs):
        super().__init__(**kwargs)
        self.scales = [float(s) for s in scales]
        self.loss_config = dict(loss_config)
        self.use_js = use_js
        self.multi_loss = losses.MultiLoss(**self.loss_config)

    def call(self, inputs):
        scales = tf.constant(self.scales)
        labels, mask = inputs["labels"], inputs["mask"]
        predictions = tf.cast(inputs["predictions"], tf.float32)
        s = tf.cast(inputs["s"], tf.int64)[:, None]
        active_after = tf.cast(inputs["last_active"] >= s, tf.float32)  # [U, horizons]
        targets = tf.concat([active_after, active_after], axis=1)  # [U, tasks]
        js = None
        if self.use_js and self.multi_loss.mode == "multi":
            component_ids = inputs["component_ids"]
            js = tf.stack([
                js_supervision_loss(component_ids, inputs["embeddings"], labels[:, t],
                                    mask[:, t], predictions[:, t])
                for t in range(len(self.scales))])
        terms = self.multi_loss(
            regression_labels=labels / scales, regression_preds=predictions / scales,
            regression_mask=mask, classification_labels=targets,
            classification_probs=tf.cast(inputs["probs"], tf.float32),
            classification_mask=mask, js_loss=js)
        self.add_loss(terms["loss"])
        for name in ("js", "bce", "regression"):
            self.add_metric(terms[name], name=name)
        return inputs["predictions"]

    def get_config(self):
        return {**super().get_config(), "scales": self.scales,
                "loss_config": self.loss_config, "use_js": self.use_js}


class JitCompiled(tf.keras.layers.Layer):
    """Runs a dense block under ``tf.function(jit_compile=True)`` (XLA).

    Keras's ``compile(jit_compile=True)`` cannot compile the whole train step here: it
    holds ragged GraphTensor ops and string features that XLA does not support. So
    ``ModelConfig.xla`` compiles the dense per-user blocks instead (temporal encoder,
    towers), where the FLOPs are. Saved with the weights only (the model is rebuilt
    from its config).
    """

    def __init__(self, layer: tf.keras.layers.Layer, **kwargs):
        super().__init__(name=f"xla_{layer.name}", **kwargs)
        self.layer = layer
        self._compiled = tf.function(self._forward, jit_compile=True)

    def _forward(self, inputs, training):
        return self.layer(inputs, training=training)

    def call(self, inputs, training=None):
        return self._compiled(inputs, bool(training))


def graph_layer(config: ModelConfig, index: int) -> tf.keras.layers.Layer:
    """Layer `index` of the graph module: HypergraphConv (Eq. 4-5) or, for Table IV and
    the HST-GT stand-in, a GraphBaselineConv with the `hypergraph` block's sizes."""
    check_graph_module(config.graph_module)
    block = config.hypergraph
    if config.graph_module == "hypergraph":
        return HypergraphConv(**layer_kwargs(block), name=f"hypergraph_conv_{index}")
    return GraphBaselineConv(kind=config.graph_module, units=block.units,
                             activation=block.activation, use_bias=block.use_bias,
                             name=f"{config.graph_module}_conv_{index}")


class HTGNNLayers:
    """Every layer of the model, created once from the config and shared by the
    training and the serving model."""

    def __init__(self, config: ModelConfig):
        self.config = config
        c = config
        self.features = FeatureEmbedding(**layer_kwargs(c.features), name="feature_embedding")
        self.hypergraph = [graph_layer(c, i)
                           for i in range(c.hypergraph.num_layers if c.use_hypergraph else 0)]
        self.observed_days = RandomObservedDays(seed=c.seed, name="random_observed_days")
        self.sequence = SequenceEncoder(**layer_kwargs(c.sequence), name="sequence_encoder")
        self.length = ObservedLengthEmbedding(**layer_kwargs(c.mask), name="observed_length")
        self.moe = TaskAdaptiveMoE(**layer_kwargs(c.moe), name="task_adaptive_moe")
        tower = layer_kwargs(c.tower)
        self.regression = DynamicTower(**tower, kind="regression", name="regression_towers")
        self.classification = DynamicTower(**tower, kind="classification",
                                           name="classification_towers")
        # Sums of dollars and the readout stay in float32 under mixed precision.
        self.observed = ObservedTotals(value_metric_index=c.value_metric_index,
                                       name="observed_totals", dtype="float32")
        self.readout = ResidualReadout(scales=[c.label_scales[t] for t in c.task_names],
                                       name="residual_readout", dtype="float32")
        if c.xla:
            self.sequence = JitCompiled(self.sequence)
            self.regression = JitCompiled(self.regression)
            self.classification = JitCompiled(self.classification)

    def __call__(self, graph: tfgnn.GraphTensor, training_graph: bool) -> dict:
        """Builds the outputs on a merged GraphTensor; returns outputs and internals."""
        c = self.config
        users = graph.node_sets[gs.USER]
        u_sc = self.features((users[gs.CATEGORICAL_IDS], users[gs.STAT_BINS]))
        u_h = u_sc
        for layer in self.hypergraph:
            u_h = layer((graph, u_h))  # [U, units]
        s = self.observed_days(users[gs.OBS_DAYS])  # [U]
        u_se = self.sequence((users[gs.SEQ_TOKENS], s))  # [U, dim]
        u_mask = self.length(s)  # [U, mask_dim]
        u0 = tf.keras.layers.Concatenate(name="u0")([u_h, u_se])
        task_states = self.moe((u0, u_mask))  # [U, tasks, expert_units]
        z = self.regression((task_states, u_mask))  # [U, tasks]
        probs = self.classification((task_states, u_mask))  # [U, tasks]
        observed = self.observed((users[gs.SEQ_VALUES], s))  # [U, 2]
        predictions = self.readout((z, observed))  # [U, tasks]
        return {"predictions": predictions, "probs": probs, "s": s, "u_h": u_h}


def _outputs_dict(config: ModelConfig, users, internals) -> dict:
    outputs = {}
    for t, task in enumerate(config.task_names):
        outputs[task] = tf.keras.layers.Identity(name=task)(internals["predictions"][:, t])
    for t, name in enumerate(classification_output_names(config.horizons)):
        outputs[name] = tf.keras.layers.Identity(name=name)(internals["probs"][:, t])
    outputs[gs.USER_ID] = tf.keras.layers.Identity(name=gs.USER_ID)(users[gs.USER_ID])
    outputs["obs_days_used"] = tf.keras.layers.Identity(name="obs_days_used")(internals["s"])
    return outputs


def batched_graph_spec(schema) -> tfgnn.GraphTensorSpec:
    """The spec of a batch of cohort graphs (what ``parse_example`` returns)."""
    return tfgnn.create_graph_spec_from_schema_pb(schema)._batch(None)  # pylint: disable=protected-access


def build_training_model(config: ModelConfig, schema, layers: HTGNNLayers | None = None):
    """Functional model on a batch of labelled cohort GraphTensors (as parsed by
    ``tfgnn.parse_example``); the loss is inside."""
    layers = layers or HTGNNLayers(config)
    batch = tf.keras.layers.Input(type_spec=batched_graph_spec(schema), name="graph")
    graph = batch.merge_batch_to_components()
    users = graph.node_sets[gs.USER]
    internals = layers(graph, training_graph=True)
    horizons = config.horizons
    labels = tf.stack([users[gs.lt_name(h)] for h in horizons]
                      + [users[gs.ltv_name(h)] for h in horizons], axis=1)  # [U, tasks]
    masks = tf.stack([users[gs.label_mask_name(h)] for h in horizons] * 2, axis=1)
    last_active = tf.stack([users[gs.last_active_name(h)] for h in horizons], axis=1)
    loss_inputs = {"labels": labels, "mask": masks, "last_active": last_active,
                   "s": internals["s"], "predictions": internals["predictions"],
                   "probs": internals["probs"], "embeddings": internals["u_h"],
                   "component_ids": graph_component_ids(graph)}
    internals["predictions"] = HTGNNLoss(
        scales=[config.label_scales[t] for t in config.task_names],
        loss_config=layer_kwargs(config.loss), use_js=config.use_hypergraph,
        name="multi_loss", dtype="float32")(loss_inputs)
    return tf.keras.Model(batch, _outputs_dict(config, users, internals), name="htgnn_train")


def build_serving_model(config: ModelConfig, serving_schema, layers: HTGNNLayers):
    """Functional model on serialized cohort examples (``tf.string [batch]``): what the
    SavedModel exports. Needs no TF-GNN at load time once exported."""
    examples = tf.keras.layers.Input(shape=[], dtype=tf.string, name=SERVING_INPUT)
    spec = tfgnn.create_graph_spec_from_schema_pb(serving_schema)
    graph = tfgnn.keras.layers.ParseExample(spec)(examples)
    graph = graph.merge_batch_to_components()
    internals = layers(graph, training_graph=False)
    return tf.keras.Model(examples, _outputs_dict(config, graph.node_sets[gs.USER], internals),
                          name="htgnn_serving")
