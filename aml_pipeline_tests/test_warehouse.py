"""The warehouse resource and its IO manager: layout, round trip, ranges, idempotence,
atomicity, one data root and the DuckDB limits a run is configured with."""

from __future__ import annotations

import datetime as dt

import dagster as dg
import duckdb
import pandas as pd
import pytest

from aml_pipeline.defs.partitions import daily_partitions
from aml_pipeline.defs.resources import PipelineConfig
from aml_pipeline.defs.warehouse import Warehouse, WarehouseIOManager
from aml_pipeline.storage.tables import (
    MissingPartitions,
    configure_duckdb,
    duckdb_cursor,
    read_parquet,
)
from aml_pipeline_tests.conftest import settings_for

PARTITIONS = daily_partitions("2025-01-01")
TYPES = dg.TableSchema(
    columns=[
        dg.TableColumn("processing_date", "DATE"),
        dg.TableColumn("id", "VARCHAR"),
        dg.TableColumn("n", "BIGINT"),
        dg.TableColumn("x", "DOUBLE"),
        dg.TableColumn("flag", "BOOLEAN"),
        dg.TableColumn("tags", "VARCHAR[]"),
    ]
)


def frame(day: dt.date, rows: int = 3) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "processing_date": pd.Series([day] * rows, dtype="object"),
            "id": pd.Series([f"{day}-{i}" for i in range(rows)], dtype="str"),
            "n": pd.array([i if i != 1 else None for i in range(rows)], dtype="Int64"),
            "x": [0.5 * i for i in range(rows)],
            "flag": pd.array([True, None, False][:rows], dtype="boolean"),
            "tags": [["a", "b"], [], ["c"]][:rows],
        }
    )


@pytest.fixture
def manager(tmp_path) -> WarehouseIOManager:
    pipeline = PipelineConfig.from_settings(settings_for(tmp_path, data_root=str(tmp_path)))
    return WarehouseIOManager(warehouse=Warehouse(pipeline=pipeline))


def _write(manager, keys: list[str], df: pd.DataFrame) -> None:
    context = dg.build_output_context(
        asset_key=dg.AssetKey(["net", "table"]),
        partition_key=keys[0] if len(keys) == 1 else None,
        asset_partitions_def=PARTITIONS,
        definition_metadata={"dagster/column_schema": TYPES},
        asset_partition_key_range=dg.PartitionKeyRange(keys[0], keys[-1]),
    )
    manager.handle_output(context, df)


def _read(manager, start: str, end: str, **metadata) -> pd.DataFrame:
    context = dg.build_input_context(
        asset_key=dg.AssetKey(["net", "table"]),
        asset_partitions_def=PARTITIONS,
        asset_partition_key_range=dg.PartitionKeyRange(start, end),
        definition_metadata=metadata,
    )
    return manager.load_input(context)


def test_one_file_per_partition_under_the_asset_key(manager, tmp_path):
    _write(manager, ["2025-01-02"], frame(dt.date(2025, 1, 2)))
    path = tmp_path / "warehouse" / "net" / "table" / "2025-01-02.parquet"
    assert path.is_file()
    assert [p.name for p in path.parent.iterdir()] == ["2025-01-02.parquet"]


def test_dtypes_and_values_round_trip(manager):
    df = frame(dt.date(2025, 1, 2))
    _write(manager, ["2025-01-02"], df)
    back = _read(manager, "2025-01-02", "2025-01-02")
    assert list(back.dtypes.astype(str)) == [
        "object",
        "str",
        "Int64",
        "float64",
        "boolean",
        "object",
    ]
    assert back["processing_date"].tolist() == df["processing_date"].tolist()
    assert [list(t) for t in back["tags"]] == df["tags"].tolist()
    pd.testing.assert_frame_equal(back.drop(columns=["tags"]), df.drop(columns=["tags"]))


def test_an_empty_partition_keeps_the_declared_types(manager, tmp_path):
    _write(manager, ["2025-01-03"], frame(dt.date(2025, 1, 3)).iloc[0:0])
    path = tmp_path / "warehouse" / "net" / "table" / "2025-01-03.parquet"
    described = duckdb.execute("DESCRIBE SELECT * FROM read_parquet(?)", [str(path)]).fetchall()
    types = {row[0]: row[1] for row in described}
    assert types == {
        "processing_date": "DATE",
        "id": "VARCHAR",
        "n": "BIGINT",
        "x": "DOUBLE",
        "flag": "BOOLEAN",
        "tags": "VARCHAR[]",
    }


def test_a_multi_partition_output_is_split_one_file_per_day(manager, tmp_path):
    days = [dt.date(2025, 1, d) for d in (4, 5, 6)]
    df = pd.concat([frame(days[0]), frame(days[2], 2)], ignore_index=True)
    _write(manager, [d.isoformat() for d in days], df)
    folder = tmp_path / "warehouse" / "net" / "table"
    assert sorted(p.name for p in folder.iterdir()) == [f"{d}.parquet" for d in days]
    assert len(_read(manager, "2025-01-05", "2025-01-05")) == 0
    back = _read(manager, "2025-01-04", "2025-01-06")
    assert back["processing_date"].value_counts().to_dict() == {days[0]: 3, days[2]: 2}


def test_a_multi_partition_output_refuses_rows_of_other_days(manager):
    with pytest.raises(ValueError, match="outside the run's partitions"):
        _write(manager, ["2025-01-04", "2025-01-05"], frame(dt.date(2025, 1, 9)))


