"""The project's single ``Definitions`` object, built from the environment's settings."""

from __future__ import annotations

import dagster as dg

from aml_pipeline.assets.ingestion import build_ingestion_assets
from aml_pipeline.io_manager import DuckDBParquetIOManager
from aml_pipeline.jobs import ingestion_job
from aml_pipeline.partitions import daily_partitions
from aml_pipeline.resources import PipelineConfig
from aml_pipeline.settings import Settings


def build_definitions(settings: Settings) -> dg.Definitions:
    """Assets, checks, jobs and resources for ``settings`` (one asset group per network)."""
    partitions = daily_partitions(settings.partitions_start)
    assets = [
        a for network in settings.networks for a in build_ingestion_assets(network, partitions)
    ]
    return dg.Definitions(
        assets=assets,
        jobs=[ingestion_job(settings.networks)],
        resources={
            "pipeline": PipelineConfig.from_settings(settings),
            "warehouse_io_manager": DuckDBParquetIOManager(data_root=settings.data_root),
        },
    )


defs = build_definitions(Settings.from_env())
