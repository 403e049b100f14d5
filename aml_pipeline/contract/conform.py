"""Casting raw columns to their contract types, shared by validation and ingestion."""

from __future__ import annotations

import io
from collections.abc import Callable

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from aml_pipeline.contract.schema import (
    ALERT_DEFAULTS,
    DUCKDB_TYPES,
    PANDAS_DTYPES,
    ColumnType,
    TableSpec,
)
from aml_pipeline.storage.tables import quote_ident


def read_parquet_bytes(data: bytes) -> pd.DataFrame:
    """Parse a Parquet file held in memory (raises on unreadable or truncated data)."""
    return pq.read_table(io.BytesIO(data)).to_pandas()


def _is_missing(value: object) -> bool:
    if value is None:
        return True
    if isinstance(value, float | np.floating):
        return bool(np.isnan(value))
    return value is pd.NA or value is pd.NaT


def _as_str(value: object) -> str | None:
    if isinstance(value, str):
        return value
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="strict")
    if isinstance(value, bool | int | float | np.integer | np.floating):
        return str(value)
    return None


def _as_bool(value: object) -> bool | None:
    if isinstance(value, bool | np.bool_):
        return bool(value)
    if isinstance(value, int | np.integer) and int(value) in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in ("true", "false", "1", "0"):
        return value.strip().lower() in ("true", "1")
    return None


def _list_of(item: Callable[[object], object | None]) -> Callable[[object], list | None]:
    def convert(value: object) -> list | None:
        if not isinstance(value, list | tuple | np.ndarray):
            return None
        items = [item(v) for v in value]
        return None if any(v is None for v in items) else items

    return convert


def _as_int(value: object) -> int | None:
    if isinstance(value, bool | np.bool_):
        return int(value)
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, float | np.floating) and float(value).is_integer():
        return int(value)
    return None


_ELEMENTWISE: dict[ColumnType, Callable[[object], object | None]] = {
    "string": _as_str,
    "bool": _as_bool,
    "string_list": _list_of(_as_str),
    "int_list": _list_of(_as_int),
}


def _cast_elementwise(
    series: pd.Series, convert: Callable[[object], object | None]
) -> tuple[list[object | None], list[object]]:
    values: list[object | None] = []
    bad: list[object] = []
    for value in series.tolist():
        if not isinstance(value, list | tuple | np.ndarray) and _is_missing(value):
            values.append(None)
            continue
        try:
            converted = convert(value)
        except (UnicodeDecodeError, ValueError, TypeError):
            converted = None
        if converted is None:
            bad.append(value)
        values.append(converted)
    return values, bad


def _to_numeric(series: pd.Series) -> tuple[pd.Series, pd.Series]:
    if pd.api.types.is_bool_dtype(series.dtype):
        series = series.astype("Int64")
    numeric = pd.to_numeric(series, errors="coerce")
    return numeric, series.notna() & numeric.isna()


_LIST_ITEMS = {"string_list": pa.string(), "int_list": pa.int64()}


def _fast_cast(series: pd.Series, type_: ColumnType) -> pd.Series | None:
    """A vectorized cast when every value already has a compatible kind, else ``None``
    (the element-wise path then finds and reports the offending values)."""
    if type_ == "string":
        if pd.api.types.infer_dtype(series, skipna=True) in ("string", "empty"):
            return series.astype("str")
        return None
    if type_ == "bool":
        if pd.api.types.infer_dtype(series, skipna=True) in ("boolean", "empty"):
            return series.astype("boolean")
        return None
    try:
        values = pa.array(series, from_pandas=True).cast(pa.list_(_LIST_ITEMS[type_]))
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
        return None
    return pd.Series(pd.arrays.ArrowExtensionArray(values), index=series.index)


def cast_column(series: pd.Series, type_: ColumnType) -> tuple[pd.Series, list[object]]:
    """Cast ``series`` to the contract type; return it and the values that could not be cast.

    Values that cannot be cast become missing in the returned series.
    """
    index = series.index
    if type_ in ("int", "timestamp_ms"):
        if type_ == "timestamp_ms" and pd.api.types.is_datetime64_any_dtype(series.dtype):
            ms = series.astype("datetime64[ms]").astype("int64").where(series.notna())
            return ms.astype("Int64"), []
        numeric, failed = _to_numeric(series)
        as_float = numeric.astype("float64")
        fractional = numeric.notna() & (numeric != np.floor(as_float))
        # infinities and magnitudes beyond int64 are no integers either
        unrepresentable = numeric.notna() & ~(as_float.abs() < 2.0**63)
        failed = failed | fractional | unrepresentable
        result = numeric.where(~failed).astype("float64").astype("Int64")
        return result, series[failed].tolist()
    if type_ == "float":
        numeric, failed = _to_numeric(series)
        return numeric.astype("float64"), series[failed].tolist()
    if type_ == "date":
        if pd.api.types.is_datetime64_any_dtype(series.dtype):
            parsed = series
        elif pd.api.types.infer_dtype(series, skipna=True) in ("date", "datetime", "empty"):
            parsed = pd.to_datetime(series, errors="coerce")
        else:
            parsed = pd.to_datetime(series, errors="coerce", format="ISO8601")
        failed = series.notna() & parsed.isna()
        dates = parsed.dt.date.astype("object").where(parsed.notna(), None)
        return dates, series[failed].tolist()
    fast = _fast_cast(series, type_)
    if fast is not None:
        return fast, []
    values, bad = _cast_elementwise(series, _ELEMENTWISE[type_])
    return pd.Series(values, index=index, dtype=PANDAS_DTYPES[type_]), bad


