"""Fetching, validating and landing daily batches; reading landed tables back.

Plain functions with no Dagster import: the assets and the tests both call them.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import multiprocessing
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from aml_pipeline.contract.conform import (
    conform_arrow,
    conform_sql,
    conform_table,
    read_parquet_bytes,
)
from aml_pipeline.contract.files import build_meta, sha256_hex
from aml_pipeline.contract.schema import BATCH_TABLES, META_FILE, PATTERN_TRAPS_FILE, TableSpec
from aml_pipeline.contract.traps import parse_pattern_traps
from aml_pipeline.contract.validation import BatchRefused, ValidationReport, validate_batch
from aml_pipeline.dates import split_evenly
from aml_pipeline.sources.base import BatchSource, FetchedBatch
from aml_pipeline.storage import layout
from aml_pipeline.storage.objects import Storage

LANDING_FILE = "LANDING.json"


@dataclass(frozen=True)
class CheckedBatch:
    """A fetched batch and its validation report."""

    batch: FetchedBatch
    report: ValidationReport


def _fetch_days(
    source: BatchSource, network: str, days: Sequence[dt.date], window_days: int
) -> list[CheckedBatch]:
    """Fetch and validate ``days`` one after the other."""
    checked = []
    for day in days:
        batch = source.fetch(network, day, window_days)
        report = validate_batch(
            network,
            day,
            window_days,
            batch.files,
            batch.meta_file,
            batch.meta_required,
            batch.unreadable,
        )
        checked.append(CheckedBatch(batch, report))
    return checked


def fetch_and_validate(
    source: BatchSource,
    network: str,
    days: Sequence[dt.date],
    window_days: int,
    workers: int = 1,
) -> list[CheckedBatch]:
    """Fetch and validate every day; raise ``BatchRefused`` (all reports) if any is bad.

    With ``workers`` > 1 and at least two days for each, the days are cut into that many
    consecutive slices fetched by as many processes (spawned, each with its own copy of the
    source, whose caches then serve consecutive days); the result is the same in the same
    order. Nothing is written here, so a refused range leaves storage exactly as it was.
    """
    slices = split_evenly(days, min(workers, len(days) // 2))
    if len(slices) == 1:
        checked = _fetch_days(source, network, days, window_days)
    else:
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(len(slices), mp_context=context) as pool:
            futures = [pool.submit(_fetch_days, source, network, s, window_days) for s in slices]
            checked = [c for future in futures for c in future.result()]
    refused = [c.report for c in checked if not c.report.ok]
    if refused:
        merged = ValidationReport(
            batch=", ".join(r.batch for r in refused),
            problems=[p for r in refused for p in r.problems],
        )
        raise BatchRefused(merged)
    return checked


#: A landed day takes about this many times its batch's bytes while it is being landed:
#: the landed files, the warehouse tables cast from them, and the replaced version of a
#: re-landed day kept for its grace period.
SPACE_PER_BATCH_BYTE = 3


class NoSpace(RuntimeError):
    """Too little free space to land a range; nothing of it was written."""


def check_space(
    storage: Storage, network: str, checked: Sequence[CheckedBatch], reserve_bytes: int
) -> None:
    """Raise ``NoSpace`` unless landing ``checked`` leaves ``reserve_bytes`` free."""
    free = storage.free_bytes()
    size = sum(len(data) for c in checked for data in c.batch.files.values())
    need = SPACE_PER_BATCH_BYTE * size + reserve_bytes
    if free is not None and free < need:
        mb = 2**20
        raise NoSpace(
            f"too little space to land {len(checked)} {network} day(s) in {storage!r}: "
            f"{free / mb:,.0f} MB free, {need / mb:,.0f} MB needed ({size / mb:,.1f} MB of "
            f"batches x{SPACE_PER_BATCH_BYTE} for the landed files, their warehouse tables "
            f"and replaced versions, plus the AML_MIN_FREE_MB reserve of "
            f"{reserve_bytes / mb:,.0f} MB); nothing was written"
        )


def land(storage: Storage, checked: CheckedBatch) -> dict[str, str]:
    """Publish a validated batch to ``{network}/{date}/`` in one atomic swap.

    Source files are kept byte for byte. A batch that came without an upstream META.json
    gets one computed over its data files (Parquet and pattern traps). Returns the landed
    files' sha256 digests.
    """
    batch, report = checked.batch, checked.report
    files = dict(batch.files)
    if META_FILE not in files:
        data_files = {
            n: b for n, b in files.items() if n.endswith(".parquet") or n == PATTERN_TRAPS_FILE
        }
        files[META_FILE] = build_meta(
            batch.network,
            batch.processing_date.isoformat(),
            batch.window_days,
            data_files,
            {
                t.name: report.row_counts[t.name]
                for t in BATCH_TABLES
                if t.name in report.row_counts
            },
            # deterministic, so re-landing the same batch gives the same bytes
            generated_at=f"{batch.processing_date + dt.timedelta(1)}T00:00:00Z",
        )
    files[LANDING_FILE] = (
        json.dumps({"origin": batch.origin, "validation": report.to_dict()}, indent=2, default=str)
        + "\n"
    ).encode()
    storage.publish_dir(layout.landed_day(batch.network, batch.processing_date), files)
    return {name: sha256_hex(data) for name, data in sorted(files.items())}


def verify_landed(storage: Storage, network: str, day: dt.date) -> list[str]:
    """Problems between a landed batch and its META.json (empty when they agree)."""
    folder = layout.landed_day(network, day)
    if not storage.exists(f"{folder}/{META_FILE}"):
        return [f"{folder}: no {META_FILE}"]
    meta = json.loads(storage.read_bytes(f"{folder}/{META_FILE}"))
    problems = []
    for name, digest in meta.get("sha256", {}).items():
        key = f"{folder}/{name}"
        if not storage.exists(key):
            problems.append(f"{key}: missing")
        elif sha256_hex(storage.read_bytes(key)) != digest:
            problems.append(f"{key}: sha256 differs from {META_FILE}")
    return problems


def read_landed_meta(storage: Storage, network: str, day: dt.date) -> dict:
    """The landed batch's META.json."""
    return json.loads(storage.read_bytes(f"{layout.landed_day(network, day)}/{META_FILE}"))


