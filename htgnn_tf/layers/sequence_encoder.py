"""Temporal encoder: masked transformer over the behaviour sequences, and ``u_mask``.

Implements Eq. (11) and Sec. IV-C of the HT-GNN paper. Each of the ``T`` behaviour
sequences of a user (one per metric type, ``W`` days of Scott-bin tokens) gets a
learned ``[cls]`` token in front, token + positional + type embeddings, one masked
multi-head self-attention block with residual + LayerNorm, and a two-layer FFN with
residual + LayerNorm. The ``T`` ``[cls]`` outputs are aggregated into ``u_se``.
``ObservedLengthEmbedding`` turns the observed length ``s`` into ``u_mask``.

Departures and decisions where the paper is ambiguous:

* Eq. (11) is read as ``o = softmax(Q K^T / sqrt(d_head) + M) V`` per head, with
  ``M = -inf`` on keys at day positions ``>= s`` and ``0`` elsewhere (the ``[cls]`` key
  is never masked, so no row is all ``-inf``). The paper puts ``M`` inside the scaling
  and ``V`` inside the softmax; with ``M`` in ``{0, -inf}`` the former changes nothing
  and the latter is a typo. ``d`` is the per-head dimension, as in the Transformer.
* Tokens at positions ``>= s`` are also replaced by the "not observed" token 0 before
  embedding, so the input a user sends for hidden days never reaches the model.
* All ``T`` types run through ONE transformer block with shared weights (types folded
  into the batch axis, ``[users * T, W + 1, dim]``); a learned type embedding tells the
  types apart. The paper does not say whether types share weights.
* Post-LayerNorm block (as in the original Transformer), ReLU FFN, dropout on the
  attention and FFN outputs.
* Only the ``[cls]`` rows of the block are computed (query, attention output, FFN and
  LayerNorms at position 0; keys and values at every position). With one block the
  ``[cls]`` outputs are exactly those of the full block; the other rows were never read.
* Aggregation of the ``[cls]`` outputs: concatenation over types followed by a linear
  ``Dense(dim)`` (keeps which type said what, unlike a mean).
"""
from __future__ import annotations

import numpy as np
import tensorflow as tf


def _check_positive_int(name: str, value) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")


