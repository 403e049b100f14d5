"""The daily job end to end: score command, published outputs and their provenance,
failed re-runs, the schedule and the new-batch sensor."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import shutil
from pathlib import Path

import dagster as dg
import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from aml_pipeline import cli
from aml_pipeline.dates import date_range
from aml_pipeline.defs import automation
from aml_pipeline.defs.assets.scoring import SCORED_BY, version_mismatch
from aml_pipeline.defs.definitions import build_definitions
from aml_pipeline.defs.network import SCORE_OUTPUTS
from aml_pipeline.defs.resources import PipelineConfig
from aml_pipeline.defs.runs import run_range
from aml_pipeline.defs.tags import RANGE_END, RANGE_START
from aml_pipeline.evaluation.ab_test import build_test_features, read_test_days
from aml_pipeline.settings import Settings
from aml_pipeline_tests.conftest import settings_for

FILES = ("alert_scores.parquet", "alert_rankings.parquet", "cluster_scores.parquet")


def _named(definitions, name: str):
    """A schedule or sensor by name, without building a repository (which binds global
    load state to the instance of the moment)."""
    return next(d for d in definitions if d.name == name)


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
        published = instance.fetch_materializations(
            dg.AssetKey(["ethereum", "published_scores"]), limit=100
        ).records
    assert len(published) == 10 and len({r.run_id for r in published}) == 1  # one run
    # ... whose every day shows its own numbers (rows, mean score, tier 1), not the run's
    with dg.DagsterInstance.get() as instance:
        scored = instance.fetch_materializations(
            dg.AssetKey(["ethereum", "alert_scores"]), limit=100
        ).records
        tier1 = instance.fetch_materializations(
            dg.AssetKey(["ethereum", "tier1_evaluation"]), limit=100
        ).records
        tier3 = instance.fetch_materializations(
            dg.AssetKey(["ethereum", "tier3_evaluation"]), limit=100
        ).records
    for record in scored:
        metadata = record.asset_materialization.metadata
        day = pd.read_parquet(_day(home, record.partition_key) / "alert_scores.parquet")
        assert metadata["dagster/row_count"].value == len(day), record.partition_key
        assert metadata["mean_score"].value == pytest.approx(day["score"].mean())
    assert len({r.asset_materialization.metadata["mean_score"].value for r in scored}) == 10
    assert {r.asset_materialization.metadata["dagster/row_count"].value for r in tier1} == {1}
    # the days the models were trained on (03-01..08) are plotted apart from held-out days
    for record in tier3:
        metadata = record.asset_materialization.metadata
        in_sample = record.partition_key <= "2025-03-08"
        assert metadata["in_sample"].value == in_sample, record.partition_key
        plotted = {k for k in metadata if k.startswith("tier3_")}
        assert plotted and all(k.endswith("_in_sample") == in_sample for k in plotted)
    # nothing left over from staging: the hidden entries are the days' versions and locks
    hidden = home.glob("data/output/ethereum/.*")
    assert all(p.name.endswith((".versions", ".lock")) for p in hidden)


def test_every_command_run_is_tagged_with_its_network_stage_and_days(home):
    """What an operator filters the UI's runs by."""
    with dg.DagsterInstance.get() as instance:
        runs = instance.get_runs()
    stages = {run.tags.get("aml/stage") for run in runs}
    assert {"land", "labels", "features", "train", "daily"} <= stages, stages
    for run in runs:
        assert run.tags["network"] == "ethereum", run.tags
        if run.tags["aml/stage"] != "train":
            assert RANGE_START in run.tags and RANGE_END in run.tags, run.tags


def test_rescoring_is_idempotent_and_a_failed_rerun_keeps_the_published_day(scratch, monkeypatch):
    home = scratch  # this test changes the project
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
    model = home / "data" / "trained_models" / "ethereum" / "alert_scorer_v3.0.0.txt"
    good = model.read_bytes()
    model.write_bytes(b"tree\nnot a model\n")
    try:
        assert cli.main(args) == 1
    finally:
        model.write_bytes(good)
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == published


