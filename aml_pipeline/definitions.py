"""The project's single ``Definitions`` object, built from the environment's settings."""

from __future__ import annotations

import dagster as dg

from aml_pipeline.assets.ingestion import build_ingestion_assets
from aml_pipeline.io_manager import DuckDBParquetIOManager
from aml_pipeline.jobs import import_transfers_job
from aml_pipeline.partitions import daily_partitions
from aml_pipeline.resources import PipelineConfig
from aml_pipeline.settings import Settings


def build_definitions(settings: Settings) -> dg.Definitions:
    """Assets, checks, jobs and resources for ``settings`` (one asset group per network)."""
    partitions = daily_partitions(settings.partitions_start)
    assets = [
        a for network in settings.networks for a in build_ingestion_assets(network, partitions)
    ]
    ingestion_job = dg.define_asset_job(
        name="ingestion_job",
        selection=dg.AssetSelection.groups(*settings.networks),
        description="Fetch, validate and land each network's daily batch; load raw tables "
        "and labels.",
    )
    return dg.Definitions(
        assets=assets,
        jobs=[ingestion_job, import_transfers_job],
        resources={
            "pipeline": PipelineConfig.from_settings(settings),
            "warehouse_io_manager": DuckDBParquetIOManager(data_root=settings.data_root),
        },
    )


defs = build_definitions(Settings.from_env())
