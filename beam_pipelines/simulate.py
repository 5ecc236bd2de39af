"""Seeded simulator of raw advertising activity logs with the structure HT-GNN is about.

``simulate(out_dir, num_users, seed)`` writes a raw log in the format the dataset job
reads (``events.csv``, ``profiles.csv``) plus the dataset spec that describes it
(``spec.yaml``, loadable with :func:`htgnn_tf.data.spec.load_spec`), and the marketing
calendar it used (``campaigns.csv``, ground truth for analysis; the job does not read it).
The same seed gives byte-identical files. Plain numpy, vectorised per chunk of users:
1M users take about 2 minutes and 0.7 GB of memory and write about 10.6M event rows
(1.1 GB) on one CPU core.

Generative model
----------------
The simulated population has the two properties of paper Sec. III: demographic segments
with different, zero-inflated, long-tailed LTV distributions, and behaviour sequences
disturbed by marketing interventions. Calendar days are ``c = 0 .. D-1`` with
``D = acquisition_days`` (about 15 months) and day ``D-1`` = ``snapshot_date``. For user i:

1. Profile. ``age_band``, ``region``, ``device``, ``channel`` are drawn independently with
   the shares in ``PROFILE_SHARES``; ``income_k = 45 * exp(INCOME_LOG_EFFECT[age_band] +
   INCOME_LOG_EFFECT[region] + 0.35 * N(0, 1))`` (thousand dollars a year).
   A segment is a combination of profile values; the segment effects are the tables
   ``*_EFFECT`` below, keyed by profile column, one number per value.
2. Acquisition. Calendar day ``a_i`` with ``P(a_i = c) ∝ 1 + (g - 1) * c / (D - 1)``,
   ``g = acquisition_growth`` (a growing platform). Day 0 of the user is ``a_i``: every
   user has activity on day 0. Users acquired less than h - 1 days before the snapshot
   have a censored horizon-h label (``label_mask_h = 0``).
3. Zero inflation. The user never returns after day 0 (a one-time user) with probability
   ``p_i = sigmoid(logit(one_time_fraction) + NEVER_RETURN_LOGIT_EFFECT[age_band] +
   NEVER_RETURN_LOGIT_EFFECT[channel])``.
4. Returning users come back on day ``G_i ~ Geometric(1 / MEAN_FIRST_RETURN_GAP_DAYS)``
   (>= 1) for sure and, on every day t >= 1, are active with probability
   ``1 - exp(-h_i(t))`` — a decaying propensity (churn):
   ``h_i(t) = lambda_i * exp(-t / tau_i) * WEEKDAY_ACTIVITY[weekday(c)] * B_act(i, c)``,
   ``lambda_i = BASE_DAILY_HAZARD * exp(ACTIVITY_LOG_EFFECT[age_band] +
   ACTIVITY_LOG_EFFECT[region]) * Gamma(4) / 4``,
   ``tau_i = BASE_DECAY_DAYS * exp(CHURN_LOG_EFFECT[channel]) * Gamma(4) / 4`` (days).
5. Marketing interventions. Campaigns start every ``U(20, 45)`` days, last ``U{5..21}``
   days and target the users with one value of ``age_band``, ``region`` or ``channel``;
   each has an activity boost ``b_act ~ U(1.5, 3)`` and a spend boost ``b_spend ~
   U(1.2, 2)``. ``B_act(i, c)`` / ``B_spend(i, c)`` are the products of the boosts of the
   campaigns that run on day c and target user i (1 otherwise).
6. Records. An active day yields ``1 + Poisson(extra_row_rate)`` rows (the job sums
   rows of one user-day). Per row, with engagement ``e = eta_i * Gamma(2) / 2``,
   ``eta_i ~ Gamma(5) / 5``:
   ``impressions ~ Poisson(BASE_IMPRESSIONS * e * B_act)``,
   ``clicks ~ Binomial(impressions, ctr_i)``, ``ctr_i ~ Beta(6, 180)``,
   ``conversions ~ Binomial(clicks, min(cvr_i * B_spend, 0.9))``, ``cvr_i ~ Beta(6, 69)``,
   ``revenue = sum over conversions of LogNormal(mu_i, SPEND_SIGMA)`` (dollars, rounded
   to cents), ``mu_i = ln(BASE_SPEND) + SPEND_LOG_EFFECT[age_band] +
   SPEND_LOG_EFFECT[device] + INCOME_SPEND_ELASTICITY * ln(income_k / 45) +
   SPEND_USER_SIGMA * N(0, 1)``; every further metric ``metric_j ~ Poisson(r_j * e**k_j)``
   with fixed rates ``r_j`` and loadings ``k_j`` (the same for every seed). So clicks
   follow impressions, revenue follows conversions, and all metrics share engagement.
   LTV is zero-inflated twice over: one-time users, and users who never convert.
7. Orphans. ``round(profile_only_fraction * num_users)`` users get a profile row but no
   events; ``round(events_only_fraction * num_users)`` other users get events but no
   profile row. The events and profiles together hold exactly ``num_users`` users.

Departures / decisions: the paper's data (Baidu Ads) is not public, so the population
is invented to have the properties the paper describes; the numbers in the tables below
are choices, not estimates. ``device`` shifts only the spend per conversion, so in
expectation the mean LTV of two devices differs by the factor ``exp`` of the gap between
their spend effects (the tests check it); campaigns never target ``device``, so that this
stays exact. ``campaigns.csv`` lists campaign_id, start_date, end_date (inclusive),
target_column, target_value, activity_boost, spend_boost.
"""
from __future__ import annotations

