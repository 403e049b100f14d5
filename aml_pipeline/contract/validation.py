"""Validation of one SOT batch against the contract, reporting every problem at once."""

from __future__ import annotations

import datetime as dt
import io
import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from aml_pipeline.contract.conform import cast_column, is_native
from aml_pipeline.contract.files import sha256_hex
from aml_pipeline.contract.schema import (
    ALERTS,
    BATCH_TABLES,
    FEATURE_GROUP_OF,
    FEATURES,
    MAX_PLAUSIBLE,
    META_FIELDS,
    META_FILE,
    PATTERN_TRAPS_FILE,
    RETIRED_FEATURES,
    Bounds,
    ColumnSpec,
    TableSpec,
    batch_id,
)
from aml_pipeline.contract.traps import trap_problems

Severity = Literal["error", "warning", "info"]
_MAX_EXAMPLES = 3
_MAX_SHOWN = 80
#: How far (relative) a computed value may pass a bound by rounding: 1.0000000000000002
#: is a ratio of 1.
BOUND_TOLERANCE = 1e-9


@dataclass(frozen=True)
class Problem:
    """One finding: which file and column, and what is wrong."""

    severity: Severity
    file: str
    column: str
    problem: str

    def __str__(self) -> str:
        where = f"{self.file}" + (f" column {self.column!r}" if self.column else "")
        return f"{self.severity.upper():7} {where}: {self.problem}"


@dataclass
class ValidationReport:
    """Everything found in a batch; the batch is acceptable when there are no errors."""

    batch: str
    problems: list[Problem] = field(default_factory=list)
    row_counts: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.errors

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "error"]

    @property
    def warnings(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "warning"]

    def add(self, severity: Severity, file: str, column: str, problem: str) -> None:
        self.problems.append(Problem(severity, file, column, problem))

    def format(self) -> str:
        """A human-readable report, errors first."""
        verdict = "accepted" if self.ok else "REFUSED"
        head = (
            f"batch {self.batch}: {verdict} ({len(self.errors)} errors, "
            f"{len(self.warnings)} warnings)"
        )
        order = {"error": 0, "warning": 1, "info": 2}
        lines = [str(p) for p in sorted(self.problems, key=lambda p: order[p.severity])]
        return "\n".join([head, *("  " + line for line in lines)])

    def to_dict(self) -> dict[str, Any]:
        return {
            "batch": self.batch,
            "ok": self.ok,
            "row_counts": self.row_counts,
            "problems": [asdict(p) for p in self.problems],
        }


class BatchRefused(Exception):
    """A batch that failed validation; carries the full report."""

    def __init__(self, report: ValidationReport) -> None:
        super().__init__(report.format())
        self.report = report


def _shown(value: object) -> str:
    """``repr(value)``, at most ``_MAX_SHOWN`` characters: a hostile 5-million-character
    value is not echoed whole into the report, the event log and the terminal."""
    text = repr(value)
    if len(text) <= _MAX_SHOWN:
        return text
    return f"{text[:_MAX_SHOWN]}... ({len(text)} characters)"


def _examples(values: Sequence[object]) -> str:
    shown = ", ".join(_shown(v) for v in values[:_MAX_EXAMPLES])
    return shown + (", ..." if len(values) > _MAX_EXAMPLES else "")


def _listing(items: list[str]) -> str:
    return ", ".join(items[:_MAX_EXAMPLES]) + (", ..." if len(items) > _MAX_EXAMPLES else "")


def _check_traps(report: ValidationReport, data: bytes, alert_ids: set[str] | None) -> None:
    """Check pattern_traps.json with the one traps parser (``contract.traps``), and that
    every trap's alert is among ``alert_ids`` (unchecked when None)."""
    file = PATTERN_TRAPS_FILE
    try:
        document = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        report.add("error", file, "", f"not valid JSON: {exc}")
        return
    traps, problems = trap_problems(document)
    for column, message in problems:
        report.add("error", file, column, message)
    unknown = sorted({t["alert_id"] for t in traps} - alert_ids) if alert_ids is not None else []
    if unknown:
        report.add(
            "error",
            file,
            "alert_id",
            f"{len(unknown)} alert_id(s) not among the batch's alerts: {_examples(unknown)}",
        )


