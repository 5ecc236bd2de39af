"""Evaluation report (paper Sec. V): metrics.json, report.md and PNG plots.

``write_report(out_dir, results, ...)`` evaluates every slice with
:func:`htgnn_tf.metrics.evaluate_slice` and writes:

* ``metrics.json``: every number of the report (see "metrics.json" below);
* ``report.md``: per population, one table per task with a model row and a reference
  row per horizon at the main observed-days value s (NRMSE, NMAE, normalized Gini with its
  bootstrap interval, AUC), the notes of degenerate slices, decile tables, a
  metric-vs-observed-days table when slices for several s are given, and a section
  naming the derived categorical features when the caller lists them;
* PNG plots (matplotlib, Agg canvas, no display needed), per population and task with one
  panel per horizon: ``gain_<population>_<task>.png`` (gain / Lorenz curve of the model,
  the reference, the perfect order and random), ``deciles_<population>_<task>.png``
  (mean predicted vs mean actual per predicted decile) and, when several s are given,
  ``obs_days_<population>_<task>.png`` (NRMSE, NMAE, Gini, AUC against s, one line per
  horizon).

``results`` is a list of plain dicts, one per slice (population x task x horizon x s)::

    results = [
        {
            "task": "ltv",             # "lt" or "ltv" (any short name; shown upper-case)
            "horizon": 30,             # days
            "obs_days": 7,             # observed days s the predictions were made with
            "population": "test",      # optional, default "test"; e.g. "lifetime 30-180 d"
            "y_true": [0.0, 12.5, ...],        # true LT_h / LTV_h per user
            "y_pred": [0.4, 10.1, ...],        # model prediction per user
            "label_mask": [1, 1, 0, ...],      # optional; 0 = censored, user left out
            "reference": [0.0, 11.0, ...],     # optional; e.g. observed value x train ratio
            "active_true": [0, 1, ...],        # optional; classification target (0/1)
            "active_prob": [0.1, 0.8, ...],    # optional; classification tower output
        },
        ...
    ]
    write_report("runs/demo/eval", results, obs_days=7,
                 reference_name="observed value x train ratio",
                 derived_features={"acquisition_month": "month of the first purchase"})

The caller computes the reference predictions (for instance the value observed in the
first s days times the train-split ratio mean(LTV_h) / mean(value in s days)); the report
only evaluates them like the model. Slices whose ``obs_days`` differs from ``obs_days``
only feed the metric-vs-observed-days table and plot (no bootstrap there).

metrics.json::

    {"title": ..., "model_name": ..., "reference_name": ..., "obs_days": 7,
     "num_bootstrap": 200, "alpha": 0.05, "seed": 0,
     "derived_categorical_features": {name: description},
     "slices": [{"population", "task", "horizon", "obs_days", "num_censored",
                 "model": SliceMetrics.to_dict(), "reference": SliceMetrics.to_dict() | null}],
     "plots": [file names]}

An undefined metric is ``{"value": null, "note": "all labels zero"}``; the file never
contains NaN.
"""
from __future__ import annotations

import json
import pathlib
import re
from typing import Mapping, Optional, Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from htgnn_tf import metrics

_REQUIRED_KEYS = ("task", "horizon", "obs_days", "y_true", "y_pred")
_OPTIONAL_KEYS = ("population", "label_mask", "reference", "active_true", "active_prob")
_ARRAY_KEYS = ("y_true", "y_pred", "reference", "active_true", "active_prob")
_CURVE_METRICS = ("nrmse", "nmae", "gini", "auc")
_METRIC_TITLES = {"nrmse": "NRMSE", "nmae": "NMAE", "gini": "normalized Gini", "auc": "AUC"}
_MAX_CURVE_POINTS = 1000


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", str(text).lower()).strip("-") or "all"