#: The Arrow type each contract type is stored as.
ARROW_TYPES: dict[ColumnType, pa.DataType] = {
    "string": pa.string(),
    "int": pa.int64(),
    "float": pa.float64(),
    "bool": pa.bool_(),
    "date": pa.date32(),
    "timestamp_ms": pa.int64(),
    "string_list": pa.list_(pa.string()),
    "int_list": pa.list_(pa.int64()),
}


def _is_string(type_: pa.DataType) -> bool:
    return pa.types.is_string(type_) or pa.types.is_large_string(type_)


def _is_int(type_: pa.DataType) -> bool:
    return pa.types.is_integer(type_) and type_ != pa.uint64()


def is_native(type_: ColumnType, arrow_type: pa.DataType) -> bool:
    """Whether every value of an Arrow column of ``arrow_type`` already is a ``type_``
    value: it then casts without loss and needs no value-by-value check."""
    if type_ == "string":
        return _is_string(arrow_type)
    if type_ in ("int", "timestamp_ms"):
        return _is_int(arrow_type)
    if type_ == "float":
        return pa.types.is_floating(arrow_type)
    if type_ == "bool":
        return pa.types.is_boolean(arrow_type)
    if type_ == "date":
        return pa.types.is_date(arrow_type)
    if not (pa.types.is_list(arrow_type) or pa.types.is_large_list(arrow_type)):
        return False
    item = arrow_type.value_type
    return _is_string(item) if type_ == "string_list" else _is_int(item)


def conform_arrow(table: pa.Table, spec: TableSpec) -> pa.Table:
    """``conform_table`` for an Arrow table, with the same result: columns whose Arrow type
    is native to their contract type are cast in Arrow (no copy through pandas), the others
    through ``cast_column``; missing columns and unknown extra columns as there."""
    n = table.num_rows
    columns: dict[str, pa.ChunkedArray | pa.Array] = {}
    for col in spec.columns:
        arrow_type = ARROW_TYPES[col.type]
        if col.name in table.column_names:
            column = table.column(col.name)
            if is_native(col.type, column.type):
                columns[col.name] = column.cast(arrow_type)
            else:
                series, _ = cast_column(column.to_pandas(), col.type)
                columns[col.name] = pa.array(series, type=arrow_type, from_pandas=True)
        elif spec.name == "alerts" and col.name in ALERT_DEFAULTS:
            columns[col.name] = pa.array([ALERT_DEFAULTS[col.name]] * n, type=arrow_type)
        elif col.type in ("string_list", "int_list") and spec.name == "alerts":
            columns[col.name] = pa.array([[] for _ in range(n)], type=arrow_type)
        else:
            columns[col.name] = pa.nulls(n, type=arrow_type)
    for extra in table.column_names:
        if extra not in spec.by_name:
            columns[extra] = table.column(extra)
    return pa.table(columns)


def conform_sql(spec: TableSpec, schema: pa.Schema, source: str) -> str | None:
    """A DuckDB SELECT over the view ``source`` (a file of ``schema``) that gives what
    ``conform_table`` gives, when every contract column the file has is native to its type
    (``is_native``) and none it lacks takes a default; None otherwise."""
    parts = []
    for col in spec.columns:
        ident, type_ = quote_ident(col.name), DUCKDB_TYPES[col.type]
        if col.name in schema.names:
            if not is_native(col.type, schema.field(col.name).type):
                return None
            parts.append(f"CAST({ident} AS {type_}) AS {ident}")
        elif spec.name == "alerts":
            return None  # alerts' missing columns take defaults: conform_arrow
        else:
            parts.append(f"CAST(NULL AS {type_}) AS {ident}")
    parts += [quote_ident(name) for name in schema.names if name not in spec.by_name]
    return f"SELECT {', '.join(parts)} FROM {source}"


def empty_column(type_: ColumnType, length: int, default: object = None) -> pd.Series:
    """A column of ``length`` missing values (or ``default``) with the contract dtype."""
    return pd.Series([default] * length, dtype=PANDAS_DTYPES[type_])


def conform_table(df: pd.DataFrame, spec: TableSpec) -> pd.DataFrame:
    """Return ``df`` with every contract column cast, missing optional columns added.

    Missing optional columns take the contract default (alerts) or missing values;
    unknown extra columns are kept after the contract columns, unchanged.
    Values that cannot be cast become missing; ``validate_batch`` refuses such batches
    before they reach this point.
    """
    n = len(df)
    out: dict[str, pd.Series] = {}
    for col in spec.columns:
        if col.name in df.columns:
            out[col.name], _ = cast_column(df[col.name].reset_index(drop=True), col.type)
        elif spec.name == "alerts" and col.name in ALERT_DEFAULTS:
            out[col.name] = empty_column(col.type, n, ALERT_DEFAULTS[col.name])
        elif col.type in ("string_list", "int_list") and spec.name == "alerts":
            out[col.name] = pd.Series([[] for _ in range(n)], dtype="object")
        else:
            out[col.name] = empty_column(col.type, n)
    for extra in df.columns:
        if extra not in spec.by_name:
            out[extra] = df[extra].reset_index(drop=True)
    return pd.DataFrame(out, index=pd.RangeIndex(n))
