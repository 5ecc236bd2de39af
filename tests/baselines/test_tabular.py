"""tabular.py: rows from the TFRecords against an independent numpy read, and the
observed summaries on hand-made sequences."""
import numpy as np
import pytest

from htgnn_tf import training
from htgnn_tf.baselines import tabular
from htgnn_tf.data import graph_schema as gs
from tests.helpers import parse_batch, serialized_cohorts, user_arrays

from tests.baselines.checks import OBS_DAYS


def _reference(data_dir, split, keep_cohort, obs_days):
    """All users of the kept cohorts, obs_days capped and later days zeroed in numpy."""
    cohorts = [c for i, c in enumerate(serialized_cohorts(data_dir, split)) if keep_cohort(i)]
    users = user_arrays(parse_batch(data_dir, cohorts))
    s = np.minimum(users[gs.OBS_DAYS], obs_days)
    seen = np.arange(users[gs.SEQ_VALUES].shape[-1])[None, None, :] < s[:, None, None]
    users[gs.SEQ_VALUES] = users[gs.SEQ_VALUES] * seen
    users[gs.OBS_DAYS] = s
    return users


@pytest.mark.parametrize("part, keep", [
    ("fit", lambda i: i % training.VALIDATION_EVERY != training.VALIDATION_EVERY - 1),
    ("validation", lambda i: i % training.VALIDATION_EVERY == training.VALIDATION_EVERY - 1),
])
def test_rows_equal_an_independent_read_of_the_cohorts(tiny_data, part, keep):
    rows = tabular.load_rows(tiny_data, "train", part=part, obs_days=3)
    reference = _reference(tiny_data, "train", keep, obs_days=3)
    assert list(rows[gs.USER_ID]) == [u.decode() for u in reference[gs.USER_ID]]
    for name in ([gs.CATEGORICAL_IDS, gs.STAT_VALUES, gs.SEQ_VALUES, gs.OBS_DAYS]
                 + gs.label_feature_names(rows.horizons)):
        np.testing.assert_array_equal(rows[name], reference[name], err_msg=name)
    value = reference[gs.SEQ_VALUES][:, rows.value_metric_index, :].sum(-1)
    np.testing.assert_allclose(rows["observed_value"], value, rtol=1e-6)
    assert rows[gs.SEQ_VALUES][:, :, 3:].sum() == 0


def test_fit_and_validation_parts_partition_the_train_split(tiny_data, fit_rows, valid_rows):
    everyone = tabular.load_rows(tiny_data, "train", obs_days=OBS_DAYS)
    assert len(valid_rows) > 0
    assert sorted(everyone[gs.USER_ID]) == sorted(list(fit_rows[gs.USER_ID])
                                                  + list(valid_rows[gs.USER_ID]))


def test_observed_summaries_of_hand_made_sequences():
    # 3 users, 2 metrics (value = metric 1), W = 5.
    seq = np.zeros([3, 2, 5], np.float32)
    seq[0, 0, [0, 2]] = 1.0          # active days 0 and 2 (metric 0 only)
    seq[0, 1, 4] = 9.0               # day 4 is past s = 4: not observed
    seq[1, 1, [0, 1]] = [2.5, 4.0]   # value 6.5 on days 0 and 1
    obs_days = np.array([4, 2, 3])   # user 2: nothing active
    out = tabular.observed_summaries(seq, obs_days, value_metric_index=1)
    np.testing.assert_allclose(out["observed_value"], [0.0, 6.5, 0.0])
    np.testing.assert_array_equal(out["observed_active_days"], [2, 2, 0])
    np.testing.assert_array_equal(out["last_observed_active_day"], [2, 1, -1])
    np.testing.assert_array_equal(out["recency_days"], [1, 0, 3])


def test_feature_matrix_columns(fit_rows):
    x, names = tabular.feature_matrix(fit_rows)
    assert x.shape == (len(fit_rows), len(names))
    num_metrics = fit_rows[gs.SEQ_VALUES].shape[1]
    column = names.index(f"seq_{num_metrics - 1}_day_{OBS_DAYS - 1}")
    np.testing.assert_array_equal(x[:, column], fit_rows[gs.SEQ_VALUES][:, -1, OBS_DAYS - 1])
    np.testing.assert_array_equal(x[:, names.index("categorical_0")],
                                  fit_rows[gs.CATEGORICAL_IDS][:, 0])
    np.testing.assert_array_equal(x[:, names.index("observed_value")], fit_rows["observed_value"])


def test_future_and_activity_targets(fit_rows):
    task = "ltv_30"
    np.testing.assert_allclose(fit_rows.future(task), np.maximum(
        fit_rows[task] - fit_rows["observed_value"], 0))
    np.testing.assert_array_equal(fit_rows.active_after_obs(30),
                                  fit_rows["last_active_day_30"] >= fit_rows[gs.OBS_DAYS])


def test_obs_days_outside_the_window_is_rejected(tiny_data):
    with pytest.raises(ValueError, match="obs_days"):
        tabular.load_rows(tiny_data, "train", obs_days=8)


def test_evaluation_rows_are_scored_like_collect(tiny_data, fit_rows):
    from htgnn_tf import evaluate
    from htgnn_tf.config import ModelConfig

    config = ModelConfig.from_artifacts(training.read_artifacts(tiny_data))
    ds = training.parsed(training.cohort_dataset(tiny_data, "train", "fit"),
                         training.read_schema(tiny_data), 8, obs_days=OBS_DAYS)
    collected = evaluate.collect(None, ds, config)
    predictions = {name: fit_rows["observed_value"] * 2 for name in ["ltv_30"]}
    rows = tabular.evaluation_rows(fit_rows, predictions)
    for name, value in collected.items():
        np.testing.assert_allclose(rows[name], value, rtol=1e-6, err_msg=name)
    np.testing.assert_array_equal(rows["pred_ltv_30"], fit_rows["observed_value"] * 2)
    np.testing.assert_array_equal(rows["pred_obs_days_used"], fit_rows[gs.OBS_DAYS])