def _prepare(raw: Mapping) -> dict:
    """Validates one slice dict and drops its censored users."""
    missing = [key for key in _REQUIRED_KEYS if key not in raw]
    unknown = [key for key in raw if key not in _REQUIRED_KEYS + _OPTIONAL_KEYS]
    if missing or unknown:
        raise ValueError(f"slice {dict((k, raw[k]) for k in ('task', 'horizon') if k in raw)}"
                         f": missing keys {missing}, unknown keys {unknown}")
    for key in ("horizon", "obs_days"):
        value = raw[key]
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{key} must be a positive int, got {raw[key]!r}")
    item = {"task": str(raw["task"]), "horizon": int(raw["horizon"]),
            "obs_days": int(raw["obs_days"]), "population": str(raw.get("population", "test"))}
    arrays = {key: np.asarray(raw[key], np.float64).reshape(-1)
              for key in _ARRAY_KEYS if raw.get(key) is not None}
    size = arrays["y_true"].size
    for key, values in arrays.items():
        if values.size != size:
            raise ValueError(f"{key} has {values.size} values, y_true has {size} "
                             f"({item['task']} {item['horizon']} d)")
    known = np.ones(size, bool)
    if raw.get("label_mask") is not None:
        mask = np.asarray(raw["label_mask"], np.float64).reshape(-1)
        if mask.size != size:
            raise ValueError(f"label_mask has {mask.size} values, y_true has {size}")
        known = mask > 0
    item["num_censored"] = int(size - known.sum())
    item.update({key: values[known] for key, values in arrays.items()})
    return item


def _key(item: dict) -> tuple:
    return item["population"], item["task"], item["horizon"], item["obs_days"]


def _evaluate(item: dict, predictions: str, num_bootstrap: int, seed: int,
              alpha: float) -> metrics.SliceMetrics:
    with_auc = predictions == "y_pred" and "active_true" in item and "active_prob" in item
    return metrics.evaluate_slice(
        item["y_true"], item[predictions],
        active_true=item["active_true"] if with_auc else None,
        active_prob=item["active_prob"] if with_auc else None,
        num_bootstrap=num_bootstrap, seed=seed, alpha=alpha)


def _ordered(values) -> list:
    return list(dict.fromkeys(values))


def write_report(out_dir, results: Sequence[Mapping], *, obs_days: int = 7,
                 title: str = "HT-GNN evaluation", model_name: str = "HT-GNN",
                 reference_name: str = "observed value x train ratio",
                 derived_features: Optional[Mapping[str, str]] = None,
                 num_bootstrap: int = 200, seed: int = 0, alpha: float = 0.05) -> dict:
    """Evaluates ``results`` (see the module docstring) and writes the report files.

    Args:
      out_dir: directory to write into (created if needed).
      results: list of slice dicts.
      obs_days: the s of the main tables and plots (the paper's fixed s; default 7).
      title, model_name, reference_name: labels in the report.
      derived_features: categorical feature name -> how it was derived, for data without
        demographic fields (e.g. CDNOW); listed in a report section when given.
      num_bootstrap, seed, alpha: the Gini bootstrap interval of the main-s slices.

    Returns:
      {"metrics_json": Path, "report_md": Path, "plots": [Path, ...]}.
    """
    items = [_prepare(raw) for raw in results]
    if not items:
        raise ValueError("results is empty")
    keys = [_key(item) for item in items]
    duplicates = sorted({key for key in keys if keys.count(key) > 1})
    if duplicates:
        raise ValueError(f"duplicate slices (population, task, horizon, obs_days): {duplicates}")
    if not any(item["obs_days"] == obs_days for item in items):
        raise ValueError(f"no slice has obs_days={obs_days!r}; slices have "
                         f"{sorted({item['obs_days'] for item in items})}")
    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)

    evaluated = []
    for item in items:
        resamples = num_bootstrap if item["obs_days"] == obs_days else 0
        model = _evaluate(item, "y_pred", resamples, seed, alpha)
        reference = (_evaluate(item, "reference", resamples, seed, alpha)
                     if "reference" in item else None)
        evaluated.append((item, model, reference))

    plots = _write_plots(out_dir, evaluated, obs_days, model_name, reference_name)
    summary = {
        "title": title, "model_name": model_name, "reference_name": reference_name,
        "obs_days": obs_days, "num_bootstrap": num_bootstrap, "alpha": alpha, "seed": seed,
        "derived_categorical_features": dict(derived_features or {}),
        "slices": [{"population": item["population"], "task": item["task"],
                    "horizon": item["horizon"], "obs_days": item["obs_days"],
                    "num_censored": item["num_censored"], "model": model.to_dict(),
                    "reference": None if reference is None else reference.to_dict()}
                   for item, model, reference in evaluated],
        "plots": [path.name for path in plots],
    }
    metrics_path = out_dir / "metrics.json"
    metrics_path.write_text(json.dumps(summary, indent=2, allow_nan=False) + "\n")
    report_path = out_dir / "report.md"
    report_path.write_text(_markdown(summary, evaluated, plots, obs_days, model_name,
                                     reference_name, derived_features, num_bootstrap, alpha))
    return {"metrics_json": metrics_path, "report_md": report_path, "plots": plots}