def test_the_models_materialize_without_hand_written_config(scratch, monkeypatch):
    """As "Materialize all" and the launchpad launch them: training takes the stored feature
    days, the comparison the stored days after both models' training (none here: it says
    so)."""
    from aml_pipeline.defs import runs
    from aml_pipeline.defs.network import CHAMPION_ASSETS, MODEL_ASSETS
    from aml_pipeline.models.registry import ModelRegistry
    from aml_pipeline.settings import Settings
    from aml_pipeline.storage.objects import LocalStorage

    monkeypatch.setenv("DAGSTER_HOME", str(scratch))
    monkeypatch.setenv("AML_DATA_ROOT", str(scratch / "data"))
    monkeypatch.setenv("AML_SIM_PROFILE", "small")
    settings = Settings.from_env()
    config = runs.run_config(settings, "ethereum", {})
    trained = runs.run_job(
        settings, "training_job", config, ("ethereum", (*MODEL_ASSETS, *CHAMPION_ASSETS))
    )
    assert trained.success
    registry = ModelRegistry(LocalStorage(scratch / "data"), "ethereum")
    newest = registry.entries("alert_scorer")[-1]
    assert newest["training_range"] == ["2025-03-01", "2025-03-10"]  # the stored features
    job = build_definitions(settings).resolve_implicit_global_asset_job_def()
    compared = job.execute_in_process(
        run_config=config,
        asset_selection=[dg.AssetKey(["ethereum", "model_comparison"])],
        raise_on_error=False,
    )
    failure = next(e for e in compared.all_events if e.is_step_failure)
    message = failure.step_failure_data.error.message
    assert "no test range" in message and "after the models' training ranges" in message


def test_schedule_targets_the_previous_utc_day(tmp_path):
    defs = build_definitions(_settings(tmp_path))
    schedule = _named(defs.schedules, "ethereum_daily_schedule")
    assert schedule.cron_schedule == "0 2 * * *"
    assert schedule.default_status == dg.DefaultScheduleStatus.STOPPED
    with dg.instance_for_test() as instance:
        context = dg.build_schedule_context(
            instance=instance, scheduled_execution_time=dt.datetime(2025, 3, 11, 2, tzinfo=dt.UTC)
        )
        request = schedule(context)
    assert request.partition_key == "2025-03-10" and request.run_key == "2025-03-10"


def test_schedule_skips_a_published_day(home, monkeypatch):
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    defs = build_definitions(_settings(home))
    schedule = _named(defs.schedules, "ethereum_daily_schedule")
    with dg.DagsterInstance.get() as instance:
        context = dg.build_schedule_context(
            instance=instance, scheduled_execution_time=dt.datetime(2025, 3, 10, 2, tzinfo=dt.UTC)
        )
        result = schedule(context)
    assert isinstance(result, dg.SkipReason)
    assert "2025-03-09 is already published" in result.skip_message


def test_consecutive_days_are_chunked():
    days = [dt.date(2025, 1, d) for d in (1, 2, 3, 5, 6)] + [
        dt.date(2025, 2, 1) + dt.timedelta(i) for i in range(16)
    ]
    chunks = automation.contiguous_chunks(days)
    assert chunks[:2] == [
        (dt.date(2025, 1, 1), dt.date(2025, 1, 3)),
        (dt.date(2025, 1, 5), dt.date(2025, 1, 6)),
    ]
    assert chunks[2:] == [
        (dt.date(2025, 2, 1), dt.date(2025, 2, 14)),
        (dt.date(2025, 2, 15), dt.date(2025, 2, 16)),
    ]


def _settings(root: Path, **extra: object) -> Settings:
    return settings_for(root, **{"labels_as_of": "2025-05-01", **extra})


def _tick(settings: Settings, instance: dg.DagsterInstance) -> dg.SensorResult:
    sensor = _named(build_definitions(settings).sensors, "ethereum_new_batch_sensor")
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
    # look-back 7 days: 03-07..03-13; 03-07..03-10 are published, 11-13 were missed and
    # go in one ranged run, so each day's history sees the day before it
    (request,) = result.run_requests
    assert request.tags[RANGE_START] == "2025-03-11" and request.tags[RANGE_END] == "2025-03-13"
    assert request.tags["network"] == "ethereum" and request.tags["aml/stage"] == "daily"
    assert request.run_key == "ethereum:2025-03-11..2025-03-13@2025-03-14"
    # the run is the network's own daily job: its days' assets, not the models
    sensor = _named(build_definitions(settings).sensors, "ethereum_new_batch_sensor")
    job = build_definitions(settings).resolve_job_def(sensor.job_name)
    assert request.asset_selection is None and job.name == "ethereum_daily_job"
    keys = job.asset_layer.executable_asset_keys
    assert dg.AssetKey(["ethereum", "published_scores"]) in keys
    assert dg.AssetKey(["ethereum", "alert_scorer"]) not in keys


