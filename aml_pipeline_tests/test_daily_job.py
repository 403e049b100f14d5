"""The daily job end to end: score command, published outputs and their provenance,
failed re-runs, the schedule and the new-batch sensor."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from pathlib import Path

import dagster as dg
import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from aml_pipeline import automation, cli
from aml_pipeline.definitions import build_definitions
from aml_pipeline.resources import PipelineConfig
from aml_pipeline.runs import RANGE_END, RANGE_START
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
    model = home / "data" / "trained_models" / "ethereum" / "alert_scorer_v2.0.0.txt"
    good = model.read_bytes()
    model.write_bytes(b"tree\nnot a model\n")
    try:
        assert cli.main(args) == 1
    finally:
        model.write_bytes(good)
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == published


def test_schedule_targets_the_previous_utc_day(tmp_path):
    defs = build_definitions(_settings(tmp_path))
    schedule = _named(defs.schedules, "daily_scoring_schedule")
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
    schedule = _named(defs.schedules, "daily_scoring_schedule")
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
    sensor = _named(build_definitions(settings).sensors, "new_batch_sensor")
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
    assert request.run_key == "ethereum:2025-03-11..2025-03-13@2025-03-14"
    assert dg.AssetKey(["ethereum", "published_scores"]) in request.asset_selection
    assert dg.AssetKey(["ethereum", "alert_scorer"]) not in request.asset_selection


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
    assert pq.read_metadata(tables[0].parent / "alert_history" / "2025-03-01.parquet").num_rows == 0
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

    report = json.loads(
        (home / "data/validation_results/ethereum/model_v2.0.0_evaluation.json").read_text()
    )
    assert report["summary"]["days"] == 10 and report["summary"]["tier1_passed_days"] == 10
    # trained on 03-01..08: those days are in-sample and left out of the summary
    assert report["summary"]["in_sample_days"] == 8
    assert report["summary"]["held_out_days_with_tier3"] == 2
    day = report["days"]["2025-03-05"]
    assert day["total"] == pytest.approx(
        day["tier1"]["score"] + day["tier2"]["score"] + day["tier3"]["score"]
    )


def test_a_tier1_failure_blocks_publication(home, monkeypatch):
    from aml_pipeline.assets import scoring

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


def test_label_refresh_horizons():
    published = {"2024-12-01", "2025-01-01", "2025-03-01", "2025-03-10", "2025-03-18"}
    due = automation.label_refreshes(published, dt.date(2025, 3, 20))
    # 2024-12-01 is past the last horizon (90 days); 2025-03-18 has not reached T+7
    assert due == [("2025-01-01", 60), ("2025-03-01", 14), ("2025-03-10", 7)]


def test_label_sensor_refreshes_ground_truth_and_tier3(home, monkeypatch):
    monkeypatch.setattr(automation, "utc_today", lambda: dt.date(2025, 3, 20))
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    sensor = _named(build_definitions(_settings(home)).sensors, "label_arrival_sensor")
    with dg.DagsterInstance.get() as instance:
        result = sensor(dg.build_sensor_context(instance=instance))
    keys = {r.partition_key: r for r in result.run_requests}
    assert sorted(keys) == [f"2025-03-{d:02d}" for d in range(1, 11)]
    assert keys["2025-03-01"].run_key == "ethereum:2025-03-01:labels:T+14"
    assert keys["2025-03-10"].run_key == "ethereum:2025-03-10:labels:T+7"
    assert set(keys["2025-03-10"].asset_selection) == {
        dg.AssetKey(["ethereum", "ground_truth"]),
        dg.AssetKey(["ethereum", "tier3_evaluation"]),
    }


def _register_weakened_scorer(home: Path) -> None:
    """alert_scorer v2.1.0: the same training, on shuffled labels."""
    from aml_pipeline.features.alert_features import CATEGORIES, FEATURE_COLUMNS
    from aml_pipeline.models.registry import ModelRegistry
    from aml_pipeline.models.training import LABEL, TrainParams, labelled, train_binary
    from aml_pipeline.storage import LocalStorage

    frame = labelled(
        _warehouse(home, "alert_features"), _warehouse(home, "ground_truth"), dt.date(2025, 5, 1)
    )
    frame = frame[frame["processing_date"] <= dt.date(2025, 3, 8)].reset_index(drop=True)
    frame[LABEL] = frame[LABEL].sample(frac=1, random_state=0).to_numpy()
    vocab = {c: len(v) for c, v in CATEGORIES.items()}
    features = list(FEATURE_COLUMNS)
    model = train_binary(
        frame, features, list(CATEGORIES), TrainParams(), "alert_confidence_score", vocab
    )
    registry = ModelRegistry(LocalStorage(home / "data"), "ethereum")
    registry.register(
        "alert_scorer",
        model.booster,
        {"version": "2.1.0", "features": features, "note": "shuffled labels (test)"},
    )


def test_ab_comparison_picks_the_real_model_and_promotion_is_recorded(home, monkeypatch, capsys):
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    monkeypatch.setenv("AML_DATA_ROOT", str(home / "data"))
    _register_weakened_scorer(home)
    defs = build_definitions(_settings(home))
    config = {"start_date": "2025-03-09", "end_date": "2025-03-10", "resamples": 200}
    with dg.DagsterInstance.get() as instance:
        result = defs.resolve_implicit_global_asset_job_def().execute_in_process(
            instance=instance,
            asset_selection=[dg.AssetKey(["ethereum", "model_comparison"])],
            run_config={"ops": {"ethereum__model_comparison": {"config": config}}},
        )
    meta = result.get_asset_materialization_events()[0].materialization.metadata
    assert meta["model_a"].value == "2.0.0" and meta["model_b"].value == "2.1.0"
    assert meta["winner"].value.startswith("A") and meta["significant"].value
    assert meta["delta_pooled_auc_roc"].value < 0
    folder = home / "data/validation_results/ethereum/v2.0.0_vs_v2.1.0"
    report = (folder / "comparison_report.md").read_text()
    assert "2025-03-09" in report and "roc_curves.png" in report
    assert (folder / "roc_curves.png").stat().st_size > 0

    # the same comparison from the command line, on the files
    models = home / "data/trained_models/ethereum"
    output = home / "ab" / "v2.0.0_vs_v2.1.0.json"
    args = ["validate", "--model-a", str(models / "alert_scorer_v2.0.0.txt"),
            "--model-b", str(models / "alert_scorer_v2.1.0.txt"),
            "--test-data", str(home / "data/input/ethereum"),
            "--start-date", "2025-03-09", "--end-date", "2025-03-10",
            "--ground-truth", str(folder / "ground_truth.parquet"),
            "--output", str(output), "--resamples", "200"]  # fmt: skip
    capsys.readouterr()
    assert cli.main(args) == 0
    assert "winner: A (v2.0.0)" in capsys.readouterr().out
    saved = json.loads(output.read_text())
    assert set(saved["per_day"]) == {"2025-03-09", "2025-03-10"}
    assert (output.parent / "comparison_report.md").is_file()

    promote = ["promote", "--network", "ethereum", "--kind", "alert_scorer"]
    assert cli.main([*promote, "--version", "2.1.0", "--reason", "test"]) == 0
    assert cli.main([*promote, "--version", "2.0.0"]) == 0
    assert cli.main([*promote, "--version", "9.9.9"]) == 1
    registry = json.loads((models / "model_metadata.json").read_text())
    assert registry["champions"]["alert_scorer"] == "2.0.0"
    assert [(p["previous"], p["version"]) for p in registry["promotions"]] == [
        ("2.0.0", "2.1.0"),
        ("2.1.0", "2.0.0"),
    ]


def test_demo_ingests_trains_on_the_oldest_days_scores_and_summarizes(cli_home, capsys):
    args = ["demo", "--days", "8", "--train-days", "6", "--end-date", "2025-03-10"]
    assert cli.main(args) == 0  # labels as known on 2025-05-01 (cli_home)
    out = capsys.readouterr().out
    assert "training ethereum on 2025-03-03..2025-03-08" in out
    assert "2025-03-09..2025-03-10 are held out" in out
    assert "ethereum: 8 days published" in out and "alert_scorer v2.0.0" in out
    assert "top alerts of 2025-03-10 (ethereum):" in out and "score 0." in out
    assert "held-out days, tier 3" in out
    assert "over 2 days" in out  # the two held-out days have ground-truth metrics
    assert len(list((cli_home / "data" / "output" / "ethereum").iterdir())) == 8
