"""The analyst's SQL console: views over every table, date filters that prune files, a
console that never writes to the record, and the ``sql`` command."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import TimeoutError as FutureTimeout
from pathlib import Path

import duckdb
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
import pytest

from aml_pipeline import cli
from aml_pipeline.api import console
from aml_pipeline.api.console import (
    PRINTED_ROWS,
    ConsoleRefused,
    open_console,
    run_query,
    write_catalog,
    write_result,
)
from aml_pipeline_tests.test_api import NETWORKS
from aml_pipeline_tests.test_api_ranges import write_history


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_history(tmp_path_factory.mktemp("console"))


def _one(conn: duckdb.DuckDBPyConnection, sql: str) -> tuple:
    return run_query(conn, sql).to_pylist()[0]


def test_views_over_every_table_with_network_and_date(root: Path) -> None:
    with open_console(root, NETWORKS) as (conn, counts):
        assert counts["alert_scores"] == 39 and counts["labels"] == 30
        assert counts["tier3_evaluation"] == 40 and counts["alert_features"] == 0
        day = _one(
            conn,
            "SELECT count(*) AS n, any_value(network) AS network FROM alert_scores "
            "WHERE processing_date = DATE '2025-01-05'",
        )
        assert day == {"n": 4, "network": "ethereum"}
        joined = _one(
            conn,
            "SELECT count(*) AS n FROM alert_scores s JOIN raw_alerts a "
            "USING (alert_id, processing_date) WHERE a.address = '0xabc'",
        )
        assert joined == {"n": 39}
        labels = _one(conn, "SELECT min(label_date) AS first FROM labels")
        assert str(labels["first"]) == "2025-01-11"


def test_a_one_day_filter_opens_only_that_days_file(tmp_path: Path) -> None:
    root = write_history(tmp_path)
    # spoil another day's published file: a query that opened it would fail
    (root / "output" / "ethereum" / "2025-01-03" / "alert_scores.parquet").resolve().write_bytes(
        b"not parquet"
    )
    with open_console(root, NETWORKS) as (conn, _):
        one = "SELECT count(*) AS n FROM alert_scores WHERE processing_date = DATE '2025-01-05'"
        assert _one(conn, one) == {"n": 4}
        month = "SELECT count(*) AS n FROM alert_scores WHERE processing_date >= DATE '2025-01-10'"
        assert _one(conn, month) == {"n": 30 * 4}  # 31 days; 2025-01-20 is not published
        with pytest.raises(duckdb.Error, match="2025-01-03"):
            run_query(conn, "SELECT count(*) FROM alert_scores")


@pytest.mark.parametrize(
    "sql",
    [
        "COPY (SELECT 1) TO 'x.csv'",
        "CREATE TABLE t AS SELECT 1",
        "ATTACH 'x.duckdb'",
        "SET threads = 1",
        "SELECT 1; DROP VIEW alert_scores",
        "INSTALL httpfs",
    ],
)
def test_the_console_runs_only_reads(root: Path, sql: str) -> None:
    with open_console(root, NETWORKS) as (conn, _):
        with pytest.raises(ConsoleRefused, match="read-only"):
            run_query(conn, sql)
        assert _one(conn, "SELECT count(*) AS n FROM alert_scores")["n"] == 39 * 4


def test_the_console_reads_nothing_outside_the_record(root: Path) -> None:
    with (
        open_console(root, NETWORKS) as (conn, _),
        pytest.raises(duckdb.Error, match=r"(?i)permission|disabled|not allowed"),
    ):
        run_query(conn, "SELECT * FROM read_csv('/etc/passwd')")


def test_the_sql_command_prints_writes_and_refuses(root, tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("AML_DATA_ROOT", str(root))
    monkeypatch.setenv("AML_NETWORKS", ",".join(NETWORKS))
    query = "SELECT processing_date, count(*) AS n FROM alert_scores GROUP BY 1 ORDER BY 1 LIMIT 2"
    assert cli.main(["sql", "--query", query]) == 0
    assert "2025-01-01  4" in capsys.readouterr().out
    out = tmp_path / "days.csv"
    assert cli.main(["sql", "--query", query, "--output", str(out)]) == 0
    assert pa_csv.read_csv(out).num_rows == 2
    with pytest.raises(SystemExit, match="inside the data root"):
        cli.main(["sql", "--query", query, "--output", str(root / "x.csv")])
    missing = tmp_path / "no" / "such" / "days.csv"
    with pytest.raises(SystemExit, match="its folder does not exist; create it first"):
        cli.main(["sql", "--query", query, "--output", str(missing)])
    with pytest.raises(SystemExit, match="read-only: DELETE"):
        cli.main(["sql", "--query", "DELETE FROM alert_scores"])


def test_a_catalog_file_opens_in_any_duckdb_client(root: Path, tmp_path: Path) -> None:
    catalog = tmp_path / "aml.duckdb"
    counts = write_catalog(catalog, root, NETWORKS)
    assert counts["cluster_scores"] == 39
    with duckdb.connect(str(catalog), read_only=True) as conn:
        rows = conn.execute(
            "SELECT count(*) FROM cluster_scores WHERE processing_date = DATE '2025-01-07'"
        ).fetchall()
    assert rows == [(2,)]
    with pytest.raises(ConsoleRefused):
        write_catalog(root / "aml.duckdb", root, NETWORKS)


def test_the_interactive_prompt(root, monkeypatch, capsys) -> None:
    monkeypatch.setenv("AML_DATA_ROOT", str(root))
    monkeypatch.setenv("AML_NETWORKS", ",".join(NETWORKS))
    lines = "SELECT count(*) AS n\nFROM alert_scores;\nDROP VIEW labels;\n.quit\n"
    monkeypatch.setattr("sys.stdin", io.StringIO(lines))
    assert cli.main(["sql"]) == 0
    out = capsys.readouterr().out
    assert "alert_scores (39 files)" in out and "156" in out
    assert "error: the console is read-only: DROP" in out


def test_a_long_statement_is_stopped_and_a_big_result_is_not_read_whole(root: Path) -> None:
    with open_console(root, NETWORKS) as (conn, _):
        endless = "SELECT count(*) FROM range(1000000000000) a"
        began = time.perf_counter()
        with pytest.raises(ConsoleRefused, match=r"stopped after 0\.5 s"):
            run_query(conn, endless, timeout_s=0.5)
        assert time.perf_counter() - began < 10
        # the connection still answers after the interrupt
        assert run_query(conn, "SELECT 1 AS one").to_pylist() == [{"one": 1}]
        began = time.perf_counter()
        big = run_query(conn, "SELECT * FROM range(100000000)")
        assert big.num_rows == PRINTED_ROWS and time.perf_counter() - began < 5


def test_output_streams_the_whole_result(root: Path, tmp_path: Path) -> None:
    with open_console(root, NETWORKS) as (conn, _):
        for suffix in (".csv", ".parquet"):
            out = tmp_path / f"range{suffix}"
            rows = write_result(conn, "SELECT * FROM range(250000) t(i)", out, root)
            assert rows == 250_000
            read = pq.read_table(out) if suffix == ".parquet" else pa_csv.read_csv(out)
            assert read.num_rows == 250_000


def test_a_killed_consoles_link_tree_is_removed_by_the_next(root: Path) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    orphan = Path(tempfile.gettempdir()) / f"aml-console-{dead.pid}-left"
    orphan.mkdir()
    with open_console(root, NETWORKS):
        assert not orphan.exists()


@pytest.mark.integration  # a real console process, interrupted
def test_ctrl_c_cancels_the_running_statement_of_the_sql_command(root: Path) -> None:
    env = {**os.environ, "AML_DATA_ROOT": str(root), "AML_NETWORKS": ",".join(NETWORKS)}
    endless = "SELECT count(*) FROM range(1000000000000) a"
    command = [sys.executable, "-m", "aml_pipeline.cli", "sql", "--query", endless]
    process = subprocess.Popen(command, env=env, stderr=subprocess.PIPE, text=True)
    time.sleep(6)  # imports, the link tree, and the statement under way
    assert process.poll() is None
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=30)
    assert process.returncode == 1 and "the statement was cancelled (Ctrl-C)" in err


def test_stopping_repeats_the_interrupt_until_the_work_ends_and_ignores_another_ctrl_c():
    """An interrupt that fell between two statements is lost: it is sent again; a second
    Ctrl-C while stopping escapes as no traceback."""

    class Connection:
        interrupts = 0

        def interrupt(self) -> None:
            self.interrupts += 1

    class Stopping:
        waits = 0

        def result(self, timeout: float) -> None:
            self.waits += 1
            if self.waits == 1:
                raise KeyboardInterrupt  # the user presses Ctrl-C again
            if self.waits == 2:
                raise FutureTimeout  # still running: the first interrupt was lost

    conn, future, stop = Connection(), Stopping(), threading.Event()
    console._stop(conn, stop, future)
    assert stop.is_set() and future.waits == 3 and conn.interrupts == 3


def test_a_stopped_export_leaves_no_file_and_an_empty_query_is_refused(
    root: Path, tmp_path: Path
) -> None:
    with open_console(root, NETWORKS) as (conn, _):
        out = tmp_path / "huge.csv"
        with pytest.raises(ConsoleRefused, match="stopped after 1 s"):
            write_result(conn, "SELECT * FROM range(2000000000)", out, root, timeout_s=1)
        assert list(tmp_path.iterdir()) == []  # neither the file nor a partial one
        with pytest.raises(ConsoleRefused, match="no statement to run"):
            write_result(conn, "-- nothing", tmp_path / "x.csv", root)
