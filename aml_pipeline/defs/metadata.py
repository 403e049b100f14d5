"""Materialization metadata shared by the assets: schemas and row counts."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import dagster as dg
import pandas as pd

from aml_pipeline.contract.schema import DUCKDB_TYPES, TableSpec
from aml_pipeline.defs.warehouse import STORAGE_TYPES_KEY

_PANDAS_TO_DUCKDB = {
    "int64": "BIGINT",
    "Int64": "BIGINT",
    "float64": "DOUBLE",
    "bool": "BOOLEAN",
    "boolean": "BOOLEAN",
    "str": "VARCHAR",
}

#: DuckDB types of the key columns the derived tables share. Declared so that an empty
#: day's file is typed too: a column of an empty frame would otherwise be stored as NULL.
KEY_STORAGE_TYPES = {
    "alert_id": "VARCHAR",
    "cluster_id": "VARCHAR",
    "address": "VARCHAR",
    "processing_date": "DATE",
}


def storage_types(**extra: str) -> dict[str, dict[str, str]]:
    """Definition metadata declaring ``KEY_STORAGE_TYPES`` and ``extra`` column types."""
    return {STORAGE_TYPES_KEY: {**KEY_STORAGE_TYPES, **extra}}


def table_schema(spec: TableSpec) -> dg.TableSchema:
    """The contract table as a Dagster column schema (types are DuckDB storage types)."""
    return dg.TableSchema(
        columns=[
            dg.TableColumn(
                name=c.name,
                type=contract_types(spec)[c.name],
                description=c.description + ("" if c.required else " (optional)"),
                constraints=dg.TableColumnConstraints(
                    nullable=c.name not in spec.key, unique=spec.key == (c.name,)
                ),
            )
            for c in spec.columns
        ]
    )


def contract_types(spec: TableSpec) -> dict[str, str]:
    """Column -> DuckDB storage type of a contract table (as ``table_schema`` declares)."""
    return {c.name: DUCKDB_TYPES[c.type] for c in spec.columns}


def columns_schema(columns: list[tuple[str, str]]) -> dg.TableSchema:
    """A column schema from (name, DuckDB type) pairs (``tables.frame_columns``)."""
    return dg.TableSchema(columns=[dg.TableColumn(name=n, type=t) for n, t in columns])


def frame_schema(df: pd.DataFrame) -> dg.TableSchema:
    """The column schema of a frame as it will be stored."""
    return dg.TableSchema(
        columns=[
            dg.TableColumn(name=str(c), type=_PANDAS_TO_DUCKDB.get(str(t), str(t)))
            for c, t in df.dtypes.items()
        ]
    )


def frame_metadata(df: pd.DataFrame, **extra: Any) -> dict[str, Any]:
    """Row count and stored column schema of ``df``, plus ``extra`` entries."""
    return {
        "dagster/row_count": dg.MetadataValue.int(len(df)),
        "dagster/column_schema": frame_schema(df),
        **extra,
    }


def daily_frame_metadata(
    context: dg.AssetExecutionContext,
    df: pd.DataFrame,
    column: str = "processing_date",
    asset_key: dg.AssetKey | None = None,
    per_day: Callable[[pd.DataFrame], dict[str, Any]] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """``frame_metadata`` of a daily table written for every day of the run: each day's
    partition gets its own row count (and ``per_day`` of its rows), so the UI's partition
    page and plots read that day's numbers, not the run's totals; the schema and ``extra``
    are the run's."""
    days = df[column].astype(str) if column in df else pd.Series("", index=df.index)
    for key in context.partition_keys:
        part = df[days == key]
        context.add_asset_metadata(
            {
                "dagster/row_count": dg.MetadataValue.int(len(part)),
                **(per_day(part) if per_day else {}),
            },
            asset_key=asset_key,
            partition_key=key,
        )
    return {"dagster/column_schema": frame_schema(df), **extra}


def json_or_null(value: Mapping[str, Any] | Sequence[Any] | None) -> dg.MetadataValue:
    """``value`` as JSON metadata; a null value when there is none (e.g. a model trained
    without calibration days)."""
    return dg.MetadataValue.null() if value is None else dg.MetadataValue.json(value)
