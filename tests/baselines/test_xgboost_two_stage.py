"""XGBoost two-stage: the prediction formula from the fitted boosters, determinism under
a seed, and beating a constant predictor on the tiny dataset."""
import numpy as np
import pytest
import xgboost

from htgnn_tf.baselines import tabular, xgboost_two_stage
from tests.baselines import checks


@pytest.fixture(scope="module")
def fitted(fit_rows, valid_rows):
    return xgboost_two_stage.fit(fit_rows, valid_rows, seed=0)


def test_prediction_is_observed_plus_p_times_future(fitted, fit_rows):
    predictions = xgboost_two_stage.predict(fitted, fit_rows)
    x = xgboost.DMatrix(tabular.feature_matrix(fit_rows)[0])
    for h in fit_rows.horizons:
        booster = fitted.classifiers[h]
        margin = booster.predict(x, output_margin=True,
                                 iteration_range=(0, booster.best_iteration + 1))
        p = 1.0 / (1.0 + np.exp(-margin))
        np.testing.assert_allclose(predictions[f"p_active_after_obs_{h}"], p, rtol=1e-5)
        for task in (f"lt_{h}", f"ltv_{h}"):
            regressor = fitted.regressors[task]
            future = regressor.predict(x, iteration_range=(0, regressor.best_iteration + 1))
            np.testing.assert_allclose(
                predictions[task], fit_rows.observed(task) + p * np.maximum(future, 0),
                rtol=1e-5, atol=1e-4)


def test_regressors_are_fitted_on_active_users_only(fitted, fit_rows):
    task = "ltv_30"
    active = fit_rows.label_mask(task) & (fit_rows.active_after_obs(30) > 0)
    assert fitted.constants[task] == pytest.approx(fit_rows.future(task)[active].mean(), rel=1e-6)


def test_fit_is_deterministic_under_a_seed(fitted, fit_rows, valid_rows):
    again = xgboost_two_stage.predict(xgboost_two_stage.fit(fit_rows, valid_rows, seed=0),
                                      fit_rows)
    first = xgboost_two_stage.predict(fitted, fit_rows)
    for name in first:
        np.testing.assert_array_equal(first[name], again[name])


def test_fit_predict_on_the_tiny_dataset(fitted, fit_rows):
    predictions = xgboost_two_stage.predict(fitted, fit_rows)
    checks.check_prediction_contract(predictions, fit_rows)
    checks.check_beats_constant(predictions, fit_rows)
