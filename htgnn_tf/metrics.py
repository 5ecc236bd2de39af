"""LTV evaluation metrics (paper Sec. V-A), defined as google/lifetime_value defines them.

Pure numpy (no TensorFlow), so the report and the Beam scoring job can use them.

* ``NRMSE = RMSE / mean(y)``, ``NMAE = MAE / mean(y)``.
* Gain curve: users sorted by prediction, descending; point k (k = 1..n) is the share of
  the total true value held by the top k users.
* Gini of a gain curve: ``2 * mean(curve) - 1`` (google/lifetime_value ``gini_from_gain``);
  the normalized Gini is Gini(ordered by prediction) / Gini(ordered by truth). It is
  signed: a model that ranks backwards scores below 0.
* AUC: Mann-Whitney U / (n_pos * n_neg), ties counted 1/2 (average ranks).
* Deciles: users cut by predicted value into ten groups (lowest predictions first).

Ties in the prediction (decided here; google/lifetime_value leaves them to pandas'
unstable sort): users with equal predictions share their group's value evenly, i.e. the
gain curve is linearly interpolated across each tie group, which is the expected curve
over all orders of the group. The result is deterministic and independent of input
order. In the decile table a tie group is never split: its users go to the decile of
their average rank, so decile counts can differ when predictions tie.

Degenerate slices never give a silent NaN: each metric returns a :class:`MetricValue`
whose ``value`` is ``None`` (undefined) or a float, plus a ``note``, and formats as
``"n/a (all labels zero)"``, ``"0.0000 (constant predictions)"`` etc.
Non-finite inputs raise ``ValueError``.
"""
from __future__ import annotations

import dataclasses
from typing import Callable, Optional, Sequence

import numpy as np

ArrayLike = Sequence[float] | np.ndarray

NOTE_EMPTY = "empty slice"
NOTE_ALL_ZERO = "all labels zero"
NOTE_MEAN_NOT_POSITIVE = "mean label not positive"
NOTE_TOTAL_NOT_POSITIVE = "total label value not positive"
NOTE_CONSTANT_LABELS = "all labels equal"
NOTE_CONSTANT_PREDICTIONS = "constant predictions"
NOTE_ONE_CLASS = "only one class"


@dataclasses.dataclass(frozen=True)
class MetricValue:
    """A metric value, or ``None`` when undefined, with the reason in ``note``."""

    value: Optional[float]
    note: Optional[str] = None

    @property
    def defined(self) -> bool:
        return self.value is not None

    def format(self, digits: int = 4) -> str:
        """``"0.1234"``, ``"0.0000 (constant predictions)"`` or ``"n/a (empty slice)"``."""
        text = "n/a" if self.value is None else f"{self.value:.{digits}f}"
        return f"{text} ({self.note})" if self.note else text

    def to_dict(self) -> dict:
        return {"value": self.value, "note": self.note}


@dataclasses.dataclass(frozen=True)
class BootstrapCI:
    """Percentile bootstrap interval of a metric; ``low``/``high`` None when undefined."""

    point: MetricValue
    low: Optional[float]
    high: Optional[float]
    alpha: float
    num_resamples: int
    num_defined: int
    note: Optional[str] = None

    def format(self, digits: int = 4) -> str:
        if self.low is None or self.high is None:
            return f"n/a ({self.note})" if self.note else "n/a"
        text = f"[{self.low:.{digits}f}, {self.high:.{digits}f}]"
        return f"{text} ({self.note})" if self.note else text

    def to_dict(self) -> dict:
        return {"point": self.point.to_dict(), "low": self.low, "high": self.high,
                "alpha": self.alpha, "num_resamples": self.num_resamples,
                "num_defined": self.num_defined, "note": self.note}


@dataclasses.dataclass(frozen=True)
class DecileRow:
    decile: int  # 1 = lowest predictions
    count: int
    mean_predicted: float
    mean_actual: float

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class DecileTable:
    rows: list[DecileRow]
    note: Optional[str] = None

    def to_dict(self) -> dict:
        return {"rows": [row.to_dict() for row in self.rows], "note": self.note}


