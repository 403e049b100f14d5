"""The aml-pipeline command line runs through Dagster into the persistent instance."""

from __future__ import annotations

import datetime as dt

import dagster as dg
import pytest

from aml_pipeline import cli
from aml_pipeline_tests.conftest import NETWORK, batch_files, batch_tables, write_upstream


def test_download_lands_each_day_with_progress_and_records_runs(cli_home, capsys):
    code = cli.main(
        [
            "download",
            "--network",
            NETWORK,
            "--start-date",
            "2025-01-02",
            "--end-date",
            "2025-01-03",
            "--source",
            "simulated",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0
    assert "[1/2] ethereum 2025-01-02: landed (" in out
    assert "[2/2] ethereum 2025-01-03: landed (" in out
    assert (cli_home / "data" / "input" / NETWORK / "2025-01-03" / "alerts.parquet").is_file()
    with dg.DagsterInstance.get() as instance:
        assert len(instance.get_run_records()) == 2
        key = dg.AssetKey([NETWORK, "landed_batch"])
        assert instance.get_materialized_partitions(key) == {"2025-01-02", "2025-01-03"}


def test_download_refuses_a_bad_batch_with_the_report(cli_home, capsys):
    day = dt.date(2025, 1, 10)
    tables = batch_tables(day)
    tables["alerts"]["alert_confidence_score"] = "high"
    write_upstream(cli_home / "sot", batch_files(tables, day), day)
    code = cli.main(
        [
            "download",
            "--network",
            NETWORK,
            "--start-date",
            "2025-01-10",
            "--end-date",
            "2025-01-10",
            "--source",
            str(cli_home / "sot"),
            "--output-dir",
            str(cli_home / "landing"),
        ]
    )
    err = capsys.readouterr().err
    assert code == 1
    assert "ethereum 2025-01-10: FAILED" in err
    assert "alerts.parquet column 'alert_confidence_score'" in err
    assert "cannot be cast to float: 'high'" in err
    assert not (cli_home / "landing").exists()


def test_unknown_network_and_bad_dates_are_rejected(cli_home, capsys):
    with pytest.raises(SystemExit, match="not configured"):
        cli.main(
            [
                "download",
                "--network",
                "bitcoin",
                "--start-date",
                "2025-01-01",
                "--end-date",
                "2025-01-01",
            ]
        )
    with pytest.raises(SystemExit):
        cli.main(
            [
                "download",
                "--network",
                NETWORK,
                "--start-date",
                "01/02/2025",
                "--end-date",
                "2025-01-01",
            ]
        )
    assert "not an ISO date" in capsys.readouterr().err
