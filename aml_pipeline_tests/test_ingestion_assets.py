"""Ingestion assets end to end: landing, raw tables, labels, refusals, backfills."""

from __future__ import annotations

import datetime as dt
import errno
import json
import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import dagster as dg
import pandas as pd
import pyarrow.parquet as pq
import pytest

from aml_pipeline.contract.files import parquet_bytes
from aml_pipeline.contract.schema import META_FILE
from aml_pipeline.defs.definitions import build_definitions
from aml_pipeline.storage.objects import LocalStorage
from aml_pipeline_tests.conftest import (
    NETWORK,
    batch_files,
    batch_tables,
    settings_for,
    small_source,
    write_upstream,
)

pytestmark = pytest.mark.integration  # materializes Dagster assets

RANGE_START = "dagster/asset_partition_range_start"
RANGE_END = "dagster/asset_partition_range_end"
TABLES = [
    "raw_alerts",
    "raw_features",
    "raw_clusters",
    "raw_money_flows",
    "batch_metadata",
    "label_events",
]


def run(defs: dg.Definitions, start: str, end: str | None = None) -> dg.ExecuteInProcessResult:
    job = defs.resolve_job_def("ingestion_job")
    if end is None:
        return job.execute_in_process(partition_key=start, raise_on_error=False)
    return job.execute_in_process(tags={RANGE_START: start, RANGE_END: end}, raise_on_error=False)


def failure_text(result: dg.ExecuteInProcessResult) -> str:
    return "\n".join(
        e.step_failure_data.error.message for e in result.all_events if e.is_step_failure
    )


def files_under(path: Path) -> dict[str, bytes]:
    """Every file a reader sees under ``path``: through published days' links, without the
    hidden version stores behind them."""
    found = {}
    for folder, dirs, files in os.walk(path, followlinks=True):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        for name in files:
            if not name.startswith("."):
                file = Path(folder) / name
                found[str(file.relative_to(path))] = file.read_bytes()
    return dict(sorted(found.items()))


def test_a_day_lands_and_loads_with_metadata_and_passing_checks(make_defs, tmp_path):
    result = run(make_defs(), "2025-01-05")
    assert result.success, failure_text(result)
    landed = tmp_path / "data" / "input" / NETWORK / "2025-01-05"
    assert sorted(p.name for p in landed.iterdir()) == [
        "LANDING.json",
        META_FILE,
        "alerts.parquet",
        "clusters.parquet",
        "features.parquet",
        "money_flows.parquet",
        "pattern_traps.json",
    ]
    mats = {
        e.asset_key.path[-1]: e.materialization for e in result.get_asset_materialization_events()
    }
    assert set(mats) == {"landed_batch", *TABLES}
    for name in TABLES:
        assert mats[name].metadata["dagster/row_count"].value >= 0, name
        assert mats[name].metadata["dagster/column_schema"].schema.columns, name
        path = tmp_path / "data" / "warehouse" / NETWORK / name / "2025-01-05.parquet"
        assert path.is_file(), name
    alerts = mats["raw_alerts"].metadata
    meta = json.loads((landed / META_FILE).read_bytes())
    assert alerts["dagster/row_count"].value == meta["counts"]["alerts"]
    assert alerts["source_sha256"].value == {"2025-01-05": meta["sha256"]["alerts.parquet"]}
    checks = [c for c in result.get_asset_check_evaluations() if c.check_name != "day_on_time"]
    assert len(checks) == 7 and all(c.passed for c in checks)
    assert all(c.partition == "2025-01-05" for c in checks)


