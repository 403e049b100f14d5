"""The analyst's SQL console: read-only DuckDB views over every published and warehouse
table, each with ``network`` and a date column, whose date filter prunes files.

The seed's ``ResultsDatabase``, done so that ``WHERE processing_date = ...`` over a year of
history opens one day's file: the console lays a hive-style tree of links
(``{table}/network={n}/processing_date={day}/data.parquet``) outside the record — in a
temporary folder, or beside a catalog file — pointing at the record's files, and each view
reads that tree with ``hive_partitioning``, so DuckDB drops the files a filter on
``network`` or the date excludes before opening them. On a local data root a link to a
published day goes through the day's own link, so it always reads the day's current
version; on an ``s3://`` root the links point at local copies (``read_path``: downloaded
once per object version, at the console's start), so a catalog shows the versions of when
it was written (write it again for newer ones).

The console never writes to the record: only SELECT and EXPLAIN statements run, on a
connection whose file access is limited to the data root (on S3: its local copies) and the
link tree, configuration locked; results are written (``--output``) only outside them.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import duckdb
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from aml_pipeline.storage import layout
from aml_pipeline.storage.objects import Storage, storage_at

T = TypeVar("T")


class ConsoleRefused(ValueError):
    """A statement the read-only console does not run, or an output inside the record."""


@dataclass(frozen=True)
class ConsoleTable:
    """One view: its name, where its daily files are, and its date column."""

    name: str
    source: str  # "output": a published day's file; else the warehouse table's name
    file: str = ""
    date_column: str = "processing_date"
    #: whether days may differ in columns (read every file's schema: no file pruning)
    drifts: bool = False


TABLES = (
    ConsoleTable("alert_scores", "output", "alert_scores.parquet"),
    ConsoleTable("alert_rankings", "output", "alert_rankings.parquet"),
    ConsoleTable("cluster_scores", "output", "cluster_scores.parquet"),
    ConsoleTable("tier1_evaluation", "tier1_evaluation"),
    ConsoleTable("tier2_evaluation", "tier2_evaluation"),
    ConsoleTable("tier3_evaluation", "tier3_evaluation"),
    ConsoleTable("raw_alerts", "raw_alerts"),
    ConsoleTable("alert_features", "alert_features", drifts=True),
    ConsoleTable("cluster_features", "cluster_features", drifts=True),
    ConsoleTable("labels", "label_events", date_column="label_date"),
)
READ_ONLY = (duckdb.StatementType.SELECT, duckdb.StatementType.EXPLAIN)
#: What a refused, failing or stopped statement raises.
QUERY_ERRORS = (ConsoleRefused, duckdb.Error)
#: A statement still running after this many seconds is stopped (``--timeout``).
QUERY_TIMEOUT_S = 300.0
#: Rows read of a result that is printed: the rest is never materialized.
PRINTED_ROWS = 200
#: Rows per batch when a result streams to ``--output``.
BATCH_ROWS = 100_000
_TREE_PREFIX = "aml-console-"


def _local(storage: Storage, key: str) -> Path | None:
    try:
        return storage.read_path(key)
    except FileNotFoundError:
        return None


def _daily_files(storage: Storage, network: str, table: ConsoleTable) -> list[tuple[str, Path]]:
    """(day, local file) of every stored day of ``table`` in ``network`` (on an object
    store, the days' copies are fetched concurrently)."""
    if table.source == "output":
        days = [d for d in storage.list_dir(layout.output_network(network)) if layout.is_day(d)]
        keys = [f"{layout.output_day(network, day)}/{table.file}" for day in days]
    else:
        folder = layout.table_folder((network, table.source))
        stored = [(n, layout.partition_day(n)) for n in storage.list_dir(folder)]
        days = [day.isoformat() for _, day in stored if day is not None]
        keys = [f"{folder}/{name}" for name, day in stored if day is not None]
    paths = storage.each(lambda key: _local(storage, key), keys)
    return [(day, path) for day, path in zip(days, paths, strict=True) if path is not None]


def link_tree(storage: Storage, networks: Sequence[str], tree: Path) -> dict[str, int]:
    """(Re)build the hive-style link tree under ``tree``; the number of files per table."""
    counts = {}
    for table in TABLES:
        target = tree / table.name
        shutil.rmtree(target, ignore_errors=True)
        count = 0
        for network in networks:
            for day, path in _daily_files(storage, network, table):
                folder = target / f"network={network}" / f"{table.date_column}={day}"
                folder.mkdir(parents=True)
                # a published file through its day's link: the day's current version
                os.symlink(path, folder / "data.parquet")
                count += 1
        counts[table.name] = count
    return counts


def _literal(text: str) -> str:
    """A SQL string literal (view definitions cannot take parameters; the text is a path
    this module built, never user input)."""
    return "'" + text.replace("'", "''") + "'"


def create_views(conn: duckdb.DuckDBPyConnection, tree: Path, counts: dict[str, int]) -> None:
    """One view per table that has files, over its link tree."""
    for table in TABLES:
        if not counts.get(table.name):
            continue
        files = _literal(str(tree / table.name / "*" / "*" / "data.parquet"))
        conn.execute(
            f"CREATE OR REPLACE VIEW {table.name} AS SELECT * FROM read_parquet({files}, "
            f"hive_partitioning = true, hive_types = {{'{table.date_column}': DATE}}, "
            f"union_by_name = {str(table.drifts).lower()})"
        )


def _sandbox(conn: duckdb.DuckDBPyConnection, storage: Storage, tree: Path) -> None:
    conn.execute(
        "SET allowed_directories = $dirs",
        {"dirs": [f"{storage.scan_dir.resolve()}{os.sep}", f"{tree.resolve()}{os.sep}"]},
    )
    conn.execute("SET enable_external_access = false")
    conn.execute("SET autoload_known_extensions = false")
    conn.execute("SET lock_configuration = true")


@contextlib.contextmanager
def open_console(
    data_root: str | os.PathLike[str], networks: Sequence[str]
) -> Iterator[tuple[duckdb.DuckDBPyConnection, dict[str, int]]]:
    """A sandboxed in-memory DuckDB with the views, and the files per view; its link tree
    lives in a temporary folder removed on exit."""
    storage = storage_at(str(data_root))
    _remove_orphan_trees(Path(tempfile.gettempdir()))
    with tempfile.TemporaryDirectory(prefix=f"{_TREE_PREFIX}{os.getpid()}-") as folder:
        tree = Path(folder)
        counts = link_tree(storage, networks, tree)
        conn = duckdb.connect(":memory:")
        try:
            create_views(conn, tree, counts)
            _sandbox(conn, storage, tree)
            yield conn, counts
        finally:
            conn.close()


def write_catalog(
    catalog: str | os.PathLike[str], data_root: str | os.PathLike[str], networks: Sequence[str]
) -> dict[str, int]:
    """Write a ``.duckdb`` file of the views (its link tree in ``{catalog}.files/``) that
    the DuckDB CLI or any DuckDB client opens directly; re-run it to add new days."""
    storage, path = storage_at(str(data_root)), Path(catalog).resolve()
    refuse_inside(path, data_root)
    counts = link_tree(storage, networks, path.with_name(f"{path.name}.files"))
    with contextlib.closing(duckdb.connect(str(path))) as conn:
        create_views(conn, path.with_name(f"{path.name}.files"), counts)
    return counts


def refuse_inside(path: Path, data_root: str | os.PathLike[str]) -> None:
    """Refuse to write ``path`` inside the record."""
    if path.resolve().is_relative_to(storage_at(str(data_root)).scan_dir.resolve()):
        raise ConsoleRefused(f"{path} is inside the data root {data_root}: write elsewhere")


def _remove_orphan_trees(folder: Path) -> None:
    """Remove the link trees of consoles whose process is gone (killed, not exited)."""
    for tree in folder.glob(f"{_TREE_PREFIX}*"):
        pid = tree.name.removeprefix(_TREE_PREFIX).split("-", 1)[0]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(tree, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    return True


def interruptible(
    conn: duckdb.DuckDBPyConnection,
    work: Callable[[threading.Event], T],
    timeout_s: float = QUERY_TIMEOUT_S,
) -> T:
    """``work(stop)`` (which runs statements on ``conn``, checking ``stop`` between them)
    in a worker thread; after ``timeout_s`` seconds, or on Ctrl-C, the running statement
    is interrupted and no further one starts."""
    stop = threading.Event()
    with ThreadPoolExecutor(1) as pool:
        future = pool.submit(work, stop)
        try:
            return future.result(timeout=timeout_s)
        except FutureTimeout:
            _stop(conn, stop, future)
            raise ConsoleRefused(f"the statements were stopped after {timeout_s:g} s") from None
        except KeyboardInterrupt:
            _stop(conn, stop, future)
            raise ConsoleRefused("the statement was cancelled (Ctrl-C)") from None


def _stop(conn: duckdb.DuckDBPyConnection, stop: threading.Event, future: Future) -> None:
    """Interrupt the work until it has ended (an interrupt that falls between two
    statements is repeated; an interrupted Arrow stream raises OSError); another Ctrl-C
    meanwhile changes nothing, the work is being stopped already."""
    stop.set()
    while True:
        conn.interrupt()
        try:
            future.result(timeout=0.2)
        except (FutureTimeout, KeyboardInterrupt):  # still running (a TimeoutError is an
            continue  # OSError: caught first), or Ctrl-C again
        except (duckdb.Error, ConsoleRefused, OSError):
            pass
        return


def _statements(conn: duckdb.DuckDBPyConnection, sql: str) -> list[str]:
    statements = conn.extract_statements(sql)
    if not statements:
        raise ConsoleRefused("no statement to run")
    refused = [s.type.name for s in statements if s.type not in READ_ONLY]
    if refused:
        raise ConsoleRefused(f"the console is read-only: {', '.join(refused)} is not run")
    return [s.query for s in statements]


def run_query(
    conn: duckdb.DuckDBPyConnection,
    sql: str,
    max_rows: int | None = PRINTED_ROWS,
    timeout_s: float = QUERY_TIMEOUT_S,
) -> pa.Table | None:
    """Run the statements of ``sql`` (SELECT or EXPLAIN only); the last one's result, at
    most ``max_rows`` rows of it (read no further); the statements together are stopped
    after ``timeout_s`` seconds or on Ctrl-C."""

    def work(stop: threading.Event) -> pa.Table | None:
        result = None
        for query in _statements(conn, sql):
            if stop.is_set():
                break
            relation = conn.sql(query)
            if relation is not None and max_rows is not None:
                relation = relation.limit(max_rows)
            result = relation.to_arrow_table() if relation is not None else None
        return result

    return interruptible(conn, work, timeout_s)


def write_result(
    conn: duckdb.DuckDBPyConnection,
    sql: str,
    output: Path,
    data_root: str | os.PathLike[str],
    timeout_s: float = QUERY_TIMEOUT_S,
) -> int:
    """Stream the last statement's result of ``sql`` to ``output`` as CSV or Parquet (by
    its suffix), outside the record, in batches (never whole in memory); its row count.
    The file appears only complete: it is written beside ``output`` and renamed at the end,
    and removed when the statement fails or is stopped."""
    refuse_inside(output, data_root)
    if output.suffix not in (".csv", ".parquet"):
        raise ConsoleRefused(f"--output must end in .csv or .parquet, got {output.name}")

    def work(stop: threading.Event) -> int:
        *earlier, last = _statements(conn, sql)
        for query in earlier:
            if stop.is_set():
                raise ConsoleRefused("stopped")
            conn.sql(query).limit(0).fetchall()  # checked and run, nothing kept
        reader = conn.sql(last).to_arrow_reader(BATCH_ROWS)
        writer_type = pq.ParquetWriter if output.suffix == ".parquet" else pa_csv.CSVWriter
        rows = 0
        with writer_type(partial, reader.schema) as writer:
            for batch in reader:
                writer.write_batch(batch)
                rows += batch.num_rows
        os.replace(partial, output)
        return rows

    partial = output.with_name(f".{output.name}.partial")
    try:
        return interruptible(conn, work, timeout_s)
    finally:
        partial.unlink(missing_ok=True)