import argparse
import csv
import dataclasses
import datetime
import math
from pathlib import Path
from typing import Sequence

import numpy as np
import yaml
from tqdm import tqdm

# ---- profile columns and the configured segment effects --------------------------------
PROFILE_VALUES: dict[str, tuple[str, ...]] = {
    "age_band": ("18-24", "25-34", "35-44", "45-54", "55+"),
    "region": ("north", "south", "east", "west"),
    "device": ("ios", "android", "web"),
    "channel": ("organic", "search_ads", "feed_ads", "referral"),
}
PROFILE_SHARES: dict[str, tuple[float, ...]] = {
    "age_band": (0.20, 0.30, 0.25, 0.15, 0.10),
    "region": (0.30, 0.30, 0.20, 0.20),
    "device": (0.35, 0.50, 0.15),
    "channel": (0.30, 0.25, 0.35, 0.10),
}
NUMERIC_PROFILE_COLUMN = "income_k"
INCOME_LOG_EFFECT = {"age_band": (-0.5, 0.0, 0.25, 0.3, 0.1), "region": (0.2, -0.2, 0.1, -0.1)}
ACTIVITY_LOG_EFFECT = {"age_band": (0.6, 0.3, 0.0, -0.3, -0.6),
                       "region": (0.2, -0.2, 0.1, -0.1)}
SPEND_LOG_EFFECT = {"age_band": (-1.0, 0.0, 0.6, 0.8, 0.4), "device": (0.6, -0.4, 0.0)}
NEVER_RETURN_LOGIT_EFFECT = {"age_band": (0.6, 0.2, -0.2, -0.4, -0.2),
                             "channel": (-1.2, 0.0, 1.2, -1.6)}
CHURN_LOG_EFFECT = {"channel": (0.4, 0.0, -0.6, 0.7)}
CAMPAIGN_TARGET_COLUMNS = ("age_band", "region", "channel")

# ---- behaviour constants -----------------------------------------------------------
BASE_DAILY_HAZARD = 0.25  # returning users' daily activity hazard at day 0, before effects
BASE_DECAY_DAYS = 45.0  # time constant of the propensity decay (churn), days
MEAN_FIRST_RETURN_GAP_DAYS = 10.0
WEEKDAY_ACTIVITY = (1.0, 1.0, 1.0, 1.0, 1.1, 1.3, 1.2)  # Monday .. Sunday
BASE_IMPRESSIONS = 30.0  # ad impressions per record at engagement 1
BASE_SPEND = 20.0  # dollars, median spend per conversion before effects
SPEND_SIGMA = 1.0  # log-sd of one conversion's spend
SPEND_USER_SIGMA = 0.5  # log-sd of the users' spend level within a segment
INCOME_SPEND_ELASTICITY = 0.3
MEDIAN_INCOME_K = 45.0
MAX_CONVERSION_RATE = 0.9
CORE_METRICS = ("revenue", "clicks", "impressions", "conversions")
VALUE_METRIC = "revenue"
CHUNK_USERS = 25_000  # users simulated at once; fixed, so output does not depend on it
_METRIC_TABLE_SEED = 20250331  # the generic metrics' rates and loadings, same for all seeds
_AUTO_PROGRESS_USERS = 50_000