def test_sensor_waits_for_models(tmp_path, monkeypatch):
    monkeypatch.setattr(automation, "utc_today", lambda: dt.date(2025, 3, 14))
    with dg.instance_for_test() as instance:
        result = _tick(_settings(tmp_path), instance)
    assert not result.run_requests
    assert "no champion models yet for ethereum" in result.skip_reason.skip_message


def _warehouse(home: Path, asset: str) -> pd.DataFrame:
    folder = home / "data" / "warehouse" / "ethereum" / asset
    return pd.concat(pd.read_parquet(p) for p in sorted(folder.glob("*.parquet")))


def test_every_warehouse_table_is_typed_on_every_day(home):
    """Empty days (the first day's alert history) keep typed columns, so an ad-hoc DuckDB
    query over a table's files reads without ``union_by_name``."""
    tables = sorted((home / "data" / "warehouse" / "ethereum").iterdir())
    assert {"alert_history", "alert_features", "cluster_features"} <= {t.name for t in tables}
    # no label arrives on the first day of the data: an empty, typed file
    assert pq.read_metadata(tables[0].parent / "label_events" / "2025-03-01.parquet").num_rows == 0
    for table in tables:
        files = sorted(table.glob("*.parquet"))
        for path in files:
            schema = pq.read_schema(path)
            assert not [f.name for f in schema if f.type == pa.null()], path
        rows = sum(pq.read_metadata(p).num_rows for p in files)
        glob = str(table / "*.parquet")
        assert duckdb.execute("SELECT count(*) FROM read_parquet(?)", [glob]).fetchone() == (rows,)


def test_every_published_day_is_evaluated_on_all_tiers(home):
    tier1, tier2, tier3 = (_warehouse(home, f"tier{i}_evaluation") for i in (1, 2, 3))
    assert len(tier1) == len(tier2) == len(tier3) == 10
    assert tier1["passed"].all() and (tier1["score"] == 0.2).all()
    assert tier2["score"].between(0, 0.3).all()
    details = json.loads(tier1["details_json"].iloc[0])
    assert details["checks"]["determinism"]["status"] == "passed"
    # labels as of 2025-05-01 cover these March days: every day has ground-truth metrics
    metrics = [json.loads(d)["metrics"] for d in tier3["details_json"]]
    assert all(0.5 < m["auc_roc"] <= 1 and m["n_positive"] > 0 for m in metrics)
    assert tier3["score"].between(0, 0.5).all()
    # the figures at the analysts' budget, and the F1 at the threshold chosen in training
    registry = json.loads((home / "data/trained_models/ethereum/model_metadata.json").read_text())
    scorer = next(v for v in registry["versions"] if v["kind"] == "alert_scorer")
    assert 0 < scorer["metrics"]["f1_threshold"] < 1
    for m in metrics:
        assert m["alert_budget"] == 100 and 0 <= m["precision_at_budget"] <= 1
        assert m["model_threshold"] == scorer["metrics"]["f1_threshold"]
        assert 0 <= m["f1_at_model_threshold"] <= 1

    report = json.loads(
        (home / "data/validation_results/ethereum/model_v3.0.0_evaluation.json").read_text()
    )
    assert report["summary"]["days"] == 10 and report["summary"]["tier1_passed_days"] == 10
    # trained on 03-01..08: those days are in-sample and left out of the summary
    assert report["summary"]["in_sample_days"] == 8
    # labels known by 2025-05-01: closures still arrived 54-61 days after their alerts, so
    # the maturity is at least the 61 days observed; 03-01 is that old, and 03-02..05 have
    # 95 % of their alerts labelled; the held-out 03-09 and 03-10 (86 %) are not mature
    mature = {d.isoformat(): json.loads(t)["labels_mature"] for d, t in
              zip(tier3["processing_date"], tier3["details_json"], strict=True)}  # fmt: skip
    assert [day for day, ok in sorted(mature.items()) if ok] == [
        f"2025-03-0{d}" for d in range(1, 6)
    ]
    assert json.loads(tier3["details_json"].iloc[-1])["label_maturity_days"] == 61
    summary = report["summary"]
    assert summary["held_out_days_with_tier3"] == 0 and summary["held_out_days_immature"] == 2
    assert summary["mean_auc_roc_held_out"] is None and summary["judged_on"].startswith("nothing")
    day = report["days"]["2025-03-05"]
    assert day["total"] == pytest.approx(
        day["tier1"]["score"] + day["tier2"]["score"] + day["tier3"]["score"]
    )


