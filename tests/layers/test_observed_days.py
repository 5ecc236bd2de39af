"""Tests for htgnn_tf.layers.observed_days (random-length masks, Sec. IV-C)."""
import numpy as np
import pytest
import scipy.stats
import tensorflow as tf

from htgnn_tf.layers.observed_days import RandomObservedDays


@pytest.mark.parametrize("training", [False, None], ids=["training_false", "training_none"])
def test_inference_returns_obs_days_unchanged(training):
    obs_days = np.array([1, 7, 3, 30], np.int64)
    s = RandomObservedDays(seed=0)(tf.constant(obs_days), training=training)
    assert s.dtype == tf.int64
    np.testing.assert_array_equal(s.numpy(), obs_days)


def test_training_draws_are_uniform_on_one_to_obs_days():
    num_users = 20000
    obs_days = np.tile(np.array([1, 4, 7], np.int64), num_users)
    tf.random.set_seed(11)
    s = RandomObservedDays(seed=5)(tf.constant(obs_days), training=True).numpy()
    assert s.min() >= 1 and np.all(s <= obs_days)
    np.testing.assert_array_equal(s[obs_days == 1], 1)
    for days in (4, 7):
        counts = np.bincount(s[obs_days == days], minlength=days + 1)[1:]
        assert counts.sum() == num_users
        # Uniform on {1..days}: chi-square goodness of fit against equal frequencies.
        assert scipy.stats.chisquare(counts).pvalue > 1e-3, counts
    # Independent draws per user, not one draw broadcast to the batch.
    assert len(np.unique(s[obs_days == 7])) == 7


def test_draws_are_reproducible_with_seeds_and_change_between_steps():
    obs_days = tf.constant(np.full(200, 30, np.int64))
    tf.random.set_seed(3)
    first = RandomObservedDays(seed=9)(obs_days, training=True).numpy()
    tf.random.set_seed(3)
    layer = RandomObservedDays(seed=9)
    again = layer(obs_days, training=True).numpy()
    next_step = layer(obs_days, training=True).numpy()
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(again, next_step)


def test_config_round_trip_and_validation():
    layer = RandomObservedDays(seed=4, name="observed_days")
    clone = RandomObservedDays.from_config(layer.get_config())
    assert clone.seed == 4 and clone.name == "observed_days"
    with pytest.raises(ValueError, match="'4'"):
        RandomObservedDays(seed="4")