@dataclasses.dataclass(frozen=True)
class Campaign:
    """One marketing intervention: calendar days [start_day, end_day] inclusive."""

    start_day: int
    end_day: int
    target_column: str
    target_value: str
    activity_boost: float
    spend_boost: float


def metric_names(num_metrics: int) -> tuple[str, ...]:
    """The event metric columns: the four core metrics, then metric_05 .. metric_<n>."""
    width = max(2, len(str(num_metrics)))
    extra = tuple(f"metric_{j:0{width}d}" for j in range(len(CORE_METRICS) + 1, num_metrics + 1))
    return CORE_METRICS + extra


def _logit(p: float) -> float:
    return math.log(p / (1.0 - p))


def _effect(table: dict[str, tuple[float, ...]], profile: dict[str, np.ndarray]) -> np.ndarray:
    """Sum of the per-column effects for each user (codes index the effect tuples)."""
    return sum(np.asarray(effects)[profile[column]] for column, effects in table.items())


def _draw_profiles(rng: np.random.Generator, num_users: int) -> dict[str, np.ndarray]:
    profile = {column: rng.choice(len(values), size=num_users, p=PROFILE_SHARES[column])
               for column, values in PROFILE_VALUES.items()}  # each [users] int codes
    log_income = _effect(INCOME_LOG_EFFECT, profile) + 0.35 * rng.standard_normal(num_users)
    profile[NUMERIC_PROFILE_COLUMN] = np.round(MEDIAN_INCOME_K * np.exp(log_income), 1)
    return profile


def acquisition_weights(acquisition_days: int, acquisition_growth: float) -> np.ndarray:
    """P(acquisition on calendar day c), c = 0..D-1: linear growth by the given factor."""
    days = np.arange(acquisition_days)
    weights = 1.0 + (acquisition_growth - 1.0) * days / max(acquisition_days - 1, 1)
    return weights / weights.sum()  # [D]


def _draw_campaigns(rng: np.random.Generator, acquisition_days: int,
                    num_campaigns: int | None) -> list[Campaign]:
    campaigns = []
    start = int(rng.integers(0, 30))
    while start < acquisition_days and (num_campaigns is None or len(campaigns) < num_campaigns):
        column = CAMPAIGN_TARGET_COLUMNS[rng.integers(len(CAMPAIGN_TARGET_COLUMNS))]
        value = PROFILE_VALUES[column][rng.integers(len(PROFILE_VALUES[column]))]
        length = int(rng.integers(5, 22))
        campaigns.append(Campaign(
            start_day=start, end_day=min(start + length - 1, acquisition_days - 1),
            target_column=column, target_value=value,
            activity_boost=round(float(rng.uniform(1.5, 3.0)), 3),
            spend_boost=round(float(rng.uniform(1.2, 2.0)), 3)))
        start += int(rng.integers(20, 46))
    return campaigns


def _boost_calendars(campaigns: Sequence[Campaign], first_day: datetime.date,
                     acquisition_days: int) -> tuple[np.ndarray, np.ndarray]:
    """Activity and spend multipliers per (targetable segment, calendar day).

    The segment index is the mixed-radix code of the CAMPAIGN_TARGET_COLUMNS values
    (see `_target_segment`). The activity calendar includes the weekday pattern.
    """
    sizes = [len(PROFILE_VALUES[c]) for c in CAMPAIGN_TARGET_COLUMNS]
    activity = np.ones(sizes + [acquisition_days])  # [ages, regions, channels, D]
    spend = np.ones(sizes + [acquisition_days])  # [ages, regions, channels, D]
    for campaign in campaigns:
        axis = CAMPAIGN_TARGET_COLUMNS.index(campaign.target_column)
        index = [slice(None)] * 4
        index[axis] = PROFILE_VALUES[campaign.target_column].index(campaign.target_value)
        index[3] = slice(campaign.start_day, campaign.end_day + 1)
        activity[tuple(index)] *= campaign.activity_boost
        spend[tuple(index)] *= campaign.spend_boost
    weekdays = (first_day.weekday() + np.arange(acquisition_days)) % 7  # [D]
    activity *= np.asarray(WEEKDAY_ACTIVITY)[weekdays]
    return activity.reshape(-1, acquisition_days), spend.reshape(-1, acquisition_days)


