"""Tests of beam_pipelines.simulate.

The files are read back with the csv module and every property of the generative model
is checked against a reference computed here with numpy / scipy from the configured
tables (shares, effects, acquisition spread), not against the simulator's own helpers.
"""
import csv
import datetime
import math
from pathlib import Path

import numpy as np
import pytest
import scipy.special
import scipy.stats

from beam_pipelines import simulate as sim
from htgnn_tf.data.spec import load_spec

NUM_USERS = 20_000
SEED = 7
ACQUISITION_DAYS = 456
ACQUISITION_GROWTH = 2.0
ONE_TIME_FRACTION = 0.5
SNAPSHOT = np.datetime64("2025-03-31")
FIRST_DAY = SNAPSHOT - (ACQUISITION_DAYS - 1)
FILES = ("events.csv", "profiles.csv", "campaigns.csv", "spec.yaml")


def _read_columns(path):
    """Header and a dict column name -> numpy array of strings."""
    with open(path, newline="") as f:
        reader = csv.reader(f)
        header = next(reader)
        columns = list(zip(*reader))
    return header, {name: np.asarray(values) for name, values in zip(header, columns)}


class Population:
    """The simulated files of one run, as arrays (one entry per event row or user)."""

    def __init__(self, out_dir: Path):
        self.spec_path = out_dir / "spec.yaml"
        self.event_header, events = _read_columns(out_dir / "events.csv")
        self.profile_header, profiles = _read_columns(out_dir / "profiles.csv")
        _, self.campaigns = _read_columns(out_dir / "campaigns.csv")
        self.row_user_id = events["user_id"]
        self.row_date = events["date"].astype("datetime64[D]")
        self.revenue = events["revenue"].astype(float)
        self.clicks = events["clicks"].astype(int)
        self.impressions = events["impressions"].astype(int)
        self.conversions = events["conversions"].astype(int)
        # Users: the sorted ids of event users; `row_user` indexes them.
        self.user_ids, self.row_user = np.unique(self.row_user_id, return_inverse=True)
        num_users = len(self.user_ids)
        self.acquisition = np.full(num_users, SNAPSHOT)
        np.minimum.at(self.acquisition, self.row_user, self.row_date)
        self.row_t = (self.row_date - self.acquisition[self.row_user]).astype(int)  # days
        # Profiles aligned with the event users ("" where a user has no profile row).
        self.profile_ids = profiles["user_id"]
        position = {uid: i for i, uid in enumerate(profiles["user_id"])}
        index = np.array([position.get(uid, -1) for uid in self.user_ids])
        self.has_profile = index >= 0
        self.profile = {column: np.where(self.has_profile, profiles[column][index], "")
                        for column in sim.PROFILE_VALUES}

    def window_revenue(self, horizon):
        """Per event user: revenue in days [0, horizon) (truncated at the snapshot)."""
        inside = self.row_t < horizon
        return np.bincount(self.row_user[inside], weights=self.revenue[inside],
                           minlength=len(self.user_ids))

    def active_days(self, horizon):
        """Per event user: number of distinct active days in [0, horizon)."""
        inside = self.row_t < horizon
        pairs = np.unique(np.stack([self.row_user[inside], self.row_t[inside]]), axis=1)
        return np.bincount(pairs[0], minlength=len(self.user_ids))

    def observed_through(self, horizon):
        """Users whose days 0..horizon-1 all lie on or before the snapshot."""
        return self.acquisition + (horizon - 1) <= SNAPSHOT


@pytest.fixture(scope="module")
def population(tmp_path_factory):
    out_dir = tmp_path_factory.mktemp("population")
    sim.simulate(out_dir, NUM_USERS, seed=SEED)
    return Population(out_dir)


def _file_bytes(out_dir):
    return {name: (out_dir / name).read_bytes() for name in FILES}


def test_same_seed_gives_identical_files_and_other_seed_differs(tmp_path):
    sim.simulate(tmp_path / "a", 800, seed=3)
    sim.simulate(tmp_path / "b", 800, seed=3)
    sim.simulate(tmp_path / "c", 800, seed=4)
    a, b, c = (_file_bytes(tmp_path / name) for name in "abc")
    assert a == b
    for name in ("events.csv", "profiles.csv", "campaigns.csv"):
        assert a[name] != c[name], name


