"""Dataset spec: one small YAML/JSON file that says how to read a raw activity log.

A spec names the event files and their format, the columns, the date format, the metric
columns (one behaviour sequence per metric, paper Sec. IV-C), which metric is the value
for LTV, an optional profile file with categorical (and numeric) columns, the observation
window W, the horizons, the snapshot date used for censoring, the split, the cohort size
B and the number of neighbours k of the hypergraph (paper Sec. IV-B).

Every field is checked by :func:`load_spec`; an error names the bad field and says what
is allowed. Built-in specs (``cdnow``) live in ``htgnn_tf/data/specs/`` and are loaded by
name; any other argument is read as a path.

Event file names may be ``package://<distribution>/<path inside it>`` to read a data
file that an installed distribution carries (used for CDNOW, see :mod:`cdnow`).
"""
from __future__ import annotations

import dataclasses
import datetime
import json
import os
from pathlib import Path
from typing import Any, Literal

import yaml

FileFormat = Literal["csv", "jsonl", "whitespace"]
FILE_FORMATS = ("csv", "jsonl", "whitespace")
DERIVED_CATEGORICALS = ("acquisition_month", "acquisition_weekday")
FIRST_DAY_BAND_PREFIX = "first_day_band:"
SPEC_DIR = Path(__file__).parent / "specs"


class SpecError(ValueError):
    """A dataset spec is invalid; the message names the field and the fix."""


@dataclasses.dataclass(frozen=True)
class TableSpec:
    """One input table (events or profiles)."""

    files: tuple[str, ...]
    format: FileFormat = "csv"
    has_header: bool = True
    columns: tuple[str, ...] = ()  # names for header-less files, in file order
    user_id: str = "user_id"


@dataclasses.dataclass(frozen=True)
class ProfileSpec(TableSpec):
    categorical: tuple[str, ...] = ()
    numeric: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
    """Everything the dataset job needs to know about one raw log.

    Attributes:
      name: short name used in file names and reports.
      events: the event table; one row per user activity record.
      date: the date column of the events; `date_format` its strptime format.
      metrics: metric columns, in order; each becomes one behaviour sequence type.
      value_metric: the metric summed into LTV labels (e.g. dollars).
      profiles: optional user profile table with categorical / numeric columns.
      derived_categoricals: categorical features derived from the log itself:
        `acquisition_month`, `acquisition_weekday`, `first_day_band:<metric>`.
      first_day_bands: upper-inclusive band limits for `first_day_band:<metric>`.
      observation_days: W, the longest observed prefix (days) the model sees.
      horizons: label horizons h in days; LT_h / LTV_h count days [0, h).
      snapshot_date: the last day the log covers; labels whose horizon ends after it
        are censored (label_mask_h = 0).
      train_fraction: share of users (by hashed id) in the train split.
      cohort_size: about B users per cohort graph.
      knn_k: neighbours per hyperedge ({i} plus k nearest users).
      max_bins: cap on the number of Scott's-rule bins per feature.
      seed: salt of the split / cohort hashes.
    """

    name: str
    events: TableSpec
    date: str
    date_format: str
    metrics: tuple[str, ...]
    value_metric: str
    snapshot_date: datetime.date
    profiles: ProfileSpec | None = None
    derived_categoricals: tuple[str, ...] = DERIVED_CATEGORICALS
    first_day_bands: tuple[float, ...] = (1, 2, 4)
    observation_days: int = 14
    horizons: tuple[int, ...] = (30, 180, 365)
    train_fraction: float = 0.9
    cohort_size: int = 256
    knn_k: int = 8
    max_bins: int = 64
    seed: int = 17

    # ---- derived names (one source of truth for the feature layout) ----
    @property
    def categorical_features(self) -> tuple[str, ...]:
        """Categorical feature names, in the order of `categorical_ids`."""
        profile = self.profiles.categorical if self.profiles else ()
        return tuple(self.derived_categoricals) + tuple(profile)

    @property
    def statistical_features(self) -> tuple[str, ...]:
        """Static statistical feature names, in the order of `stat_values`.

        Acquisition-day (day 0) totals of every metric, then numeric profile columns.
        Day 0 is observed for every user whatever the observed length s, so these
        features, and the kNN hypergraph built on them, do not change with s.
        """
        profile = self.profiles.numeric if self.profiles else ()
        return tuple(f"day0_{m}" for m in self.metrics) + tuple(profile)

    def to_json_dict(self) -> dict[str, Any]:
        def convert(obj):
            if isinstance(obj, datetime.date):
                return obj.isoformat()
            if isinstance(obj, tuple):
                return [convert(x) for x in obj]
            if isinstance(obj, dict):
                return {k: convert(v) for k, v in obj.items()}
            return obj

        return convert(dataclasses.asdict(self))