def test_a_tier1_failure_blocks_publication(scratch, monkeypatch):
    home = scratch  # this test changes the project
    from aml_pipeline.defs.assets import scoring

    monkeypatch.setenv("DAGSTER_HOME", str(home))
    monkeypatch.setenv("AML_DATA_ROOT", str(home / "data"))
    monkeypatch.setenv("AML_SIM_PROFILE", "small")
    folder = _day(home, "2025-03-08")
    published = {p.name: p.read_bytes() for p in folder.iterdir()}
    real = scoring.score_frame

    def drops_an_alert(model, features, key, *args):
        return real(model, features, key, *args).iloc[1:]

    monkeypatch.setattr(scoring, "score_frame", drops_an_alert)
    args = ["score", "--network", "ethereum", "--start-date", "2025-03-08",
            "--end-date", "2025-03-08", "--no-ingest"]  # fmt: skip
    assert cli.main(args) == 1
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == published
    tier1 = pd.read_parquet(home / "data/warehouse/ethereum/tier1_evaluation/2025-03-08.parquet")
    assert not tier1["passed"].iloc[0]
    assert "completeness" in json.loads(tier1["details_json"].iloc[0])["failed_checks"]


def test_label_sensor_reevaluates_the_scored_days_whose_labels_arrived(scratch, monkeypatch):
    home = scratch  # this test changes the project
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    settings = _settings(home)
    sensor = _named(build_definitions(settings).sensors, "ethereum_label_arrival_sensor")
    with dg.DagsterInstance.get() as instance:
        first = sensor(dg.build_sensor_context(instance=instance))
        # every scored day got labels in the label days fetched so far: one ranged run
        (request,) = first.run_requests
        assert (request.tags[RANGE_START], request.tags[RANGE_END]) == ("2025-03-01", "2025-03-10")
        assert request.tags["aml/stage"] == "evaluate"
        assert request.asset_selection == [dg.AssetKey(["ethereum", "tier3_evaluation"])]
        again = sensor(dg.build_sensor_context(instance=instance, cursor=first.cursor))
        assert not again.run_requests and "no new labels" in again.skip_reason.skip_message
        # a new label day names only the days whose alerts it labels
        job = build_definitions(settings).resolve_job_def("daily_job")
        events = dg.AssetKey(["ethereum", "label_events"])
        assert job.execute_in_process(
            instance=instance, partition_key="2025-03-14", asset_selection=[events]
        ).success
        labelled = pd.read_parquet(home / "data/warehouse/ethereum/label_events/2025-03-14.parquet")
        later = sensor(dg.build_sensor_context(instance=instance, cursor=again.cursor))
    days = sorted({str(d) for d in labelled["processing_date"]})
    covered = [
        day.isoformat()
        for r in later.run_requests
        for day in date_range(
            dt.date.fromisoformat(r.tags[RANGE_START]), dt.date.fromisoformat(r.tags[RANGE_END])
        )
    ]
    assert covered == days and days  # 03-01..03-09: alerts at least 5 days old


def _register_weakened_scorer(home: Path) -> None:
    """alert_scorer v3.1.0: the same training, on shuffled labels."""
    from aml_pipeline.features.alert_features import (
        CATEGORIES,
        FEATURE_COLUMNS,
        FEATURE_SCHEMA_VERSION,
    )
    from aml_pipeline.models.registry import ModelRegistry
    from aml_pipeline.models.training import LABEL, TrainParams, labelled, train_binary
    from aml_pipeline.storage.objects import LocalStorage

    frame = labelled(
        _warehouse(home, "alert_features"), _warehouse(home, "label_events"), dt.date(2025, 5, 1)
    )
    frame = frame[frame["processing_date"] <= dt.date(2025, 3, 8)].reset_index(drop=True)
    frame[LABEL] = frame[LABEL].sample(frac=1, random_state=0).to_numpy()
    vocab = {c: len(v) for c, v in CATEGORIES.items()}
    features = list(FEATURE_COLUMNS)
    model = train_binary(
        frame, features, list(CATEGORIES), TrainParams(), "alert_confidence_score", vocab
    )
    registry = ModelRegistry(LocalStorage(home / "data"), "ethereum")
    entry = {
        "feature_schema_version": FEATURE_SCHEMA_VERSION,
        "features": features,
        "categories": {k: list(v) for k, v in CATEGORIES.items()},
        "training_range": ["2025-03-01", "2025-03-08"],
        "note": "shuffled labels (test)",
    }
    assert (
        registry.register("alert_scorer", model.booster, entry, model.calibration)["version"]
        == "3.1.0"
    )


