"""Checks shared by the baseline tests: the common prediction contract, and "beats a
constant predictor" on the train rows, computed with numpy / scipy."""
import numpy as np
from scipy import stats

from htgnn_tf.data import graph_schema as gs

# Tasks with at least this many labelled tiny-dataset train users are scored (the
# 365-day labels are censored for most users of the tiny log).
MIN_LABELLED = 100
# Observed days s of the baseline tests.
OBS_DAYS = 7


def check_prediction_contract(predictions: dict, rows) -> None:
    """Every task and probability, one finite non-negative value per user; predictions
    never below what was observed; probabilities in [0, 1]."""
    expected = set(rows.task_names())
    for h in rows.horizons:
        expected |= {f"p_active_after_obs_{h}", f"p_value_after_obs_{h}"}
    assert set(predictions) == expected
    for name, values in predictions.items():
        assert values.shape == (len(rows),), name
        assert np.all(np.isfinite(values)), name
        assert np.all(values >= 0), name
    for task in rows.task_names():
        assert np.all(predictions[task] >= rows.observed(task) - 1e-4), task
    for h in rows.horizons:
        assert np.all(predictions[f"p_active_after_obs_{h}"] <= 1.0)


def scored_tasks(rows) -> list[str]:
    return [t for t in rows.task_names() if rows.label_mask(t).sum() >= MIN_LABELLED]


def mse_vs_constant(predictions: dict, rows) -> dict[str, tuple[float, float]]:
    """task -> (MSE of the predictions, MSE of the best constant = label variance) over
    the labelled users."""
    result = {}
    for task in scored_tasks(rows):
        known = rows.label_mask(task)
        y = rows[task][known].astype(np.float64)
        result[task] = (float(np.mean((predictions[task][known] - y) ** 2)), float(np.var(y)))
    return result


def activity_auc(predictions: dict, rows, h: int) -> float:
    """AUC of p_active_after_obs_h on the labelled users (Mann-Whitney U / n1 n0)."""
    known = rows[gs.label_mask_name(h)] > 0
    labels = rows.active_after_obs(h)[known]
    scores = predictions[f"p_active_after_obs_{h}"][known]
    u = stats.mannwhitneyu(scores[labels == 1], scores[labels == 0]).statistic
    return float(u / ((labels == 1).sum() * (labels == 0).sum()))


def check_beats_constant(predictions: dict, rows) -> None:
    """Lower MSE than the best constant on every scored task and AUC > 0.5."""
    for task, (mse, constant) in mse_vs_constant(predictions, rows).items():
        assert mse < constant, (task, mse, constant)
    for h in rows.horizons:
        if rows[gs.label_mask_name(h)].sum() >= MIN_LABELLED:
            assert activity_auc(predictions, rows, h) > 0.5


def normalized_gini(y: np.ndarray, p: np.ndarray) -> float:
    """Gini of the cumulative-gain curve ordered by p over that ordered by y (ties in p
    broken by the label, worst case first)."""
    def gini(order):
        gains = np.cumsum(y[order]) / y.sum()
        return float(np.mean(gains) - 0.5 * (1 + 1 / len(y)))  # area above the diagonal
    by_prediction = np.lexsort((y, -p))
    return gini(by_prediction) / gini(np.argsort(-y, kind="stable"))


def check_ranks_better_than_constant(predictions: dict, rows) -> None:
    """Positive normalized Gini on every scored task (a constant scores 0) and AUC > 0.5."""
    for task in scored_tasks(rows):
        known = rows.label_mask(task)
        assert normalized_gini(rows[task][known].astype(np.float64),
                               predictions[task][known]) > 0, task
    for h in rows.horizons:
        if rows[gs.label_mask_name(h)].sum() >= MIN_LABELLED:
            assert activity_auc(predictions, rows, h) > 0.5
