"""One builder for the deep baselines (ZILN, MDME, expLTV) on HT-GNN's own encoders.

The deep baselines differ from HT-GNN only in what sits on top of the user encoding, so
they share its encoders through the model config instead of copying them: from the
same :class:`~htgnn_tf.config.ModelConfig` blocks (``htgnn_tf.config.layer_kwargs``)
and on the same batched cohort GraphTensor input (``training.parsed``):

    categorical_ids, stat_bins --FeatureEmbedding (config.features)--> u_sc
    seq_tokens, s --SequenceEncoder (config.sequence)--> u_se
    s --ObservedLengthEmbedding (config.mask)--> u_mask
    [u_sc; u_se; u_mask] --Dense(expert_units, relu) x 2--> per-task head outputs

with no hypergraph, MoE or dynamic towers (those are HT-GNN's contribution). The head
(``ziln``, ``mdme`` or ``expltv``: each module provides ``num_outputs``, ``loss``,
``expected_value``, ``positive_probability`` and ``fit_head_params``) models the part
of every label after the ``s`` observed days divided by the task's label scale (train
mean, ``config.label_scales``); the readout adds the observed active days / value back
(as HT-GNN's residual readout), so predictions are non-negative and never below what
was observed. Censored labels (``label_mask_h = 0``) are masked out of the loss.

Training: ``model.fit`` on the fit part of train at a fixed ``s`` (``obs_days`` of the
rows, via ``training.parsed(..., obs_days=s)``; baselines are fixed-``s`` models,
HT-GNN's random-length masks are its own), early stopping on the validation part with
the best weights restored. The MLP width is ``config.moe.expert_units``.
"""
from __future__ import annotations

import dataclasses
from typing import Literal

import numpy as np

import htgnn_tf  # noqa: F401  (Keras 2 switch before TensorFlow loads)
import tensorflow as tf

from htgnn_tf import model as model_lib
from htgnn_tf import training
from htgnn_tf.baselines import expltv, mdme, tabular, ziln
from htgnn_tf.config import ModelConfig, TrainConfig, layer_kwargs
from htgnn_tf.data import graph_schema as gs
from htgnn_tf.layers.feature_embedding import FeatureEmbedding
from htgnn_tf.layers.sequence_encoder import ObservedLengthEmbedding, SequenceEncoder

DeepKind = Literal["ziln", "mdme", "expltv"]
HEADS = {"ziln": ziln, "mdme": mdme, "expltv": expltv}


def _head(kind: str):
    if kind not in HEADS:
        raise ValueError(f"kind must be one of {sorted(HEADS)}, got {kind!r}")
    return HEADS[kind]


class _HeadLayer(tf.keras.layers.Layer):
    """A layer bound to one baseline head (``kind``), its parameters and the per-task
    label scales."""

    def __init__(self, *, kind: str, head_params: dict, scales: list[float], **kwargs):
        super().__init__(**kwargs)
        self._module = _head(kind)
        self.kind = kind
        self.head_params = dict(head_params)
        self.scales = [float(s) for s in scales]

    def get_config(self):
        return {**super().get_config(), "kind": self.kind, "head_params": self.head_params,
                "scales": self.scales}


@tf.keras.utils.register_keras_serializable(package="htgnn")
class DeepBaselineLoss(_HeadLayer):
    """Adds the head's loss on the scaled future labels (``add_loss``).

    Call arguments: a dict with ``labels``, ``mask`` ``[U, tasks]``, ``observed``
    ``[U, 2]`` and ``outputs`` ``[U, tasks, P]``. Returns ``outputs`` unchanged.
    """

    def call(self, inputs):
        base = model_lib.observed_per_task(inputs["observed"], len(self.scales))  # [U, tasks]
        future = tf.maximum(inputs["labels"] - base, 0.0) / tf.constant(self.scales)  # [U, tasks]
        self.add_loss(self._module.loss(future, inputs["outputs"], inputs["mask"],
                                        **self.head_params))
        return inputs["outputs"]