def test_rematerializing_replaces_the_partition_exactly(manager, tmp_path):
    day = dt.date(2025, 1, 7)
    _write(manager, ["2025-01-07"], frame(day, 3))
    _write(manager, ["2025-01-07"], frame(day, 2))
    _write(manager, ["2025-01-07"], frame(day, 2))
    assert len(_read(manager, "2025-01-07", "2025-01-07")) == 2
    folder = tmp_path / "warehouse" / "net" / "table"
    assert [p.name for p in folder.iterdir()] == ["2025-01-07.parquet"]


def test_a_crash_mid_write_leaves_the_previous_file_intact(manager, tmp_path, monkeypatch):
    day = dt.date(2025, 1, 8)
    _write(manager, ["2025-01-08"], frame(day, 3))
    folder = tmp_path / "warehouse" / "net" / "table"
    before = (folder / "2025-01-08.parquet").read_bytes()

    real_execute = duckdb.DuckDBPyConnection.execute

    def crash_after_writing(self, sql, params=None):
        result = real_execute(self, sql, params)
        if sql.startswith("COPY"):
            raise OSError("disk vanished")  # the temp file exists, the rename never happens
        return result

    monkeypatch.setattr(duckdb.DuckDBPyConnection, "execute", crash_after_writing)
    with pytest.raises(OSError, match="disk vanished"):
        _write(manager, ["2025-01-08"], frame(day, 1))
    monkeypatch.undo()
    assert (folder / "2025-01-08.parquet").read_bytes() == before
    assert [p.name for p in folder.iterdir()] == ["2025-01-08.parquet"]


def test_reading_a_range_with_a_missing_partition_names_it(manager):
    _write(manager, ["2025-01-10"], frame(dt.date(2025, 1, 10)))
    with pytest.raises(FileNotFoundError, match=r"2025-01-11"):
        _read(manager, "2025-01-10", "2025-01-11")


def test_an_input_reads_only_its_columns(manager):
    _write(manager, ["2025-01-10"], frame(dt.date(2025, 1, 10)))
    got = _read(manager, "2025-01-10", "2025-01-10", columns=["x", "id"])
    assert list(got.columns) == ["x", "id"] and len(got) == 3


def test_read_days_skips_days_before_the_data_began_and_names_holes(manager):
    key, warehouse = dg.AssetKey(["net", "table"]), manager.warehouse
    for d in (10, 12):
        _write(manager, [f"2025-01-{d}"], frame(dt.date(2025, 1, d)))
    days = [dt.date(2025, 1, d) for d in range(5, 11)]
    got = warehouse.read_days(key, days, ["id"], since=dt.date(2025, 1, 10))
    assert list(got.columns) == ["id"] and len(got) == 3  # 5..9 predate the data
    none = warehouse.read_days(key, days[:2], ["id"], since=dt.date(2025, 1, 10))
    assert none.empty and list(none.columns) == ["id"]
    with pytest.raises(MissingPartitions, match=r"after its data began on 2025-01-10: 2025-01-11"):
        warehouse.read_days(key, [dt.date(2025, 1, d) for d in (10, 11, 12)], since=days[-1])
    with pytest.raises(MissingPartitions, match="2025-01-05"):
        warehouse.read_days(key, days)
    assert warehouse.stored_days(key) == [dt.date(2025, 1, 10), dt.date(2025, 1, 12)]


def test_read_parquet_scans_many_files_in_one_query(tmp_path, manager):
    for d in (12, 13, 14):
        _write(manager, [f"2025-01-{d}"], frame(dt.date(2025, 1, d)))
    paths = sorted(str(p) for p in (tmp_path / "warehouse" / "net" / "table").iterdir())
    assert len(read_parquet(paths)) == 9


def test_the_io_manager_writes_under_the_pipeline_resources_data_root(make_defs, tmp_path):
    """One data_root: a launchpad override of the pipeline resource moves the warehouse
    with everything else (the IO manager has no root of its own); the warehouse's DuckDB
    limits in the launchpad are the run's."""
    from aml_pipeline.defs.network import INGESTION_ASSETS, asset_keys
    from aml_pipeline_tests.conftest import DAY, NETWORK

    elsewhere = tmp_path / "elsewhere"
    pipeline = PipelineConfig.from_settings(settings_for(tmp_path)).model_dump()
    result = (
        make_defs()
        .resolve_job_def("daily_job")
        .execute_in_process(
            partition_key=DAY.isoformat(),
            asset_selection=asset_keys([NETWORK], INGESTION_ASSETS),
            run_config={
                "resources": {
                    "pipeline": {"config": {**pipeline, "data_root": str(elsewhere)}},
                    "warehouse": {"config": {"duckdb_threads": 1, "duckdb_memory_limit": "2GB"}},
                }
            },
        )
    )
    assert result.success
    try:  # the run executed in this process, whose database it configured
        with duckdb_cursor() as con:
            (threads,) = con.execute("SELECT current_setting('threads')").fetchone()
    finally:
        configure_duckdb()
    assert threads == 1
    assert (elsewhere / "warehouse" / NETWORK / "raw_alerts" / f"{DAY}.parquet").is_file()
    assert not (tmp_path / "data" / "warehouse").exists()


def test_a_bad_duckdb_memory_limit_is_refused_naming_it(manager):
    """Before the run's first step, not as a failure of whichever step first opens DuckDB."""
    warehouse = manager.warehouse.model_copy(update={"duckdb_memory_limit": "lots"})
    with pytest.raises(ValueError, match=r"memory_limit.*lots"):
        warehouse.setup_for_execution(dg.build_init_resource_context())
    with duckdb_cursor() as con:  # the process's database is left as it was
        assert con.execute("SELECT 1").fetchone() == (1,)
