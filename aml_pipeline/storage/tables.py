"""The warehouse's tables: one Parquet file per day, written and read through DuckDB.

DuckDB is the engine: it writes every file (``COPY ... TO ?``) and reads one partition or
a whole range back in a single ``read_parquet`` scan. Each call works on its own cursor of
a process-local in-memory DuckDB database (a cursor costs microseconds, a connection
~17 ms), so no database file exists and nothing is shared between processes. Paths come
from ``storage.layout``.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import re
from collections.abc import Iterator, Sequence
from typing import Any

import duckdb
import pandas as pd

from aml_pipeline.storage import layout
from aml_pipeline.storage.objects import Storage, storage_at

_SAFE_TYPE = re.compile(r"^[A-Z]+(\[\])?$")


def quote_ident(name: str) -> str:
    """Quote a column name as a DuckDB identifier."""
    return '"' + name.replace('"', '""') + '"'


def _select_sql(names: Sequence[str], declared: dict[str, str], order_by: Sequence[str]) -> str:
    """SELECT over the registered frame, casting declared columns to their types, sorted
    by ``order_by``."""
    parts = []
    for name in names:
        ident = quote_ident(str(name))
        type_ = declared.get(str(name))
        if type_ is not None:
            if not _SAFE_TYPE.match(type_):
                raise ValueError(f"unsupported column type {type_!r} for {name!r}")
            parts.append(f"CAST({ident} AS {type_}) AS {ident}")
        else:
            parts.append(ident)
    order = " ORDER BY " + ", ".join(map(quote_ident, order_by)) if order_by else ""
    return "SELECT " + (", ".join(parts) or "*") + " FROM frame" + order


_DATABASE: list[duckdb.DuckDBPyConnection] = []
#: DuckDB configuration options, as ``duckdb.connect(config=...)`` takes them.
DuckDBConfig = dict[str, str | bool | int | float | list[str]]
#: The settings the process's database opens with (``configure_duckdb``).
_SETTINGS: DuckDBConfig = {}


def _close_database() -> None:
    """Close the process's DuckDB database; the next cursor opens a new one."""
    while _DATABASE:
        _DATABASE.pop().close()


def configure_duckdb(threads: int = 0, memory_limit: str = "") -> None:
    """Open the process's database from now on with at most ``threads`` worker threads and
    ``memory_limit`` of memory (0 / empty: DuckDB's defaults); a bad limit is refused here,
    naming it."""
    settings: DuckDBConfig = {}
    if threads:
        settings["threads"] = threads
    if memory_limit:
        settings["memory_limit"] = memory_limit
    if settings != _SETTINGS:
        try:
            duckdb.connect(config=settings).close()
        except duckdb.Error as exc:
            raise ValueError(f"DuckDB settings {settings} refused: {exc}") from None
        _close_database()
        _SETTINGS.clear()
        _SETTINGS.update(settings)


# DuckDB runs threads: a fork while its database is open can leave the child with locks
# that no thread will release. Close it first (the parent reopens it on its next call).
os.register_at_fork(before=_close_database)


@contextlib.contextmanager
def duckdb_cursor() -> Iterator[duckdb.DuckDBPyConnection]:
    """A fresh cursor on this process's in-memory DuckDB database (opened on first use);
    closed on exit, with everything registered on it."""
    if not _DATABASE:
        _DATABASE.append(duckdb.connect(config=dict(_SETTINGS)))
    cursor = _DATABASE[0].cursor()
    try:
        yield cursor
    finally:
        cursor.close()


def one_row(
    con: duckdb.DuckDBPyConnection, sql: str, parameters: Sequence[object] = ()
) -> tuple[Any, ...]:
    """The one row an aggregate query (``SELECT count(*) ...``) returns."""
    row = con.execute(sql, parameters).fetchone()
    if row is None:
        raise ValueError(f"no row from {sql!r}")
    return row


def _frame_names(con: duckdb.DuckDBPyConnection) -> list[str]:
    return [row[0] for row in con.execute("DESCRIBE frame").fetchall()]


def write_frame(
    con: duckdb.DuckDBPyConnection,
    storage: Storage,
    key: str,
    declared: dict[str, str] | None = None,
    order_by: Sequence[str] = (),
    names: Sequence[str] | None = None,
) -> None:
    """Atomically write the view or frame ``frame`` of ``con`` as the Parquet file ``key``
    (declared columns cast, rows sorted by ``order_by`` if given; ``names``: its columns,
    when the caller knows them)."""
    names = _frame_names(con) if names is None else names
    select = _select_sql(names, declared or {}, order_by)
    with storage.writing(key) as tmp:
        con.execute(f"COPY ({select}) TO ? (FORMAT parquet, COMPRESSION zstd)", [str(tmp)])