def _has_rules(col: ColumnSpec) -> bool:
    return col.type == "float" or bool(col.valid or col.usual or col.allowed)


def _outside(x: np.ndarray, bounds: Bounds) -> np.ndarray:
    """Values beyond ``bounds`` by more than floating-point rounding (1e-9 relative)."""
    low, high = bounds
    out = np.zeros(len(x), dtype=bool)
    if low is not None:
        out |= x < low - BOUND_TOLERANCE * max(1.0, abs(low))
    if high is not None:
        out |= x > high + BOUND_TOLERANCE * max(1.0, abs(high))
    return out


def _bounds_text(bounds: Bounds) -> str:
    low, high = bounds
    if high is None:
        return f"at least {low:g}"
    return f"in [{low:g}, {high:g}]"


def _check_values(report: ValidationReport, file: str, col: ColumnSpec, values: pd.Series) -> None:
    """The contract's value rules on one cast column (``schema`` says which)."""
    if col.allowed is not None:
        present = values.dropna()
        odd = present[~present.isin(col.allowed)]
        if len(odd):
            report.add(
                "warning",
                file,
                col.name,
                f"{len(odd)} value(s) outside {', '.join(col.allowed)}: "
                f"{_examples(sorted(set(odd.astype(str))))}",
            )
        return
    if col.type not in ("int", "float"):
        return
    x = pd.to_numeric(values, errors="coerce").to_numpy(dtype="float64", na_value=np.nan)
    if col.type == "float":
        infinite = np.isinf(x)
        if infinite.any():
            report.add(
                "error",
                file,
                col.name,
                f"{int(infinite.sum())} infinite value(s): {_examples(x[infinite].tolist())}",
            )
        if col.required and np.isnan(x).any():
            report.add(
                "error",
                file,
                col.name,
                f"{int(np.isnan(x).sum())} missing or NaN value(s) in a required column",
            )
    finite = x[np.isfinite(x)]
    # outside the valid range: meaningless; outside the usual one: odd
    checks: tuple[tuple[Severity, Bounds | None], ...] = (
        ("error", col.valid),
        ("warning", col.usual),
    )
    for severity, bounds in checks:
        if bounds is None:
            continue
        outside = finite[_outside(finite, bounds)]
        if len(outside):
            report.add(
                severity,
                file,
                col.name,
                f"{len(outside)} value(s) not {_bounds_text(bounds)}: "
                f"{_examples(outside.tolist())}",
            )
    huge = finite[np.abs(finite) > MAX_PLAUSIBLE]
    if len(huge):
        report.add(
            "warning",
            file,
            col.name,
            f"{len(huge)} implausibly large value(s) (above {MAX_PLAUSIBLE:g} in magnitude): "
            f"{_examples(huge.tolist())}",
        )


#: Columns whose values the batch checks compare, beyond each table's key.
_COMPARED = ("processing_date", "window_days", "alert_id", "address")


