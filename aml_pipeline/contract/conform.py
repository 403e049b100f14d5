"""Casting raw columns to their contract types, shared by validation and ingestion."""

from __future__ import annotations

import io
from collections.abc import Callable

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from aml_pipeline.contract.schema import ALERT_DEFAULTS, PANDAS_DTYPES, ColumnType, TableSpec


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
        fractional = numeric.notna() & (numeric != np.floor(numeric.astype("float64")))
        failed = failed | fractional
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