def read_landed_traps(storage: Storage, network: str, day: dt.date) -> list[dict]:
    """The landed batch's pattern traps as ``[{"alert_id", "expected_score"}, ...]``;
    empty when the batch came without ``pattern_traps.json``."""
    key = f"{layout.landed_day(network, day)}/{PATTERN_TRAPS_FILE}"
    if not storage.exists(key):
        return []
    return parse_pattern_traps(json.loads(storage.read_bytes(key)), f"{storage!r}/{key}")


def _landed_file(storage: Storage, network: str, day: dt.date, spec: TableSpec) -> bytes | None:
    """The bytes of one landed table (None: an absent optional file, which reads empty;
    an absent required file is an error, never an empty table)."""
    key = f"{layout.landed_day(network, day)}/{spec.file}"
    if storage.exists(key):
        return storage.read_bytes(key)
    if not spec.required_file:
        return None
    raise FileNotFoundError(
        f"landed batch {layout.landed_day(network, day)} has no {spec.file}: land that "
        "day first (aml-pipeline download)"
    )


def read_landed_table(
    storage: Storage, network: str, day: dt.date, spec: TableSpec
) -> pd.DataFrame:
    """One landed table conformed to the contract, sorted by its key."""
    data = _landed_file(storage, network, day, spec)
    raw = pd.DataFrame(columns=spec.column_names) if data is None else read_parquet_bytes(data)
    df = conform_table(raw, spec)
    return df.sort_values(list(spec.key), kind="stable").reset_index(drop=True)


def landed_view(
    con: duckdb.DuckDBPyConnection, storage: Storage, network: str, day: dt.date, spec: TableSpec
) -> None:
    """Make ``frame`` on ``con`` the landed table conformed to the contract (as
    ``read_landed_table``, unsorted). A file whose columns are native to the contract
    (``conform_sql``) is read by DuckDB straight from disk, with no copy in Python;
    others are conformed in Arrow (``conform_arrow``)."""
    data = None
    key = f"{layout.landed_day(network, day)}/{spec.file}"
    if storage.exists(key):
        path = str(storage.read_path(key))
        select = conform_sql(spec, pq.read_schema(path), "landed")
        if select is not None:
            con.read_parquet(path).create_view("landed")
            con.execute(f"CREATE TEMP VIEW frame AS {select}")
            return
        data = _landed_file(storage, network, day, spec)
    elif spec.required_file:
        _landed_file(storage, network, day, spec)  # the error naming the file
    table = pa.table({}) if data is None else pq.read_table(io.BytesIO(data))
    con.register("frame", conform_arrow(table, spec))
