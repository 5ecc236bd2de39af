"""Parsing and validation of raw log rows (the raw log contract of DESIGN.md).

Every row either parses into an event / profile record or is rejected with one reason
from :data:`REJECT_REASONS`; nothing is dropped silently. The policy for metric values:
non-numeric, NaN, infinite and negative values reject the row (LTV labels are
non-negative by contract: refunds must be netted before the log reaches the job). A row
whose metrics are all zero is valid and used, but a day is active only when its summed
metrics are not all zero (see :mod:`htgnn_tf.data.users`).

The same functions parse rows in the Beam job and in the serving client.
"""
from __future__ import annotations

import csv
import dataclasses
import datetime
import io
import json
import math
from typing import Iterable, Sequence

from htgnn_tf.data.spec import DatasetSpec, TableSpec

# Date formats tried when a date does not parse in the spec's format, to tell a wrong
# format (e.g. dd/mm vs mm/dd) from garbage.
ALTERNATIVE_DATE_FORMATS = ("%Y-%m-%d", "%Y%m%d", "%d/%m/%Y", "%m/%d/%Y", "%Y/%m/%d",
                            "%d.%m.%Y", "%d-%m-%Y", "%m-%d-%Y", "%Y-%m-%dT%H:%M:%S",
                            "%Y-%m-%d %H:%M:%S")

REJECT_REASONS = (
    "malformed_row",          # wrong number of fields / not a JSON object
    "missing_user_id",
    "missing_date",
    "unparsable_date",
    "date_format_mismatch",   # parses only in another format than the spec's
    "date_after_snapshot",
    "non_numeric_metric",
    "nan_metric",
    "inf_metric",
    "negative_metric",
    "non_numeric_profile_value",
    "duplicate_profile",      # a second profile row for one user (the first is kept)
    "profile_without_events",  # a profile row whose user has no valid event
)


@dataclasses.dataclass(frozen=True)
class RawRow:
    """One line of an input file, as read."""

    source: str
    line: int  # 1-based line number in the file
    text: str


@dataclasses.dataclass(frozen=True)
class Event:
    user_id: str
    date: datetime.date
    metrics: tuple[float, ...]


@dataclasses.dataclass(frozen=True)
class Profile:
    user_id: str
    categorical: tuple[str, ...]
    numeric: tuple[float, ...]
    source: str = ""  # where the row came from, for the dead-letter output
    line: int = 0
    text: str = ""


class RowError(ValueError):
    def __init__(self, reason: str, detail: str = ""):
        assert reason in REJECT_REASONS, reason
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


def dead_letter(row: RawRow, input_name: str, error: RowError) -> dict:
    """The dead-letter record of a rejected row (one JSON line)."""
    return {"input": input_name, "source": row.source, "line": row.line, "raw": row.text,
            "reason": error.reason, "detail": error.detail}


def split_fields(text: str, table: TableSpec) -> dict[str, str] | None:
    """Splits one data line into {column: raw string}; None for a malformed line."""
    if table.format == "jsonl":
        try:
            obj = json.loads(text)
        except ValueError:
            return None
        if not isinstance(obj, dict):
            return None
        return {k: ("" if v is None else str(v)) for k, v in obj.items()}
    if table.format == "whitespace":
        values = text.split()
    else:
        values = next(csv.reader(io.StringIO(text)), [])
    if len(values) != len(table.columns):
        return None
    return dict(zip(table.columns, values))


def header_columns(first_line: str, table: TableSpec) -> tuple[str, ...]:
    """Column names from a header line (csv/whitespace)."""
    if table.format == "whitespace":
        return tuple(first_line.split())
    return tuple(c.strip() for c in next(csv.reader(io.StringIO(first_line)), []))


def parse_date(text: str, date_format: str) -> datetime.date:
    text = text.strip()
    if not text:
        raise RowError("missing_date")
    try:
        return datetime.datetime.strptime(text, date_format).date()
    except ValueError:
        pass
    for alternative in ALTERNATIVE_DATE_FORMATS:
        if alternative == date_format:
            continue
        try:
            datetime.datetime.strptime(text, alternative)
        except ValueError:
            continue
        raise RowError("date_format_mismatch",
                       f"{text!r} does not match {date_format!r} but parses as {alternative!r}")
    raise RowError("unparsable_date", f"{text!r} does not match {date_format!r}")


def parse_metric(name: str, text: str) -> float:
    try:
        value = float(text)
    except (TypeError, ValueError):
        raise RowError("non_numeric_metric", f"{name}={text!r}") from None
    if math.isnan(value):
        raise RowError("nan_metric", f"{name}={text!r}")
    if math.isinf(value):
        raise RowError("inf_metric", f"{name}={text!r}")
    if value < 0:
        raise RowError("negative_metric", f"{name}={text!r}")
    return value


def parse_event(row: RawRow, spec: DatasetSpec) -> Event:
    """Parses one event row or raises RowError with the reason."""
    fields = split_fields(row.text, spec.events)
    if fields is None:
        raise RowError("malformed_row", "wrong number of fields or not a JSON object")
    user_id = fields.get(spec.events.user_id, "").strip()
    if not user_id:
        raise RowError("missing_user_id")
    date = parse_date(fields.get(spec.date, ""), spec.date_format)
    if date > spec.snapshot_date:
        raise RowError("date_after_snapshot", f"{date} > {spec.snapshot_date}")
    metrics = tuple(parse_metric(m, fields.get(m, "")) for m in spec.metrics)
    return Event(user_id, date, metrics)


def parse_profile(row: RawRow, spec: DatasetSpec) -> Profile:
    """Parses one profile row or raises RowError. Empty categorical values are kept
    as "" (they map to the out-of-vocabulary id unless "" is frequent in train)."""
    table = spec.profiles
    fields = split_fields(row.text, table)
    if fields is None:
        raise RowError("malformed_row", "wrong number of fields or not a JSON object")
    user_id = fields.get(table.user_id, "").strip()
    if not user_id:
        raise RowError("missing_user_id")
    numeric = []
    for name in table.numeric:
        text = fields.get(name, "")
        try:
            value = float(text)
        except ValueError:
            raise RowError("non_numeric_profile_value", f"{name}={text!r}") from None
        if not math.isfinite(value):
            raise RowError("non_numeric_profile_value", f"{name}={text!r}")
        numeric.append(value)
    categorical = tuple(fields.get(name, "").strip() for name in table.categorical)
    return Profile(user_id, categorical, tuple(numeric), row.source, row.line, row.text)


def read_rows(path: str, table: TableSpec) -> Iterable[RawRow]:
    """Yields the data lines of one file (header skipped, blank lines ignored)."""
    from apache_beam.io.filesystems import FileSystems

    with FileSystems.open(path) as f:
        stream = io.TextIOWrapper(f, encoding="utf-8", errors="replace", newline="")
        for number, text in enumerate(stream, start=1):
            text = text.rstrip("\r\n")
            if number == 1 and table.has_header:
                continue
            if text.strip():
                yield RawRow(path, number, text)


def required_columns(spec: DatasetSpec, input_name: str) -> Sequence[str]:
    if input_name == "events":
        return [spec.events.user_id, spec.date, *spec.metrics]
    return [spec.profiles.user_id, *spec.profiles.categorical, *spec.profiles.numeric]