def _ci_text(ci: Optional[metrics.BootstrapCI]) -> str:
    return "—" if ci is None else ci.format()


def _table_row(horizon, name, item, result: metrics.SliceMetrics) -> str:
    auc_text = "—" if result.auc is None else result.auc.format()
    cells = [f"{horizon}", name, f"{result.count}", f"{item['num_censored']}",
             result.label_mean.format(), result.pred_mean.format(), result.nrmse.format(),
             result.nmae.format(), result.gini.format(), _ci_text(result.gini_ci), auc_text]
    return "| " + " | ".join(cells) + " |"


def _notes(label: str, result: metrics.SliceMetrics, with_deciles: bool) -> list[str]:
    notes = []
    for name in ("nrmse", "nmae", "gini", "auc"):
        value = getattr(result, name)
        if value is not None and value.note:
            notes.append(f"- {label}: {_METRIC_TITLES[name]} {value.format()}")
    if result.gini_ci is not None and result.gini_ci.note:
        notes.append(f"- {label}: Gini interval {result.gini_ci.format()}")
    if with_deciles and result.deciles.note:
        notes.append(f"- {label}: deciles: {result.deciles.note}")
    return notes


def _markdown(summary, evaluated, plots, obs_days, model_name, reference_name,
              derived_features, num_bootstrap, alpha) -> str:
    confidence = f"{100 * (1 - alpha):g}%"
    lines = [f"# {summary['title']}", "",
             f"Model: **{model_name}**. Reference: **{reference_name}**. Main tables at "
             f"s = {obs_days} observed days.", "",
             "NRMSE = RMSE / mean(y); NMAE = MAE / mean(y); Gini = normalized Gini "
             "(Gini of the gain curve ordered by prediction / ordered by truth, signed); "
             f"Gini {confidence} CI = percentile bootstrap over users, {num_bootstrap} "
             "resamples; AUC of the classification tower (activity after the s observed "
             "days). Censored users (label not yet known) are left out and counted.", ""]
    main = [entry for entry in evaluated if entry[0]["obs_days"] == obs_days]
    header = ("| horizon (days) | predictor | users | censored | mean label | mean prediction"
              f" | NRMSE | NMAE | Gini | Gini {confidence} CI | AUC |")
    for population in _ordered(item["population"] for item, _, _ in main):
        lines += [f"## Population: {population} (s = {obs_days} days)", ""]
        in_population = [entry for entry in main if entry[0]["population"] == population]
        notes = []
        for task in _ordered(item["task"] for item, _, _ in in_population):
            lines += [f"### {task.upper()}", "", header, "|" + "---|" * 11]
            for item, model, reference in sorted(
                    (e for e in in_population if e[0]["task"] == task),
                    key=lambda e: e[0]["horizon"]):
                lines.append(_table_row(item["horizon"], model_name, item, model))
                notes += _notes(f"{task.upper()}{item['horizon']} {model_name}", model, True)
                if reference is not None:
                    lines.append(_table_row(item["horizon"], reference_name, item, reference))
                    notes += _notes(f"{task.upper()}{item['horizon']} {reference_name}",
                                    reference, False)
            lines.append("")
        if notes:
            lines += ["Notes:", ""] + notes + [""]
        lines += [f"### Decile calibration ({model_name})", "",
                  "| task | horizon (days) | decile | users | mean prediction | mean label |",
                  "|---|---|---|---|---|---|"]
        for item, model, _ in in_population:
            for row in model.deciles.rows:
                lines.append(f"| {item['task'].upper()} | {item['horizon']} | {row.decile} | "
                             f"{row.count} | {row.mean_predicted:.4f} | "
                             f"{row.mean_actual:.4f} |")
        lines.append("")

    curves = _curve_groups(evaluated)
    if curves:
        lines += [f"## Metrics vs observed days s ({model_name})", "",
                  "| population | task | horizon (days) | s (days) | users | NRMSE | NMAE "
                  "| Gini | AUC |", "|---|---|---|---|---|---|---|---|---|"]
        for (population, task, horizon), entries in curves.items():
            for item, model, _ in entries:
                auc_text = "—" if model.auc is None else model.auc.format()
                lines.append(f"| {population} | {task.upper()} | {horizon} | "
                             f"{item['obs_days']} | {model.count} | {model.nrmse.format()} | "
                             f"{model.nmae.format()} | {model.gini.format()} | {auc_text} |")
        lines.append("")

    if derived_features:
        lines += ["## Derived categorical features", "",
                  "The data has no demographic fields. These categorical features are "
                  "derived from the event log, not observed:", ""]
        lines += [f"- `{name}`: {description}" for name, description in derived_features.items()]
        lines.append("")

    if plots:
        lines += ["## Plots", ""] + [f"![{path.stem}]({path.name})" for path in plots] + [""]
    return "\n".join(lines)


