"""Batch validation: every problem is found at once and names file, column and problem."""

from __future__ import annotations

import io
import json

import pandas as pd
import pyarrow.parquet as pq
import pytest

from aml_pipeline.contract.conform import (
    conform_arrow,
    conform_sql,
    conform_table,
    read_parquet_bytes,
)
from aml_pipeline.contract.files import parquet_bytes
from aml_pipeline.contract.schema import (
    BATCH_TABLES,
    FEATURES,
    META_FILE,
    RETIRED_FEATURES,
    SEED_META_FILE,
)
from aml_pipeline.contract.validation import validate_batch
from aml_pipeline.defs.metadata import contract_types
from aml_pipeline.sources.landing import landed_view
from aml_pipeline.storage.objects import LocalStorage
from aml_pipeline.storage.tables import duckdb_cursor, read_parquet, write_frame
from aml_pipeline_tests.conftest import DAY, NETWORK, batch_files, batch_tables, small_source


def _validate(files, **kwargs):
    return validate_batch(NETWORK, DAY, 7, files, **kwargs)


def _errors(report):
    return [(p.file, p.column, p.problem) for p in report.errors]


def test_a_good_batch_is_accepted():
    report = _validate(batch_files(batch_tables()))
    assert report.ok, report.format()
    assert report.row_counts["alerts"] > 0


def test_an_unreadable_meta_file_is_reported_once():
    files = batch_files(batch_tables())
    files.pop(META_FILE, None)
    reason = "is a directory, not a file"
    report = _validate(files, meta_required=True, unreadable={META_FILE: reason})
    assert _errors(report) == [(META_FILE, "", reason)]


def test_missing_required_column():
    tables = batch_tables()
    tables["alerts"] = tables["alerts"].drop(columns=["alert_confidence_score"])
    (error,) = _errors(_validate(batch_files(tables)))
    assert error == ("alerts.parquet", "alert_confidence_score", "missing required column")


def test_value_that_cannot_be_cast():
    tables = batch_tables()
    alerts = tables["alerts"]
    alerts["alert_confidence_score"] = alerts["alert_confidence_score"].astype(str)
    alerts.loc[1, "alert_confidence_score"] = "very high"
    (error,) = _errors(_validate(batch_files(tables)))
    assert error[:2] == ("alerts.parquet", "alert_confidence_score")
    assert "1 value(s) cannot be cast to float: 'very high'" in error[2]


def test_fractional_value_in_integer_column():
    tables = batch_tables()
    tables["features"]["degree_in"] = tables["features"]["degree_in"].astype("float64") + 0.5
    errors = _errors(_validate(batch_files(tables)))
    assert [(f, c) for f, c, _ in errors] == [("features.parquet", "degree_in")]


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf"), 5.0, -3.0, 1e300])
def test_a_meaningless_confidence_refuses_the_batch_naming_file_and_column(value):
    tables = batch_tables()
    tables["alerts"].loc[2, "alert_confidence_score"] = value
    (error,) = _errors(_validate(batch_files(tables)))
    assert error[:2] == ("alerts.parquet", "alert_confidence_score")
    assert error[2].startswith("1 ")


@pytest.mark.parametrize("value", [float("inf"), 1e300, -1e19])
def test_an_integer_column_holding_no_integer_is_an_error_not_a_traceback(value):
    tables = batch_tables()
    tables["features"]["degree_in"] = tables["features"]["degree_in"].astype("float64")
    tables["features"].loc[0, "degree_in"] = value
    (error,) = _errors(_validate(batch_files(tables)))
    assert error[:2] == ("features.parquet", "degree_in")
    assert "1 value(s) cannot be cast to int" in error[2]


def test_infinite_or_negative_amounts_and_counts_are_errors():
    tables = batch_tables()
    tables["features"].loc[0, "total_in_usd"] = float("inf")
    tables["features"].loc[1, "degree_in"] = -4
    tables["money_flows"].loc[0, "amount_usd_sum"] = -1.0
    errors = _errors(_validate(batch_files(tables)))
    assert [(f, c) for f, c, _ in errors] == [
        ("features.parquet", "degree_in"),
        ("features.parquet", "total_in_usd"),
        ("money_flows.parquet", "amount_usd_sum"),
    ]
    assert "1 value(s) not at least 0: -4.0" in errors[0][2]
    assert "1 infinite value(s): inf" in errors[1][2]


