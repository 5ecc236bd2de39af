"""Per-user numpy rows read from the dataset job's TFRecords, shared by every baseline.

Every baseline reads the SAME cohort TFRecords as HT-GNN, the same split and the same
observed days ``s``: :func:`load_rows` parses them with ``training.parsed(...,
obs_days=s)`` (so ``obs_days`` is capped at ``s`` and later days are cleared, exactly
as ``training.cap_obs_days`` does for HT-GNN's evaluation) and flattens the cohort
graphs into one row per user, in file order (deterministic; the same order as
``evaluate.collect``). The ``part`` argument carves fit / validation from train as
``training.cohort_dataset`` does.

Row arrays (``UserRows.arrays``), one entry per user:

* the user features of the graph schema (``user_id`` as ``str``, ``categorical_ids``
  ``[N, F]``, ``stat_values`` ``[N, S]``, ``seq_values`` ``[N, T, W]`` with days
  ``>= s`` zeroed, ``obs_days`` ``[N]`` = the observed days used, ``min(obs_days, s)``);
* the labels: ``lt_{h}``, ``ltv_{h}``, ``label_mask_{h}``, ``last_active_day_{h}``,
  ``lifetime_days``;
* summary statistics of the observed days, named as in ``evaluate.collect``:
  ``observed_value`` (value metric summed over ``[0, s)``), ``observed_active_days``
  (days with any positive metric), ``last_observed_active_day`` (-1 if none), and
  ``recency_days`` (``obs_days - 1 - last_observed_active_day``).
"""
from __future__ import annotations

import dataclasses

import numpy as np

import htgnn_tf  # noqa: F401  (Keras 2 switch before TensorFlow loads)
from htgnn_tf import evaluate, training
from htgnn_tf.data import graph_schema as gs


@dataclasses.dataclass
class UserRows:
    """One row per user of (a part of) a split at ``obs_days`` observed days.

    ``data_dir``, ``split`` and ``part`` say where the rows come from, so a deep
    baseline can read the same users as GraphTensors in the same order.
    """

    arrays: dict[str, np.ndarray]
    data_dir: str
    split: str
    part: str
    obs_days: int
    horizons: list[int]
    value_metric_index: int

    def __len__(self) -> int:
        return len(self.arrays[gs.USER_ID])

    def __getitem__(self, name: str) -> np.ndarray:
        return self.arrays[name]

    def task_names(self) -> list[str]:
        return [gs.lt_name(h) for h in self.horizons] + [gs.ltv_name(h) for h in self.horizons]

    def observed(self, task: str) -> np.ndarray:
        """What the task's label already counts in ``[0, s)``: active days or value."""
        return self.arrays["observed_active_days" if task.startswith("lt_") else "observed_value"]

    def future(self, task: str) -> np.ndarray:
        """The part of the label after the observed days, ``max(label - observed, 0)``."""
        return np.maximum(self.arrays[task] - self.observed(task), 0.0)

    def active_after_obs(self, h: int) -> np.ndarray:
        """1.0 where the user is active after the observed days within ``h``."""
        return (self.arrays[gs.last_active_name(h)] >= self.arrays[gs.OBS_DAYS]).astype(np.float32)

    def label_mask(self, task: str) -> np.ndarray:
        return self.arrays[gs.label_mask_name(int(task.split("_")[-1]))] > 0


def observed_summaries(seq_values: np.ndarray, obs_days: np.ndarray,
                       value_metric_index: int) -> dict[str, np.ndarray]:
    """Summary statistics of the observed days (see module docstring).

    ``seq_values``: ``[N, T, W]`` daily metric totals; ``obs_days``: ``[N]``.
    """
    days = seq_values.shape[-1]
    seen = np.arange(days)[None, :] < obs_days[:, None]  # [N, W]
    active = (seq_values > 0).any(axis=1) & seen  # [N, W]
    last = np.where(active.any(axis=1), days - 1 - np.argmax(active[:, ::-1], axis=1), -1)
    totals = evaluate.observed_totals(seq_values, obs_days, value_metric_index)
    return {
        "observed_value": totals["observed_value"],  # [N]
        "observed_active_days": totals["observed_active_days"].astype(np.float32),  # [N]
        "last_observed_active_day": last.astype(np.int64),  # [N]
        "recency_days": (obs_days - 1 - last).astype(np.float32),  # [N]
    }