def _curve_groups(evaluated) -> dict:
    """(population, task, horizon) -> entries sorted by s, for groups with several s."""
    groups: dict = {}
    for entry in evaluated:
        item = entry[0]
        groups.setdefault((item["population"], item["task"], item["horizon"]), []).append(entry)
    return {key: sorted(entries, key=lambda e: e[0]["obs_days"])
            for key, entries in groups.items() if len(entries) > 1}


def _curve_points(curve: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(share of users, share of value) from (0, 0), at most ~1000 points."""
    values = np.r_[0.0, curve]
    index = np.unique(np.linspace(0, curve.size, _MAX_CURVE_POINTS + 1).astype(np.int64))
    return index / curve.size, values[index]


def _save(fig: Figure, path: pathlib.Path) -> pathlib.Path:
    FigureCanvasAgg(fig)
    fig.savefig(path, dpi=100)
    return path


def _panels(count: int, title: str) -> tuple[Figure, list]:
    fig = Figure(figsize=(max(4.5 * count, 8.0), 4.0), layout="constrained")
    axes = fig.subplots(1, count, squeeze=False)[0]
    fig.suptitle(title)
    return fig, list(axes)


def _write_plots(out_dir, evaluated, obs_days, model_name, reference_name) -> list:
    plots = []
    main = [entry for entry in evaluated if entry[0]["obs_days"] == obs_days]
    for population in _ordered(item["population"] for item, _, _ in main):
        for task in _ordered(item["task"] for item, _, _ in main
                             if item["population"] == population):
            entries = sorted((e for e in main if e[0]["population"] == population
                              and e[0]["task"] == task), key=lambda e: e[0]["horizon"])
            stem = f"{_slug(population)}_{_slug(task)}"
            plots.append(_gain_plot(out_dir / f"gain_{stem}.png", entries, population, task,
                                    obs_days, model_name, reference_name))
            plots.append(_decile_plot(out_dir / f"deciles_{stem}.png", entries, population,
                                      task, obs_days, model_name))
    curves = _curve_groups(evaluated)
    for population in _ordered(key[0] for key in curves):
        for task in _ordered(key[1] for key in curves if key[0] == population):
            groups = {key[2]: entries for key, entries in curves.items()
                      if key[:2] == (population, task)}
            plots.append(_obs_days_plot(
                out_dir / f"obs_days_{_slug(population)}_{_slug(task)}.png", groups,
                population, task, model_name))
    return plots


def _gain_plot(path, entries, population, task, obs_days, model_name, reference_name):
    fig, axes = _panels(len(entries), f"Gain curve, {task.upper()}, {population}, "
                                      f"s = {obs_days} d")
    for ax, (item, model, reference) in zip(axes, entries):
        ax.set_title(f"{task.upper()}{item['horizon']}")
        ax.set_xlabel("share of users (by prediction, descending)")
        ax.set_ylabel("share of total value")
        y = item["y_true"]
        if not y.size or not y.sum() > 0:
            ax.text(0.5, 0.5, f"n/a ({model.gini.note})", ha="center", transform=ax.transAxes)
            continue
        ax.plot(*_curve_points(metrics.gain_curve(y, y)), "k--", label="perfect")
        ax.plot(*_curve_points(metrics.gain_curve(y, item["y_pred"])),
                label=f"{model_name} (Gini {model.gini.format(3)})")
        if reference is not None:
            ax.plot(*_curve_points(metrics.gain_curve(y, item["reference"])),
                    label=f"{reference_name} (Gini {reference.gini.format(3)})")
        ax.plot([0, 1], [0, 1], ":", color="grey", label="random")
        ax.legend(loc="lower right", fontsize="small")
    return _save(fig, path)


def _decile_plot(path, entries, population, task, obs_days, model_name):
    fig, axes = _panels(len(entries), f"Decile calibration, {model_name}, {task.upper()}, "
                                      f"{population}, s = {obs_days} d")
    for ax, (item, model, _) in zip(axes, entries):
        ax.set_title(f"{task.upper()}{item['horizon']}")
        ax.set_xlabel("predicted decile (1 = lowest)")
        ax.set_ylabel("mean per user")
        rows = model.deciles.rows
        if not rows:
            ax.text(0.5, 0.5, f"n/a ({model.deciles.note})", ha="center",
                    transform=ax.transAxes)
            continue
        positions = np.array([row.decile for row in rows], np.float64)
        ax.bar(positions - 0.2, [row.mean_predicted for row in rows], 0.4, label="predicted")
        ax.bar(positions + 0.2, [row.mean_actual for row in rows], 0.4, label="actual")
        ax.set_xticks(np.arange(1, 11))
        ax.set_xlim(0.4, 10.6)
        ax.legend(loc="upper left", fontsize="small")
    return _save(fig, path)


def _obs_days_plot(path, groups, population, task, model_name):
    names = [name for name in _CURVE_METRICS
             if any(getattr(model, name) is not None
                    for entries in groups.values() for _, model, _ in entries)]
    fig, axes = _panels(len(names), f"{model_name}, {task.upper()}, {population}: "
                                    "metrics vs observed days")
    for ax, name in zip(axes, names):
        ax.set_title(_METRIC_TITLES[name])
        ax.set_xlabel("observed days s")
        for horizon, entries in sorted(groups.items()):
            points = [(item["obs_days"], getattr(model, name).value)
                      for item, model, _ in entries
                      if getattr(model, name) is not None and getattr(model, name).defined]
            if points:
                ax.plot(*zip(*points), "o-", label=f"{horizon} d")
        ax.legend(fontsize="small")
    return _save(fig, path)
