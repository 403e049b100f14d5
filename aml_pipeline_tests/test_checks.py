"""Checks with teeth: a contract violation is refused before its partition is written,
every blocking check stops what is downstream of it, and a hole in a look-back is named."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest

from aml_pipeline.contract.files import parquet_bytes, sha256_hex
from aml_pipeline.contract.schema import META_FILE
from aml_pipeline.defs.assets import ingestion as ingestion_assets
from aml_pipeline.defs.network import FEATURE_ASSETS, INGESTION_ASSETS, asset_keys
from aml_pipeline.defs.tags import RANGE_END, RANGE_START
from aml_pipeline.storage import tables
from aml_pipeline_tests.conftest import NETWORK, batch_files, batch_tables, write_upstream

pytestmark = pytest.mark.integration  # materializes Dagster assets and their checks

DAY = "2025-01-10"
DOWNSTREAM = ("raw_alerts", "label_events", "alert_history", "alert_features")


def _run(defs: dg.Definitions, day: str, names=(*INGESTION_ASSETS, *FEATURE_ASSETS)):
    job = defs.resolve_job_def("daily_job")
    return job.execute_in_process(
        partition_key=day, asset_selection=asset_keys([NETWORK], names), raise_on_error=False
    )


def _materialized(result: dg.ExecuteInProcessResult) -> set[str]:
    return {e.asset_key.path[-1] for e in result.get_asset_materialization_events()}


def _check(result: dg.ExecuteInProcessResult, asset: str, name: str):
    return next(
        e
        for e in result.get_asset_check_evaluations()
        if e.asset_key.path[-1] == asset and e.check_name == name
    )


def _warehouse(tmp_path: Path, asset: str, day: str = DAY) -> Path:
    return tmp_path / "data" / "warehouse" / NETWORK / asset / f"{day}.parquet"


def test_a_contract_violation_is_refused_before_its_partition_is_written(make_defs, tmp_path):
    defs = make_defs()
    assert _run(defs, DAY).success
    before = _warehouse(tmp_path, "raw_alerts").read_bytes()
    # the landed alerts change behind the pipeline's back, META.json updated to match
    landed = tmp_path / "data" / "input" / NETWORK / DAY
    alerts = pd.read_parquet(landed / "alerts.parquet")
    doubled = parquet_bytes(pd.concat([alerts, alerts.head(1)], ignore_index=True))
    (landed / "alerts.parquet").write_bytes(doubled)
    meta = json.loads((landed / META_FILE).read_bytes())
    meta["sha256"]["alerts.parquet"] = sha256_hex(doubled)
    (landed / META_FILE).write_text(json.dumps(meta))

    result = _run(defs, DAY, ("raw_alerts", *FEATURE_ASSETS))
    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure)
    assert "alerts.parquet of 2025-01-10..2025-01-10 refused, nothing written" in (
        failure.step_failure_data.error.message
    )
    assert "duplicate keys" in failure.step_failure_data.error.message
    assert _warehouse(tmp_path, "raw_alerts").read_bytes() == before
    assert not _materialized(result)


def test_landed_files_that_differ_from_meta_stop_everything_downstream(
    make_defs, tmp_path, monkeypatch
):
    real = ingestion_assets.land

    def lands_a_corrupt_file(storage, checked):
        digests = real(storage, checked)
        key = f"{NETWORK}/{checked.batch.processing_date}/clusters.parquet"
        storage.write_bytes(key, storage.read_bytes(key)[:-10])
        return digests

    monkeypatch.setattr(ingestion_assets, "land", lands_a_corrupt_file)
    result = _run(make_defs(), DAY)
    assert not result.success
    check = _check(result, "landed_batch", "landed_files_match_meta")
    assert not check.passed
    assert "clusters.parquet: sha256 differs" in str(check.metadata["problems"].value)
    assert _materialized(result) == {"landed_batch"}
    assert not _warehouse(tmp_path, "raw_alerts").exists()


@pytest.mark.parametrize(
    ("asset", "check_name", "broken"),
    [
        ("raw_alerts", "conforms_to_contract", lambda df: df.iloc[1:]),  # a row lost
        ("label_events", "labels_known_in_time", lambda df: pd.concat([df, df.head(1)])),
    ],
)
def test_a_stored_partition_that_breaks_its_check_stops_what_reads_it(
    make_defs, tmp_path, monkeypatch, asset, check_name, broken
):
    defs = make_defs()
    job = defs.resolve_job_def("daily_job")
    earlier = {RANGE_START: "2025-01-01", RANGE_END: "2025-01-09"}  # so labels arrive on DAY
    assert job.execute_in_process(
        tags=earlier, asset_selection=asset_keys([NETWORK], INGESTION_ASSETS)
    ).success
    real = tables.write_frame

    def faulty(con, storage, key, *args, **kwargs):
        real(con, storage, key, *args, **kwargs)
        if f"/{asset}/" in key:  # the stored file, broken after the asset's own checks
            df = broken(tables.read_parquet([str(storage.local_path(key))]))
            with tables.duckdb_cursor() as fresh:
                fresh.register("frame", df)
                real(fresh, storage, key, *args, **kwargs)

    monkeypatch.setattr(tables, "write_frame", faulty)
    result = _run(defs, DAY)
    assert not result.success
    check = _check(result, asset, check_name)
    assert not check.passed and check.metadata["problems"].value
    assert not {"alert_history", "alert_features", "cluster_features"} & _materialized(result)
    assert not _warehouse(tmp_path, "alert_features").exists()


def test_a_hole_in_the_look_back_is_an_error_that_names_the_day(make_defs, tmp_path):
    defs = make_defs()
    for day in ("2025-01-07", "2025-01-08", "2025-01-09"):
        assert _run(defs, day).success
    _warehouse(tmp_path, "raw_alerts", "2025-01-08").unlink()
    result = _run(defs, DAY)
    assert not result.success
    message = next(e for e in result.all_events if e.is_step_failure).step_failure_data.error
    assert (
        "ethereum/raw_alerts is not stored for 1 day(s) after its data began on 2025-01-07: "
        "2025-01-08" in message.message
    )
    assert not _warehouse(tmp_path, "alert_features").exists()


def test_schema_drift_warns_and_the_run_goes_on(tmp_path):
    day = dt.date.fromisoformat(DAY)
    tables = batch_tables(day)
    tables["features"] = tables["features"].drop(columns=["peak_hour"])
    tables["alerts"]["a_new_column"] = 1
    source = tmp_path / "sot"
    write_upstream(source, batch_files(tables, day), day)
    from aml_pipeline.defs.definitions import build_definitions
    from aml_pipeline_tests.conftest import settings_for

    defs = build_definitions(settings_for(tmp_path, batch_source="local", source_dir=str(source)))
    result = _run(defs, DAY, INGESTION_ASSETS)
    assert result.success
    drift = _check(result, "landed_batch", "contract_drift")
    assert not drift.passed and drift.severity == dg.AssetCheckSeverity.WARN
    findings = " ".join(drift.metadata["problems"].value)
    assert "peak_hour" in findings and "a_new_column" in findings


def test_checks_run_alone_on_the_latest_stored_day(make_defs, tmp_path):
    defs = make_defs()
    assert _run(defs, DAY, INGESTION_ASSETS).success
    landed = tmp_path / "data" / "input" / NETWORK / DAY / "money_flows.parquet"
    landed.write_bytes(landed.read_bytes()[:-5])
    result = dg.materialize(
        [*defs.assets, *defs.asset_checks],
        resources=defs.resources,
        selection=dg.AssetSelection.checks_for_assets(dg.AssetKey([NETWORK, "landed_batch"])),
        raise_on_error=False,
    )
    check = _check(result, "landed_batch", "landed_files_match_meta")
    assert not check.passed
    assert "money_flows.parquet: sha256 differs" in str(check.metadata["problems"].value)


def test_a_ranged_run_records_each_days_check_result_on_its_partition(
    make_defs, tmp_path, monkeypatch
):
    defs = make_defs()
    job = defs.resolve_job_def("daily_job")
    days = {RANGE_START: "2025-01-08", RANGE_END: "2025-01-10"}
    with dg.instance_for_test() as instance:
        assert job.execute_in_process(
            tags=days, asset_selection=asset_keys([NETWORK], INGESTION_ASSETS), instance=instance
        ).success
        real = tables.write_frame

        def loses_a_row_of_the_9th(con, storage, key, *args, **kwargs):
            real(con, storage, key, *args, **kwargs)
            if key.endswith("/raw_alerts/2025-01-09.parquet"):
                df = tables.read_parquet([str(storage.local_path(key))]).iloc[1:]
                with tables.duckdb_cursor() as fresh:
                    fresh.register("frame", df)
                    real(fresh, storage, key, *args, **kwargs)

        monkeypatch.setattr(tables, "write_frame", loses_a_row_of_the_9th)
        again = job.execute_in_process(
            tags=days,
            asset_selection=asset_keys([NETWORK], ("raw_alerts",)),
            instance=instance,
            raise_on_error=False,
        )
        key = dg.AssetCheckKey(dg.AssetKey([NETWORK, "raw_alerts"]), "conforms_to_contract")
        history = instance.event_log_storage.get_asset_check_execution_history(key, limit=20)
    assert not again.success
    first, second = history[3:], history[:3]  # newest first
    assert {r.partition for r in first} == {"2025-01-08", "2025-01-09", "2025-01-10"}
    assert all(r.status.value == "SUCCEEDED" for r in first)
    assert {r.partition: r.status.value for r in second} == {
        "2025-01-08": "SUCCEEDED",
        "2025-01-09": "FAILED",
        "2025-01-10": "SUCCEEDED",
    }
    by_day = {r.partition: r.event.asset_check_evaluation for r in second}
    assert by_day["2025-01-09"].metadata["day"].value == "2025-01-09"
    assert "META.json counts" in str(by_day["2025-01-09"].metadata["problems"].value)
    assert by_day["2025-01-09"].target_materialization_data.run_id == again.run_id
    stored = pd.read_parquet(_warehouse(tmp_path, "raw_alerts", "2025-01-08"))
    assert by_day["2025-01-08"].metadata["rows"].value == len(stored)