def load_rows(data_dir: str, split: str, *, part: str = "all", obs_days: int = 7,
              batch_cohorts: int = 8) -> UserRows:
    """The users of `split` (`part` = all | fit | validation) at `obs_days` days."""
    artifacts = training.read_artifacts(data_dir)
    spec = artifacts["spec"]
    if not 1 <= obs_days <= spec["observation_days"]:
        raise ValueError(f"obs_days must be in 1..{spec['observation_days']} (the observation "
                         f"window W), got {obs_days!r}")
    horizons = list(spec["horizons"])
    value_metric_index = spec["metrics"].index(spec["value_metric"])
    ds = training.parsed(training.cohort_dataset(data_dir, split, part),
                         training.read_schema(data_dir), batch_cohorts, obs_days=obs_days)
    names = [gs.USER_ID, gs.CATEGORICAL_IDS, gs.STAT_VALUES, gs.SEQ_VALUES, gs.OBS_DAYS]
    names += gs.label_feature_names(horizons)
    chunks: dict[str, list] = {name: [] for name in names}
    for graph in ds:
        users = graph.merge_batch_to_components().node_sets[gs.USER]
        for name in names:
            chunks[name].append(users[name].numpy())
    arrays = {name: np.concatenate(values) if values else np.zeros([0])
              for name, values in chunks.items()}
    arrays[gs.USER_ID] = np.array([u.decode() for u in arrays[gs.USER_ID]], dtype=object)
    arrays.update(observed_summaries(arrays[gs.SEQ_VALUES], arrays[gs.OBS_DAYS],
                                     value_metric_index))
    return UserRows(arrays=arrays, data_dir=data_dir, split=split, part=part,
                    obs_days=obs_days, horizons=horizons,
                    value_metric_index=value_metric_index)


def feature_matrix(rows: UserRows) -> tuple[np.ndarray, list[str]]:
    """``[N, D]`` float32 tabular features and their names: categorical ids (as numbers,
    for trees), statistical values, the daily sequences of the observed days
    (``seq_<t>_day_<d>`` for d < s), the observed summaries and ``obs_days``."""
    a = rows.arrays
    n = len(rows)
    seq = a[gs.SEQ_VALUES][:, :, :rows.obs_days]  # [N, T, s]
    columns = [a[gs.CATEGORICAL_IDS].reshape(n, -1), a[gs.STAT_VALUES].reshape(n, -1),
               seq.reshape(n, -1)]
    names = ([f"categorical_{i}" for i in range(columns[0].shape[1])]
             + [f"stat_{i}" for i in range(columns[1].shape[1])]
             + [f"seq_{t}_day_{d}" for t in range(seq.shape[1]) for d in range(seq.shape[2])])
    summaries = ["observed_value", "observed_active_days", "last_observed_active_day",
                 "recency_days", gs.OBS_DAYS]
    columns.append(np.stack([a[name] for name in summaries], axis=1).reshape(n, -1))
    names += summaries
    return np.concatenate([c.astype(np.float32) for c in columns], axis=1), names


def evaluation_rows(rows: UserRows, predictions: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The per-user dict that ``evaluate.slices`` scores (what ``evaluate.collect``
    returns for HT-GNN): labels, observed totals, ``obs_days``, ``pred_<name>`` for every
    prediction and ``pred_obs_days_used`` (the observed days the baseline saw)."""
    names = gs.label_feature_names(rows.horizons) + [
        "observed_value", "observed_active_days", gs.OBS_DAYS]
    result = {name: rows[name] for name in names}
    result.update({f"pred_{name}": value for name, value in predictions.items()})
    result["pred_obs_days_used"] = rows[gs.OBS_DAYS]
    return result
