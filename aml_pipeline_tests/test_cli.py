"""The aml-pipeline command line runs through Dagster into the persistent instance."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest

from aml_pipeline import cli
from aml_pipeline.cli.validation import budget
from aml_pipeline.contract.files import parquet_bytes
from aml_pipeline.defs.network import (
    FEATURE_ASSETS,
    INGESTION_ASSETS,
    LANDING_ASSETS,
    SCORING_ASSETS,
)
from aml_pipeline.defs.runs import balanced_chunks, independent_runs
from aml_pipeline.defs.tags import RANGE_END, RANGE_START
from aml_pipeline.sources.local import LocalDirectorySource
from aml_pipeline.storage import layout
from aml_pipeline.storage.tables import read_parquet
from aml_pipeline_tests.conftest import (
    NETWORK,
    batch_files,
    batch_tables,
    small_source,
    write_upstream,
)


def _download(*args: str) -> int:
    return cli.main(["download", "--network", NETWORK, *args])


def test_download_lands_each_day_with_progress_and_records_runs(cli_home, capsys):
    code = cli.main(
        [
            "download",
            "--network",
            NETWORK,
            "--start-date",
            "2025-01-01",
            "--end-date",
            "2025-01-03",
            "--source",
            "simulated",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0  # the first partition day (nothing before it) lands too
    assert "[1/3] ethereum 2025-01-01: landed (" in out
    assert "[3/3] ethereum 2025-01-03: landed (" in out
    assert (cli_home / "data" / "input" / NETWORK / "2025-01-03" / "alerts.parquet").is_file()
    with dg.DagsterInstance.get() as instance:
        # landing, then label events: each in ranges balanced over AML_PARALLEL_RUNS (2)
        assert sorted(r[:3] for r in _run_ranges(instance)) == [
            ("2025-01-01", "2025-01-02", ("label_events",)),
            ("2025-01-01", "2025-01-02", ("landed_batch", "raw_alerts")),
            ("2025-01-03", "2025-01-03", ("label_events",)),
            ("2025-01-03", "2025-01-03", ("landed_batch", "raw_alerts")),
        ]
        key = dg.AssetKey([NETWORK, "landed_batch"])
        assert instance.get_materialized_partitions(key) == {
            "2025-01-01",
            "2025-01-02",
            "2025-01-03",
        }


def _run_ranges(instance: dg.DagsterInstance) -> list[tuple[str, str, tuple[str, ...], str]]:
    """Each run's first and last day, which of landed_batch, raw_alerts and label_events
    it materialized, and its id."""
    ranges = []
    for record in instance.get_run_records():
        run = record.dagster_run
        names = {k.path[-1] for k in run.asset_selection or ()}
        shown = tuple(n for n in ("landed_batch", "raw_alerts", "label_events") if n in names)
        ranges.append((run.tags[RANGE_START], run.tags[RANGE_END], shown, run.run_id))
    return ranges


def _stored(root: Path) -> dict[str, object]:
    """Every landed day's files (bytes) and every warehouse table's rows under ``root``."""
    days = sorted(d for d in (root / "input" / NETWORK).iterdir() if layout.is_day(d.name))
    landed = {f"{d.name}/{f.name}": f.read_bytes() for d in days for f in sorted(d.iterdir())}
    tables = {
        str(p.relative_to(root)): read_parquet([str(p)])
        for p in sorted((root / "warehouse").rglob("*.parquet"))
    }
    return {**landed, **tables}


def _landing_pids(instance: dg.DagsterInstance) -> dict[tuple[str, str], int]:
    """The process that ran each landing run, by the run's first and last day."""
    pids = {}
    for start, end, names, run_id in _run_ranges(instance):
        if "landed_batch" in names:
            events = [e.dagster_event for e in instance.all_logs(run_id) if e.dagster_event]
            pids[(start, end)] = next(e.pid for e in events if e.is_step_start)
    return pids