def _check_table(
    report: ValidationReport,
    spec: TableSpec,
    table: pa.Table,
    processing_date: dt.date,
    window_days: int,
) -> pd.DataFrame:
    """Check columns, types, keys and batch consistency; return the cast key and compared
    columns. A column whose Arrow type is native to its contract type (``is_native``)
    cannot hold a bad value, so only the compared ones are converted to pandas."""
    file = spec.file
    cast: dict[str, pd.Series] = {}
    for col in spec.columns:
        if col.name not in table.column_names:
            if col.required:
                report.add("error", file, col.name, "missing required column")
            elif col.name in RETIRED_FEATURES:
                pass  # retired upstream: expected to be missing, stated once in the contract
            elif spec is FEATURES:
                report.add(
                    "warning",
                    file,
                    col.name,
                    f"schema drift: optional {FEATURE_GROUP_OF[col.name]} feature column "
                    "missing; read as missing values",
                )
            else:
                report.add(
                    "info", file, col.name, f"optional column missing; read as {col.missing_means}"
                )
            continue
        column = table.column(col.name)
        compared = col.name in spec.key or col.name in _COMPARED
        native = is_native(col.type, column.type)
        if native and not compared and not _has_rules(col):
            continue
        try:
            values = column.to_pandas()
        except (pa.ArrowException, ValueError, TypeError) as exc:
            report.add("error", file, col.name, f"unreadable {column.type} column: {exc}")
            continue
        # a native column is its contract type already: only its values are checked
        series, bad = (values, []) if native and not compared else cast_column(values, col.type)
        if compared or not native:
            cast[col.name] = series
        if bad:
            report.add(
                "error",
                file,
                col.name,
                f"{len(bad)} value(s) cannot be cast to {col.type}: {_examples(bad)}",
            )
        else:
            _check_values(report, file, col, series)
    for extra in table.column_names:
        if extra not in spec.by_name:
            report.add("info", file, extra, "unknown column kept as is (not in the contract)")

    key_cols = [k for k in spec.key if k in cast]
    if len(key_cols) == len(spec.key) and table.num_rows:
        keys = pd.DataFrame({k: cast[k] for k in key_cols})
        null_rows = keys.isna().any(axis=1)
        if null_rows.any():
            report.add(
                "error", file, ",".join(spec.key), f"{int(null_rows.sum())} row(s) with a null key"
            )
        dup = keys[~null_rows].duplicated(keep=False)
        if dup.any():
            values = keys[~null_rows][dup].drop_duplicates().astype(str).agg("|".join, axis=1)
            report.add(
                "error",
                file,
                ",".join(spec.key),
                f"{int(dup.sum())} row(s) share a duplicate key: {_examples(values.tolist())}",
            )

    if "processing_date" in cast:
        wrong = cast["processing_date"].notna() & (cast["processing_date"] != processing_date)
        if wrong.any():
            found = sorted({str(v) for v in cast["processing_date"][wrong]})
            report.add(
                "error",
                file,
                "processing_date",
                f"{int(wrong.sum())} row(s) disagree with batch date {processing_date}: "
                f"{_examples(found)}",
            )
    if "window_days" in cast:
        wrong = cast["window_days"].notna() & (cast["window_days"] != window_days)
        if wrong.any():
            windows = sorted({int(v) for v in cast["window_days"][wrong]})
            report.add(
                "error",
                file,
                "window_days",
                f"{int(wrong.sum())} row(s) disagree with batch window {window_days}: "
                f"{_examples(windows)}",
            )
    return pd.DataFrame(cast)


def _parse_meta(report: ValidationReport, data: bytes, meta_file: str) -> dict[str, Any] | None:
    try:
        meta = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        report.add("error", meta_file, "", f"not valid JSON: {exc}")
        return None
    if not isinstance(meta, dict):
        report.add("error", meta_file, "", "not a JSON object")
        return None
    return meta