def _as_vector(values: ArrayLike, name: str) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64).reshape(-1)
    bad = int(np.sum(~np.isfinite(array)))
    if bad:
        raise ValueError(f"{name} has {bad} non-finite values (NaN or inf)")
    return array


def _pair(y: ArrayLike, p: ArrayLike, names=("y", "p")) -> tuple[np.ndarray, np.ndarray]:
    y, p = _as_vector(y, names[0]), _as_vector(p, names[1])
    if y.shape != p.shape:
        raise ValueError(f"{names[0]} and {names[1]} differ in length: "
                         f"{y.shape[0]} vs {p.shape[0]}")
    return y, p


def _normalizer_note(y: np.ndarray) -> Optional[str]:
    """Why ``mean(y)`` cannot normalize an error, or None."""
    if y.size == 0:
        return NOTE_EMPTY
    if np.all(y == 0):
        return NOTE_ALL_ZERO
    if y.mean() <= 0:
        return NOTE_MEAN_NOT_POSITIVE
    return None


def nrmse(y: ArrayLike, p: ArrayLike) -> MetricValue:
    """RMSE / mean(y); undefined for an empty slice or a mean label <= 0."""
    y, p = _pair(y, p)
    note = _normalizer_note(y)
    if note:
        return MetricValue(None, note)
    return MetricValue(float(np.sqrt(np.mean((y - p) ** 2)) / y.mean()))


def nmae(y: ArrayLike, p: ArrayLike) -> MetricValue:
    """MAE / mean(y); undefined for an empty slice or a mean label <= 0."""
    y, p = _pair(y, p)
    note = _normalizer_note(y)
    if note:
        return MetricValue(None, note)
    return MetricValue(float(np.mean(np.abs(y - p)) / y.mean()))


def gain_curve(y: ArrayLike, p: ArrayLike) -> np.ndarray:
    """Cumulative share of total ``y`` over users sorted by ``p`` descending.

    Returns an array of length n; element k-1 is the share held by the top k users.
    Tied predictions share their group's value evenly (linear interpolation across the
    tie group). Raises ``ValueError`` if the total of ``y`` is not positive (use
    :func:`normalized_gini` for a guarded metric).
    """
    y, p = _pair(y, p)
    total = y.sum()
    if y.size == 0 or not total > 0:
        raise ValueError(f"gain curve needs a positive total label value, got {total!r} "
                         f"over {y.size} users")
    order = np.argsort(-p, kind="stable")
    y_sorted, p_sorted = y[order], p[order]
    starts = np.flatnonzero(np.r_[True, p_sorted[1:] != p_sorted[:-1]])  # tie groups
    sizes = np.diff(np.r_[starts, y.size])
    group_sums = np.add.reduceat(y_sorted, starts)
    before = np.r_[0.0, np.cumsum(group_sums)[:-1]]  # value above each group
    group_of = np.repeat(np.arange(starts.size), sizes)
    rank_in_group = np.arange(y.size) - starts[group_of] + 1
    cumulative = before[group_of] + group_sums[group_of] * rank_in_group / sizes[group_of]
    return cumulative / total


def gini_of_gain(curve: np.ndarray) -> float:
    """Raw Gini of a gain curve: ``2 * mean(curve) - 1``."""
    return float(2.0 * np.mean(curve) - 1.0)


