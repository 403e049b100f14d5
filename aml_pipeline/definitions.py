"""The project's single ``Definitions`` object, built from the environment's settings."""

from __future__ import annotations

import dagster as dg

from aml_pipeline.assets.features import build_feature_assets
from aml_pipeline.assets.ingestion import build_ingestion_assets
from aml_pipeline.assets.training import build_model_assets
from aml_pipeline.io_manager import DuckDBParquetIOManager
from aml_pipeline.jobs import import_transfers_job
from aml_pipeline.partitions import daily_partitions
from aml_pipeline.resources import PipelineConfig
from aml_pipeline.settings import Settings

INGESTION_ASSETS = (
    "landed_batch",
    "raw_alerts",
    "raw_features",
    "raw_clusters",
    "raw_money_flows",
    "batch_metadata",
    "ground_truth",
)
FEATURE_ASSETS = ("alert_history", "alert_features", "cluster_features")
MODEL_ASSETS = ("alert_scorer", "alert_ranker", "cluster_scorer")


def asset_keys(networks: list[str], names: tuple[str, ...]) -> list[dg.AssetKey]:
    """The keys of the named assets in every network."""
    return [dg.AssetKey([network, name]) for network in networks for name in names]


def build_definitions(settings: Settings) -> dg.Definitions:
    """Assets, checks, jobs and resources for ``settings`` (one asset group per network)."""
    partitions = daily_partitions(settings.partitions_start)
    assets = [
        asset
        for network in settings.networks
        for asset in (
            *build_ingestion_assets(network, partitions),
            *build_feature_assets(network, partitions),
            *build_model_assets(network),
        )
    ]
    networks = settings.networks
    jobs = [
        dg.define_asset_job(
            "ingestion_job",
            selection=asset_keys(networks, INGESTION_ASSETS),
            description="Fetch, validate and land each network's daily batch; load raw tables "
            "and labels.",
        ),
        dg.define_asset_job(
            "features_job",
            selection=asset_keys(networks, FEATURE_ASSETS),
            description="Compute the daily alert and cluster model features.",
        ),
        dg.define_asset_job(
            "training_job",
            selection=asset_keys(networks, MODEL_ASSETS),
            description="Train and register the alert scorer, alert ranker and cluster scorer.",
        ),
        import_transfers_job,
    ]
    return dg.Definitions(
        assets=assets,
        jobs=jobs,
        resources={
            "pipeline": PipelineConfig.from_settings(settings),
            "warehouse_io_manager": DuckDBParquetIOManager(data_root=settings.data_root),
        },
    )


defs = build_definitions(Settings.from_env())