def _check_meta(
    report: ValidationReport,
    meta: Mapping[str, Any],
    files: Mapping[str, bytes],
    expected: Mapping[str, Any],
    meta_file: str,
    strict: bool,
    unreadable: Mapping[str, str],
) -> None:
    if strict:
        for name in META_FIELDS:
            if name not in meta:
                report.add("error", meta_file, name, "missing required field")
    for name, value in expected.items():
        if name in meta and str(meta[name]) != str(value):
            report.add("error", meta_file, name, f"says {meta[name]!r} but the batch is {value!r}")
    digests, counts = meta.get("sha256", {}), meta.get("counts", {})
    for field_name, value in (("sha256", digests), ("counts", counts)):
        if not isinstance(value, dict):
            report.add("error", meta_file, field_name, f"must be an object, got {value!r}")
    for name, digest in digests.items() if isinstance(digests, dict) else ():
        if name in unreadable:
            continue  # reported as unreadable already
        if name not in files:
            report.add("error", name, "", f"listed in {meta_file} but not in the batch")
        elif sha256_hex(files[name]) != str(digest).lower():
            report.add(
                "error",
                name,
                "",
                f"sha256 {sha256_hex(files[name])[:12]}... disagrees with {meta_file} "
                f"({str(digest)[:12]}...)",
            )
    for stem, count in counts.items() if isinstance(counts, dict) else ():
        actual = report.row_counts.get(stem)
        if not isinstance(count, int) or isinstance(count, bool):
            report.add("error", meta_file, "counts", f"{stem}: {count!r} is not a row count")
        elif actual is not None and count != actual:
            report.add(
                "error", f"{stem}.parquet", "", f"has {actual} rows but {meta_file} says {count}"
            )


def validate_batch(
    network: str,
    processing_date: dt.date,
    window_days: int,
    files: Mapping[str, bytes],
    meta_file: str = META_FILE,
    meta_required: bool = True,
    unreadable: Mapping[str, str] | None = None,
) -> ValidationReport:
    """Validate a batch held in memory; every problem is reported, none raised.

    ``files`` maps file names (``alerts.parquet``, ``META.json``...) to their bytes, and
    ``unreadable`` names files the source found but could not read, with the reason; the
    optional ``pattern_traps.json`` is checked against the batch's alerts when present.
    With ``meta_required`` (upstream layout) ``meta_file`` must exist with every field;
    otherwise (seed layout) it is optional and whatever it states is still verified.
    """
    date_str = processing_date.isoformat()
    report = ValidationReport(batch=batch_id(network, date_str, window_days))
    for name, reason in (unreadable or {}).items():
        report.add("error", name, "", reason)
    frames: dict[str, pd.DataFrame] = {}
    for spec in BATCH_TABLES:
        if spec.file in (unreadable or {}):
            continue
        if spec.file not in files:
            if spec.required_file:
                report.add("error", spec.file, "", "missing required file")
            else:
                report.add("info", spec.file, "", "optional file absent; read as empty")
            continue
        try:
            table = pq.read_table(io.BytesIO(files[spec.file]))
        except Exception as exc:  # pyarrow raises several types for corrupt input
            report.add(
                "error",
                spec.file,
                "",
                f"unreadable or truncated Parquet: {type(exc).__name__}: {exc}",
            )
            continue
        report.row_counts[spec.name] = table.num_rows
        frames[spec.name] = _check_table(report, spec, table, processing_date, window_days)

    if meta_file in files:
        meta = _parse_meta(report, files[meta_file], meta_file)
        if meta is not None:
            expected = {
                "network": network,
                "processing_date": date_str,
                "window_days": window_days,
                "batch_id": batch_id(network, date_str, window_days),
            }
            _check_meta(report, meta, files, expected, meta_file, meta_required, unreadable or {})
    elif meta_required and meta_file not in (unreadable or {}):
        report.add("error", meta_file, "", "missing required file")

    alerts, features = frames.get("alerts"), frames.get("features")
    if PATTERN_TRAPS_FILE in files:
        has_ids = alerts is not None and "alert_id" in alerts
        known = set(alerts["alert_id"].dropna()) if alerts is not None and has_ids else None
        _check_traps(report, files[PATTERN_TRAPS_FILE], known)
    else:
        report.add("info", PATTERN_TRAPS_FILE, "", "optional file absent; no pattern traps")
    if (
        alerts is not None
        and features is not None
        and "address" in alerts
        and "address" in features
    ):
        orphans = sorted(set(alerts["address"].dropna()) - set(features["address"].dropna()))
        if orphans:
            report.add(
                "warning",
                ALERTS.file,
                "address",
                f"{len(orphans)} alerted address(es) have no feature row "
                f"(their features are missing values): {_examples(orphans)}",
            )
    return report