def test_cli_writes_the_same_files_as_the_function(tmp_path, capsys):
    sim.main(["--out", str(tmp_path / "cli"), "--users", "300", "--seed", "5",
              "--metrics", "6", "--no-progress"])
    assert capsys.readouterr().out.strip() == str(tmp_path / "cli" / "spec.yaml")
    sim.simulate(tmp_path / "api", 300, seed=5, num_metrics=6)
    assert _file_bytes(tmp_path / "cli") == _file_bytes(tmp_path / "api")


def test_cli_help_explains_every_flag(capsys):
    with pytest.raises(SystemExit):
        sim.main(["--help"])
    text = capsys.readouterr().out
    for flag in ("--out", "--users", "--seed", "--metrics", "--snapshot-date",
                 "--acquisition-days", "--acquisition-growth", "--one-time-fraction",
                 "--profile-only-fraction", "--events-only-fraction", "--campaigns",
                 "--extra-row-rate", "--no-progress"):
        assert flag in text, flag


@pytest.mark.parametrize("kwargs, bad_value", [
    ({"num_metrics": 3}, "3"),
    ({"one_time_fraction": 1.0}, "1.0"),
    ({"events_only_fraction": -0.1}, "-0.1"),
    ({"snapshot_date": "2025-13-01"}, "2025-13-01"),
    ({"acquisition_days": 1}, "1"),
])
def test_bad_arguments_are_rejected_with_the_value(tmp_path, kwargs, bad_value):
    with pytest.raises(ValueError, match=bad_value):
        sim.simulate(tmp_path, 10, **kwargs)


def test_metric_names():
    assert sim.metric_names(6) == ("revenue", "clicks", "impressions", "conversions",
                                   "metric_05", "metric_06")
    assert len(sim.metric_names(35)) == 35
    assert sim.metric_names(35)[-1] == "metric_35"


def test_spec_loads_and_names_existing_files_and_columns(population):
    spec = load_spec(str(population.spec_path))
    for path in spec.events.files + spec.profiles.files:
        assert Path(path).is_file(), path
    assert population.event_header == ["user_id", spec.date] + list(spec.metrics)
    assert len(spec.metrics) == 35
    assert spec.metrics[:4] == ("revenue", "clicks", "impressions", "conversions")
    assert spec.value_metric == "revenue"
    assert population.profile_header == (["user_id"] + list(spec.profiles.categorical)
                                         + list(spec.profiles.numeric))
    assert spec.profiles.categorical == ("age_band", "region", "device", "channel")
    assert spec.profiles.numeric == ("income_k",)
    assert spec.derived_categoricals == ("acquisition_month", "acquisition_weekday")
    assert spec.observation_days == 14
    assert spec.horizons == (30, 180, 365)
    assert np.datetime64(spec.snapshot_date) == SNAPSHOT == population.row_date.max()
    assert population.row_date.min() >= FIRST_DAY
    # The date column parses with the spec's format.
    datetime.datetime.strptime(str(population.row_date[0]), spec.date_format)


def test_users_and_rows_match(population):
    num_profile_only = round(0.01 * NUM_USERS)
    num_events_only = round(0.01 * NUM_USERS)
    event_users = set(population.user_ids)
    profile_users = set(population.profile_ids)
    assert len(population.profile_ids) == len(profile_users)  # one row per profile
    assert len(event_users) == NUM_USERS - num_profile_only
    assert len(profile_users) == NUM_USERS - num_events_only
    assert len(event_users | profile_users) == NUM_USERS
    assert len(event_users - profile_users) == num_events_only
    assert len(profile_users - event_users) == num_profile_only
    assert (~population.has_profile).sum() == num_events_only
    # Several rows for some user-days: rows per active user-day is 1 + Poisson(0.25).
    user_days = len(np.unique(np.stack([population.row_user, population.row_t]), axis=1).T)
    rows_per_day = len(population.row_user) / user_days
    assert rows_per_day == pytest.approx(1.25, abs=0.02)
    # Some users are one-time users, with a single row.
    rows_per_user = np.bincount(population.row_user)
    assert (rows_per_user == 1).sum() > 0.1 * len(rows_per_user)