def test_odd_values_are_warnings_with_a_count():
    tables = batch_tables()
    tables["features"].loc[:2, "night_transaction_ratio"] = 1.5
    tables["features"].loc[0, "reciprocity_ratio"] = 1.0000000000000002  # rounding: fine
    tables["features"].loc[0, "total_volume_usd"] = 1e300
    tables["features"].loc[0, "peak_hour"] = 24
    tables["alerts"].loc[0, "severity"] = "apocalyptic"
    report = _validate(batch_files(tables))
    assert report.ok, report.format()
    warnings = {(p.file, p.column): p.problem for p in report.warnings}
    assert warnings[("features.parquet", "night_transaction_ratio")].startswith(
        "3 value(s) not in [0, 1]: 1.5"
    )
    assert ("features.parquet", "reciprocity_ratio") not in warnings
    assert "1 implausibly large value(s)" in warnings[("features.parquet", "total_volume_usd")]
    assert "1 value(s) not in [0, 23]: 24.0" in warnings[("features.parquet", "peak_hour")]
    assert "'apocalyptic'" in warnings[("alerts.parquet", "severity")]


def test_null_and_duplicate_keys_are_both_reported():
    tables = batch_tables()
    alerts = tables["alerts"]
    alerts.loc[0, "alert_id"] = None
    alerts.loc[2, "alert_id"] = alerts.loc[3, "alert_id"]
    errors = _errors(_validate(batch_files(tables)))
    assert ("alerts.parquet", "alert_id", "1 row(s) with a null key") in errors
    assert any(c == "alert_id" and "2 row(s) share a duplicate key" in p for _, c, p in errors)


def test_rows_from_another_date_or_window():
    tables = batch_tables()
    tables["clusters"].loc[0, "processing_date"] = pd.Timestamp("2025-01-09").date()
    tables["features"]["window_days"] = 30
    errors = _errors(_validate(batch_files(tables)))
    files_columns = {(f, c) for f, c, _ in errors}
    assert files_columns == {
        ("clusters.parquet", "processing_date"),
        ("features.parquet", "window_days"),
    }
    assert any("disagree with batch date 2025-01-10" in p for _, _, p in errors)


def test_checksum_and_count_disagreeing_with_meta():
    files = batch_files(batch_tables())
    meta = json.loads(files[META_FILE])
    meta["sha256"]["clusters.parquet"] = "0" * 64
    meta["counts"]["alerts"] += 1
    files[META_FILE] = json.dumps(meta).encode()
    errors = _errors(_validate(files))
    assert [(f, c) for f, c, _ in errors] == [("clusters.parquet", ""), ("alerts.parquet", "")]
    assert "sha256" in errors[0][2] and "META.json" in errors[0][2]
    assert "rows but META.json says" in errors[1][2]


def test_meta_for_another_batch_and_missing_fields():
    files = batch_files(batch_tables())
    meta = json.loads(files[META_FILE])
    meta["network"] = "bitcoin"
    del meta["generated_at"]
    files[META_FILE] = json.dumps(meta).encode()
    errors = _errors(_validate(files))
    assert ("META.json", "generated_at", "missing required field") in errors
    assert any(c == "network" and "'bitcoin'" in p for _, c, p in errors)


