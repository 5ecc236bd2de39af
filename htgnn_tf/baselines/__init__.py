"""Non-graph LTV baselines, all on the same TFRecords, split and observed days as HT-GNN.

Every baseline module exposes the same two functions, so a benchmark runner can loop
over :data:`BASELINES`:

* ``fit(train_rows, valid_rows, seed) -> model``: fits on ``train_rows`` (the ``fit``
  part of the train split) and selects / early-stops on ``valid_rows`` (the
  ``validation`` part, carved as ``training.cohort_dataset`` does); the test split is
  never used;
* ``predict(model, rows) -> dict[str, np.ndarray]``: one float32 value per user of
  ``rows``, in row order, for every task ``lt_{h}`` / ``ltv_{h}`` (active days / value in
  ``[0, h)``, observed days included) and ``p_active_after_obs_{h}`` /
  ``p_value_after_obs_{h}`` (probability of activity after the ``s`` observed days within
  ``h``), the names of HT-GNN's outputs. ``tabular.evaluation_rows(rows, predictions)``
  turns them into the dict ``evaluate.slices`` scores (as ``evaluate.collect`` does for
  HT-GNN).

Rows come from :func:`tabular.load_rows` (``data_dir``, split, part, ``obs_days`` = s);
:func:`run` does the whole loop for one baseline and returns its test predictions (the
``Runner`` contract of ``htgnn_tf.benchmark``)::

    train = tabular.load_rows(data, "train", part="fit", obs_days=7)
    valid = tabular.load_rows(data, "train", part="validation", obs_days=7)
    test = tabular.load_rows(data, "test", obs_days=7)
    for name, module in BASELINES.items():
        predictions = module.predict(module.fit(train, valid, seed=0), test)
        scored = evaluate.slices(tabular.evaluation_rows(test, predictions),
                                 evaluate.train_ratios(tabular.evaluation_rows(train, {}),
                                                       train.horizons), train.horizons, 7)

Deep baselines (ZILN, MDME, expLTV) read the GraphTensors behind the rows and accept
extra keyword arguments of ``deep.fit`` (``train_config``, ``model_overrides``,
``head_kwargs``).
"""
from __future__ import annotations

import numpy as np

from htgnn_tf.baselines import btyd, deep, expltv, mdme, tabular, xgboost_two_stage, ziln

BASELINES = {
    "btyd": btyd,
    "xgboost": xgboost_two_stage,
    "ziln": ziln,
    "mdme": mdme,
    "expltv": expltv,
}


def run(name: str, data_dir: str, *, seed: int, obs_days: int = 7,
        epochs: int | None = None) -> dict[str, np.ndarray]:
    """Fits baseline `name` on the fit part of train (validation part for early stopping
    / selection) at `obs_days` observed days and predicts the test split: ``{output
    name: [test users]}`` in file order. `epochs` caps the deep baselines' training."""
    if name not in BASELINES:
        raise ValueError(f"baseline must be one of {sorted(BASELINES)}, got {name!r}")
    module = BASELINES[name]
    train = tabular.load_rows(data_dir, "train", part="fit", obs_days=obs_days)
    valid = tabular.load_rows(data_dir, "train", part="validation", obs_days=obs_days)
    kwargs = {}
    if name in deep.HEADS and epochs is not None:
        from htgnn_tf.config import TrainConfig

        kwargs["train_config"] = TrainConfig(epochs=epochs)
    model = module.fit(train, valid, seed, **kwargs)
    return module.predict(model, tabular.load_rows(data_dir, "test", obs_days=obs_days))


__all__ = ["BASELINES", "btyd", "deep", "expltv", "mdme", "run", "tabular",
           "xgboost_two_stage", "ziln"]
