"""baselines/__init__.py: the common API and `run`, the benchmark's runner contract."""
import numpy as np
import pytest

from htgnn_tf import baselines
from htgnn_tf.baselines import tabular, xgboost_two_stage
from tests.baselines import checks
from tests.baselines.checks import OBS_DAYS


def test_every_baseline_exposes_fit_and_predict():
    for module in baselines.BASELINES.values():
        assert callable(module.fit) and callable(module.predict)


def test_run_fits_on_train_and_predicts_the_test_split(tiny_data, fit_rows, valid_rows):
    predictions = baselines.run("xgboost", tiny_data, seed=0, obs_days=OBS_DAYS)
    test = tabular.load_rows(tiny_data, "test", obs_days=OBS_DAYS)
    expected = xgboost_two_stage.predict(xgboost_two_stage.fit(fit_rows, valid_rows, 0), test)
    assert set(predictions) == set(expected)
    for name, values in expected.items():
        np.testing.assert_array_equal(predictions[name], values)
    checks.check_prediction_contract(predictions, test)


def test_run_rejects_unknown_baselines(tiny_data):
    with pytest.raises(ValueError, match="'lstm'"):
        baselines.run("lstm", tiny_data, seed=0)
