"""Fixtures of the baseline tests: the tiny dataset's rows at s = 7 observed days."""
import pytest

from htgnn_tf.baselines import tabular
from tests.helpers import tiny_data  # noqa: F401  (fixture)

from tests.baselines.checks import OBS_DAYS


@pytest.fixture(scope="session")
def fit_rows(tiny_data):
    return tabular.load_rows(tiny_data, "train", part="fit", obs_days=OBS_DAYS)


@pytest.fixture(scope="session")
def valid_rows(tiny_data):
    return tabular.load_rows(tiny_data, "train", part="validation", obs_days=OBS_DAYS)
