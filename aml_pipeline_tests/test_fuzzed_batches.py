"""Fuzzed batches: a valid batch corrupted at random (types, ranges, NaN and infinities,
duplicates, missing and extra columns, truncated or foreign files, wrong META hashes) is
either accepted and conforms, or refused with report lines; never a traceback."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aml_pipeline.contract.conform import conform_table, read_parquet_bytes
from aml_pipeline.contract.schema import BATCH_TABLES, META_FILE
from aml_pipeline.contract.validation import validate_batch
from aml_pipeline_tests.conftest import DAY, NETWORK, batch_files, batch_tables

pytestmark = pytest.mark.integration  # lands hundreds of generated batches

SPECS = {spec.name: spec for spec in BATCH_TABLES}
#: Corruptions of a table's values, before the batch files and META.json are written.
VALUE_CORRUPTIONS = (
    "drop_column",
    "extra_column",
    "as_text",
    "nan",
    "inf",
    "huge",
    "negative",
    "duplicate_rows",
    "null_key",
    "empty_table",
)
#: Corruptions of a written file's bytes (META.json then disagrees with it).
BYTE_CORRUPTIONS = ("truncate", "foreign_bytes", "flip_byte", "empty_file", "drop_file")


@pytest.fixture(scope="module")
def tables() -> dict[str, pd.DataFrame]:
    return batch_tables()


def _corrupt_values(frame: pd.DataFrame, kind: str, column: str, row: int) -> pd.DataFrame:
    frame = frame.copy()
    row = row % max(len(frame), 1)
    numeric = pd.api.types.is_numeric_dtype(frame[column])
    if kind == "drop_column":
        return frame.drop(columns=[column])
    if kind == "extra_column":
        frame["unexpected"] = "x"
    elif kind == "as_text":
        frame[column] = frame[column].astype(str)
        frame.loc[row, column] = "not a value"
    elif kind in ("nan", "inf", "huge", "negative") and numeric and len(frame):
        value = {"nan": math.nan, "inf": math.inf, "huge": 1e300, "negative": -5.0}[kind]
        frame[column] = frame[column].astype("float64")
        frame.loc[row, column] = value
    elif kind == "duplicate_rows" and len(frame):
        frame = pd.concat([frame, frame.iloc[[row]]], ignore_index=True)
    elif kind == "null_key" and len(frame):
        frame[column] = frame[column].astype(object)
        frame.loc[row, column] = None
    elif kind == "empty_table":
        frame = frame.iloc[0:0]
    return frame


def _corrupt_bytes(files: dict[str, bytes], kind: str, name: str, at: float) -> None:
    data = files[name]
    cut = int(len(data) * at)
    if kind == "truncate":
        files[name] = data[:cut]
    elif kind == "foreign_bytes":
        files[name] = np.random.default_rng(cut).bytes(max(cut, 1))
    elif kind == "flip_byte" and data:
        position = min(cut, len(data) - 1)
        files[name] = data[:position] + bytes([data[position] ^ 0xFF]) + data[position + 1 :]
    elif kind == "empty_file":
        files[name] = b""
    elif kind == "drop_file":
        del files[name]


@settings(
    max_examples=80,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
)
@given(
    table=st.sampled_from(sorted(SPECS)),
    value_kind=st.sampled_from((None, *VALUE_CORRUPTIONS)),
    byte_kind=st.sampled_from((None, *BYTE_CORRUPTIONS)),
    column_pick=st.integers(0, 10_000),
    row=st.integers(0, 10_000),
    at=st.floats(0.0, 1.0),
)
def test_a_corrupted_batch_is_accepted_and_conforms_or_refused_with_reasons(
    tables, table, value_kind, byte_kind, column_pick, row, at
):
    corrupted = dict(tables)
    frame = tables[table]
    column = frame.columns[column_pick % len(frame.columns)]
    if value_kind is not None:
        corrupted[table] = _corrupt_values(frame, value_kind, column, row)
    files = batch_files(corrupted)
    if byte_kind is not None:
        _corrupt_bytes(files, byte_kind, SPECS[table].file if at < 0.8 else META_FILE, at)

    report = validate_batch(NETWORK, DAY, 7, files)  # never raises

    if report.ok:  # accepted: every table reads and conforms, with the reported rows
        for spec in BATCH_TABLES:
            if spec.file in files:
                conformed = conform_table(read_parquet_bytes(files[spec.file]), spec)
                assert len(conformed) == report.row_counts[spec.name]
    else:
        assert report.errors and all(p.file and p.problem for p in report.errors)
        assert "Traceback" not in report.format()
    if byte_kind in ("truncate", "foreign_bytes", "empty_file", "drop_file") and at < 0.8:
        assert not report.ok  # the file is not the one META.json describes