@tf.keras.utils.register_keras_serializable(package="htgnn")
class DeepBaselineReadout(_HeadLayer):
    """``prediction = observed + expected_future * scale`` and ``P(future > 0)``.

    Call arguments: ``(outputs [U, tasks, P], observed [U, 2])``. Returns
    ``(predictions [U, tasks], probabilities [U, tasks])``.
    """

    def call(self, inputs):
        outputs, observed = inputs
        base = model_lib.observed_per_task(observed, len(self.scales))  # [U, tasks]
        future = self._module.expected_value(outputs, **self.head_params)  # [U, tasks]
        probs = self._module.positive_probability(outputs, **self.head_params)  # [U, tasks]
        return base + future * tf.constant(self.scales), probs



def build_model(kind: DeepKind, config: ModelConfig, schema, head_params: dict) -> tf.keras.Model:
    """The training model of a deep baseline on a batch of labelled cohort graphs.

    Outputs (one value per user): every task of ``config.task_names``,
    ``p_active_after_obs_{h}`` (the LT head's ``P(future > 0)``),
    ``p_value_after_obs_{h}`` (the LTV head's) and ``user_id``.
    """
    head = _head(kind)
    tasks = config.task_names
    scales = [config.label_scales[t] for t in tasks]
    batch = tf.keras.layers.Input(type_spec=model_lib.batched_graph_spec(schema), name="graph")
    graph = batch.merge_batch_to_components()
    users = graph.node_sets[gs.USER]
    s = tf.cast(users[gs.OBS_DAYS], tf.int64)  # [U]
    u_sc = FeatureEmbedding(**layer_kwargs(config.features), name="feature_embedding")(
        (users[gs.CATEGORICAL_IDS], users[gs.STAT_BINS]))  # [U, (F+S) * emb]
    u_se = SequenceEncoder(**layer_kwargs(config.sequence), name="sequence_encoder")(
        (users[gs.SEQ_TOKENS], s))  # [U, dim]
    u_mask = ObservedLengthEmbedding(**layer_kwargs(config.mask), name="observed_length")(s)
    hidden = tf.keras.layers.Concatenate(name="user_encoding")([u_sc, u_se, u_mask])
    for i in range(2):
        hidden = tf.keras.layers.Dense(config.moe.expert_units, activation="relu",
                                       name=f"hidden_{i}")(hidden)  # [U, units]
    width = head.num_outputs(**head_params)
    outputs = tf.keras.layers.Dense(len(tasks) * width, name=f"{kind}_head")(hidden)
    outputs = tf.keras.layers.Reshape([len(tasks), width], name="head_outputs")(outputs)
    observed = model_lib.ObservedTotals(value_metric_index=config.value_metric_index,
                                        name="observed_totals")((users[gs.SEQ_VALUES], s))
    horizons = config.horizons
    labels = tf.stack([users[gs.lt_name(h)] for h in horizons]
                      + [users[gs.ltv_name(h)] for h in horizons], axis=1)  # [U, tasks]
    masks = tf.stack([users[gs.label_mask_name(h)] for h in horizons] * 2, axis=1)
    outputs = DeepBaselineLoss(kind=kind, head_params=head_params, scales=scales,
                               name=f"{kind}_loss")(
        {"labels": labels, "mask": masks, "observed": observed, "outputs": outputs})
    predictions, probs = DeepBaselineReadout(kind=kind, head_params=head_params, scales=scales,
                                             name=f"{kind}_readout")((outputs, observed))
    result = {}
    for t, task in enumerate(tasks):
        result[task] = tf.keras.layers.Identity(name=task)(predictions[:, t])
    for t, name in enumerate(model_lib.classification_output_names(horizons)):
        result[name] = tf.keras.layers.Identity(name=name)(probs[:, t])
    result[gs.USER_ID] = tf.keras.layers.Identity(name=gs.USER_ID)(users[gs.USER_ID])
    return tf.keras.Model(batch, result, name=f"{kind}_baseline")


