"""The warehouse IO manager: each partition of a DataFrame asset is one Parquet file of
``storage.tables`` (which holds the DuckDB engine and the layout). Its data root is the
``pipeline`` resource's, so there is one ``data_root`` to configure."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import dagster as dg
import pandas as pd

from aml_pipeline.defs.resources import PipelineConfig
from aml_pipeline.storage.tables import TableStore

COLUMN_SCHEMA_KEY = "dagster/column_schema"
#: Output metadata: the date column a multi-day output is split on (default
#: ``processing_date``; label events are partitioned by ``label_date``).
PARTITION_COLUMN_KEY = "partition_column"
#: Input metadata: read only these columns.
COLUMNS_KEY = "columns"
#: Output metadata: column -> DuckDB type to store it as, for assets without a declared
#: column schema (e.g. ``{"processing_date": "DATE"}``).
STORAGE_TYPES_KEY = "storage_types"


def _declared_types(metadata: dict | None) -> dict[str, str]:
    """Storage types from the declared column schema, else from ``storage_types``."""
    metadata = metadata or {}
    schema = metadata.get(COLUMN_SCHEMA_KEY)
    if schema is None:
        types = metadata.get(STORAGE_TYPES_KEY)
        return dict(getattr(types, "value", types) or {})
    schema = getattr(schema, "schema", schema)
    return {c.name: c.type for c in schema.columns}


class DuckDBParquetIOManager(dg.IOManager):
    """One Parquet file per asset partition under ``{data_root}/warehouse/{asset key}/``.

    Inputs read every partition they map to and fail if one is missing; an input whose
    metadata lists ``columns`` reads only those. ``read_days`` is the same read for code
    that names its days itself (look-backs, training ranges).

    Multi-partition outputs (single-run backfills) are split on ``processing_date`` (or the
    column the asset's ``partition_column`` metadata names) and written one file per day;
    range inputs are read back in one scan. Columns named in the asset's
    ``dagster/column_schema`` metadata are cast to their declared DuckDB type, so an empty
    day still has a typed file.
    """

    def __init__(self, data_root: str) -> None:
        self.tables = TableStore(data_root)

    def handle_output(self, context: dg.OutputContext, obj: pd.DataFrame) -> None:
        if obj is None:
            return
        if not isinstance(obj, pd.DataFrame):
            raise TypeError(f"{context.asset_key.to_user_string()}: expected a DataFrame")
        declared = _declared_types(context.definition_metadata)
        table = context.asset_key.path
        if not context.has_asset_partitions:
            self.tables.write(table, None, obj, declared)
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
            self.tables.write(table, key, part, declared)

    def load_input(self, context: dg.InputContext) -> pd.DataFrame:
        keys = list(context.asset_partition_keys) if context.has_asset_partitions else [None]
        columns = (context.definition_metadata or {}).get(COLUMNS_KEY)
        missing = self.tables.missing(context.asset_key.path, keys)
        if missing:
            raise FileNotFoundError(
                f"{context.asset_key.to_user_string()} has no stored partition(s) {missing[:5]}: "
                "materialize them first"
            )
        return self.tables.read(context.asset_key.path, keys, columns)

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


@dg.io_manager(
    required_resource_keys={"pipeline"},
    description="Daily Parquet tables under the pipeline resource's data_root/warehouse/.",
)
def warehouse_io_manager(init_context: dg.InitResourceContext) -> DuckDBParquetIOManager:
    """The IO manager on the ``pipeline`` resource's data root (one setting, not two)."""
    pipeline: PipelineConfig = init_context.resources.pipeline
    return DuckDBParquetIOManager(pipeline.data_root)


#: How an asset or check asks for the configured warehouse IO manager as a parameter
#: named ``warehouse_io_manager`` (to read days it names itself).
Warehouse = dg.ResourceParam[DuckDBParquetIOManager]