def test_parallel_runs_land_exactly_what_one_run_after_the_other_lands(
    cli_home, monkeypatch, capsys
):
    """Four days in two processes at once (this one and a kept worker) store the same
    files and rows as the same days landed in one run, which fetches them in two spawned
    processes (AML_FETCH_WORKERS)."""
    days = ["--start-date", "2025-01-01", "--end-date", "2025-01-04"]
    stored = {}
    monkeypatch.setenv("AML_FETCH_WORKERS", "2")
    for runs in ("2", "1"):
        monkeypatch.setenv("AML_PARALLEL_RUNS", runs)
        monkeypatch.setenv("AML_DATA_ROOT", str(cli_home / f"data-{runs}"))
        assert _download(*days) == 0
        stored[runs] = _stored(cli_home / f"data-{runs}")
    out = capsys.readouterr().out
    assert [line.split(":")[0] for line in out.splitlines() if "landed (" in line] == [
        f"[{i}/4] ethereum 2025-01-0{i}" for i in (1, 2, 3, 4)
    ] * 2
    assert stored["2"].keys() == stored["1"].keys() and len(stored["1"]) > 40
    for name, value in stored["1"].items():
        if isinstance(value, bytes):
            assert stored["2"][name] == value, name
        else:
            pd.testing.assert_frame_equal(stored["2"][name], value, obj=name)
    with dg.DagsterInstance.get() as instance:
        pids = _landing_pids(instance)
    assert set(pids) == {
        ("2025-01-01", "2025-01-02"),
        ("2025-01-03", "2025-01-04"),
        ("2025-01-01", "2025-01-04"),
    }
    assert pids[("2025-01-01", "2025-01-02")] != pids[("2025-01-03", "2025-01-04")]


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


def test_dates_outside_the_partitions_are_refused_naming_the_setting(cli_home):
    with pytest.raises(SystemExit, match="set AML_PARTITIONS_START=2017-01-01 "):
        _download("--start-date", "2017-01-01", "--end-date", "2017-01-03")
    tomorrow = (dt.datetime.now(dt.UTC).date() + dt.timedelta(1)).isoformat()
    with pytest.raises(SystemExit, match="has no daily partition yet"):
        cli.main(["score", "--network", NETWORK, "--start-date", "2025-01-01",
                  "--end-date", tomorrow])  # fmt: skip
    with dg.DagsterInstance.get() as instance:
        assert not instance.get_run_records()  # refused before any run


def _upstream_dir(root, days, labels=True):
    """An upstream-layout SOT directory with the small simulator's batches of ``days``
    and, if ``labels``, every one of their labels."""
    for day in days:
        write_upstream(root, small_source().fetch(NETWORK, day, 7).files, day)
    if labels:
        frames = [small_source().labels(NETWORK, day, 7) for day in days]
        folder = root / "ground-truth" / NETWORK
        folder.mkdir(parents=True)
        (folder / "ground_truth.parquet").write_bytes(parquet_bytes(pd.concat(frames)))
    return root


def test_a_network_keeps_the_source_it_was_first_landed_from(cli_home, capsys):
    days = [dt.date(2025, 1, 10), dt.date(2025, 1, 11)]
    sot = _upstream_dir(cli_home / "sot", days)
    assert _download("--start-date", "2025-01-10", "--end-date", "2025-01-10",
                     "--source", str(sot)) == 0  # fmt: skip
    # a later command without --source (train and score refresh labels this way) and the
    # UI's default configuration both use the recorded directory, not the simulator
    assert _download("--start-date", "2025-01-11", "--end-date", "2025-01-11") == 0
    landing = cli_home / "data" / "input" / NETWORK
    assert (
        "sot')/snapshots/ethereum/2025-01-11"
        in (landing / "2025-01-11" / "LANDING.json").read_text()
    )
    from aml_pipeline.defs.resources import PipelineConfig
    from aml_pipeline.settings import Settings

    pipeline = PipelineConfig.from_settings(Settings.from_env())
    assert pipeline.network(NETWORK).batch_source == "simulated"
    source = pipeline.source(NETWORK)
    assert isinstance(source, LocalDirectorySource) and source.storage.root == sot.resolve()

    with pytest.raises(SystemExit, match=r"first landed from the local directory .*sot"):
        _download("--start-date", "2025-01-11", "--end-date", "2025-01-11",
                  "--source", "simulated")  # fmt: skip


def test_a_source_without_its_labels_file_says_where_it_looked(cli_home, capsys):
    days = [dt.date(2025, 1, 10), dt.date(2025, 1, 11)]
    sot = _upstream_dir(cli_home / "sot", days, labels=False)
    (sot / "ground_truth.parquet").write_bytes(b"misplaced")
    span = ["--start-date", "2025-01-10", "--end-date", "2025-01-11"]
    assert _download(*span, "--source", str(sot)) == 0
    err = capsys.readouterr().err
    assert "ground-truth/ethereum/ground_truth.parquet" in err and "found none" in err
    assert "ground_truth.parquet at the root is not read" in err
    with pytest.raises(SystemExit) as failed:
        cli.main(["train", "--network", NETWORK, *span])
    assert "labelled rows" in str(failed.value)
    assert "looked for" in str(failed.value) and "ground-truth/ethereum" in str(failed.value)


