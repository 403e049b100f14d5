"""The warehouse: the ``warehouse`` resource (the daily Parquet tables of ``storage.tables``
under the ``pipeline`` resource's data root, on the local disk or an object store as its
URL says, and the DuckDB engine's limits for the run) and the IO manager on top of it, which
stores each partition of a DataFrame asset as one file. One ``data_root`` to configure."""

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any

import dagster as dg
import pandas as pd
from pydantic import Field, PrivateAttr

from aml_pipeline.defs.resources import PipelineConfig
from aml_pipeline.storage.tables import TableStore, configure_duckdb

COLUMN_SCHEMA_KEY = "dagster/column_schema"
#: Output metadata: the date column a multi-day output is split on (default
#: ``processing_date``; label events are partitioned by ``label_date``).
PARTITION_COLUMN_KEY = "partition_column"
#: Input metadata: read only these columns.
COLUMNS_KEY = "columns"
#: Output metadata: column -> DuckDB type to store it as, for assets without a declared
#: column schema (e.g. ``{"processing_date": "DATE"}``).
STORAGE_TYPES_KEY = "storage_types"


def _declared_types(metadata: Mapping[str, Any] | None) -> dict[str, str]:
    """Storage types from the declared column schema, else from ``storage_types``."""
    metadata = metadata or {}
    schema = metadata.get(COLUMN_SCHEMA_KEY)
    if schema is None:
        types = metadata.get(STORAGE_TYPES_KEY)
        return dict(getattr(types, "value", types) or {})
    schema = getattr(schema, "schema", schema)
    return {c.name: c.type for c in schema.columns}


class Warehouse(dg.ConfigurableResource):
    """The daily tables under ``{data_root}/warehouse/{asset key}/{day}.parquet`` (the
    ``pipeline`` resource's data root, whose URL chooses the local disk or S3), read and
    written through DuckDB, whose thread and memory limits for the run are set here."""

    pipeline: dg.ResourceDependency[PipelineConfig]
    duckdb_threads: int = Field(
        default=0, ge=0, description="DuckDB's worker threads in a run; 0 = one per core."
    )
    duckdb_memory_limit: str = Field(
        default="",
        description="DuckDB's memory limit in a run (e.g. '4GB'; it spills to disk beyond "
        "it); empty = DuckDB's default, 80% of the machine's memory.",
    )
    _tables: TableStore | None = PrivateAttr(default=None)

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        """Apply the DuckDB limits to the run's process."""
        configure_duckdb(self.duckdb_threads, self.duckdb_memory_limit)

    @property
    def tables(self) -> TableStore:
        """The tables on the data root's storage."""
        if self._tables is None:
            self._tables = TableStore(self.pipeline.data_root)
        return self._tables

    def stored_days(self, asset_key: dg.AssetKey) -> list[dt.date]:
        """The days with a stored partition of ``asset_key``, ascending."""
        return self.tables.stored_days(asset_key.path)

    def read_days(
        self,
        asset_key: dg.AssetKey,
        days: Sequence[dt.date],
        columns: Sequence[str] | None = None,
        since: dt.date | None = None,
    ) -> pd.DataFrame:
        """``TableStore.read_days`` of the asset's table (``MissingPartitions`` names the
        days missing after ``since``)."""
        return self.tables.read_days(asset_key.path, days, columns, since)


class WarehouseIOManager(dg.ConfigurableIOManager):
    """Each asset partition is one Parquet file of the ``warehouse``.

    Inputs read every partition they map to and fail if one is missing; an input whose
    metadata lists ``columns`` reads only those. Code that names its days itself
    (look-backs, training ranges) reads through the ``warehouse`` resource.

    Multi-partition outputs (single-run backfills) are split on ``processing_date`` (or the
    column the asset's ``partition_column`` metadata names) and written one file per day;
    range inputs are read back in one scan. Columns named in the asset's
    ``dagster/column_schema`` metadata are cast to their declared DuckDB type, so an empty
    day still has a typed file.
    """

    warehouse: dg.ResourceDependency[Warehouse]

    def handle_output(self, context: dg.OutputContext, obj: pd.DataFrame) -> None:
        if obj is None:
            return
        if not isinstance(obj, pd.DataFrame):
            raise TypeError(f"{context.asset_key.to_user_string()}: expected a DataFrame")
        declared = _declared_types(context.definition_metadata)
        tables, table = self.warehouse.tables, context.asset_key.path
        if not context.has_asset_partitions:
            tables.write(table, None, obj, declared)
            return
        keys = list(context.asset_partition_keys)
        column = (context.definition_metadata or {}).get(PARTITION_COLUMN_KEY, "processing_date")
        if len(keys) == 1:
            parts = {keys[0]: obj}
        else:
            if column not in obj.columns:
                raise ValueError(
                    f"{context.asset_key.to_user_string()}: a multi-partition output needs a "
                    f"{column} column to split on"
                )
            day = obj[column].astype(str)
            unknown = sorted(set(day) - set(keys))
            if unknown:
                raise ValueError(f"rows for dates outside the run's partitions: {unknown[:3]}")
            parts = {k: obj[day == k].reset_index(drop=True) for k in keys}
        for key, part in parts.items():
            tables.write(table, key, part, declared)

    def load_input(self, context: dg.InputContext) -> pd.DataFrame:
        keys: list[str | None] = (
            list(context.asset_partition_keys) if context.has_asset_partitions else [None]
        )
        columns = (context.definition_metadata or {}).get(COLUMNS_KEY)
        tables = self.warehouse.tables
        missing = tables.missing(context.asset_key.path, keys)
        if missing:
            raise FileNotFoundError(
                f"{context.asset_key.to_user_string()} has no stored partition(s) {missing[:5]}: "
                "materialize them first"
            )
        return tables.read(context.asset_key.path, keys, columns)
