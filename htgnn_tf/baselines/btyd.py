"""BTYD baseline: BG/NBD purchase counts + Gamma-Gamma spend, from ``lifetimes``.

Implements the practitioners' "buy 'til you die" classic: the BG/NBD model of Fader,
Hardie and Lee (2005), "Counting your customers the easy way: an alternative to the
Pareto/NBD model", for the number of future active days, and the Gamma-Gamma model of
Fader, Hardie and Lee (2005), "RFM and CLV: using iso-value curves for customer base
analysis", for the value per active day. Library: ``lifetimes==0.11.3`` (archived, but
the only BTYD library that installs with the pinned stack without heavy extras;
``pymc-marketing`` is its maintained successor but pulls PyMC / PyTensor and much
more). It is a baseline library, so its code is imported here (the import is guarded).

Mapping onto the dataset (time unit: days; a "purchase" is an active day, a day with
any positive metric, as in ``observed_active_days``):

* fitted on the train users' first ``s`` observed days only: ``frequency`` = active
  days in ``[0, s)`` minus the first one, ``recency`` = last active day in ``[0, s)``
  (days since acquisition, day 0), ``T = s - 1`` (the last observed day, lifetimes'
  convention for ``observation_period_end``), ``monetary`` = value of the repeat
  active days / ``frequency`` (lifetimes' convention: the first purchase is excluded);
* for horizon ``h`` the prediction window is days ``s .. h-1``, i.e. ``t = h - s``
  after ``T``: ``E[purchases]`` from ``conditional_expected_number_of_purchases_up_to_time``;
  ``LT_h = observed active days + min(E[purchases], h - s)`` and
  ``LTV_h = observed value + E[purchases] * E[value per active day]``
  (``conditional_expected_average_profit`` of the Gamma-Gamma fit);
* ``p_active_after_obs_h`` = P(at least one active day in ``s .. h-1``) =
  ``P(alive) * (1 - ((alpha + T) / (alpha + T + t)) ** (r + x))``: given alive, the
  BG/NBD purchase rate is ``Gamma(r + x, alpha + T)`` a posteriori, and a Poisson process
  with that rate has no event in ``t`` with probability ``E[exp(-lambda t)]``.

Departures and decisions: daily activity instead of individual transactions (the
dataset holds daily totals). Seven observed days rarely show a dropout, so the
unpenalized BG/NBD fit drifts to ``a -> 0`` (no churn) or does not converge; lifetimes'
L2 penalizer is therefore chosen from ``PENALIZERS`` on the validation rows (lowest
mean of MSE / label variance over the labelled LT tasks; the same penalizer is used for
Gamma-Gamma). The value per active day falls back to the train mean of ``observed value
/ observed active days`` when fewer than ``MIN_GAMMA_GAMMA_USERS`` train users have a
repeat active day with positive value, when the Gamma-Gamma fit fails, or when it
yields ``q <= 1`` (then its population mean ``p v / (q - 1)`` does not exist);
``BTYDModel.monetary_source`` says which was used. Zero-value active days count as
purchases of value 0 in the fallback mean but cannot enter the Gamma-Gamma fit (it
needs positive spend). BTYD ignores the categorical, statistical and other sequence
features; ``seed`` is unused (the fits are deterministic).
"""
from __future__ import annotations

import dataclasses

import numpy as np

from htgnn_tf.baselines import tabular
from htgnn_tf.data import graph_schema as gs

PENALIZERS = (1e-3, 1e-2, 1e-1)
MIN_GAMMA_GAMMA_USERS = 10


def _import_lifetimes():
    try:
        import lifetimes
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError("the BTYD baseline needs `lifetimes==0.11.3` "
                          "(pip install lifetimes==0.11.3)") from e
    return lifetimes


def rfm(rows: tabular.UserRows) -> dict[str, np.ndarray]:
    """lifetimes' ``frequency``, ``recency``, ``T`` and ``monetary_value`` from the
    first ``s`` days (see module docstring)."""
    frequency = np.maximum(rows["observed_active_days"] - 1.0, 0.0)  # [N]
    recency = np.maximum(rows["last_observed_active_day"], 0).astype(np.float64)  # [N]
    first_day_value = rows[gs.SEQ_VALUES][:, rows.value_metric_index, 0]  # [N]
    repeat_value = np.maximum(rows["observed_value"] - first_day_value, 0.0)  # [N]
    monetary = np.where(frequency > 0, repeat_value / np.maximum(frequency, 1.0), 0.0)
    return {"frequency": frequency.astype(np.float64), "recency": recency,
            "T": (rows[gs.OBS_DAYS] - 1).astype(np.float64),
            "monetary_value": monetary.astype(np.float64)}