def test_ab_comparison_picks_the_real_model_and_promotion_is_recorded(scratch, monkeypatch, capsys):
    home = scratch  # this test changes the project
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    monkeypatch.setenv("AML_DATA_ROOT", str(home / "data"))
    _register_weakened_scorer(home)
    config = {"start_date": "2025-03-09", "end_date": "2025-03-10", "resamples": 200}

    def compare(**settings: object) -> dict:
        defs = build_definitions(_settings(home, **settings))
        with dg.DagsterInstance.get() as instance:
            result = defs.resolve_implicit_global_asset_job_def().execute_in_process(
                instance=instance,
                asset_selection=[dg.AssetKey(["ethereum", "model_comparison"])],
                run_config={"ops": {"ethereum__model_comparison": {"config": config}}},
            )
        return result.get_asset_materialization_events()[0].materialization.metadata

    # labels known by 2025-05-01 are 86 % of those days' alerts: not mature, no verdict
    meta = compare()
    assert meta["winner"].value is None and not meta["significant"].value
    assert "no test day's labels are mature yet" in meta["recommendation"].value
    # with a label maturity of 30 days (a network setting) both days are judged
    meta = compare(label_maturity_days=30)
    assert meta["model_a"].value == "3.0.0" and meta["model_b"].value == "3.1.0"
    assert meta["winner"].value.startswith("A") and meta["significant"].value
    assert meta["delta_pooled_auc_roc"].value < 0
    folder = home / "data/validation_results/ethereum/v3.0.0_vs_v3.1.0"
    report = (folder / "comparison_report.md").read_text()
    assert "2025-03-09" in report and "roc_curves.png" in report
    assert (folder / "roc_curves.png").stat().st_size > 0

    assert meta["bootstrap"].value["blocks"] == "addresses"
    assert (folder / "reliability.png").stat().st_size > 0

    # the same comparison from the command line, on the files: the label file holds every
    # label known on 2025-05-01, so the test days get the history the daily run gave them
    models = home / "data/trained_models/ethereum"
    labels = home / "ab" / "labels.parquet"
    labels.parent.mkdir(exist_ok=True)
    _warehouse(home, "label_events").to_parquet(labels)
    test_days = [dt.date(2025, 3, 9), dt.date(2025, 3, 10)]
    batches = read_test_days(home / "data/input/ethereum", test_days[0], test_days[-1])
    features, warnings = build_test_features(
        home / "data/input/ethereum", batches, pd.read_parquet(labels)
    )
    assert not warnings
    stored = _warehouse(home, "alert_features")
    for day in test_days:  # production's features, exactly
        daily = stored[stored["processing_date"] == day].reset_index(drop=True)
        pd.testing.assert_frame_equal(features[day], daily, check_dtype=False)
    assert features[test_days[-1]]["known_sar_180d"].sum() > 0
    output = home / "ab" / "v3.0.0_vs_v3.1.0.json"
    args = ["validate", "--model-a", str(models / "alert_scorer_v3.0.0.txt"),
            "--model-b", str(models / "alert_scorer_v3.1.0.txt"),
            "--test-data", str(home / "data/input/ethereum"),
            "--start-date", "2025-03-09", "--end-date", "2025-03-10",
            "--ground-truth", str(labels),
            "--output", str(output), "--resamples", "200"]  # fmt: skip
    capsys.readouterr()
    # the label file's labels (known by 2025-05-01) are not mature for these days: no verdict
    assert cli.main(args) == 0
    out = capsys.readouterr().out
    assert "judged on 0 of 2 test days, those whose labels are mature by 2025-05-01" in out
    assert "label maturity at least 53 days" in out
    assert "no test day's labels are mature yet" in out
    args += ["--label-maturity-days", "30"]
    assert cli.main(args) == 0
    out = capsys.readouterr().out
    assert "judged on 2 of 2 test days" in out and "label maturity 30 days (setting)" in out
    assert "winner: A (v3.0.0)" in out
    saved = json.loads(output.read_text())
    assert set(saved["per_day"]) == {"2025-03-09", "2025-03-10"}
    assert saved["bootstrap"]["auc_roc_diff"] == meta["bootstrap"].value["auc_roc_diff"]
    assert (output.parent / "comparison_report.md").is_file()
    # a label file of the test days alone cannot give that history: refused, days named
    test_only = pd.read_parquet(labels)
    test_only[test_only["processing_date"].isin(test_days)].to_parquet(labels)
    assert cli.main(args) == 1
    assert "2025-03-01..2025-03-08" in capsys.readouterr().err

    # the A/B promotion: B lost, so the champion asset keeps A and says why
    champion = _champion_metadata(_materialize_champion(home, {"from_comparison": True}))
    assert champion["champion"].value == "3.0.0" and not champion["promoted"].value
    assert "no significant challenger" in champion["note"].value

    promote = ["promote", "--network", "ethereum", "--kind", "alert_scorer"]
    assert cli.main([*promote, "--version", "3.1.0", "--reason", "test"]) == 0
    assert "champion v3.0.0 -> v3.1.0; gates: compatible passed, tier1 passed" in (
        capsys.readouterr().out
    )
    assert cli.main([*promote, "--version", "3.0.0"]) == 0
    assert cli.main([*promote, "--version", "9.9.9"]) == 1
    assert "has no alert_scorer v9.9.9" in capsys.readouterr().err
    registry = json.loads((models / "model_metadata.json").read_text())
    assert registry["champions"]["alert_scorer"] == "3.0.0"
    with dg.DagsterInstance.get() as instance:  # each promotion is a new data version
        records = instance.fetch_materializations(
            dg.AssetKey(["ethereum", "alert_scorer_champion"]), limit=3
        ).records
    versions = [r.asset_materialization.tags["dagster/data_version"] for r in records]
    assert versions[0].startswith("3.0.0:") and versions[1].startswith("3.1.0:")
    assert versions[2].startswith("3.0.0:")  # the A/B run kept it: the same data version
    assert versions[2] == versions[0]
    promotions = [p for p in registry["promotions"] if p["kind"] == "alert_scorer"]
    assert [(p["previous"], p["version"]) for p in promotions] == [
        (None, "3.0.0"),  # training made its first version the champion, through the gates
        ("3.0.0", "3.1.0"),
        ("3.1.0", "3.0.0"),
    ]
    assert {g["name"] for g in promotions[0]["gates"]} == {"compatible", "tier1"}
    # tier 1 ran on the days of the comparison that compared v3.1.0
    tier1 = next(g for g in promotions[1]["gates"] if g["name"] == "tier1")
    assert tier1["passed"] and "2025-03-09..2025-03-10 (2 days)" in tier1["detail"]


