"""The daily job end to end: score command, published outputs and their provenance,
failed re-runs, the schedule and the new-batch sensor."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest

from aml_pipeline import automation, cli
from aml_pipeline.definitions import build_definitions
from aml_pipeline.resources import PipelineConfig
from aml_pipeline.settings import Settings

TRAIN = ["--start-date", "2025-03-01", "--end-date", "2025-03-08"]
FILES = ("alert_scores.parquet", "alert_rankings.parquet", "cluster_scores.parquet")


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    """A project with 8 landed days, trained champions, and 2025-03-01..10 published."""
    root = tmp_path_factory.mktemp("daily")
    (root / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DAGSTER_HOME", str(root))
        mp.setenv("AML_DATA_ROOT", str(root / "data"))
        mp.setenv("AML_SIM_PROFILE", "small")
        mp.setenv("AML_LABELS_AS_OF", "2025-05-01")
        assert cli.main(["download", "--network", "ethereum", *TRAIN]) == 0
        assert cli.main(["train", "--network", "ethereum", *TRAIN]) == 0
        assert cli.main(["score", "--network", "ethereum", "--start-date", "2025-03-01",
                         "--end-date", "2025-03-10"]) == 0  # fmt: skip
        yield root


def _day(home: Path, day: str) -> Path:
    return home / "data" / "output" / "ethereum" / day


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_published_day_is_complete_and_traceable(home):
    folder = _day(home, "2025-03-10")
    assert sorted(p.name for p in folder.iterdir()) == sorted([*FILES, "processing_metadata.json"])
    meta = json.loads((folder / "processing_metadata.json").read_text())
    assert meta["status"] == "published" and meta["processing_date"] == "2025-03-10"
    landed = home / "data" / "input" / "ethereum" / "2025-03-10"
    for name, digest in meta["inputs"]["sha256"].items():
        assert _sha(landed / name) == digest
    for kind, model in meta["models"].items():
        assert _sha(home / "data" / model["file"]) == model["sha256"], kind
    for name in FILES:
        assert _sha(folder / name) == meta["outputs"][name]["sha256"]
    assert set(meta["timings_s"]) == {"alert_scoring", "ranking", "cluster_scoring", "publish"}
    assert meta["run_id"] and meta["code_version"].startswith("0.1.0+")

    scores = pd.read_parquet(folder / "alert_scores.parquet")
    alerts = pd.read_parquet(landed / "alerts.parquet")
    assert sorted(scores["alert_id"]) == sorted(alerts["alert_id"])
    assert len(scores) == meta["outputs"]["alert_scores.parquet"]["rows"]
    assert scores["score"].between(0, 1).all() and (scores["latency_ms"] > 0).all()
    assert (scores["processing_date"] == dt.date(2025, 3, 10)).all()
    assert (scores["network"] == "ethereum").all() and (scores["window_days"] == 7).all()
    assert json.loads(scores["explain_json"][0])["top_features"]
    ranks = pd.read_parquet(folder / "alert_rankings.parquet")
    assert ranks["rank"].tolist() == list(range(1, len(scores) + 1))
    clusters = pd.read_parquet(folder / "cluster_scores.parquet")
    assert len(clusters) == meta["inputs"]["counts"]["clusters"]


def test_backfill_runs_in_chunks_not_per_day(home):
    with dg.DagsterInstance.get() as instance:
        runs = instance.get_run_records(dg.RunsFilter(job_name="daily_job"))
    assert len(runs) == 1  # ten days, one run
    assert not any(home.glob("data/output/ethereum/.*"))  # no staging leftovers


def test_rescoring_is_idempotent_and_a_failed_rerun_keeps_the_published_day(home, monkeypatch):
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    monkeypatch.setenv("AML_DATA_ROOT", str(home / "data"))
    monkeypatch.setenv("AML_SIM_PROFILE", "small")
    folder = _day(home, "2025-03-09")
    before = pd.read_parquet(folder / "alert_scores.parquet")
    args = ["score", "--network", "ethereum", "--start-date", "2025-03-09",
            "--end-date", "2025-03-09", "--no-ingest"]  # fmt: skip
    assert cli.main(args) == 0
    after = pd.read_parquet(folder / "alert_scores.parquet")
    pd.testing.assert_series_equal(before["score"], after["score"])

    published = {p.name: p.read_bytes() for p in folder.iterdir()}
    model = home / "data" / "trained_models" / "ethereum" / "alert_scorer_v1.0.0.txt"
    good = model.read_bytes()
    model.write_bytes(b"tree\nnot a model\n")
    try:
        assert cli.main(args) == 1
    finally:
        model.write_bytes(good)
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == published


def test_schedule_targets_the_previous_utc_day(tmp_path):
    defs = build_definitions(_settings(tmp_path))
    schedule = defs.resolve_schedule_def("daily_scoring_schedule")
    assert schedule.cron_schedule == "0 2 * * *"
    assert schedule.default_status == dg.DefaultScheduleStatus.STOPPED
    with dg.instance_for_test() as instance:
        context = dg.build_schedule_context(
            instance=instance,
            scheduled_execution_time=dt.datetime(2025, 3, 11, 2, tzinfo=dt.UTC),
            repository_def=defs.get_repository_def(),
        )
        requests = list(schedule.evaluate_tick(context).run_requests)
    assert [r.partition_key for r in requests] == ["2025-03-10"]


def _settings(root: Path, **extra: object) -> Settings:
    values = {
        "networks": ["ethereum"],
        "window_days": 7,
        "data_root": str(root / "data"),
        "batch_source": "simulated",
        "source_dir": "",
        "sim_profile": "small",
        "sim_seed": 0,
        "partitions_start": "2025-01-01",
        "labels_as_of": "2025-05-01",
        **extra,
    }
    return Settings(**values)  # type: ignore[arg-type]


def _tick(settings: Settings, instance: dg.DagsterInstance) -> dg.SensorResult:
    sensor = build_definitions(settings).resolve_sensor_def("new_batch_sensor")
    context = dg.build_sensor_context(
        instance=instance, resources={"pipeline": PipelineConfig.from_settings(settings)}
    )
    return sensor(context)


def test_sensor_runs_new_and_missed_days_once_models_exist(home, monkeypatch):
    settings = _settings(home)
    monkeypatch.setattr(automation, "utc_today", lambda: dt.date(2025, 3, 14))
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    with dg.DagsterInstance.get() as instance:
        result = _tick(settings, instance)
    # look-back 7 days: 03-07..03-13; 03-07..03-10 are published, 11-13 were missed
    assert [r.partition_key for r in result.run_requests] == [
        "2025-03-11",
        "2025-03-12",
        "2025-03-13",
    ]
    request = result.run_requests[0]
    assert request.run_key == "ethereum:2025-03-11"
    assert dg.AssetKey(["ethereum", "published_scores"]) in request.asset_selection
    assert dg.AssetKey(["ethereum", "alert_scorer"]) not in request.asset_selection


def test_sensor_waits_for_models(tmp_path, monkeypatch):
    monkeypatch.setattr(automation, "utc_today", lambda: dt.date(2025, 3, 14))
    with dg.instance_for_test() as instance:
        result = _tick(_settings(tmp_path), instance)
    assert not result.run_requests
    assert "no champion models yet for ethereum" in result.skip_reason.skip_message
