"""An IO manager that keeps each partition of a DataFrame asset as one Parquet file.

DuckDB is the engine: it writes every file (``COPY ... TO ?``) and reads one partition
or a whole range back in a single ``read_parquet`` scan. Each call works on its own cursor
of a process-local in-memory DuckDB database (a cursor costs microseconds, a connection
~17 ms), so no database file exists and nothing is shared between processes.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import re
from collections.abc import Iterator, Sequence

import dagster as dg
import duckdb
import pandas as pd

from aml_pipeline.storage import LocalStorage

COLUMN_SCHEMA_KEY = "dagster/column_schema"
#: Output metadata: the date column a multi-day output is split on (default
#: ``processing_date``; label events are partitioned by ``label_date``).
PARTITION_COLUMN_KEY = "partition_column"
#: Input metadata: read only these columns.
COLUMNS_KEY = "columns"
_SAFE_TYPE = re.compile(r"^[A-Z]+(\[\])?$")


def quote_ident(name: str) -> str:
    """Quote a column name as a DuckDB identifier."""
    return '"' + name.replace('"', '""') + '"'


def _select_sql(df: pd.DataFrame, declared: dict[str, str]) -> str:
    """SELECT over the registered frame, casting declared columns to their types."""
    parts = []
    for name in df.columns:
        ident = quote_ident(str(name))
        type_ = declared.get(str(name))
        if type_ is not None:
            if not _SAFE_TYPE.match(type_):
                raise ValueError(f"unsupported column type {type_!r} for {name!r}")
            parts.append(f"CAST({ident} AS {type_}) AS {ident}")
        else:
            parts.append(ident)
    return "SELECT " + (", ".join(parts) or "*") + " FROM frame"


_DATABASE: list[duckdb.DuckDBPyConnection] = []


def _close_database() -> None:
    """Close the process's DuckDB database; the next cursor opens a new one."""
    while _DATABASE:
        _DATABASE.pop().close()


# DuckDB runs threads: a fork while its database is open can leave the child with locks
# that no thread will release. Close it first (the parent reopens it on its next call).
os.register_at_fork(before=_close_database)


@contextlib.contextmanager
def duckdb_cursor() -> Iterator[duckdb.DuckDBPyConnection]:
    """A fresh cursor on this process's in-memory DuckDB database (opened on first use);
    closed on exit, with everything registered on it."""
    if not _DATABASE:
        _DATABASE.append(duckdb.connect())
    cursor = _DATABASE[0].cursor()
    try:
        yield cursor
    finally:
        cursor.close()


def write_parquet(
    storage: LocalStorage, key: str, df: pd.DataFrame, declared: dict[str, str] | None = None
) -> None:
    """Atomically write ``df`` as the Parquet file ``key`` through DuckDB."""
    with duckdb_cursor() as con, storage.writing(key) as tmp:
        con.register("frame", df)
        con.execute(
            f"COPY ({_select_sql(df, declared or {})}) TO ? (FORMAT parquet, COMPRESSION zstd)",
            [str(tmp)],
        )


def read_parquet(paths: Sequence[str], columns: Sequence[str] | None = None) -> pd.DataFrame:
    """Read one or more Parquet files in one DuckDB scan (only ``columns`` if given); DATE
    columns come back as dates."""
    select = ", ".join(quote_ident(c) for c in columns) if columns else "*"
    with duckdb_cursor() as con:
        result = con.execute(
            f"SELECT {select} FROM read_parquet(?, union_by_name = true)", [list(paths)]
        )
        date_cols = [d[0] for d in result.description if str(d[1]) == "DATE"]
        df = result.df(date_as_object=True)
    for col in date_cols:
        if df[col].isna().any():  # NULL dates come back as NaT; the tables use None
            df[col] = df[col].astype("object").where(df[col].notna(), None)
    return df


#: Output metadata: column -> DuckDB type to store it as, for assets without a declared
#: column schema (e.g. ``{"processing_date": "DATE"}``).
STORAGE_TYPES_KEY = "storage_types"


def _declared_types(metadata: dict | None) -> dict[str, str]:
    """Storage types from the declared column schema, else from ``storage_types``."""
    metadata = metadata or {}
    schema = metadata.get(COLUMN_SCHEMA_KEY)
    if schema is None:
        types = metadata.get(STORAGE_TYPES_KEY)
        return dict(getattr(types, "value", types) or {})
    schema = getattr(schema, "schema", schema)
    return {c.name: c.type for c in schema.columns}