def _materialize_champion(home: Path, config: dict) -> dg.ExecuteInProcessResult:
    defs = build_definitions(_settings(home))
    with dg.DagsterInstance.get() as instance:
        return defs.resolve_job_def("training_job").execute_in_process(
            instance=instance,
            asset_selection=[dg.AssetKey(["ethereum", "alert_scorer_champion"])],
            run_config={"ops": {"ethereum__champions": {"config": config}}},
            raise_on_error=False,
        )


def _champion_metadata(result: dg.ExecuteInProcessResult) -> dict:
    (event,) = result.get_asset_materialization_events()
    return event.materialization.metadata


def test_a_model_whose_vocabulary_differs_is_refused_unless_overridden(
    scratch, monkeypatch, capsys
):
    from aml_pipeline.features.alert_features import CATEGORIES
    from aml_pipeline.models.registry import ModelRegistry
    from aml_pipeline.storage.objects import LocalStorage

    monkeypatch.setenv("DAGSTER_HOME", str(scratch))
    monkeypatch.setenv("AML_DATA_ROOT", str(scratch / "data"))
    registry = ModelRegistry(LocalStorage(scratch / "data"), "ethereum")
    champion = registry.load("alert_scorer")
    column = next(iter(CATEGORIES))
    inserted = ["inserted_typology", *CATEGORIES[column]]
    entry = {
        **{k: v for k, v in champion.entry.items() if k not in ("version", "file", "sha256")},
        "categories": {**champion.entry["categories"], column: inserted},
    }
    version = registry.register(
        "alert_scorer", champion.booster, entry, champion.calibration, promote_if_first=False
    )["version"]
    promote = ["promote", "--network", "ethereum", "--kind", "alert_scorer", "--version", version]
    assert cli.main(promote) == 1
    err = capsys.readouterr().err
    assert f"alert_scorer v{version} is not promoted: gate compatible" in err
    assert f"vocabulary of {column} differs" in err and "'inserted_typology'" in err
    assert registry.champions()["alert_scorer"] == champion.version  # nothing changed
    assert cli.main([*promote, "--override", "known: scores its own way"]) == 0
    assert "compatible FAILED (overridden)" in capsys.readouterr().out
    saved = json.loads((scratch / "data/trained_models/ethereum/model_metadata.json").read_text())
    record = saved["promotions"][-1]
    assert record["version"] == version and record["override"] == "known: scores its own way"
    assert [g["name"] for g in record["gates"] if not g["passed"]] == ["compatible"]
    # the overridden gate stays visible: materialized again, its check fails as a warning
    result = _materialize_champion(scratch, {"override": "still known"})
    (check,) = result.get_asset_check_evaluations()
    assert not check.passed and check.severity == dg.AssetCheckSeverity.WARN
    assert "FAILED" in check.metadata["compatible"].value
    # without the override, the incompatible champion is not kept either
    refused = _materialize_champion(scratch, {})
    assert not refused.success