def _target_segment(profile: dict[str, np.ndarray]) -> np.ndarray:
    code = np.zeros_like(profile[CAMPAIGN_TARGET_COLUMNS[0]])
    for column in CAMPAIGN_TARGET_COLUMNS:
        code = code * len(PROFILE_VALUES[column]) + profile[column]
    return code  # [users]


@dataclasses.dataclass
class _Users:
    """Latent per-user parameters (all arrays [users])."""

    acquisition_day: np.ndarray
    never_returns: np.ndarray
    first_return_gap: np.ndarray
    hazard: np.ndarray
    decay_days: np.ndarray
    engagement: np.ndarray
    ctr: np.ndarray
    cvr: np.ndarray
    spend_mu: np.ndarray
    target_segment: np.ndarray


def _draw_users(rng: np.random.Generator, profile: dict[str, np.ndarray],
                acquisition_days: int, acquisition_growth: float,
                one_time_fraction: float) -> _Users:
    n = len(profile["age_band"])
    never_logit = _logit(one_time_fraction) + _effect(NEVER_RETURN_LOGIT_EFFECT, profile)
    spend_mu = (math.log(BASE_SPEND) + _effect(SPEND_LOG_EFFECT, profile)
                + INCOME_SPEND_ELASTICITY * np.log(profile[NUMERIC_PROFILE_COLUMN] / MEDIAN_INCOME_K)
                + SPEND_USER_SIGMA * rng.standard_normal(n))
    return _Users(
        acquisition_day=rng.choice(acquisition_days, size=n,
                                   p=acquisition_weights(acquisition_days, acquisition_growth)),
        never_returns=rng.random(n) < 1.0 / (1.0 + np.exp(-never_logit)),
        first_return_gap=rng.geometric(1.0 / MEAN_FIRST_RETURN_GAP_DAYS, size=n),
        hazard=BASE_DAILY_HAZARD * np.exp(_effect(ACTIVITY_LOG_EFFECT, profile))
        * rng.gamma(4.0, 0.25, size=n),
        decay_days=BASE_DECAY_DAYS * np.exp(_effect(CHURN_LOG_EFFECT, profile))
        * rng.gamma(4.0, 0.25, size=n),
        engagement=rng.gamma(5.0, 0.2, size=n),
        ctr=rng.beta(6.0, 180.0, size=n),
        cvr=rng.beta(6.0, 69.0, size=n),
        spend_mu=spend_mu,
        target_segment=_target_segment(profile))