@dataclasses.dataclass
class DeepBaseline:
    """A trained deep baseline."""

    kind: str
    config: ModelConfig
    head_params: dict
    model: tf.keras.Model
    history: dict


def _dataset(rows: tabular.UserRows, batch_cohorts: int, shuffle_seed: int | None = None):
    ds = training.cohort_dataset(rows.data_dir, rows.split, rows.part)
    if shuffle_seed is not None:
        ds = ds.shuffle(256, seed=shuffle_seed, reshuffle_each_iteration=True)
    return training.parsed(ds, training.read_schema(rows.data_dir), batch_cohorts,
                           obs_days=rows.obs_days)


def fit(kind: DeepKind, train_rows: tabular.UserRows, valid_rows: tabular.UserRows,
        seed: int = 17, *, train_config: TrainConfig | None = None,
        model_overrides: dict | None = None, head_kwargs: dict | None = None,
        verbose: int = 0) -> DeepBaseline:
    """Trains a deep baseline on the graphs behind `train_rows`, early-stopping on those
    behind `valid_rows`. `model_overrides` go to ``ModelConfig.from_artifacts`` (block
    sizes), `head_kwargs` to the head's ``fit_head_params`` (e.g. MDME's
    ``num_segments``)."""
    head = _head(kind)
    train_config = dataclasses.replace(train_config or TrainConfig(), seed=seed)
    tf.keras.utils.set_random_seed(seed)
    config = ModelConfig.from_artifacts(training.read_artifacts(train_rows.data_dir),
                                        use_hypergraph=False, seed=seed,
                                        **(model_overrides or {}))
    known = {task: train_rows.label_mask(task) for task in config.task_names}
    future_scaled = {task: train_rows.future(task)[known[task]] / config.label_scales[task]
                     for task in config.task_names}
    head_params = head.fit_head_params(future_scaled, **(head_kwargs or {}))
    model = build_model(kind, config, training.read_schema(train_rows.data_dir), head_params)
    model.compile(optimizer=tf.keras.optimizers.Adam(train_config.learning_rate, clipnorm=1.0))
    validation = _dataset(valid_rows, train_config.batch_cohorts) if len(valid_rows) else None
    callbacks = [tf.keras.callbacks.EarlyStopping(
        monitor="val_loss" if validation is not None else "loss",
        patience=train_config.early_stopping_patience, restore_best_weights=True)]
    history = model.fit(_dataset(train_rows, train_config.batch_cohorts, seed),
                        validation_data=validation, epochs=train_config.epochs,
                        callbacks=callbacks, verbose=verbose)
    return DeepBaseline(kind, config, head_params, model,
                        {k: [float(v) for v in vals] for k, vals in history.history.items()})


def predict(baseline: DeepBaseline, rows: tabular.UserRows,
            batch_cohorts: int = 8) -> dict[str, np.ndarray]:
    """Per-user predictions for `rows` (same users, same order): every task,
    ``p_active_after_obs_{h}`` and ``p_value_after_obs_{h}``."""
    chunks: dict[str, list] = {}
    for graph in _dataset(rows, batch_cohorts):
        outputs = baseline.model(graph, training=False)
        for name, value in outputs.items():
            chunks.setdefault(name, []).append(value.numpy())
    out = {name: np.concatenate(values) for name, values in chunks.items()}
    user_ids = np.array([u.decode() for u in out.pop(gs.USER_ID)], dtype=object)
    if not np.array_equal(user_ids, rows[gs.USER_ID]):
        raise ValueError("the graphs behind `rows` hold other users than the rows: were the "
                         "rows loaded with tabular.load_rows from the same data directory?")
    return {name: value.astype(np.float32) for name, value in out.items()}