@tf.keras.utils.register_keras_serializable(package="htgnn")
class SequenceEncoder(tf.keras.layers.Layer):
    """Encodes ``T`` token sequences per user into ``u_se`` (Eq. 11).

    Init arguments (keyword-only):
      num_types: ``T``, the number of behaviour sequence types.
      max_len: ``W``, the observation window in days (sequence length).
      vocab_size: number of token ids (0 = not observed, 1 = zero, 2.. = Scott bin + 2).
      dim: embedding and model width; also the width of ``u_se``.
      num_heads: attention heads; must divide ``dim``.
      ffn_units: hidden width of the two-layer FFN.
      dropout: dropout rate on the attention and FFN outputs, in ``[0, 1)``.

    Call arguments:
      inputs: a pair ``(seq_tokens, s)``: int ``[users, T, W]`` tokens and int
        ``[users]`` observed lengths (``1..W``).
      training: enables dropout.

    Returns:
      ``u_se``: float ``[users, dim]``.
    """

    def __init__(self, *, num_types: int, max_len: int, vocab_size: int, dim: int,
                 num_heads: int, ffn_units: int, dropout: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        for name, value in [("num_types", num_types), ("max_len", max_len),
                            ("vocab_size", vocab_size), ("dim", dim),
                            ("num_heads", num_heads), ("ffn_units", ffn_units)]:
            _check_positive_int(name, value)
        if dim % num_heads:
            raise ValueError(f"dim={dim!r} must be divisible by num_heads={num_heads!r}")
        if not isinstance(dropout, (int, float)) or not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
        self.num_types = num_types
        self.max_len = max_len
        self.vocab_size = vocab_size
        self.dim = dim
        self.num_heads = num_heads
        self.ffn_units = ffn_units
        self.dropout = float(dropout)
        self._head_dim = dim // num_heads

        self.token_embedding = tf.keras.layers.Embedding(
            vocab_size, dim, name="token_embedding")
        self.position_embedding = tf.keras.layers.Embedding(
            max_len + 1, dim, name="position_embedding")
        self.type_embedding = tf.keras.layers.Embedding(num_types, dim, name="type_embedding")
        self.query = tf.keras.layers.Dense(dim, name="query")
        self.key = tf.keras.layers.Dense(dim, name="key")
        self.value = tf.keras.layers.Dense(dim, name="value")
        self.attention_output = tf.keras.layers.Dense(dim, name="attention_output")
        self.attention_dropout = tf.keras.layers.Dropout(dropout, name="attention_dropout")
        self.attention_norm = tf.keras.layers.LayerNormalization(name="attention_norm")
        self.ffn_hidden = tf.keras.layers.Dense(ffn_units, activation="relu", name="ffn_hidden")
        self.ffn_output = tf.keras.layers.Dense(dim, name="ffn_output")
        self.ffn_dropout = tf.keras.layers.Dropout(dropout, name="ffn_dropout")
        self.ffn_norm = tf.keras.layers.LayerNormalization(name="ffn_norm")
        self.aggregate = tf.keras.layers.Dense(dim, name="aggregate")

    def build(self, input_shape):
        self.cls_embedding = self.add_weight(
            name="cls_embedding", shape=[self.dim],
            initializer=tf.keras.initializers.RandomUniform(-0.05, 0.05))
        super().build(input_shape)

    def call(self, inputs, training=None):
        seq_tokens, s = inputs
        seq_tokens = tf.cast(seq_tokens, tf.int64)  # [users, T, W]
        s = tf.reshape(tf.cast(s, tf.int64), [-1])  # [users]
        num_users = tf.shape(seq_tokens)[0]
        num_types, width, dim = self.num_types, self.max_len, self.dim

        visible = tf.range(width, dtype=tf.int64)[tf.newaxis, :] < s[:, tf.newaxis]  # [users, W]
        seq_tokens = tf.where(visible[:, tf.newaxis, :], seq_tokens,
                              tf.zeros_like(seq_tokens))  # [users, T, W]

        tokens = self.token_embedding(seq_tokens)  # [users, T, W, dim]
        cls = tf.broadcast_to(tf.cast(self.cls_embedding, tokens.dtype),
                              [num_users, num_types, 1, dim])  # [users, T, 1, dim]
        x = tf.concat([cls, tokens], axis=2)  # [users, T, W+1, dim]
        x += self.position_embedding(tf.range(width + 1))[tf.newaxis, tf.newaxis]  # [users, T, W+1, dim]
        x += self.type_embedding(tf.range(num_types))[tf.newaxis, :, tf.newaxis]  # [users, T, W+1, dim]
        x = tf.reshape(x, [num_users * num_types, width + 1, dim])  # [users*T, W+1, dim]

        key_visible = tf.concat(
            [tf.ones([num_users, 1], tf.bool), visible], axis=1)  # [users, W+1]
        key_visible = tf.repeat(key_visible, num_types, axis=0)  # [users*T, W+1]
        mask_bias = tf.where(key_visible, 0.0, -np.inf)  # [users*T, W+1], M of Eq. (11)

        # Only the [cls] outputs are read, and one block deep a position's output depends
        # on the other positions only through its own attention row, so the query, the
        # attention output, the FFN and both LayerNorms are computed at the [cls] position
        # alone; keys and values use every position. The result equals the full block's
        # [cls] rows, at about 1/(W+1) of the cost of the per-position parts.
        cls_in = x[:, 0]  # [users*T, dim]
        q = tf.reshape(self.query(cls_in),
                       [-1, 1, self.num_heads, self._head_dim])  # [users*T, 1, heads, head_dim]
        k = tf.reshape(self.key(x), [-1, width + 1, self.num_heads,
                                     self._head_dim])  # [users*T, W+1, heads, head_dim]
        v = tf.reshape(self.value(x), [-1, width + 1, self.num_heads,
                                       self._head_dim])  # [users*T, W+1, heads, head_dim]
        logits = tf.reduce_sum(q * k, axis=-1) / float(np.sqrt(self._head_dim))  # [users*T, W+1, heads]
        logits = tf.cast(logits, tf.float32) + mask_bias[:, :, tf.newaxis]
        weights = tf.cast(tf.nn.softmax(logits, axis=1), v.dtype)  # [users*T, W+1, heads]
        attended = tf.reduce_sum(weights[..., tf.newaxis] * v, axis=1)  # [users*T, heads, head_dim]
        attended = self.attention_output(tf.reshape(attended, [-1, dim]))  # [users*T, dim]
        cls_out = self.attention_norm(
            cls_in + self.attention_dropout(attended, training=training))  # [users*T, dim]

        ffn = self.ffn_output(self.ffn_hidden(cls_out))  # [users*T, dim]
        cls_out = self.ffn_norm(cls_out + self.ffn_dropout(ffn, training=training))  # [users*T, dim]

        cls_out = tf.reshape(cls_out, [num_users, num_types * dim])  # [users, T*dim]
        return self.aggregate(cls_out)  # [users, dim]

    def get_config(self):
        return {**super().get_config(), "num_types": self.num_types, "max_len": self.max_len,
                "vocab_size": self.vocab_size, "dim": self.dim, "num_heads": self.num_heads,
                "ffn_units": self.ffn_units, "dropout": self.dropout}


@tf.keras.utils.register_keras_serializable(package="htgnn")
class ObservedLengthEmbedding(tf.keras.layers.Layer):
    """``u_mask``: a learned embedding of the observed length ``s`` (Sec. IV-C).

    Init arguments (keyword-only):
      max_len: ``W``; the vocabulary is ``0..W`` (``W + 1`` rows; 0 is never produced by
        the data but keeps ``s`` usable as its own index).
      dim: width of ``u_mask``.

    Call arguments:
      s: int ``[users]``; values outside ``0..W`` are clipped into it.

    Returns:
      ``u_mask``: float ``[users, dim]``.
    """

    def __init__(self, *, max_len: int, dim: int, **kwargs):
        super().__init__(**kwargs)
        _check_positive_int("max_len", max_len)
        _check_positive_int("dim", dim)
        self.max_len = max_len
        self.dim = dim
        self.embedding = tf.keras.layers.Embedding(max_len + 1, dim, name="length_embedding")

    def call(self, s):
        s = tf.clip_by_value(tf.reshape(tf.cast(s, tf.int64), [-1]), 0, self.max_len)  # [users]
        return self.embedding(s)  # [users, dim]

    def get_config(self):
        return {**super().get_config(), "max_len": self.max_len, "dim": self.dim}