def test_demo_ingests_trains_on_the_oldest_days_scores_and_summarizes(cli_home, capsys):
    args = ["demo", "--days", "8", "--train-days", "6", "--end-date", "2025-03-10"]
    assert cli.main(args) == 0  # labels as known on 2025-05-01 (cli_home)
    out = capsys.readouterr().out
    assert "training ethereum on 2025-03-03..2025-03-08" in out
    assert "2025-03-09..2025-03-10 are held out" in out
    assert "ethereum: 8 days published" in out and "alert_scorer v3.0.0" in out
    assert "top alerts of 2025-03-10 (ethereum):" in out and "score 0." in out
    # labels known by 2025-05-01: 03-09 and 03-10 are 86 % labelled, not yet mature
    assert "held-out days, tier 3 on mature labels only: no mean AUC-ROC yet" in out
    assert "2 held-out day(s) wait for their labels to mature" in out
    entries = (cli_home / "data" / "output" / "ethereum").iterdir()
    assert len([p for p in entries if not p.name.startswith(".")]) == 8


CHEAP = {"explain_coverage": 20}  # explanations of the top 20 alerts are compared too
REPLAY = [dt.date(2025, 3, 20) + dt.timedelta(i) for i in range(9)]


def _tables(root: Path, asset: str) -> dict[dt.date, pd.DataFrame]:
    folder = root / "data" / "warehouse" / "ethereum" / asset
    return {dt.date.fromisoformat(p.stem): pd.read_parquet(p) for p in sorted(folder.iterdir())}


def _run_label_sensor(defs, instance, cursor: str | None) -> str | None:
    sensor = _named(defs.sensors, "ethereum_label_arrival_sensor")
    result = sensor(dg.build_sensor_context(instance=instance, cursor=cursor))
    job = defs.resolve_job_def("daily_job")
    for request in result.run_requests:
        run = job.execute_in_process(
            instance=instance, tags=request.tags, asset_selection=request.asset_selection
        )
        assert run.success
    return result.cursor


def test_the_daily_schedule_computes_exactly_what_a_backfill_computes(home, tmp_path):
    """The live path (the schedule's run for each day, the label cut-off advancing with the
    day, the label sensor after it) against a one-go backfill of the same days on a fresh
    data root: the same features, scores and tier results on every day."""
    live, backfill = tmp_path / "live", tmp_path / "backfill"
    for root in (live, backfill):
        shutil.copytree(home / "data" / "trained_models", root / "data" / "trained_models")
    with dg.instance_for_test() as instance:
        cursor = None
        for day in REPLAY:
            defs = build_definitions(_settings(live, labels_as_of=day.isoformat(), **CHEAP))
            schedule = _named(defs.schedules, "ethereum_daily_schedule")
            tick = dt.datetime.combine(day + dt.timedelta(1), dt.time(2), dt.UTC)
            request = schedule(
                dg.build_schedule_context(instance=instance, scheduled_execution_time=tick)
            )
            assert request.partition_key == day.isoformat()
            run = defs.resolve_job_def("daily_job").execute_in_process(
                instance=instance, partition_key=request.partition_key
            )
            assert run.success
            cursor = _run_label_sensor(defs, instance, cursor)
    with dg.instance_for_test() as instance:
        defs = build_definitions(_settings(backfill, labels_as_of=REPLAY[-1].isoformat(), **CHEAP))
        job = defs.resolve_job_def("daily_job")
        assert run_range(job, instance, REPLAY[0], REPLAY[-1]) is None
        _run_label_sensor(defs, instance, None)

    for asset, drop in (("alert_features", []), ("alert_scores", ["latency_ms"])):
        for (day, a), (_, b) in zip(
            _tables(live, asset).items(), _tables(backfill, asset).items(), strict=True
        ):
            pd.testing.assert_frame_equal(
                a.drop(columns=drop), b.drop(columns=drop), obj=f"{asset} {day}"
            )
    late = _tables(live, "alert_features")[REPLAY[-1]]
    assert (late["known_labels_180d"] > 0).any()  # label history reached the live days
    for tier in ("tier1", "tier2", "tier3"):
        a, b = _tables(live, f"{tier}_evaluation"), _tables(backfill, f"{tier}_evaluation")
        assert sorted(a) == sorted(b) == REPLAY
        for day in REPLAY:
            details = [json.loads(t[day]["details_json"].iloc[0]) for t in (a, b)]
            for d in details:
                d.pop("labels_through", None)  # when the last re-evaluation ran
                d.pop("label_maturity_days", None)  # estimated from what it had seen
                d.get("checks", {}).pop("latency", None)  # wall time
            assert details[0] == details[1], (tier, day)
            assert a[day]["score"].equals(b[day]["score"]), (tier, day)
    arrived = [
        json.loads(t["details_json"].iloc[0])["metrics"]["n_samples"]
        for t in _tables(live, "tier3_evaluation").values()
    ]
    assert arrived[0] > 0 and arrived[-1] == 0  # the sensor re-evaluated as labels arrived