def write_parquet(
    storage: Storage, key: str, df: pd.DataFrame, declared: dict[str, str] | None = None
) -> None:
    """Atomically write ``df`` as the Parquet file ``key`` through DuckDB (``write_frame``)."""
    with duckdb_cursor() as con:
        con.register("frame", df)
        write_frame(con, storage, key, declared, names=[str(c) for c in df.columns])


def frame_columns(
    con: duckdb.DuckDBPyConnection, declared: dict[str, str] | None = None
) -> list[tuple[str, str]]:
    """The (name, DuckDB type) columns that ``write_frame`` stores for ``con``'s frame."""
    select = _select_sql(_frame_names(con), declared or {}, ())
    return [(row[0], row[1]) for row in con.execute(f"DESCRIBE {select}").fetchall()]


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


class MissingPartitions(FileNotFoundError):
    """Stored partitions that a read needs are absent; ``days`` names them."""

    def __init__(self, message: str, days: list[dt.date]) -> None:
        super().__init__(message)
        self.days = days


class TableStore:
    """The daily tables under ``{data_root}/warehouse/``: the only reader and writer of
    warehouse files (the IO manager and plain code such as the CLI both go through it).
    A table is named by its asset key path, ``(network, name)``."""

    def __init__(self, root: str | Storage) -> None:
        """The tables of a data root (a directory or ``s3://`` URL), or of a storage."""
        self.storage = storage_at(root) if isinstance(root, str) else root

    def write(
        self,
        table: Sequence[str],
        day: str | None,
        df: pd.DataFrame,
        declared: dict[str, str] | None = None,
    ) -> None:
        """Atomically write one partition (``day`` None: an unpartitioned table)."""
        write_parquet(self.storage, layout.table_partition(table, day), df, declared)

    def write_from(
        self,
        con: duckdb.DuckDBPyConnection,
        table: Sequence[str],
        day: str,
        declared: dict[str, str] | None = None,
        order_by: Sequence[str] = (),
    ) -> None:
        """Atomically write one partition from the frame of ``con`` (``write_frame``)."""
        write_frame(con, self.storage, layout.table_partition(table, day), declared, order_by)

    def _paths(self, table: Sequence[str], days: Sequence[str | None]) -> list[str]:
        """Local files to scan for the stored partitions of ``days``."""
        keys = [layout.table_partition(table, d) for d in days]
        return [str(p) for p in self.storage.each(self.storage.read_path, keys)]

    def missing(self, table: Sequence[str], days: Sequence[str | None]) -> list[str | None]:
        """Those of ``days`` that have no stored partition."""
        keys = [layout.table_partition(table, d) for d in days]
        stored = self.storage.each(self.storage.exists, keys)
        return [d for d, there in zip(days, stored, strict=True) if not there]

    def read(
        self, table: Sequence[str], days: Sequence[str | None], columns: Sequence[str] | None
    ) -> pd.DataFrame:
        """The stored partitions of ``days`` in one scan (only ``columns`` if given)."""
        paths = self._paths(table, days)
        return read_parquet(paths, columns)

    @contextlib.contextmanager
    def scanning(
        self, table: Sequence[str], days: Sequence[str]
    ) -> Iterator[duckdb.DuckDBPyConnection]:
        """A cursor on which the view ``frame`` is the stored partitions of ``days``, for
        SQL that needs no copy of them in pandas (checks, counts)."""
        paths = self._paths(table, days)
        with duckdb_cursor() as con:
            con.read_parquet(paths, union_by_name=True).create_view("frame")
            yield con

    def stored_days(self, table: Sequence[str]) -> list[dt.date]:
        """The days with a stored partition, ascending."""
        names = (
            n.removesuffix(".parquet") for n in self.storage.list_dir(layout.table_folder(table))
        )
        return sorted(dt.date.fromisoformat(n) for n in names if layout.is_day(n))

    def read_days(
        self,
        table: Sequence[str],
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
        missing = self.missing(table, [d.isoformat() for d in wanted])
        if missing:
            shown = ", ".join(map(str, missing[:5])) + (" ..." if len(missing) > 5 else "")
            raise MissingPartitions(
                f"{'/'.join(table)} is not stored for {len(missing)} day(s) "
                f"{'after its data began on ' + str(since) if since else 'asked for'}: {shown}; "
                "materialize them first",
                [dt.date.fromisoformat(d) for d in missing if d is not None],
            )
        if not wanted:
            return pd.DataFrame(columns=list(columns or []))
        return self.read(table, [d.isoformat() for d in wanted], columns)