class DuckDBParquetIOManager(dg.ConfigurableIOManager):
    """One Parquet file per asset partition under ``{data_root}/{prefix}/{asset key}/``.

    Inputs read every partition they map to and fail if one is missing; an input whose
    metadata lists ``columns`` reads only those. ``read_days`` is the same read for code
    that names its days itself (look-backs, training ranges): the only other reader of
    the warehouse.

    Multi-partition outputs (single-run backfills) are split on ``processing_date`` (or the
    column the asset's ``partition_column`` metadata names) and written one file per day;
    range inputs are read back in one scan. Columns named in the asset's
    ``dagster/column_schema`` metadata are cast to their declared DuckDB type, so an empty
    day still has a typed file.
    """

    data_root: str
    prefix: str = "warehouse"

    @property
    def storage(self) -> LocalStorage:
        return LocalStorage(self.data_root)

    def key_for(self, asset_key: dg.AssetKey, partition_key: str | None) -> str:
        """The storage key of one partition (or of an unpartitioned asset)."""
        name = partition_key if partition_key is not None else "data"
        if partition_key is not None:
            dt.date.fromisoformat(partition_key)
        return "/".join([self.prefix, *asset_key.path, f"{name}.parquet"])

    def handle_output(self, context: dg.OutputContext, obj: pd.DataFrame) -> None:
        if obj is None:
            return
        if not isinstance(obj, pd.DataFrame):
            raise TypeError(f"{context.asset_key.to_user_string()}: expected a DataFrame")
        declared = _declared_types(context.definition_metadata)
        if not context.has_asset_partitions:
            write_parquet(self.storage, self.key_for(context.asset_key, None), obj, declared)
            return
        keys = list(context.asset_partition_keys)
        column = (context.definition_metadata or {}).get(PARTITION_COLUMN_KEY, "processing_date")
        if len(keys) == 1:
            parts = {keys[0]: obj}
        else:
            if column not in obj.columns:
                raise ValueError(
                    f"{context.asset_key.to_user_string()}: a multi-partition output needs a "
                    f"{column} column to split on"
                )
            day = obj[column].astype(str)
            unknown = sorted(set(day) - set(keys))
            if unknown:
                raise ValueError(f"rows for dates outside the run's partitions: {unknown[:3]}")
            parts = {k: obj[day == k].reset_index(drop=True) for k in keys}
        for key, part in parts.items():
            write_parquet(self.storage, self.key_for(context.asset_key, key), part, declared)
        context.add_output_metadata({"files": len(parts)})

    def load_input(self, context: dg.InputContext) -> pd.DataFrame:
        keys = list(context.asset_partition_keys) if context.has_asset_partitions else [None]
        columns = (context.definition_metadata or {}).get(COLUMNS_KEY)
        storage_keys = [self.key_for(context.asset_key, k) for k in keys]
        missing = [
            k for k, sk in zip(keys, storage_keys, strict=True) if not self.storage.exists(sk)
        ]
        if missing:
            raise FileNotFoundError(
                f"{context.asset_key.to_user_string()} has no stored partition(s) {missing[:5]}: "
                "materialize them first"
            )
        return read_parquet([str(self.storage.local_path(k)) for k in storage_keys], columns)

    def stored_days(self, asset_key: dg.AssetKey) -> list[dt.date]:
        """The days with a stored partition of ``asset_key``, ascending."""
        folder = "/".join([self.prefix, *asset_key.path])
        names = (n.removesuffix(".parquet") for n in self.storage.list_dir(folder))
        return sorted(dt.date.fromisoformat(n) for n in names if _is_day(n))

    def read_days(
        self,
        asset_key: dg.AssetKey,
        days: Sequence[dt.date],
        columns: Sequence[str] | None = None,
        since: dt.date | None = None,
    ) -> pd.DataFrame:
        """The stored partitions of ``days`` in one scan (only ``columns`` if given).

        Days before ``since`` (before the data began) may be missing and read as no rows;
        a missing day on or after it is an error that names the days. Without ``since``
        every day must be stored.
        """
        wanted = [d for d in days if since is None or d >= since]
        keys = [self.key_for(asset_key, d.isoformat()) for d in wanted]
        missing = [d for d, k in zip(wanted, keys, strict=True) if not self.storage.exists(k)]
        if missing:
            shown = ", ".join(str(d) for d in missing[:5]) + (" ..." if len(missing) > 5 else "")
            raise MissingPartitions(
                f"{asset_key.to_user_string()} is not stored for {len(missing)} day(s) "
                f"{'after its data began on ' + str(since) if since else 'asked for'}: {shown}; "
                "materialize them first",
                missing,
            )
        if not keys:
            return pd.DataFrame(columns=list(columns or []))
        return read_parquet([str(self.storage.local_path(k)) for k in keys], columns)


#: How an asset or check asks for the configured warehouse IO manager as a parameter
#: named ``warehouse_io_manager`` (to read days it names itself).
Warehouse = dg.ResourceParam[DuckDBParquetIOManager]


class MissingPartitions(FileNotFoundError):
    """Stored partitions that a read needs are absent; ``days`` names them."""

    def __init__(self, message: str, days: list[dt.date]) -> None:
        super().__init__(message)
        self.days = days


def _is_day(name: str) -> bool:
    try:
        dt.date.fromisoformat(name)
    except ValueError:
        return False
    return len(name) == 10