def test_truncated_parquet_and_missing_meta_are_reported_together():
    files = batch_files(batch_tables())
    files["features.parquet"] = files["features.parquet"][: len(files["features.parquet"]) // 2]
    del files[META_FILE]
    errors = _errors(_validate(files))
    assert ("META.json", "", "missing required file") in errors
    assert any(
        f == "features.parquet" and "unreadable or truncated Parquet" in p for f, _, p in errors
    )


def test_invalid_meta_json():
    files = batch_files(batch_tables())
    files[META_FILE] = b"{not json"
    (error,) = _errors(_validate(files))
    assert error[0] == META_FILE and "not valid JSON" in error[2]


def test_missing_required_file():
    files = batch_files(batch_tables())
    del files["clusters.parquet"]
    assert ("clusters.parquet", "", "missing required file") in _errors(_validate(files))


def test_alert_without_feature_row_is_a_warning_not_an_error():
    tables = batch_tables()
    orphan = tables["alerts"]["address"].iloc[0]
    tables["features"] = tables["features"][tables["features"]["address"] != orphan]
    report = _validate(batch_files(tables))
    assert report.ok
    (warning,) = [w for w in report.warnings if w.column == "address"]
    assert warning.file == "alerts.parquet" and orphan in warning.problem


def test_missing_optional_features_are_drift_and_extra_columns_are_kept():
    tables = batch_tables()
    dropped = ["amount_variance", "peak_hour", "khop3_count"]
    tables["features"] = tables["features"].drop(columns=dropped)
    tables["features"]["brand_new_feature"] = 1.0
    report = _validate(batch_files(tables))
    assert report.ok
    drift = {w.column for w in report.warnings if "schema drift" in w.problem}
    assert drift == set(dropped)  # the retired columns are expected: not reported per batch
    assert not {p.column for p in report.problems} & set(RETIRED_FEATURES)
    assert any(p.column == "brand_new_feature" and "kept" in p.problem for p in report.problems)


def test_a_day_with_zero_alerts_is_valid():
    tables = batch_tables()
    tables["alerts"] = tables["alerts"].iloc[0:0]
    tables["clusters"] = tables["clusters"].iloc[0:0]
    report = _validate(batch_files(tables))
    assert report.ok, report.format()
    assert report.row_counts["alerts"] == 0


def test_seed_layout_meta_is_optional_but_verified_when_present():
    files = batch_files(batch_tables())
    seed = {n: b for n, b in files.items() if n != META_FILE}
    assert _validate(seed, meta_file=SEED_META_FILE, meta_required=False).ok
    seed[SEED_META_FILE] = json.dumps({"counts": {"alerts": 999999}}).encode()
    report = _validate(seed, meta_file=SEED_META_FILE, meta_required=False)
    assert [(p.file, p.problem) for p in report.errors] == [
        ("alerts.parquet", f"has {report.row_counts['alerts']} rows but metadata.json says 999999")
    ]


@pytest.mark.parametrize(
    "column", ["hourly_activity", "first_activity_timestamp", "is_hub_address"]
)
def test_list_timestamp_and_flag_columns_cast_cleanly(column):
    tables = batch_tables()
    assert column in FEATURES.by_name
    report = _validate(batch_files(tables))
    assert not [p for p in report.problems if p.column == column]


def test_report_lists_every_problem_in_one_text():
    tables = batch_tables()
    tables["alerts"] = tables["alerts"].drop(columns=["typology_type"])
    tables["clusters"]["window_days"] = 90
    report = _validate(batch_files(tables))
    text = report.format()
    assert "REFUSED (2 errors" in text
    assert "alerts.parquet column 'typology_type': missing required column" in text
    assert "clusters.parquet column 'window_days'" in text


def test_malformed_meta_fields_are_reported_not_raised():
    files = batch_files(batch_tables())
    meta = json.loads(files[META_FILE])
    meta["sha256"] = "not-a-dict"
    meta["counts"] = {"alerts": "many", "clusters": None}
    files[META_FILE] = json.dumps(meta).encode()
    errors = _errors(_validate(files))
    assert ("META.json", "sha256", "must be an object, got 'not-a-dict'") in errors
    assert ("META.json", "counts", "alerts: 'many' is not a row count") in errors
    assert ("META.json", "counts", "clusters: None is not a row count") in errors


def _stored(tmp_path, name, frame, spec):
    """``frame`` as the warehouse stores a raw table, read back."""
    storage = LocalStorage(tmp_path)
    with duckdb_cursor() as con:
        con.register("frame", frame)
        write_frame(con, storage, name, contract_types(spec), order_by=spec.key)
    return read_parquet([str(storage.local_path(name))])


def _loosely_typed(df: pd.DataFrame) -> pd.DataFrame:
    """The same values in types a careless exporter writes: numbers as strings, flags as
    0/1 integers, timestamps as datetimes, dates as strings, a column missing."""
    loose = df.copy()
    for name in loose.columns:
        kind = pd.api.types.infer_dtype(loose[name], skipna=True)
        if kind == "integer" and not name.endswith("timestamp"):
            loose[name] = loose[name].astype(str)
        elif kind == "boolean":
            loose[name] = loose[name].astype(int)
        elif name.endswith("timestamp"):
            loose[name] = pd.to_datetime(loose[name], unit="ms")
        elif kind == "date":
            loose[name] = loose[name].astype(str)
    return loose.drop(columns=loose.columns[-2])


@pytest.mark.parametrize("loose", [False, True], ids=["contract types", "loose types"])
def test_duckdb_and_arrow_store_what_the_pandas_conform_stores(tmp_path, loose):
    """A landed table read straight by DuckDB (contract types) or conformed in Arrow
    (loose types) is stored exactly as the pandas conform would store it."""
    files = small_source().fetch(NETWORK, DAY, 7).files
    storage = LocalStorage(tmp_path / "input")
    for spec in BATCH_TABLES:
        raw = read_parquet_bytes(files[spec.file])
        if loose:
            raw = _loosely_typed(raw)
        data = parquet_bytes(raw) if loose else files[spec.file]
        storage.write_bytes(f"{NETWORK}/{DAY}/{spec.file}", data)
        schema = pq.read_schema(io.BytesIO(data))
        direct = conform_sql(spec, schema, "landed") is not None
        assert direct != loose, spec.name
        with duckdb_cursor() as con:
            landed_view(con, storage, NETWORK, DAY, spec)
            by_view = _stored(tmp_path, f"v_{spec.name}", con.execute("FROM frame").df(), spec)
        arrow = conform_arrow(pq.read_table(io.BytesIO(data)), spec)
        by_arrow = _stored(tmp_path, f"a_{spec.name}", arrow, spec)
        by_pandas = _stored(tmp_path, f"p_{spec.name}", conform_table(raw, spec), spec)
        pd.testing.assert_frame_equal(by_arrow, by_pandas)
        pd.testing.assert_frame_equal(by_view, by_pandas)
        assert len(by_pandas) == len(raw) > 0