def test_an_unreachable_postgres_instance_is_one_line_naming_its_settings(cli_home, monkeypatch):
    """deploy/dagster.yaml with nothing listening on its port: the command stops before any
    run with the cause and the variables to check, not a traceback."""
    deploy = Path(__file__).resolve().parents[1] / "deploy" / "dagster.yaml"
    (cli_home / "dagster.yaml").write_text(deploy.read_text())
    for name, value in {"HOST": "127.0.0.1", "PORT": "1", "USER": "aml", "PASSWORD": "",
                        "DB": "dagster"}.items():  # fmt: skip
        monkeypatch.setenv(f"DAGSTER_PG_{name}", value)
    with pytest.raises(SystemExit) as stopped:
        cli.main(["download", "--network", NETWORK, "--start-date", "2025-01-10",
                  "--end-date", "2025-01-10"])  # fmt: skip
    message = str(stopped.value)
    assert "\n" not in message and "Connection refused" in message
    assert message.startswith(f"cannot open the Dagster instance of {cli_home / 'dagster.yaml'}")
    assert "DAGSTER_LOGS_BUCKET, DAGSTER_PG_DB, DAGSTER_PG_HOST, DAGSTER_PG_PASSWORD" in message


def test_independent_runs_are_balanced_over_the_processes_and_never_mix_ingestion():
    start = dt.date(2025, 1, 1)
    chunks = balanced_chunks(start, start + dt.timedelta(41), 2)
    assert [(b - a).days + 1 for a, b in chunks] == [11, 11, 10, 10]
    assert chunks[0][0] == start and chunks[-1][1] == start + dt.timedelta(41)
    assert [(b - a).days + 1 for a, b in balanced_chunks(start, start, 2)] == [1]
    assert len(balanced_chunks(start, start + dt.timedelta(59), 3)) == 6  # 5 runs, rounded up
    assert independent_runs(LANDING_ASSETS) and independent_runs(("label_events",))
    assert independent_runs((*FEATURE_ASSETS, *SCORING_ASSETS))
    assert not independent_runs(INGESTION_ASSETS)  # label events read what landing writes
    assert not independent_runs(("raw_alerts", "alert_history"))


def test_validate_judges_at_the_networks_daily_budget(tmp_path, monkeypatch):
    monkeypatch.setenv("AML_NETWORKS_DIR", str(tmp_path))
    monkeypatch.setenv("AML_ALERT_BUDGET", "40")
    (tmp_path / "bitcoin.yaml").write_text("alert_budget: 25\n")
    assert budget(None, "bitcoin") == 25
    assert budget(None, None) == 40
    assert budget(9, "bitcoin") == 9
    with pytest.raises(SystemExit):
        cli.build_parser().parse_args(["validate", "--budget", "0"])


def test_a_day_before_the_first_one_is_refused_once_features_count_from_it(cli_home, capsys):
    from aml_pipeline.defs import runs
    from aml_pipeline.settings import Settings

    settings, later = Settings.from_env(), [dt.date(2025, 3, 5), dt.date(2025, 3, 6)]
    assert runs.materialize(settings, NETWORK, later, LANDING_ASSETS) is None
    # nothing counts from the first day yet: it may still move back
    assert _download("--start-date", "2025-03-04", "--end-date", "2025-03-04") == 0
    days = [dt.date(2025, 3, 4), dt.date(2025, 3, 5)]
    assert runs.materialize(settings, NETWORK, days, FEATURE_ASSETS) is None
    capsys.readouterr()
    assert _download("--start-date", "2025-03-03", "--end-date", "2025-03-03") == 1
    err = capsys.readouterr().err
    assert "ethereum's data begins on 2025-03-04" in err
    assert "the features of 2 day(s) from 2025-03-04 count their look-back from it" in err
    assert not (cli_home / "data" / "input" / NETWORK / "2025-03-03").exists()
    record = json.loads((cli_home / "data" / "input" / NETWORK / "NETWORK.json").read_text())
    assert record["since"] == "2025-03-04"


def test_a_day_before_the_first_one_is_refused_once_its_label_days_were_fetched(cli_home, capsys):
    """The simulated source serves the labels of alerts from the first day on: a label day
    fetched before an earlier day was landed would never hold that day's labels."""
    assert _download("--start-date", "2025-03-05", "--end-date", "2025-03-06") == 0
    capsys.readouterr()
    assert _download("--start-date", "2025-03-04", "--end-date", "2025-03-04") == 1
    err = capsys.readouterr().err
    assert "ethereum's data begins on 2025-03-05" in err
    assert "the label events of 2 day(s) from 2025-03-05 were fetched for the alerts" in err
    assert not (cli_home / "data" / "input" / NETWORK / "2025-03-04").exists()