@pytest.mark.parametrize("horizon", [30, 180, 365])
def test_censored_share_matches_the_acquisition_spread(population, horizon):
    # Acquisition day c in 0..D-1 with weight 1 + (g - 1) c / (D - 1); the horizon-h label
    # is censored when day h-1 falls after the snapshot (day D-1): c + h - 1 > D - 1.
    days = np.arange(ACQUISITION_DAYS)
    weights = 1 + (ACQUISITION_GROWTH - 1) * days / (ACQUISITION_DAYS - 1)
    expected = weights[days + horizon - 1 > ACQUISITION_DAYS - 1].sum() / weights.sum()
    observed = 1.0 - population.observed_through(horizon).mean()
    n = len(population.user_ids)
    assert abs(observed - expected) < 4 * math.sqrt(expected * (1 - expected) / n)


def _never_return_probability(population, users):
    logit = math.log(ONE_TIME_FRACTION / (1 - ONE_TIME_FRACTION))
    for column, effects in sim.NEVER_RETURN_LOGIT_EFFECT.items():
        effect = dict(zip(sim.PROFILE_VALUES[column], effects))
        logit = logit + np.array([effect[v] for v in population.profile[column][users]])
    return scipy.special.expit(logit)


def test_zero_inflation_share_matches_configuration(population):
    # Users observed for 365 days: one-time users (a single active day) occur with the
    # configured probability; returning users come back within 365 days for sure.
    users = population.observed_through(365) & population.has_profile
    one_time = population.active_days(365)[users] == 1
    p = _never_return_probability(population, users)
    tolerance = 4 * math.sqrt((p * (1 - p)).sum()) / len(p)
    assert abs(one_time.mean() - p.mean()) < tolerance
    # Segment-specific: per channel as configured.
    channel = population.profile["channel"][users]
    for value in sim.PROFILE_VALUES["channel"]:
        in_channel = channel == value
        q = p[in_channel]
        assert abs(one_time[in_channel].mean() - q.mean()) < (
            4 * math.sqrt((q * (1 - q)).sum()) / len(q)), value
    # And LTV is zero-inflated: most users have no revenue at all in 365 days.
    assert (population.window_revenue(365)[users] == 0).mean() > 0.5


def _bootstrap_log_ratio(rng, numerator_a, denominator_a, numerator_b, denominator_b,
                         draws=2000):
    """Bootstrap over users of log(sum num_a / sum den_a) - log(sum num_b / sum den_b)."""
    def resampled_ratio(num, den):
        idx = rng.integers(0, len(num), size=(draws, len(num)))
        return np.log(num[idx].sum(1) / den[idx].sum(1))

    return (resampled_ratio(numerator_a, denominator_a)
            - resampled_ratio(numerator_b, denominator_b))


def test_segment_ltv_differs_as_configured(population):
    rng = np.random.default_rng(0)
    users = population.has_profile
    device = population.profile["device"]
    spend_effect = dict(zip(sim.PROFILE_VALUES["device"], sim.SPEND_LOG_EFFECT["device"]))
    revenue_365 = population.window_revenue(365)
    revenue_all = np.bincount(population.row_user, weights=population.revenue)
    conversions = np.bincount(population.row_user, weights=population.conversions)
    ones = np.ones(len(population.user_ids))
    # Device only moves the spend per conversion, so between two devices the mean
    # 365-day revenue and the revenue per conversion both differ by exp(effect gap).
    for a, b in (("ios", "android"), ("ios", "web"), ("web", "android")):
        in_a, in_b = users & (device == a), users & (device == b)
        expected = spend_effect[a] - spend_effect[b]
        ltv_gap = _bootstrap_log_ratio(rng, revenue_365[in_a], ones[in_a],
                                       revenue_365[in_b], ones[in_b])
        low, high = np.quantile(ltv_gap, [0.0005, 0.9995])
        assert low < expected < high, (a, b, low, high)
        assert np.log(revenue_365[in_a].mean() / revenue_365[in_b].mean()) == pytest.approx(
            expected, abs=0.35)
        amount_gap = _bootstrap_log_ratio(rng, revenue_all[in_a], conversions[in_a],
                                          revenue_all[in_b], conversions[in_b])
        low, high = np.quantile(amount_gap, [0.0005, 0.9995])
        assert low < expected < high, (a, b, low, high)
    # Age bands move return, activity and spend together: 18-24 (lowest spend, often
    # one-time) has the lowest mean 365-day revenue, and the paying users' 365-day
    # revenue differs significantly between bands.
    observed = users & population.observed_through(365)
    age = population.profile["age_band"][observed]
    ltv = revenue_365[observed]
    means = {value: ltv[age == value].mean() for value in sim.PROFILE_VALUES["age_band"]}
    assert min(means, key=means.get) == "18-24"
    paying = [ltv[(age == value) & (ltv > 0)] for value in means]
    assert scipy.stats.kruskal(*paying).pvalue < 1e-6


