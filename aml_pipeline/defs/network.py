"""One network's definitions: its asset group, checks, daily job, schedule and sensors.

Each configured network (``Settings.networks``, with its ``networks/{network}.yaml``)
gets one of these; ``definitions.py`` merges them with what all networks share.
"""

from __future__ import annotations

import dagster as dg

from aml_pipeline.defs.assets.champions import build_champion_assets
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
from aml_pipeline.defs.freshness import (
    FRESHNESS_CHECK,
    build_freshness_checks,
    build_freshness_sensor,
    daily_freshness,
)
from aml_pipeline.defs.tags import STAGE_TAG
from aml_pipeline.settings import NetworkSettings

INGESTION_ASSETS = (
    "landed_batch",
    "raw_alerts",
    "raw_features",
    "raw_clusters",
    "raw_money_flows",
    "batch_metadata",
    "label_events",
)
#: Ingestion without the label events: each day's batch, on its own.
LANDING_ASSETS = tuple(name for name in INGESTION_ASSETS if name != "label_events")
FEATURE_ASSETS = ("alert_history", "flow_features", "alert_features", "cluster_features")
MODEL_ASSETS = ("alert_scorer", "alert_ranker", "cluster_scorer")
#: The version of each model that scores: materialized by training, promotion and A/B.
CHAMPION_ASSETS = tuple(f"{kind}_champion" for kind in MODEL_ASSETS)
SCORING_ASSETS = (*SCORE_OUTPUTS, "published_scores")
#: What the daily job materializes for a day (training is separate).
DAILY_ASSETS = (*INGESTION_ASSETS, *FEATURE_ASSETS, *SCORING_ASSETS, *EVALUATION_ASSETS)


#: Each stage and the assets it materializes; any other selection is ``custom``.
STAGES = {
    "land": LANDING_ASSETS,
    "labels": ("label_events",),
    "ingest": INGESTION_ASSETS,
    "features": FEATURE_ASSETS,
    "score": (*SCORING_ASSETS, *EVALUATION_ASSETS),
    "evaluate": EVALUATION_ASSETS,
    "daily": DAILY_ASSETS,
    "train": (*MODEL_ASSETS, *CHAMPION_ASSETS),
    "promote": CHAMPION_ASSETS,
}


def run_tags(network: str, names: tuple[str, ...]) -> dict[str, str]:
    """The tags an operator filters a network's runs by: ``network`` and its stage."""
    stage = next((s for s, assets in STAGES.items() if set(assets) == set(names)), "custom")
    return {"network": network, STAGE_TAG: stage}


def asset_keys(networks: list[str], names: tuple[str, ...]) -> list[dg.AssetKey]:
    """The keys of the named assets in every network."""
    return [dg.AssetKey([network, name]) for network in networks for name in names]


def run_selection(networks: list[str], names: tuple[str, ...]) -> dg.AssetSelection:
    """The named assets of the networks with their checks but the ``day_on_time`` freshness
    checks, which the freshness job runs at each deadline (a backfill of old days would
    only re-state that the newest day is missing)."""
    keys = asset_keys(networks, names)
    fresh = [dg.AssetCheckKey(k, FRESHNESS_CHECK) for k in keys if k.path[-1] in DAILY_ASSETS]
    return dg.AssetSelection.assets(*keys) - dg.AssetSelection.checks(*fresh)


def daily_job_name(network: str) -> str:
    """The name of the network's own daily job."""
    return f"{network}_daily_job"


def build_network_definitions(
    network: NetworkSettings, partitions: dg.DailyPartitionsDefinition
) -> dg.Definitions:
    """The assets, checks, daily job, schedule and sensors of one network."""
    name = network.name
    freshness = daily_freshness(network.schedule_hour)
    job = dg.define_asset_job(
        daily_job_name(name),
        selection=run_selection([name], DAILY_ASSETS),
        description=f"{name}'s daily run: land the batch and labels, compute features, score, "
        "rank and explain with the champion models, validate (tiers 1-3) and publish to output/.",
        tags=run_tags(name, DAILY_ASSETS),
    )
    freshness_checks = build_freshness_checks(
        name, DAILY_ASSETS, network.schedule_hour, partitions.start.date()
    )
    freshness_job = dg.define_asset_job(
        f"{name}_freshness_job",
        selection=dg.AssetSelection.checks(freshness_checks),
        description=f"Whether every {name} daily table has the day that is due.",
        tags={"network": name, STAGE_TAG: "freshness"},
    )
    return dg.Definitions(
        assets=[
            *build_ingestion_assets(name, partitions, freshness),
            *build_feature_assets(name, partitions),
            *build_model_assets(name),
            build_champion_assets(name),
            *build_scoring_assets(name, partitions, freshness),
            *build_evaluation_assets(name, partitions),
            build_comparison_asset(name),
        ],
        asset_checks=[*build_checks(name, partitions), freshness_checks],
        jobs=[job, freshness_job],
        schedules=[build_daily_schedule(job, name, network.schedule_hour)],
        sensors=[
            build_new_batch_sensor(job, name, network.sensor_lookback_days),
            build_label_arrival_sensor(job, name),
            build_freshness_sensor(freshness_job, name, network.schedule_hour),
        ],
    )