@dataclasses.dataclass
class BTYDModel:
    purchases: object  # lifetimes.BetaGeoFitter
    spend: object | None  # lifetimes.GammaGammaFitter, or None (fallback)
    mean_value_per_active_day: float
    monetary_source: str
    penalizer: float


def _fit_spend(lifetimes, data: dict, penalizer: float):
    """A Gamma-Gamma fit on the repeaters with positive value, or None (see docstring)."""
    repeaters = (data["frequency"] > 0) & (data["monetary_value"] > 0)
    if repeaters.sum() < MIN_GAMMA_GAMMA_USERS:
        return None
    try:
        spend = lifetimes.GammaGammaFitter(penalizer_coef=penalizer)
        spend.fit(data["frequency"][repeaters], data["monetary_value"][repeaters])
    except Exception:  # lifetimes raises ConvergenceError and numpy errors alike
        return None
    return spend if spend.params_["q"] > 1.0 else None


def _lt_score(model: BTYDModel, rows: tabular.UserRows) -> float:
    """Mean of MSE / label variance over the labelled LT tasks (lower is better)."""
    predictions = predict(model, rows)
    scores = []
    for h in rows.horizons:
        known = rows[gs.label_mask_name(h)] > 0
        y = rows[gs.lt_name(h)][known]
        if len(y) > 1 and np.var(y) > 0:
            scores.append(np.mean((predictions[gs.lt_name(h)][known] - y) ** 2) / np.var(y))
    return float(np.mean(scores)) if scores else 0.0


def fit(train_rows: tabular.UserRows, valid_rows: tabular.UserRows | None = None,
        seed: int = 17) -> BTYDModel:
    """Fits BG/NBD and Gamma-Gamma on the train users' first ``s`` days, choosing the
    penalizer on `valid_rows` (the first one that converges when there are none)."""
    del seed
    lifetimes = _import_lifetimes()
    data = rfm(train_rows)
    active = train_rows["observed_active_days"] > 0
    mean_value = float(train_rows["observed_value"][active].sum()
                       / max(train_rows["observed_active_days"][active].sum(), 1.0))
    best, best_score = None, np.inf
    for penalizer in PENALIZERS:
        purchases = lifetimes.BetaGeoFitter(penalizer_coef=penalizer)
        try:
            purchases.fit(data["frequency"], data["recency"], data["T"])
        except Exception:  # ConvergenceError: try the next (larger) penalizer
            continue
        spend = _fit_spend(lifetimes, data, penalizer)
        model = BTYDModel(purchases, spend, mean_value,
                          "Gamma-Gamma" if spend is not None
                          else "train mean of observed value per active day (fallback)",
                          penalizer)
        if valid_rows is None or not len(valid_rows):
            return model
        score = _lt_score(model, valid_rows)
        if score < best_score:
            best, best_score = model, score
    if best is None:
        raise RuntimeError(f"BG/NBD did not converge with any penalizer in {PENALIZERS}")
    return best


def probability_active(r, alpha, p_alive, frequency, T, t) -> np.ndarray:
    """P(at least one purchase in ``(T, T + t]``) under BG/NBD (module docstring)."""
    return p_alive * (1.0 - ((alpha + T) / (alpha + T + t)) ** (r + frequency))


def predict(model: BTYDModel, rows: tabular.UserRows) -> dict[str, np.ndarray]:
    """Per-user predictions: every task, ``p_active_after_obs_{h}`` and
    ``p_value_after_obs_{h}`` (the same probability)."""
    data = rfm(rows)
    bgf = model.purchases
    params = bgf.params_
    p_alive = np.asarray(bgf.conditional_probability_alive(
        data["frequency"], data["recency"], data["T"]), np.float64)
    if model.spend is not None:
        value_per_day = np.asarray(model.spend.conditional_expected_average_profit(
            data["frequency"], np.where(data["frequency"] > 0, data["monetary_value"], 0.0)),
            np.float64)
    else:
        value_per_day = np.full(len(rows), model.mean_value_per_active_day)
    out = {}
    for h in rows.horizons:
        t = np.maximum(h - rows[gs.OBS_DAYS], 0).astype(np.float64)  # [N] days after s
        expected = np.asarray(bgf.conditional_expected_number_of_purchases_up_to_time(
            t, data["frequency"], data["recency"], data["T"]), np.float64)
        expected = np.nan_to_num(np.clip(expected, 0.0, t))  # [N]
        p = probability_active(params["r"], params["alpha"], p_alive, data["frequency"],
                               data["T"], t)
        out[f"p_active_after_obs_{h}"] = out[f"p_value_after_obs_{h}"] = p.astype(np.float32)
        out[gs.lt_name(h)] = (rows["observed_active_days"] + expected).astype(np.float32)
        out[gs.ltv_name(h)] = (rows["observed_value"]
                               + expected * np.maximum(value_per_day, 0.0)).astype(np.float32)
    return out
