"""Feature representation of the HT-GNN paper, Eq. (1)-(3).

Implements Eq. (1)-(3) of the HT-GNN paper: every categorical id (Eq. 1) and every
Scott's-rule bin id of a statistical feature (Eq. 2-3) is embedded, and the per-feature
embeddings are concatenated into the initial user representation ``u_sc``. The bins
themselves (Eq. 2) are computed by the dataset job
(``htgnn_tf.data.transform.scott_bin_edges``); the table sizes come from
``transform.vocab_sizes`` and ``transform.statistical_num_bins`` of its artifacts.

Departures from / additions to the paper:

* ``Embed(OneHot(x))`` is an embedding lookup (the same linear map, without the one-hot
  matrix). All features share one table; feature f owns the rows
  ``offset_f .. offset_f + size_f - 1``, so the lookup is one gather, not a loop.
* Out-of-range ids are clipped, never an error (a serving request may carry them):
  a categorical id outside ``0 .. vocab_size-1`` becomes 0, the out-of-vocabulary id;
  a statistical bin id below 0 becomes bin 0 and one above the last bin becomes the last
  bin (the same rule as ``np.searchsorted`` over the bin edges, which sends values
  outside the train range to the first / last bin).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import tensorflow as tf


def _validated_sizes(sizes, name: str, minimum: int) -> list[int]:
    if isinstance(sizes, (str, bytes)) or not isinstance(sizes, Sequence):
        raise ValueError(f"{name} must be a list of ints, got {sizes!r}")
    for size in sizes:
        if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < minimum:
            raise ValueError(f"{name} must hold ints >= {minimum}, got {size!r} in {list(sizes)!r}")
    return [int(size) for size in sizes]


@tf.keras.utils.register_keras_serializable(package="htgnn")
class FeatureEmbedding(tf.keras.layers.Layer):
    """Embeds categorical ids and statistical bin ids into ``u_sc`` (Eq. 1-3).

    Call arguments:
      inputs: a pair ``(categorical_ids, stat_bins)``: int tensors ``[users, F]`` and
        ``[users, S]`` (F or S may be 0), in the order of the size lists.

    Returns:
      ``u_sc``, float32 ``[users, (F + S) * embedding_dim]``: the embeddings of the F
      categorical features, then of the S statistical features, each ``embedding_dim``
      wide.
    """

    def __init__(self, *, categorical_vocab_sizes: Sequence[int],
                 statistical_num_bins: Sequence[int], embedding_dim: int, **kwargs):
        super().__init__(**kwargs)
        self._categorical_vocab_sizes = _validated_sizes(
            categorical_vocab_sizes, "categorical_vocab_sizes", 1)
        self._statistical_num_bins = _validated_sizes(
            statistical_num_bins, "statistical_num_bins", 1)
        if not self._categorical_vocab_sizes and not self._statistical_num_bins:
            raise ValueError("FeatureEmbedding needs at least one feature, got "
                             "categorical_vocab_sizes=[] and statistical_num_bins=[]")
        if isinstance(embedding_dim, bool) or not isinstance(embedding_dim, int) or embedding_dim < 1:
            raise ValueError(f"embedding_dim must be a positive int, got {embedding_dim!r}")
        self._embedding_dim = embedding_dim

        sizes = self._categorical_vocab_sizes + self._statistical_num_bins
        self._num_features = len(sizes)
        self._offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
        self._sizes = np.asarray(sizes, np.int64)
        # Categorical ids out of range map to 0 (OOV); bin ids clip to the first/last bin.
        self._is_categorical = np.arange(self._num_features) < len(self._categorical_vocab_sizes)
        self._table = tf.keras.layers.Embedding(
            input_dim=int(self._sizes.sum()), output_dim=embedding_dim, name="feature_table")

    def call(self, inputs):
        categorical_ids, stat_bins = inputs
        ids = tf.concat([tf.cast(categorical_ids, tf.int64),
                         tf.cast(stat_bins, tf.int64)], axis=-1)  # [users, F+S]
        in_range = (ids >= 0) & (ids < self._sizes)  # [users, F+S]
        clipped = tf.clip_by_value(ids, 0, self._sizes - 1)  # [users, F+S]
        ids = tf.where(in_range | ~self._is_categorical, clipped,
                       tf.zeros_like(ids))  # [users, F+S]
        embedded = self._table(ids + self._offsets)  # [users, F+S, dim]
        return tf.reshape(embedded, [-1, self._num_features * self._embedding_dim])

    def get_config(self):
        return dict(super().get_config(),
                    categorical_vocab_sizes=list(self._categorical_vocab_sizes),
                    statistical_num_bins=list(self._statistical_num_bins),
                    embedding_dim=self._embedding_dim)