def _require(raw: dict, field: str, where: str):
    if field not in raw or raw[field] in (None, ""):
        raise SpecError(f"{where}: missing required field '{field}'")
    return raw[field]


def _str_tuple(value, field: str) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        raise SpecError(f"field '{field}' must be a list of strings, got {value!r}")
    return tuple(value)


def _positive_int(value, field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise SpecError(f"field '{field}' must be a positive integer, got {value!r}")
    return value


def _table(raw: dict, field: str, base_dir: Path, cls=TableSpec, **extra) -> TableSpec:
    if not isinstance(raw, dict):
        raise SpecError(f"field '{field}' must be a mapping, got {raw!r}")
    files = _str_tuple(_require(raw, "files", field), f"{field}.files")
    files = tuple(f if "://" in f or os.path.isabs(f) else str(base_dir / f) for f in files)
    fmt = raw.get("format", "csv")
    if fmt not in FILE_FORMATS:
        raise SpecError(f"field '{field}.format' is {fmt!r}; allowed: {', '.join(FILE_FORMATS)}")
    has_header = raw.get("has_header", fmt == "csv")
    columns = _str_tuple(raw.get("columns", []), f"{field}.columns")
    if fmt == "whitespace" and not columns:
        raise SpecError(f"field '{field}.columns' is required for format 'whitespace'")
    if fmt == "csv" and not has_header and not columns:
        raise SpecError(f"field '{field}.columns' is required for a csv file without header")
    unknown = set(raw) - {"files", "format", "has_header", "columns", "user_id"} - set(extra)
    if unknown:
        raise SpecError(f"field '{field}' has unknown keys: {sorted(unknown)}")
    kwargs = {k: _str_tuple(raw.get(k, []), f"{field}.{k}") for k in extra}
    return cls(files=files, format=fmt, has_header=bool(has_header), columns=columns,
               user_id=raw.get("user_id", "user_id"), **kwargs)


def parse_spec(raw: dict, base_dir: Path | str = ".") -> DatasetSpec:
    """Validates a spec given as a dict; relative file names resolve against base_dir."""
    if not isinstance(raw, dict):
        raise SpecError(f"a dataset spec must be a mapping, got {type(raw).__name__}")
    base_dir = Path(base_dir)
    known = {f.name for f in dataclasses.fields(DatasetSpec)}
    unknown = set(raw) - known
    if unknown:
        raise SpecError(f"unknown spec fields {sorted(unknown)}; allowed: {sorted(known)}")
    events = _table(_require(raw, "events", "spec"), "events", base_dir)
    profiles = None
    if raw.get("profiles"):
        profiles = _table(raw["profiles"], "profiles", base_dir, ProfileSpec,
                          categorical=(), numeric=())
    metrics = _str_tuple(_require(raw, "metrics", "spec"), "metrics")
    if not metrics:
        raise SpecError("field 'metrics' must name at least one metric column")
    value_metric = _require(raw, "value_metric", "spec")
    if value_metric not in metrics:
        raise SpecError(f"field 'value_metric' is {value_metric!r}, which is not in "
                        f"'metrics' {list(metrics)}")
    date_format = _require(raw, "date_format", "spec")
    try:
        datetime.datetime.strptime(datetime.date(2001, 2, 3).strftime(date_format), date_format)
    except ValueError as e:
        raise SpecError(f"field 'date_format' {date_format!r} is not a strptime format: {e}")
    snapshot = _require(raw, "snapshot_date", "spec")
    if isinstance(snapshot, str):
        try:
            snapshot = datetime.date.fromisoformat(snapshot)
        except ValueError:
            raise SpecError(f"field 'snapshot_date' must be YYYY-MM-DD, got {snapshot!r}")
    if not isinstance(snapshot, datetime.date):
        raise SpecError(f"field 'snapshot_date' must be YYYY-MM-DD, got {snapshot!r}")
    derived = _str_tuple(raw.get("derived_categoricals", list(DERIVED_CATEGORICALS)),
                         "derived_categoricals")
    for d in derived:
        if d in DERIVED_CATEGORICALS:
            continue
        if d.startswith(FIRST_DAY_BAND_PREFIX) and d[len(FIRST_DAY_BAND_PREFIX):] in metrics:
            continue
        raise SpecError(f"field 'derived_categoricals' has {d!r}; allowed: "
                        f"{list(DERIVED_CATEGORICALS)} or '{FIRST_DAY_BAND_PREFIX}<metric>'")
    if not derived and not (profiles and profiles.categorical):
        raise SpecError("field 'derived_categoricals' is empty and the profiles have no "
                        "categorical columns: the model needs at least one categorical "
                        f"feature; use e.g. {list(DERIVED_CATEGORICALS)}")
    bands = tuple(float(b) for b in raw.get("first_day_bands", (1, 2, 4)))
    if list(bands) != sorted(set(bands)):
        raise SpecError(f"field 'first_day_bands' must be strictly increasing, got {list(bands)}")
    horizons = tuple(_positive_int(h, "horizons") for h in raw.get("horizons", (30, 180, 365)))
    if list(horizons) != sorted(set(horizons)):
        raise SpecError(f"field 'horizons' must be strictly increasing, got {list(horizons)}")
    obs = _positive_int(raw.get("observation_days", 14), "observation_days")
    if obs >= horizons[0]:
        raise SpecError(f"field 'observation_days' ({obs}) must be shorter than the "
                        f"first horizon ({horizons[0]})")
    train_fraction = raw.get("train_fraction", 0.9)
    if not isinstance(train_fraction, (int, float)) or not 0 < train_fraction < 1:
        raise SpecError(f"field 'train_fraction' must be in (0, 1), got {train_fraction!r}")
    knn_k = _positive_int(raw.get("knn_k", 8), "knn_k")
    cohort_size = _positive_int(raw.get("cohort_size", 256), "cohort_size")
    if cohort_size <= knn_k:
        raise SpecError(f"field 'cohort_size' ({cohort_size}) must exceed 'knn_k' ({knn_k})")
    max_bins = _positive_int(raw.get("max_bins", 64), "max_bins")
    seed = raw.get("seed", 17)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise SpecError(f"field 'seed' must be an integer, got {seed!r}")
    name = raw.get("name", "dataset")
    if not isinstance(name, str) or not name.replace("_", "").replace("-", "").isalnum():
        raise SpecError(f"field 'name' must be a short identifier, got {name!r}")
    return DatasetSpec(
        name=name, events=events, date=_require(raw, "date", "spec"),
        date_format=date_format, metrics=metrics, value_metric=value_metric,
        snapshot_date=snapshot, profiles=profiles, derived_categoricals=derived,
        first_day_bands=bands, observation_days=obs, horizons=horizons,
        train_fraction=float(train_fraction), cohort_size=cohort_size, knn_k=knn_k,
        max_bins=max_bins, seed=seed)


def load_spec(name_or_path: str) -> DatasetSpec:
    """Loads a built-in spec by name (e.g. ``cdnow``) or a YAML/JSON spec file."""
    builtin = SPEC_DIR / f"{name_or_path}.yaml"
    path = builtin if builtin.exists() else Path(name_or_path)
    if not path.exists():
        names = sorted(p.stem for p in SPEC_DIR.glob("*.yaml"))
        raise SpecError(f"no dataset spec {name_or_path!r}: not a file, and not one of the "
                        f"built-in specs {names}")
    text = path.read_text()
    try:
        raw = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as e:
        raise SpecError(f"{path}: not valid {'JSON' if path.suffix == '.json' else 'YAML'}: {e}")
    return parse_spec(raw, base_dir=path.parent)


def spec_from_json_dict(raw: dict) -> DatasetSpec:
    """Inverse of DatasetSpec.to_json_dict (file names are already absolute)."""
    raw = dict(raw)
    for table in ("events", "profiles"):
        if raw.get(table):
            raw[table] = {k: v for k, v in raw[table].items()}
    return parse_spec(raw)