def test_a_subset_of_the_score_step_stores_only_what_was_selected(scratch):
    """Re-running one output of the score step (a UI re-run of a failed asset) is allowed:
    it stores that output and leaves the others as they were."""
    folder = scratch / "data" / "warehouse" / "ethereum"
    before = {n: (folder / n / "2025-03-08.parquet").stat().st_mtime_ns for n in SCORE_OUTPUTS}
    job = build_definitions(_settings(scratch)).resolve_job_def("ethereum_daily_job")
    with dg.instance_for_test() as instance:
        result = job.execute_in_process(
            instance=instance,
            partition_key="2025-03-08",
            asset_selection=[dg.AssetKey(["ethereum", "alert_scores"])],
        )
    assert result.success
    after = {n: (folder / n / "2025-03-08.parquet").stat().st_mtime_ns for n in SCORE_OUTPUTS}
    assert [n for n in SCORE_OUTPUTS if after[n] != before[n]] == ["alert_scores"]


def test_publication_refuses_outputs_scored_by_other_models_than_the_manifest_records():
    frames = {name: pd.DataFrame({"model_version": ["3.0.0", "3.0.0"]}) for name in SCORED_BY}
    manifest = {f"{kind}_version": "3.0.0" for kind in SCORED_BY.values()}
    assert version_mismatch(frames, manifest) is None
    frames["alert_scores"]["model_version"] = "3.1.0"
    assert version_mismatch(frames, manifest) == (
        "alert_scores were scored by alert_scorer v3.1.0, the scoring manifest records v3.0.0"
    )


class _LoaderThatDiffersElsewhere:
    """Loads one version in the test's process and another in any other process: the
    fresh-process re-scoring then differs, as a model file swapped after scoring would."""

    def __init__(self, root: str, here: str, elsewhere: str) -> None:
        self.root, self.here, self.elsewhere = root, here, elsewhere
        self.pid = os.getpid()

    def __call__(self):
        from aml_pipeline.models.registry import ModelRegistry
        from aml_pipeline.storage.objects import LocalStorage

        version = self.here if os.getpid() == self.pid else self.elsewhere
        return ModelRegistry(LocalStorage(self.root), "ethereum").load("alert_scorer", version)


def test_the_tier1_gate_fails_when_the_stored_model_scores_differently(scratch):
    from aml_pipeline.evaluation.gates import tier1_gate

    _register_weakened_scorer(scratch)
    features = _warehouse(scratch, "alert_features")
    day = dt.date(2025, 3, 9)
    one_day = {day: features[features["processing_date"] == day].reset_index(drop=True)}
    root = str(scratch / "data")
    same = tier1_gate(_LoaderThatDiffersElsewhere(root, "3.0.0", "3.0.0"), one_day)
    assert same.passed and "tier 1 passed on 2025-03-09..2025-03-09" in same.detail
    swapped = tier1_gate(_LoaderThatDiffersElsewhere(root, "3.0.0", "3.1.0"), one_day)
    assert not swapped.passed and swapped.detail.endswith("2025-03-09: determinism")