def test_label_events_are_the_labels_that_arrived_that_day(make_defs, tmp_path):
    day = dt.date(2025, 1, 20)
    assert run(make_defs(), "2025-01-12", "2025-01-20").success  # the data begins on the 12th
    events = pd.read_parquet(
        tmp_path / "data" / "warehouse" / NETWORK / "label_events" / f"{day}.parquet"
    )
    arrived = pd.concat(
        [small_source().labels(NETWORK, dt.date(2025, 1, d), 7) for d in range(12, 16)]
    )
    arrived = arrived[arrived["label_date"] == day]
    assert len(events) > 0 and (events["label_date"] == day).all()
    assert sorted(events["alert_id"]) == sorted(arrived["alert_id"])
    assert (events["processing_date"] < day).all()
    # a label day after the as-of date is not fetched and nothing of it is written
    late = run(make_defs(labels_as_of="2025-01-20"), "2025-01-21")
    assert not late.success and "not known as of 2025-01-20" in failure_text(late)
    assert (
        not (events_dir := tmp_path / "data/warehouse" / NETWORK / "label_events")
        .joinpath("2025-01-21.parquet")
        .exists()
    ), events_dir


def _local_defs(tmp_path: Path, source_dir: Path) -> dg.Definitions:
    return build_definitions(
        settings_for(tmp_path, batch_source="local", source_dir=str(source_dir))
    )


def test_a_bad_batch_is_refused_and_nothing_is_written(tmp_path):
    source_dir = tmp_path / "sot"
    good_day, bad_day = dt.date(2025, 1, 10), dt.date(2025, 1, 11)
    write_upstream(source_dir, batch_files(batch_tables(good_day), good_day), good_day)
    bad = batch_tables(bad_day)
    bad["alerts"] = bad["alerts"].drop(columns=["address"])
    bad["features"].loc[0, "processing_date"] = good_day
    write_upstream(source_dir, batch_files(bad, bad_day), bad_day)
    defs = _local_defs(tmp_path, source_dir)

    assert run(defs, "2025-01-10").success
    data = tmp_path / "data"
    before = files_under(data)

    result = run(defs, "2025-01-11")
    assert not result.success
    text = failure_text(result)
    assert "alerts.parquet column 'address': missing required column" in text
    assert "features.parquet column 'processing_date'" in text
    assert files_under(data) == before, "a refused batch must not write anything"
    assert not result.get_asset_materialization_events()


def test_a_refused_range_writes_no_day_of_it(tmp_path):
    source_dir = tmp_path / "sot"
    for day in (dt.date(2025, 1, 12), dt.date(2025, 1, 13)):
        write_upstream(source_dir, batch_files(batch_tables(day), day), day)
    corrupt = source_dir / "snapshots" / NETWORK / "2025-01-13" / "7" / "clusters.parquet"
    corrupt.write_bytes(corrupt.read_bytes()[:100])
    result = run(_local_defs(tmp_path, source_dir), "2025-01-12", "2025-01-13")
    assert not result.success
    assert "clusters.parquet" in failure_text(result) and "sha256" in failure_text(result)
    assert not (tmp_path / "data" / "input").exists()


def test_a_range_too_big_for_the_disk_is_refused_before_anything_is_written(
    make_defs, tmp_path, monkeypatch
):
    monkeypatch.setattr(LocalStorage, "free_bytes", lambda self: 200 * 2**20)
    result = run(make_defs(), "2025-01-12", "2025-01-13")
    assert not result.success
    text = failure_text(result)
    assert "too little space to land 2 ethereum day(s)" in text and "200 MB free" in text
    assert "AML_MIN_FREE_MB reserve of 256 MB" in text and "nothing was written" in text
    assert not (tmp_path / "data" / "input" / NETWORK).exists()
    assert run(make_defs(min_free_mb=0), "2025-01-12", "2025-01-13").success


