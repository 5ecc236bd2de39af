"""Per-user aggregation: sequences, static features, labels and censoring.

Day 0 is the user's first active date (acquisition). For one user this module computes
(DESIGN.md, "Per-user example"):

* an **active day** is a day whose summed metrics are not all zero (several rows on one
  day are summed: one active day). A row whose metrics are all zero is valid and used,
  but does not make its day active: the model sees days only through their metric
  values, so labels and inputs must agree on what activity is. Day 0 is the date of the
  user's first row (acquisition), active or not;
* ``seq_values`` [T, W]: the daily total of each metric on days 0..W-1, zero on days not
  observed (day >= obs_days);
* ``obs_days`` = min(W, days from acquisition to the snapshot date, inclusive);
* ``stat_values``: acquisition-day (day 0) totals of every metric, then the numeric
  profile columns (0.0 for a user without a profile row). Day 0 is observed for every
  user, so these do not change with the observed length s (decision recorded in
  :mod:`htgnn_tf.data.spec`);
* ``categorical_values``: the derived categoricals (acquisition month ``YYYY-MM``,
  acquisition weekday ``Mon``..``Sun``, first-day band of a metric ``<=1``..``>4``) then the
  profile categoricals (``""`` without a profile row);
* per horizon h: ``lt_h`` = active days in [0, h), ``ltv_h`` = value in [0, h),
  ``label_mask_h`` = 1 when day h-1 is on or before the snapshot date (0 = censored,
  the label is then computed on the days that exist but must not be used),
  ``last_active_day_h`` = last active day in [0, h), -1 if none: the classification
  target "activity after the s observed days" is ``last_active_day_h >= s``;
* ``lifetime_days`` = last active day (0 if none) over the whole log.
"""
from __future__ import annotations

import datetime
from typing import Iterable

import numpy as np

from htgnn_tf.data import graph_schema as gs
from htgnn_tf.data.rows import Event, Profile
from htgnn_tf.data.spec import FIRST_DAY_BAND_PREFIX, DatasetSpec

WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
CATEGORICAL_VALUES = "categorical_values"


def band_label(value: float, bands) -> str:
    """'<=b' for the first band limit b with value <= b, else '>last'."""
    for limit in bands:
        if value <= limit:
            return f"<={limit:g}"
    return f">{bands[-1]:g}"


def observed_days(first: datetime.date, spec: DatasetSpec, today: datetime.date | None = None) -> int:
    """min(W, days from acquisition to `today` inclusive); `today` defaults to the
    snapshot date."""
    today = today or spec.snapshot_date
    return int(max(1, min(spec.observation_days, (today - first).days + 1)))


def aggregate_user(user_id: str, events: Iterable[Event], profile: Profile | None,
                   spec: DatasetSpec, with_labels: bool = True,
                   today: datetime.date | None = None) -> dict:
    """The raw (not yet discretized) record of one user; see the module docstring."""
    daily: dict[int, np.ndarray] = {}
    events = list(events)
    if not events:
        raise ValueError(f"user {user_id!r} has no events")
    first = min(e.date for e in events)
    for event in events:
        day = (event.date - first).days
        daily.setdefault(day, np.zeros(len(spec.metrics)))
        daily[day] += np.asarray(event.metrics, np.float64)
    days = np.array(sorted(daily), dtype=np.int64)
    values = np.stack([daily[d] for d in days])  # [days with rows, T]
    active = np.any(values > 0, axis=1)  # [days with rows]
    value_index = spec.metrics.index(spec.value_metric)

    obs = observed_days(first, spec, today)
    seq = np.zeros([len(spec.metrics), spec.observation_days], np.float64)
    seen = days < obs
    seq[:, days[seen]] = values[seen].T

    day0 = daily[0]
    numeric = list(profile.numeric) if profile else [0.0] * len(
        spec.profiles.numeric if spec.profiles else ())
    categorical = []
    for name in spec.derived_categoricals:
        if name == "acquisition_month":
            categorical.append(first.strftime("%Y-%m"))
        elif name == "acquisition_weekday":
            categorical.append(WEEKDAYS[first.weekday()])
        else:
            metric = name[len(FIRST_DAY_BAND_PREFIX):]
            categorical.append(band_label(day0[spec.metrics.index(metric)], spec.first_day_bands))
    if spec.profiles:
        categorical += list(profile.categorical) if profile else [""] * len(spec.profiles.categorical)

    record = {
        gs.USER_ID: user_id,
        CATEGORICAL_VALUES: categorical,
        gs.STAT_VALUES: [float(v) for v in day0] + [float(v) for v in numeric],
        gs.SEQ_VALUES: seq.tolist(),
        gs.OBS_DAYS: obs,
        "first_date": first.isoformat(),
    }
    if with_labels:
        for h in spec.horizons:
            within = days < h
            active_within = within & active
            record[gs.lt_name(h)] = float(np.sum(active_within))
            record[gs.ltv_name(h)] = float(np.sum(values[within, value_index]))
            horizon_end = first + datetime.timedelta(days=h - 1)
            record[gs.label_mask_name(h)] = float(horizon_end <= spec.snapshot_date)
            record[gs.last_active_name(h)] = int(days[active_within].max(initial=-1))
        record[gs.LIFETIME_DAYS] = int(days[active].max(initial=0))
    return record