def _generic_metric_table(num_generic: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(_METRIC_TABLE_SEED)
    rates = np.exp(rng.uniform(math.log(0.2), math.log(40.0), size=num_generic))  # [G]
    loadings = rng.uniform(0.3, 1.2, size=num_generic)  # [G]
    return rates, loadings


def _active_days(rng: np.random.Generator, users: _Users, activity: np.ndarray,
                 acquisition_days: int) -> tuple[np.ndarray, np.ndarray]:
    """(local user index, calendar day) of every active user-day, day 0 included."""
    returners = np.flatnonzero(~users.never_returns)  # [R]
    later_days = acquisition_days - 1 - users.acquisition_day[returners]  # [R] days 1..
    user = np.repeat(returners, later_days)  # [R*]
    offsets = np.repeat(np.cumsum(later_days) - later_days, later_days)  # [R*]
    t = np.arange(len(user)) - offsets + 1  # [R*] days since acquisition
    day = users.acquisition_day[user] + t  # [R*] calendar day
    hazard = (users.hazard[user] * np.exp(-t / users.decay_days[user])
              * activity[users.target_segment[user], day])  # [R*]
    active = (t == users.first_return_gap[user]) | (rng.random(len(user)) < -np.expm1(-hazard))
    all_users = np.arange(len(users.acquisition_day))
    return (np.concatenate([all_users, user[active]]),
            np.concatenate([users.acquisition_day, day[active]]))


def _records(rng: np.random.Generator, users: _Users, user: np.ndarray, day: np.ndarray,
             activity: np.ndarray, spend: np.ndarray, extra_row_rate: float,
             generic_table: tuple[np.ndarray, np.ndarray]):
    """Rows of the event log for the given active user-days, sorted by (user, day)."""
    rows_per_day = 1 + rng.poisson(extra_row_rate, size=len(user))  # [days]
    user, day = np.repeat(user, rows_per_day), np.repeat(day, rows_per_day)  # [rows]
    order = np.lexsort((day, user))
    user, day = user[order], day[order]  # [rows]
    segment = users.target_segment[user]  # [rows]
    engagement = users.engagement[user] * rng.gamma(2.0, 0.5, size=len(user))  # [rows]
    impressions = rng.poisson(BASE_IMPRESSIONS * engagement * activity[segment, day])  # [rows]
    clicks = rng.binomial(impressions, users.ctr[user])  # [rows]
    conversion_rate = np.minimum(users.cvr[user] * spend[segment, day], MAX_CONVERSION_RATE)
    conversions = rng.binomial(clicks, conversion_rate)  # [rows]
    conversion_row = np.repeat(np.arange(len(user)), conversions)  # [conversions]
    amounts = np.exp(users.spend_mu[user[conversion_row]]
                     + SPEND_SIGMA * rng.standard_normal(len(conversion_row)))  # [conversions]
    revenue = np.round(np.bincount(conversion_row, weights=amounts, minlength=len(user)), 2)
    rates, loadings = generic_table
    generic = rng.poisson(rates * np.exp(np.log(engagement)[:, None] * loadings))  # [rows, G]
    return user, day, [revenue, clicks, impressions, conversions], generic


def _validate(num_users, seed, num_metrics, snapshot_date, acquisition_days,
              acquisition_growth, one_time_fraction, profile_only_fraction,
              events_only_fraction, num_campaigns, extra_row_rate) -> datetime.date:
    def positive_int(value, name, minimum=1):
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")

    positive_int(num_users, "num_users")
    positive_int(num_metrics, "num_metrics", len(CORE_METRICS))
    positive_int(acquisition_days, "acquisition_days", 2)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    if num_campaigns is not None:
        positive_int(num_campaigns, "num_campaigns", 0)
    if not 0.0 < one_time_fraction < 1.0:
        raise ValueError(f"one_time_fraction must be in (0, 1), got {one_time_fraction!r}")
    for name, value in (("profile_only_fraction", profile_only_fraction),
                        ("events_only_fraction", events_only_fraction)):
        if not 0.0 <= value < 0.5:
            raise ValueError(f"{name} must be in [0, 0.5), got {value!r}")
    if not acquisition_growth > 0:
        raise ValueError(f"acquisition_growth must be > 0, got {acquisition_growth!r}")
    if not extra_row_rate >= 0:
        raise ValueError(f"extra_row_rate must be >= 0, got {extra_row_rate!r}")
    if isinstance(snapshot_date, datetime.date):
        return snapshot_date
    try:
        return datetime.date.fromisoformat(snapshot_date)
    except (TypeError, ValueError):
        raise ValueError(f"snapshot_date must be YYYY-MM-DD, got {snapshot_date!r}") from None


def _spec(metrics: Sequence[str], snapshot: datetime.date, seed: int) -> dict:
    return {
        "name": "simulated",
        "events": {"files": ["events.csv"], "format": "csv", "user_id": "user_id"},
        "date": "date",
        "date_format": "%Y-%m-%d",
        "metrics": list(metrics),
        "value_metric": VALUE_METRIC,
        "profiles": {"files": ["profiles.csv"], "format": "csv", "user_id": "user_id",
                     "categorical": list(PROFILE_VALUES), "numeric": [NUMERIC_PROFILE_COLUMN]},
        "derived_categoricals": ["acquisition_month", "acquisition_weekday"],
        "first_day_bands": [1, 2, 4],
        "observation_days": 14,
        "horizons": [30, 180, 365],
        "snapshot_date": snapshot.isoformat(),
        "train_fraction": 0.9,
        "cohort_size": 256,
        "knn_k": 8,
        "max_bins": 64,
        "seed": seed,
    }


def simulate(out_dir: str | Path, num_users: int, seed: int = 0, num_metrics: int = 35, *,
             snapshot_date: str | datetime.date = "2025-03-31",
             acquisition_days: int = 456,
             acquisition_growth: float = 2.0,
             one_time_fraction: float = 0.5,
             profile_only_fraction: float = 0.01,
             events_only_fraction: float = 0.01,
             num_campaigns: int | None = None,
             extra_row_rate: float = 0.25,
             show_progress: bool | None = None) -> Path:
    """Writes events.csv, profiles.csv, campaigns.csv and spec.yaml into out_dir.

    Args:
      out_dir: output directory (created if missing; existing files are overwritten).
      num_users: users in events and profiles together.
      seed: seed of every random draw; the same seed gives byte-identical files.
      num_metrics: event metric columns (>= 4): revenue, clicks, impressions,
        conversions, then metric_05 ...
      snapshot_date: the last simulated day (YYYY-MM-DD); the spec's snapshot date.
      acquisition_days: D, acquisition dates spread over the D days ending at the snapshot.
      acquisition_growth: acquisitions per day on the snapshot day / on the first day.
      one_time_fraction: baseline probability that a user never returns after day 0,
        shifted per age band and channel by NEVER_RETURN_LOGIT_EFFECT (logit scale).
      profile_only_fraction: share of users with a profile row and no events.
      events_only_fraction: share of users with events and no profile row.
      num_campaigns: cap on the number of marketing campaigns (None: one every ~32 days
        over the whole calendar; 0: no interventions).
      extra_row_rate: mean number of extra rows per active user-day (Poisson).
      show_progress: tqdm bar; None = only for runs of 50,000 users or more.

    Returns:
      The path of spec.yaml.
    """
    snapshot = _validate(num_users, seed, num_metrics, snapshot_date, acquisition_days,
                         acquisition_growth, one_time_fraction, profile_only_fraction,
                         events_only_fraction, num_campaigns, extra_row_rate)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    first_day = snapshot - datetime.timedelta(days=acquisition_days - 1)
    dates = np.array([(first_day + datetime.timedelta(days=c)).isoformat()
                      for c in range(acquisition_days)])  # [D]
    metrics = metric_names(num_metrics)
    generic_table = _generic_metric_table(num_metrics - len(CORE_METRICS))

    population_seed, campaign_seed, chunk_seed = np.random.SeedSequence(seed).spawn(3)
    population_rng = np.random.default_rng(population_seed)
    profile = _draw_profiles(population_rng, num_users)
    users = _draw_users(population_rng, profile, acquisition_days, acquisition_growth,
                        one_time_fraction)
    orphans = population_rng.permutation(num_users)
    num_profile_only = round(profile_only_fraction * num_users)
    num_events_only = round(events_only_fraction * num_users)
    has_events = np.ones(num_users, bool)
    has_events[orphans[:num_profile_only]] = False
    has_profile = np.ones(num_users, bool)
    has_profile[orphans[num_profile_only:num_profile_only + num_events_only]] = False
    campaigns = _draw_campaigns(np.random.default_rng(campaign_seed), acquisition_days,
                                num_campaigns)
    activity, spend = _boost_calendars(campaigns, first_day, acquisition_days)

    width = max(7, len(str(num_users - 1)))
    user_ids = np.array([f"u{i:0{width}d}" for i in range(num_users)])  # [users]
    _write_profiles(out_dir / "profiles.csv", user_ids[has_profile],
                    {column: values[has_profile] for column, values in profile.items()})
    _write_campaigns(out_dir / "campaigns.csv", campaigns, dates)

    starts = range(0, num_users, CHUNK_USERS)
    chunk_rngs = [np.random.default_rng(s) for s in chunk_seed.spawn(len(starts))]
    if show_progress is None:
        show_progress = num_users >= _AUTO_PROGRESS_USERS
    with open(out_dir / "events.csv", "w", newline="") as f, \
            tqdm(total=num_users, unit="user", desc="simulate", disable=not show_progress) as bar:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(("user_id", "date") + metrics)
        for start, rng in zip(starts, chunk_rngs):
            block = slice(start, min(start + CHUNK_USERS, num_users))
            chunk = _Users(**{f.name: getattr(users, f.name)[block]
                                 for f in dataclasses.fields(users)})
            user, day = _active_days(rng, chunk, activity, acquisition_days)
            user, day, core, generic = _records(rng, chunk, user, day, activity, spend,
                                                extra_row_rate, generic_table)
            keep = has_events[block][user]  # [rows]
            columns = [user_ids[block][user[keep]].tolist(), dates[day[keep]].tolist()]
            columns += [values[keep].tolist() for values in core]
            columns += generic[keep].T.tolist()
            writer.writerows(zip(*columns))
            bar.update(block.stop - block.start)

    spec_path = out_dir / "spec.yaml"
    header = ("# Simulated advertising log written by beam_pipelines.simulate "
              f"(seed {seed}, {num_users} users); see that module for the generative model.\n")
    spec_path.write_text(header + yaml.safe_dump(_spec(metrics, snapshot, seed), sort_keys=False))
    return spec_path


def _write_profiles(path: Path, user_ids: np.ndarray, profile: dict[str, np.ndarray]) -> None:
    columns = [user_ids.tolist()]
    columns += [np.asarray(values)[profile[c]].tolist() for c, values in PROFILE_VALUES.items()]
    columns.append(profile[NUMERIC_PROFILE_COLUMN].tolist())
    with open(path, "w", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(("user_id",) + tuple(PROFILE_VALUES) + (NUMERIC_PROFILE_COLUMN,))
        writer.writerows(zip(*columns))


def _write_campaigns(path: Path, campaigns: Sequence[Campaign], dates: np.ndarray) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(("campaign_id", "start_date", "end_date", "target_column",
                         "target_value", "activity_boost", "spend_boost"))
        for i, c in enumerate(campaigns):
            writer.writerow((i, dates[c.start_day], dates[c.end_day], c.target_column,
                             c.target_value, c.activity_boost, c.spend_boost))


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="htgnn simulate",
        description="Write a seeded, simulated advertising activity log (events.csv, "
                    "profiles.csv, campaigns.csv) and its dataset spec (spec.yaml) for the "
                    "htgnn dataset job. The generative model is documented in the module "
                    "beam_pipelines/simulate.py.")
    parser.add_argument("--out", required=True, help="output directory (created if missing)")
    parser.add_argument("--users", type=int, required=True,
                        help="number of users in events and profiles together")
    parser.add_argument("--seed", type=int, default=0,
                        help="random seed; the same seed gives byte-identical files (default 0)")
    parser.add_argument("--metrics", type=int, default=35,
                        help="number of event metric columns, >= 4 (default 35, as the paper)")
    parser.add_argument("--snapshot-date", default="2025-03-31",
                        help="last simulated day, YYYY-MM-DD (default 2025-03-31)")
    parser.add_argument("--acquisition-days", type=int, default=456,
                        help="acquisitions spread over this many days up to the snapshot "
                             "(default 456, about 15 months)")
    parser.add_argument("--acquisition-growth", type=float, default=2.0,
                        help="acquisitions per day at the snapshot / at the first day "
                             "(default 2.0)")
    parser.add_argument("--one-time-fraction", type=float, default=0.5,
                        help="baseline probability that a user never returns after day 0, "
                             "shifted per age band and channel (default 0.5)")
    parser.add_argument("--profile-only-fraction", type=float, default=0.01,
                        help="share of users with a profile row but no events (default 0.01)")
    parser.add_argument("--events-only-fraction", type=float, default=0.01,
                        help="share of users with events but no profile row (default 0.01)")
    parser.add_argument("--campaigns", type=int, default=None,
                        help="cap on the number of marketing campaigns; 0 disables them "
                             "(default: one about every 32 days)")
    parser.add_argument("--extra-row-rate", type=float, default=0.25,
                        help="mean number of extra rows per active user-day (default 0.25)")
    parser.add_argument("--no-progress", action="store_true",
                        help="hide the progress bar (shown by default for >= 50,000 users)")
    args = parser.parse_args(argv)
    try:
        spec_path = simulate(
            args.out, args.users, seed=args.seed, num_metrics=args.metrics,
            snapshot_date=args.snapshot_date, acquisition_days=args.acquisition_days,
            acquisition_growth=args.acquisition_growth,
            one_time_fraction=args.one_time_fraction,
            profile_only_fraction=args.profile_only_fraction,
            events_only_fraction=args.events_only_fraction, num_campaigns=args.campaigns,
            extra_row_rate=args.extra_row_rate,
            show_progress=False if args.no_progress else None)
    except ValueError as e:
        parser.error(str(e))
    print(spec_path)


if __name__ == "__main__":
    main()