def test_a_disk_full_mid_range_says_which_days_landed_and_each_is_whole(
    make_defs, tmp_path, monkeypatch
):
    publish = LocalStorage.publish_dir

    def full_on_the_second_day(self, key, files):
        if key.endswith("2025-01-13"):
            raise OSError(errno.ENOSPC, "No space left on device")
        publish(self, key, files)

    monkeypatch.setattr(LocalStorage, "publish_dir", full_on_the_second_day)
    result = run(make_defs(), "2025-01-12", "2025-01-14")
    text = failure_text(result)
    assert "landing ethereum 2025-01-13 failed ([Errno 28] No space left on device)" in text
    assert "2025-01-12..2025-01-12 landed, 2025-01-13..2025-01-14 not" in text
    landed = tmp_path / "data" / "input" / NETWORK
    assert sorted(p.name for p in landed.glob("2025-*")) == ["2025-01-12"]
    assert not [p for p in landed.rglob("*") if "2025-01-13" in p.name]


def test_a_directory_for_a_file_and_a_huge_value_are_reported_not_raised(tmp_path):
    source_dir = tmp_path / "sot"
    day = dt.date(2025, 1, 14)
    tables = batch_tables(day)
    tables["alerts"].loc[0, "address"] = "0x" + "f" * 5_000_000  # no feature row: a warning
    tables["alerts"].loc[1, "alert_confidence_score"] = 7.0  # an error, so it is refused
    write_upstream(source_dir, batch_files(tables, day), day)
    folder = source_dir / "snapshots" / NETWORK / day.isoformat() / "7"
    (folder / "clusters.parquet").unlink()
    (folder / "clusters.parquet").mkdir()
    result = run(_local_defs(tmp_path, source_dir), day.isoformat())
    assert not result.success
    text = failure_text(result)
    assert "clusters.parquet: is a directory, not a file" in text
    assert "alert_confidence_score" in text and "IsADirectoryError" not in text
    assert "(5000004 characters)" in text and len(text) < 20_000


def test_a_missing_day_fails_with_a_clear_message(tmp_path):
    source_dir = tmp_path / "sot"
    write_upstream(source_dir, batch_files(batch_tables()))
    result = run(_local_defs(tmp_path, source_dir), "2025-01-20")
    assert not result.success
    assert "no batch at" in failure_text(result)


def test_seed_layout_with_ground_truth_file(tmp_path):
    day = dt.date(2025, 1, 10)
    source_dir = tmp_path / "seed"
    (source_dir / day.isoformat()).mkdir(parents=True)
    tables = batch_tables(day)
    for name, data in batch_files(tables, day).items():
        if name != META_FILE:
            (source_dir / day.isoformat() / name).write_bytes(data)
    ids = tables["alerts"]["alert_id"].tolist()
    (source_dir / "ground_truth.parquet").write_bytes(
        parquet_bytes(
            pd.DataFrame(
                {
                    "alert_id": ids,
                    "processing_date": [day] * len(ids),
                    "is_sar_filed": [i % 3 == 0 for i in range(len(ids))],
                    "label_date": [
                        day + dt.timedelta(10 if i % 2 else 90) for i in range(len(ids))
                    ],
                }
            )
        )
    )
    result = run(_local_defs(tmp_path, source_dir), day.isoformat())
    assert result.success, failure_text(result)
    landed = tmp_path / "data" / "input" / NETWORK / day.isoformat()
    meta = json.loads((landed / META_FILE).read_bytes())
    assert meta["batch_id"] == f"{NETWORK}-{day}-7d" and len(meta["sha256"]) == 4
    defs = _local_defs(tmp_path, source_dir)
    arrival = (day + dt.timedelta(10)).isoformat()
    labels_job = defs.resolve_job_def("ingestion_job")
    assert labels_job.execute_in_process(
        partition_key=arrival, asset_selection=[dg.AssetKey([NETWORK, "label_events"])]
    ).success
    labels = pd.read_parquet(
        tmp_path / "data" / "warehouse" / NETWORK / "label_events" / f"{arrival}.parquet"
    )
    assert len(labels) == len(ids) // 2  # the labels that became known ten days later