def normalized_gini(y: ArrayLike, p: ArrayLike) -> MetricValue:
    """Gini of the gain curve ordered by ``p`` / Gini ordered by ``y`` (signed).

    Undefined for an empty slice, a non-positive total label value or constant labels
    (every order is then perfect); 0 with a note for constant predictions.
    """
    y, p = _pair(y, p)
    if y.size == 0:
        return MetricValue(None, NOTE_EMPTY)
    if np.all(y == 0):
        return MetricValue(None, NOTE_ALL_ZERO)
    if not y.sum() > 0:
        return MetricValue(None, NOTE_TOTAL_NOT_POSITIVE)
    if np.all(y == y[0]):
        return MetricValue(None, NOTE_CONSTANT_LABELS)
    if np.all(p == p[0]):
        return MetricValue(0.0, NOTE_CONSTANT_PREDICTIONS)
    # Ordered by truth, tie groups hold equal values, so a plain sort is the gain curve.
    perfect_curve = np.cumsum(np.sort(y)[::-1]) / y.sum()
    return MetricValue(gini_of_gain(gain_curve(y, p)) / gini_of_gain(perfect_curve))


def auc(labels: ArrayLike, scores: ArrayLike) -> MetricValue:
    """ROC AUC = Mann-Whitney U / (n_pos * n_neg), tied scores counted 1/2.

    ``labels`` must be 0/1. Undefined for an empty slice or a single class.
    """
    labels, scores = _pair(labels, scores, ("labels", "scores"))
    if not np.all((labels == 0) | (labels == 1)):
        raise ValueError(f"labels must be 0/1, got values {np.unique(labels)[:5]!r}")
    if labels.size == 0:
        return MetricValue(None, NOTE_EMPTY)
    positives = labels == 1
    num_pos = int(positives.sum())
    num_neg = labels.size - num_pos
    if num_pos == 0 or num_neg == 0:
        return MetricValue(None, NOTE_ONE_CLASS)
    ranks = _average_ranks(scores)
    u_statistic = ranks[positives].sum() - num_pos * (num_pos + 1) / 2.0
    return MetricValue(float(u_statistic / (num_pos * num_neg)))


