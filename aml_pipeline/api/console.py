"""The analyst's SQL console: read-only DuckDB views over every published and warehouse
table, each with ``network`` and a date column, whose date filter prunes files.

The seed's ``ResultsDatabase``, done so that ``WHERE processing_date = ...`` over a year of
history opens one day's file: the console lays a hive-style tree of links
(``{table}/network={n}/processing_date={day}/data.parquet``) outside the record — in a
temporary folder, or beside a catalog file — pointing at the record's files, and each view
reads that tree with ``hive_partitioning``, so DuckDB drops the files a filter on
``network`` or the date excludes before opening them. A link to a published day goes
through the day's own link, so it always reads the day's current version.

The console never writes to the record: only SELECT and EXPLAIN statements run, on a
connection whose file access is limited to the data root and the link tree, configuration
locked; results are written (``--output``) only outside the data root.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from aml_pipeline.storage import layout


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
#: What a refused or failing statement raises.
QUERY_ERRORS = (ConsoleRefused, duckdb.Error)


def _daily_files(root: Path, network: str, table: ConsoleTable) -> Iterator[tuple[str, Path]]:
    """(day, file) of every stored day of ``table`` in ``network``."""
    if table.source == "output":
        folder = root / layout.output_network(network)
        names = sorted(os.listdir(folder)) if folder.is_dir() else []
        for name in names:
            if layout.is_day(name) and (folder / name / table.file).is_file():
                yield name, folder / name / table.file
        return
    folder = root / layout.table_folder((network, table.source))
    for name in sorted(os.listdir(folder)) if folder.is_dir() else []:
        day = layout.partition_day(name)
        if day is not None:
            yield day.isoformat(), folder / name


def link_tree(data_root: Path, networks: Sequence[str], tree: Path) -> dict[str, int]:
    """(Re)build the hive-style link tree under ``tree``; the number of files per table."""
    counts = {}
    for table in TABLES:
        target = tree / table.name
        shutil.rmtree(target, ignore_errors=True)
        count = 0
        for network in networks:
            for day, path in _daily_files(data_root, network, table):
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


def _sandbox(conn: duckdb.DuckDBPyConnection, data_root: Path, tree: Path) -> None:
    conn.execute(
        "SET allowed_directories = $dirs",
        {"dirs": [f"{data_root.resolve()}{os.sep}", f"{tree.resolve()}{os.sep}"]},
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
    root = Path(data_root).resolve()
    with tempfile.TemporaryDirectory(prefix="aml-console-") as folder:
        tree = Path(folder)
        counts = link_tree(root, networks, tree)
        conn = duckdb.connect(":memory:")
        try:
            create_views(conn, tree, counts)
            _sandbox(conn, root, tree)
            yield conn, counts
        finally:
            conn.close()


def write_catalog(
    catalog: str | os.PathLike[str], data_root: str | os.PathLike[str], networks: Sequence[str]
) -> dict[str, int]:
    """Write a ``.duckdb`` file of the views (its link tree in ``{catalog}.files/``) that
    the DuckDB CLI or any DuckDB client opens directly; re-run it to add new days."""
    root, path = Path(data_root).resolve(), Path(catalog).resolve()
    refuse_inside(path, root)
    counts = link_tree(root, networks, path.with_name(f"{path.name}.files"))
    with contextlib.closing(duckdb.connect(str(path))) as conn:
        create_views(conn, path.with_name(f"{path.name}.files"), counts)
    return counts


def refuse_inside(path: Path, data_root: Path) -> None:
    """Refuse to write ``path`` inside the record."""
    if path.resolve().is_relative_to(data_root.resolve()):
        raise ConsoleRefused(f"{path} is inside the data root {data_root}: write elsewhere")


def run_query(conn: duckdb.DuckDBPyConnection, sql: str) -> pa.Table | None:
    """Run the statements of ``sql`` (SELECT or EXPLAIN only); the last one's result."""
    statements = conn.extract_statements(sql)
    refused = [s.type.name for s in statements if s.type not in READ_ONLY]
    if refused:
        raise ConsoleRefused(f"the console is read-only: {', '.join(refused)} is not run")
    result = None
    for statement in statements:
        result = conn.sql(statement.query).to_arrow_table()
    return result


def write_result(table: pa.Table, output: Path, data_root: Path) -> None:
    """Write a result as CSV or Parquet (by ``output``'s suffix), outside the record."""
    refuse_inside(output, data_root)
    if output.suffix == ".parquet":
        pq.write_table(table, output)
    elif output.suffix == ".csv":
        pa_csv.write_csv(table, output)
    else:
        raise ConsoleRefused(f"--output must end in .csv or .parquet, got {output.name}")
