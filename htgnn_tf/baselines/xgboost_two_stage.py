"""XGBoost two-stage baseline (HT-GNN paper, Sec. V-B, Table I "XGBoost").

The paper's XGBoost row is a two-stage gradient-boosted-trees model: a classifier for
"will the user be active again" and a regressor for how much. Here, per horizon ``h``:

* stage 1: a boosted classifier (``binary:logistic``) for ``any activity after the s observed days within h``
  (``last_active_day_h >= s``, the same target as HT-GNN's classification towers),
  trained on the labelled train users;
* stage 2, per task ``lt_h`` / ``ltv_h``: a boosted regressor (squared error) for the
  future part of the label, ``label - observed``, trained on the labelled train users
  who are active after ``s``;
* prediction: ``observed + p * max(E[future | active], 0)``.

Features: :func:`tabular.feature_matrix` (categorical ids as numbers, statistical
values, the observed daily sequences, observed summaries). Departures / decisions: the
paper gives no hyper-parameters; we use depth 4, learning rate 0.05, up to 300 rounds
with early stopping (20 rounds) on the validation part of train when it has labelled
users of both classes (positives for the regressor), else all rounds. Seeded
(``seed``), single-threaded histogram trees, so results are deterministic. xgboost's
native API (``xgb.train``) is used: its scikit-learn wrappers need scikit-learn.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from htgnn_tf.baselines import tabular
from htgnn_tf.data import graph_schema as gs

PARAMS = dict(max_depth=4, learning_rate=0.05, subsample=0.9, colsample_bytree=0.9,
              tree_method="hist", nthread=1)
NUM_ROUNDS = 300
EARLY_STOPPING_ROUNDS = 20


def _import_xgboost():
    try:
        import xgboost
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError("the XGBoost baseline needs the `xgboost` package "
                          "(pip install xgboost-cpu)") from e
    return xgboost


@dataclasses.dataclass
class XGBoostTwoStage:
    """Fitted stages: classifiers per horizon, regressors per task (None = constant)."""

    classifiers: dict[int, object]
    regressors: dict[str, object]
    constants: dict[str, float]


def _fit_one(xgb, objective: str, seed: int, x, y, x_valid, y_valid, usable_valid: bool):
    """A booster (xgboost's native API: its scikit-learn wrappers need scikit-learn,
    which is not part of the stack), early-stopped on the validation rows if usable."""
    params = dict(PARAMS, objective=objective, seed=seed)
    train = xgb.DMatrix(x, label=y)
    if not usable_valid:
        return xgb.train(params, train, num_boost_round=NUM_ROUNDS)
    return xgb.train(params, train, num_boost_round=NUM_ROUNDS,
                     evals=[(xgb.DMatrix(x_valid, label=y_valid), "validation")],
                     early_stopping_rounds=EARLY_STOPPING_ROUNDS, verbose_eval=False)


def _predict_one(xgb, booster, x) -> np.ndarray:
    """Predictions of the best iteration (all rounds without early stopping)."""
    best = getattr(booster, "best_iteration", None)
    rounds = (0, best + 1) if best is not None else (0, 0)
    return booster.predict(xgb.DMatrix(x), iteration_range=rounds)


def fit(train_rows: tabular.UserRows, valid_rows: tabular.UserRows,
        seed: int = 17) -> XGBoostTwoStage:
    """Fits both stages on `train_rows`, early-stopping on `valid_rows`."""
    xgb = _import_xgboost()
    x, _ = tabular.feature_matrix(train_rows)
    x_valid, _ = tabular.feature_matrix(valid_rows)
    classifiers, regressors, constants = {}, {}, {}
    for h in train_rows.horizons:
        known = train_rows[gs.label_mask_name(h)] > 0
        known_valid = valid_rows[gs.label_mask_name(h)] > 0
        y = train_rows.active_after_obs(h)[known]
        y_valid = valid_rows.active_after_obs(h)[known_valid]
        constants[f"p_{h}"] = float(y.mean()) if len(y) else 0.0
        if len(np.unique(y)) == 2:
            classifiers[h] = _fit_one(
                xgb, "binary:logistic", seed, x[known], y,
                x_valid[known_valid], y_valid, len(np.unique(y_valid)) == 2)
        for task in (gs.lt_name(h), gs.ltv_name(h)):
            positive = known & (train_rows.active_after_obs(h) > 0)
            positive_valid = known_valid & (valid_rows.active_after_obs(h) > 0)
            future = train_rows.future(task)[positive]
            constants[task] = float(future.mean()) if len(future) else 0.0
            if len(future) >= 2:
                regressors[task] = _fit_one(
                    xgb, "reg:squarederror", seed, x[positive], future,
                    x_valid[positive_valid], valid_rows.future(task)[positive_valid],
                    bool(positive_valid.any()))
    return XGBoostTwoStage(classifiers, regressors, constants)


def predict(model: XGBoostTwoStage, rows: tabular.UserRows) -> dict[str, np.ndarray]:
    """Per-user predictions: every task, ``p_active_after_obs_{h}`` and
    ``p_value_after_obs_{h}`` (the same stage-1 probability)."""
    xgb = _import_xgboost()
    x, _ = tabular.feature_matrix(rows)
    out = {}
    for h in rows.horizons:
        if h in model.classifiers:
            p = _predict_one(xgb, model.classifiers[h], x)  # [N]
        else:
            p = np.full(len(rows), model.constants[f"p_{h}"])
        out[f"p_active_after_obs_{h}"] = out[f"p_value_after_obs_{h}"] = p.astype(np.float32)
        for task in (gs.lt_name(h), gs.ltv_name(h)):
            if task in model.regressors:
                future = np.maximum(_predict_one(xgb, model.regressors[task], x), 0.0)  # [N]
            else:
                future = np.full(len(rows), model.constants[task])
            out[task] = (rows.observed(task) + p * future).astype(np.float32)
    return out