def _average_ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks, tied values getting the mean of their ranks."""
    order = np.argsort(values, kind="stable")
    ordered = values[order]
    starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
    ends = np.r_[starts[1:], values.size]  # exclusive
    group_rank = (starts + 1 + ends) / 2.0  # mean of ranks starts+1 .. ends
    ranks = np.empty(values.size)
    ranks[order] = np.repeat(group_rank, ends - starts)
    return ranks


def bootstrap_ci(metric_fn: Callable[[np.ndarray, np.ndarray], MetricValue], y: ArrayLike,
                 p: ArrayLike, n: int = 200, seed: int = 0,
                 alpha: float = 0.05) -> BootstrapCI:
    """Percentile bootstrap interval of ``metric_fn(y, p)`` over users.

    Draws ``n`` resamples of the users with replacement (``numpy.random.default_rng
    (seed)``), evaluates the metric on each, and takes the ``alpha/2`` and
    ``1 - alpha/2`` quantiles (numpy's linear method) of the defined values. Resamples on
    which the metric is undefined are skipped and counted in ``num_defined``; the interval
    is undefined if fewer than half of them are defined.
    """
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive int, got {n!r}")
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha!r}")
    y, p = _pair(y, p)
    point = metric_fn(y, p)
    if not point.defined:
        return BootstrapCI(point, None, None, alpha, n, 0, point.note)
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(n):
        rows = rng.integers(0, y.size, size=y.size)
        values.append(metric_fn(y[rows], p[rows]).value)
    defined = np.array([v for v in values if v is not None], dtype=np.float64)
    if defined.size * 2 < n:
        return BootstrapCI(point, None, None, alpha, n, int(defined.size),
                           f"metric undefined on {n - defined.size} of {n} resamples")
    low, high = np.quantile(defined, [alpha / 2.0, 1.0 - alpha / 2.0])
    note = None if defined.size == n else f"{n - defined.size} of {n} resamples undefined"
    return BootstrapCI(point, float(low), float(high), alpha, n, int(defined.size), note)


def decile_table(y: ArrayLike, p: ArrayLike, num_buckets: int = 10) -> DecileTable:
    """Mean predicted and mean actual value per predicted decile (1 = lowest).

    User i (average rank r_i in 1..n by prediction) goes to bucket
    ``floor((r_i - 1) * num_buckets / n) + 1``; tied predictions share a bucket, and
    empty buckets are left out (noted).
    """
    if not isinstance(num_buckets, int) or num_buckets < 1:
        raise ValueError(f"num_buckets must be a positive int, got {num_buckets!r}")
    y, p = _pair(y, p)
    if y.size == 0:
        return DecileTable([], NOTE_EMPTY)
    ranks = _average_ranks(p)
    buckets = np.floor((ranks - 1.0) * num_buckets / y.size).astype(np.int64)  # 0-based
    rows = []
    for bucket in np.unique(buckets):
        members = buckets == bucket
        rows.append(DecileRow(int(bucket) + 1, int(members.sum()), float(p[members].mean()),
                              float(y[members].mean())))
    note = None
    if len(rows) < num_buckets:
        note = f"{num_buckets - len(rows)} of {num_buckets} buckets empty (tied predictions or few users)"
    return DecileTable(rows, note)


@dataclasses.dataclass(frozen=True)
class SliceMetrics:
    """All metrics of one task / horizon / population (see :func:`evaluate_slice`)."""

    count: int
    label_mean: MetricValue
    pred_mean: MetricValue
    nrmse: MetricValue
    nmae: MetricValue
    gini: MetricValue
    gini_ci: Optional[BootstrapCI]
    auc: Optional[MetricValue]
    deciles: DecileTable

    def to_dict(self) -> dict:
        return {"count": self.count, "label_mean": self.label_mean.to_dict(),
                "pred_mean": self.pred_mean.to_dict(), "nrmse": self.nrmse.to_dict(),
                "nmae": self.nmae.to_dict(), "gini": self.gini.to_dict(),
                "gini_ci": None if self.gini_ci is None else self.gini_ci.to_dict(),
                "auc": None if self.auc is None else self.auc.to_dict(),
                "deciles": self.deciles.to_dict()}


def _mean(values: np.ndarray) -> MetricValue:
    return MetricValue(float(values.mean())) if values.size else MetricValue(None, NOTE_EMPTY)


def evaluate_slice(y_true: ArrayLike, y_pred: ArrayLike, *,
                   active_true: Optional[ArrayLike] = None,
                   active_prob: Optional[ArrayLike] = None, num_bootstrap: int = 200,
                   seed: int = 0, alpha: float = 0.05) -> SliceMetrics:
    """NRMSE, NMAE, normalized Gini (+ bootstrap CI), AUC and deciles of one slice.

    Args:
      y_true: true LT/LTV of the slice's users (censored users already removed).
      y_pred: predicted LT/LTV, same length.
      active_true, active_prob: classification target (0/1) and tower probability; the
        AUC is computed when both are given, else ``auc`` is None.
      num_bootstrap: resamples for the Gini interval; 0 skips it (``gini_ci`` None).
      seed, alpha: of the bootstrap.
    """
    y_true, y_pred = _pair(y_true, y_pred, ("y_true", "y_pred"))
    if not isinstance(num_bootstrap, int) or num_bootstrap < 0:
        raise ValueError(f"num_bootstrap must be an int >= 0, got {num_bootstrap!r}")
    if (active_true is None) != (active_prob is None):
        raise ValueError("give both active_true and active_prob, or neither")
    auc_value = None if active_true is None else auc(active_true, active_prob)
    gini_ci = (bootstrap_ci(normalized_gini, y_true, y_pred, num_bootstrap, seed, alpha)
               if num_bootstrap else None)
    return SliceMetrics(count=int(y_true.size), label_mean=_mean(y_true),
                        pred_mean=_mean(y_pred), nrmse=nrmse(y_true, y_pred),
                        nmae=nmae(y_true, y_pred), gini=normalized_gini(y_true, y_pred),
                        gini_ci=gini_ci, auc=auc_value,
                        deciles=decile_table(y_true, y_pred))
