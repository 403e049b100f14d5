"""The project's single ``Definitions`` object, built from the environment's settings."""

from __future__ import annotations

import dagster as dg

from aml_pipeline.defs.assets.comparison import build_comparison_asset
from aml_pipeline.defs.assets.evaluation import EVALUATION_ASSETS, build_evaluation_assets
from aml_pipeline.defs.assets.features import build_feature_assets
from aml_pipeline.defs.assets.ingestion import build_ingestion_assets
from aml_pipeline.defs.assets.scoring import SCORE_OUTPUTS, build_scoring_assets
from aml_pipeline.defs.assets.training import build_model_assets
from aml_pipeline.defs.automation import (
    build_daily_schedule,
    build_label_arrival_sensor,
    build_new_batch_sensor,
)
from aml_pipeline.defs.checks import build_checks
from aml_pipeline.defs.io_manager import warehouse_io_manager
from aml_pipeline.defs.jobs import import_transfers_job
from aml_pipeline.defs.partitions import daily_partitions
from aml_pipeline.defs.resources import PipelineConfig
from aml_pipeline.settings import Settings

INGESTION_ASSETS = (
    "landed_batch",
    "raw_alerts",
    "raw_features",
    "raw_clusters",
    "raw_money_flows",
    "batch_metadata",
    "label_events",
)
FEATURE_ASSETS = ("alert_history", "alert_features", "cluster_features")
MODEL_ASSETS = ("alert_scorer", "alert_ranker", "cluster_scorer")
SCORING_ASSETS = (*SCORE_OUTPUTS, "published_scores")
#: What the daily job materializes for a day (training is separate).
DAILY_ASSETS = (*INGESTION_ASSETS, *FEATURE_ASSETS, *SCORING_ASSETS, *EVALUATION_ASSETS)


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
            *build_scoring_assets(network, partitions),
            *build_evaluation_assets(network, partitions),
            build_comparison_asset(network),
        )
    ]
    networks = settings.networks
    daily_job = dg.define_asset_job(
        "daily_job",
        selection=asset_keys(networks, DAILY_ASSETS),
        description="The daily run: land each network's batch and labels, compute features, "
        "score, rank and explain with the champion models, and publish to output/.",
    )
    jobs = [
        daily_job,
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
        dg.define_asset_job(
            "scoring_job",
            selection=asset_keys(networks, (*SCORING_ASSETS, *EVALUATION_ASSETS)),
            description="Score, rank, explain, validate (tiers 1-3) and publish days whose "
            "features exist.",
        ),
        import_transfers_job,
    ]
    return dg.Definitions(
        assets=assets,
        asset_checks=[check for network in settings.networks for check in build_checks(network)],
        jobs=jobs,
        schedules=[build_daily_schedule(daily_job, networks, settings.schedule_hour)],
        sensors=[
            build_new_batch_sensor(
                daily_job, networks, DAILY_ASSETS, settings.sensor_lookback_days
            ),
            build_label_arrival_sensor(daily_job, networks),
        ],
        # Steps run in the run's own process: a backfill chunk of 14 days is one process,
        # not one per step (the machine has 2 cores; runs are what run in parallel).
        executor=dg.in_process_executor,
        resources={
            "pipeline": PipelineConfig.from_settings(settings),
            "warehouse_io_manager": warehouse_io_manager,
        },
    )


defs = build_definitions(Settings.from_env())
