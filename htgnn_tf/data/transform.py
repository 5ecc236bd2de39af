"""Train-split statistics and the encoding of a user record into model features.

Statistics (computed on the train split only, written as ``transform.json``, reused by
the serving client so both encode users the same way):

* Scott's-rule bins (paper Eq. 2): bin width ``d = 3.5 * sigma / n^(1/3)`` on
  ``signed_log1p(x) = sign(x) * log1p(|x|)``. Departure: the rule is applied after the
  log transform because LTV metrics are heavy-tailed; on raw dollars the rule gives
  either thousands of bins or one bin holding almost every user. The bin count
  ``ceil((max - min) / d)`` is capped at ``spec.max_bins`` (default 64); the edges are
  then equally spaced between min and max. Statistical features use every train user;
  sequence types use the positive daily values on observed days (zero has its own
  token, see :mod:`graph_schema`).
* Vocabularies of the categorical features, most frequent first, at most
  :data:`MAX_VOCAB` values; id 0 is out-of-vocabulary.
* Mean and standard deviation of ``signed_log1p(stat_values)`` for the kNN distance
  (:func:`knn_points`).
* Mean labels of the labelled train users (the model's output scale).
"""
from __future__ import annotations

import math
from typing import Mapping, Sequence

import numpy as np

from htgnn_tf.data import graph_schema as gs
from htgnn_tf.data.spec import DatasetSpec
from htgnn_tf.data.users import CATEGORICAL_VALUES

MAX_VOCAB = 10_000
ARTIFACTS_VERSION = 1


def signed_log1p(x):
    x = np.asarray(x, np.float64)
    return np.sign(x) * np.log1p(np.abs(x))


class Moments:
    """Mergeable (n, sum, sum of squares, min, max) of a stream of numbers."""

    __slots__ = ("n", "total", "total_sq", "low", "high")

    def __init__(self, n=0, total=0.0, total_sq=0.0, low=math.inf, high=-math.inf):
        self.n, self.total, self.total_sq, self.low, self.high = n, total, total_sq, low, high

    def add_many(self, values) -> "Moments":
        values = np.asarray(values, np.float64).reshape(-1)
        if values.size:
            self.n += int(values.size)
            self.total += float(values.sum())
            self.total_sq += float(np.sum(values * values))
            self.low = min(self.low, float(values.min()))
            self.high = max(self.high, float(values.max()))
        return self

    def merge(self, other: "Moments") -> "Moments":
        return Moments(self.n + other.n, self.total + other.total,
                       self.total_sq + other.total_sq, min(self.low, other.low),
                       max(self.high, other.high))

    @property
    def mean(self) -> float:
        return self.total / self.n if self.n else 0.0

    @property
    def std(self) -> float:
        """Population standard deviation (ddof=0, as numpy's Scott estimator)."""
        if not self.n:
            return 0.0
        return math.sqrt(max(self.total_sq / self.n - self.mean ** 2, 0.0))


def scott_bin_edges(moments: Moments, max_bins: int) -> list[float]:
    """Interior bin edges by Scott's rule (Eq. 2), at most max_bins bins.

    Returns the edges strictly between min and max; ``np.searchsorted(edges, x,
    side="right")`` maps a value to its bin id in [0, len(edges)].
    """
    if moments.n < 2 or moments.high <= moments.low or moments.std == 0:
        return []
    width = 3.5 * moments.std / moments.n ** (1.0 / 3.0)
    bins = int(min(max_bins, max(1, math.ceil((moments.high - moments.low) / width))))
    return np.linspace(moments.low, moments.high, bins + 1)[1:-1].tolist()


def bucketize(values, edges: Sequence[float]) -> np.ndarray:
    return np.searchsorted(np.asarray(edges, np.float64), np.asarray(values, np.float64),
                           side="right").astype(np.int64)


def build_vocabulary(counts: Mapping[str, int]) -> list[str]:
    """Values by descending count, ties by value; at most MAX_VOCAB."""
    ordered = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    return [value for value, _ in ordered[:MAX_VOCAB]]


def vocab_sizes(artifacts: Mapping) -> list[int]:
    """Embedding table size of each categorical feature (vocabulary + OOV id 0)."""
    return [len(artifacts["categorical_vocab"][name]) + 1
            for name in artifacts["categorical_features"]]