def test_rematerializing_a_day_is_idempotent(make_defs, tmp_path):
    defs = make_defs()
    assert run(defs, "2025-01-06").success
    data = tmp_path / "data"
    first = {k: v for k, v in files_under(data).items() if not k.endswith("LANDING.json")}
    assert run(defs, "2025-01-06").success
    second = {k: v for k, v in files_under(data).items() if not k.endswith("LANDING.json")}
    assert first == second
    # the unchanged batch is not landed again: one copy of the day in input/
    versions = data / "input" / "ethereum" / ".2025-01-06.versions"
    assert len(list(versions.iterdir())) == 1


def test_a_backfill_range_is_one_run_writing_one_file_per_day(make_defs, tmp_path):
    with dg.instance_for_test() as instance:
        job = make_defs().resolve_job_def("ingestion_job")
        result = job.execute_in_process(
            instance=instance, tags={RANGE_START: "2025-01-01", RANGE_END: "2025-01-07"}
        )
        assert result.success
        assert len(instance.get_run_records()) == 1
        key = dg.AssetKey([NETWORK, "raw_alerts"])
        assert len(instance.get_materialized_partitions(key)) == 7
        # each day's materialization carries that day's own row count, not the run's total
        stored = {}
        for name in ("raw_alerts", "raw_features", "batch_metadata", "label_events"):
            records = instance.fetch_materializations(
                dg.AssetKey([NETWORK, name]), limit=100
            ).records
            counted = {
                r.partition_key: r.asset_materialization.metadata["dagster/row_count"].value
                for r in records
            }
            stored[name] = {
                p.stem: pq.read_metadata(p).num_rows
                for p in (tmp_path / "data" / "warehouse" / NETWORK / name).iterdir()
            }
            assert counted == stored[name], name
        assert len(set(stored["raw_alerts"].values())) > 1  # the days differ
        landed = instance.fetch_materializations(
            dg.AssetKey([NETWORK, "landed_batch"]), limit=100
        ).records
        alerts = {
            r.partition_key: r.asset_materialization.metadata["row_counts"].value["alerts"]
            for r in landed
        }
        assert alerts == stored["raw_alerts"]
    for name in TABLES:
        folder = tmp_path / "data" / "warehouse" / NETWORK / name
        assert sorted(p.name for p in folder.iterdir()) == [
            f"2025-01-0{d}.parquet" for d in range(1, 8)
        ]


def _materialize_in_subprocess(args: tuple[str, str]) -> bool:
    data_root, day = args
    defs = build_definitions(settings_for(Path(data_root).parent))
    return run(defs, day).success


def test_several_partitions_at_once_in_separate_processes(tmp_path):
    days = ["2025-02-01", "2025-02-02", "2025-02-03"]
    data_root = str(tmp_path / "data")
    with ProcessPoolExecutor(max_workers=4) as pool:
        assert all(pool.map(_materialize_in_subprocess, [(data_root, d) for d in days]))
    folder = tmp_path / "data" / "warehouse" / NETWORK / "raw_features"
    assert sorted(p.stem for p in folder.iterdir()) == days


@pytest.fixture
def env_settings(tmp_path, monkeypatch):
    monkeypatch.setenv("AML_DATA_ROOT", str(tmp_path / "data"))
    monkeypatch.setenv("AML_LABELS_AS_OF", "2025-03-01")
    monkeypatch.setenv("AML_SIM_PROFILE", "small")
    return tmp_path


def test_multiprocess_executor_run_of_a_range(env_settings):
    job = dg.reconstructable(_env_job)
    (env_settings / "home").mkdir()
    with dg.instance_for_test(temp_dir=str(env_settings / "home")) as instance:
        result = dg.execute_job(
            job,
            instance=instance,
            tags={RANGE_START: "2025-02-10", RANGE_END: "2025-02-11"},
        )
        assert result.success
        assert len(instance.get_run_records()) == 1
    folder = env_settings / "data" / "warehouse" / NETWORK / "label_events"
    assert len(list(folder.iterdir())) == 2


def _env_job() -> dg.JobDefinition:
    from aml_pipeline.settings import Settings

    return build_definitions(Settings.from_env()).resolve_job_def("ingestion_job")