def test_same_segment_users_are_more_alike_than_random_users(population):
    # Paper Sec. III / Fig. 2: users sharing profile features have less LTV variance.
    users = population.has_profile & population.observed_through(365)
    log_ltv = np.log1p(population.window_revenue(365)[users])
    segment = np.unique(np.stack([population.profile[c][users]
                                  for c in ("age_band", "device", "channel")]),
                        axis=1, return_inverse=True)[1].ravel()

    def within_variance_share(groups):
        group_mean = (np.bincount(groups, weights=log_ltv) / np.bincount(groups))[groups]
        return ((log_ltv - group_mean) ** 2).mean() / log_ltv.var()

    random_groups = np.random.default_rng(1).permutation(segment)
    assert within_variance_share(random_groups) > 0.95
    assert within_variance_share(segment) < 0.9


def test_record_metrics_are_correlated_as_generated(population):
    assert (population.clicks <= population.impressions).all()
    assert (population.conversions <= population.clicks).all()
    assert ((population.revenue > 0) == (population.conversions > 0)).all()
    assert np.corrcoef(population.clicks, population.impressions)[0, 1] > 0.4
    assert np.corrcoef(population.revenue, population.conversions)[0, 1] > 0.4
    # clicks ~ Binomial(impressions, ctr), ctr ~ Beta(6, 180) independent of impressions.
    assert population.clicks.sum() / population.impressions.sum() == pytest.approx(
        6 / 186, rel=0.05)
    # Revenue is long-tailed: the top 1% of paying rows carry a large share.
    paid = np.sort(population.revenue[population.revenue > 0])[::-1]
    assert paid[: len(paid) // 100].sum() / paid.sum() > 0.1


def test_activity_decays_with_days_since_acquisition(population):
    # Among users observed for 365 days who returned, the share active on a day falls.
    users = population.observed_through(365) & (population.active_days(365) > 1)
    rows = users[population.row_user] & (population.row_t < 365)
    active = np.unique(np.stack([population.row_user[rows], population.row_t[rows]]), axis=1)
    per_day = np.bincount(active[1], minlength=365) / users.sum()  # [days]
    month_1, month_6, month_12 = per_day[31:61].mean(), per_day[151:181].mean(), \
        per_day[335:365].mean()
    assert month_1 > 2 * month_6 > 4 * month_12


def test_marketing_campaigns_boost_targeted_activity(population):
    """Difference in differences of active user-days: campaign window vs. the window
    just before it, targeted vs. other users; it follows the configured boost."""
    pairs = np.unique(np.stack([population.row_user,
                                (population.row_date - FIRST_DAY).astype(int)]), axis=1)
    acquisition_day = (population.acquisition - FIRST_DAY).astype(int)
    gaps, log_boosts = [], []
    campaigns = population.campaigns
    for k in range(len(campaigns["campaign_id"])):
        start = int((np.datetime64(campaigns["start_date"][k]) - FIRST_DAY).astype(int))
        end = int((np.datetime64(campaigns["end_date"][k]) - FIRST_DAY).astype(int))
        length = end - start + 1
        if start - length < 0:
            continue
        eligible = population.has_profile & (acquisition_day < start - length)
        targeted = population.profile[campaigns["target_column"][k]] == \
            campaigns["target_value"][k]
        in_window = (pairs[1] >= start) & (pairs[1] <= end)
        before = (pairs[1] >= start - length) & (pairs[1] < start)

        def count(window, group):
            return (window & (eligible & group)[pairs[0]]).sum()

        gaps.append(np.log(count(in_window, targeted) / count(before, targeted))
                    - np.log(count(in_window, ~targeted) / count(before, ~targeted)))
        log_boosts.append(math.log(float(campaigns["activity_boost"][k])))
    gaps, log_boosts = np.array(gaps), np.array(log_boosts)
    assert len(gaps) >= 8
    assert (gaps > 0).mean() >= 0.9
    assert 0.5 * log_boosts.mean() < gaps.mean() < 1.1 * log_boosts.mean()