def statistical_num_bins(artifacts: Mapping) -> list[int]:
    return [len(artifacts["statistical_edges"][name]) + 1
            for name in artifacts["statistical_features"]]


def sequence_vocab_size(artifacts: Mapping) -> int:
    """Token vocabulary shared by all sequence types: not-observed, zero, bins."""
    return gs.TOKEN_FIRST_BIN + max(len(e) + 1 for e in artifacts["sequence_edges"].values())


def feature_dims(spec: DatasetSpec) -> gs.FeatureDims:
    return gs.FeatureDims(
        num_categorical=len(spec.categorical_features),
        num_statistical=len(spec.statistical_features),
        num_metrics=len(spec.metrics),
        observation_days=spec.observation_days,
        horizons=tuple(spec.horizons))


def encode_user(record: Mapping, artifacts: Mapping) -> dict:
    """Model features of one aggregated user record (names of :mod:`graph_schema`).

    Label fields present in the record are passed through unchanged.
    """
    categorical_ids = []
    for name, value in zip(artifacts["categorical_features"], record[CATEGORICAL_VALUES]):
        index = artifacts["vocab_index"][name].get(value) if "vocab_index" in artifacts else None
        if index is None:
            vocab = artifacts["categorical_vocab"][name]
            index = vocab.index(value) + 1 if value in vocab else 0
        categorical_ids.append(index)
    stat_values = np.asarray(record[gs.STAT_VALUES], np.float64)
    stat_bins = [int(bucketize(signed_log1p(v), artifacts["statistical_edges"][name]))
                 for name, v in zip(artifacts["statistical_features"], stat_values)]
    seq_values = np.asarray(record[gs.SEQ_VALUES], np.float64)  # [T, W]
    obs_days = int(record[gs.OBS_DAYS])
    tokens = np.full(seq_values.shape, gs.TOKEN_ZERO, np.int64)
    for t, metric in enumerate(artifacts["spec"]["metrics"]):
        positive = seq_values[t] > 0
        bins = bucketize(signed_log1p(seq_values[t]), artifacts["sequence_edges"][metric])
        tokens[t, positive] = gs.TOKEN_FIRST_BIN + bins[positive]
    tokens[:, obs_days:] = gs.TOKEN_NOT_OBSERVED
    features = dict(record)
    features.pop(CATEGORICAL_VALUES, None)
    features.update({
        gs.CATEGORICAL_IDS: categorical_ids,
        gs.STAT_VALUES: stat_values.tolist(),
        gs.STAT_BINS: stat_bins,
        gs.SEQ_TOKENS: tokens.tolist(),
    })
    return features


def knn_points(features: Sequence[Mapping], artifacts: Mapping) -> np.ndarray:
    """The kNN space of Sec. IV-B: standardized ``signed_log1p(stat_values)`` joined by
    the one-hot categorical ids scaled by 1/sqrt(2), so that two users who differ in one
    categorical feature are as far apart as one standard deviation of one statistic.

    Returns [users, S + sum(vocab sizes)].
    """
    from htgnn_tf.data.hypergraph import standardize

    sizes = vocab_sizes(artifacts)
    width = len(artifacts["knn"]["mean"]) + sum(sizes)
    if not features:
        return np.zeros([0, width])
    stats = standardize(signed_log1p([f[gs.STAT_VALUES] for f in features]),
                        artifacts["knn"]["mean"], artifacts["knn"]["std"])
    offsets = np.cumsum([0] + sizes[:-1]).astype(np.int64)
    ids = np.asarray([f[gs.CATEGORICAL_IDS] for f in features], np.int64).reshape(
        len(features), len(sizes))
    one_hot = np.zeros([len(features), sum(sizes)])
    np.put_along_axis(one_hot, ids + offsets, 1.0 / math.sqrt(2.0), axis=1)
    return np.concatenate([stats, one_hot], axis=1)


def with_lookup_index(artifacts: dict) -> dict:
    """Adds value -> id dicts for fast vocabulary lookups (not serialized)."""
    artifacts = dict(artifacts)
    artifacts["vocab_index"] = {
        name: {value: i + 1 for i, value in enumerate(vocab)}
        for name, vocab in artifacts["categorical_vocab"].items()}
    return artifacts
