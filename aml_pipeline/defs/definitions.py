"""The project's single ``Definitions`` object: each network's definitions merged with the
jobs and resources every network shares, built from the environment's settings."""

from __future__ import annotations

import dagster as dg

from aml_pipeline.defs.dead_runs import build_dead_run_sensor
from aml_pipeline.defs.jobs import import_transfers_job
from aml_pipeline.defs.network import (
    CHAMPION_ASSETS,
    DAILY_ASSETS,
    EVALUATION_ASSETS,
    FEATURE_ASSETS,
    INGESTION_ASSETS,
    MODEL_ASSETS,
    SCORING_ASSETS,
    build_network_definitions,
    run_selection,
)
from aml_pipeline.defs.partitions import daily_partitions
from aml_pipeline.defs.resources import PipelineConfig
from aml_pipeline.defs.run_failures import RUN_FAILURES, build_run_failure_sensor
from aml_pipeline.defs.run_tagging import build_run_tagging_sensor
from aml_pipeline.defs.warehouse import Warehouse, WarehouseIOManager
from aml_pipeline.settings import Settings


def _shared_definitions(settings: Settings) -> dg.Definitions:
    """The jobs over all networks, the resources and the executor."""
    networks = settings.networks
    return dg.Definitions(
        jobs=[
            dg.define_asset_job(
                "daily_job",
                selection=run_selection(networks, DAILY_ASSETS),
                description="The daily run of every network (each network also has its own "
                "`{network}_daily_job`, which its schedule and sensors run).",
            ),
            dg.define_asset_job(
                "ingestion_job",
                selection=run_selection(networks, INGESTION_ASSETS),
                description="Fetch, validate and land each network's daily batch; load raw "
                "tables and labels.",
            ),
            dg.define_asset_job(
                "features_job",
                selection=run_selection(networks, FEATURE_ASSETS),
                description="Compute the daily alert and cluster model features.",
            ),
            dg.define_asset_job(
                "training_job",
                selection=run_selection(networks, (*MODEL_ASSETS, *CHAMPION_ASSETS)),
                description="Train and register the alert scorer, alert ranker and cluster "
                "scorer, and materialize their champions (kept, or the first version; "
                "selected alone with a version, a gated promotion).",
            ),
            dg.define_asset_job(
                "scoring_job",
                selection=run_selection(networks, (*SCORING_ASSETS, *EVALUATION_ASSETS)),
                description="Score, rank, explain, validate (tiers 1-3) and publish days whose "
                "features exist.",
            ),
            import_transfers_job,
        ],
        assets=[RUN_FAILURES],
        sensors=[
            build_dead_run_sensor(),
            build_run_failure_sensor(settings.failure_webhook),
            build_run_tagging_sensor(),
        ],
        # Steps run in the run's own process: a backfill chunk of 14 days is one process,
        # not one per step (the machine has 2 cores; runs are what run in parallel).
        executor=dg.in_process_executor,
        resources=shared_resources(settings),
    )


def shared_resources(settings: Settings) -> dict[str, object]:
    """The pipeline's settings, the warehouse on its data root and the IO manager over it.
    The first two are configured at launch, their values from ``settings`` as defaults (the
    launchpad shows and overrides them), so Dagster hands the warehouse and the IO manager
    the run's ``pipeline`` and ``warehouse`` by key: another data root in a run's config
    moves the warehouse with everything else."""
    pipeline = PipelineConfig.configure_at_launch(
        **PipelineConfig.from_settings(settings).model_dump()
    )
    warehouse = Warehouse.configure_at_launch(pipeline=pipeline)
    return {
        "pipeline": pipeline,
        "warehouse": warehouse,
        "warehouse_io_manager": WarehouseIOManager(warehouse=warehouse),
    }


def build_definitions(settings: Settings) -> dg.Definitions:
    """Each configured network's definitions and the shared ones, merged."""
    partitions = daily_partitions(settings.partitions_start.isoformat())
    return dg.Definitions.merge(
        _shared_definitions(settings),
        *(build_network_definitions(n, partitions) for n in settings.network_settings()),
    )


defs = build_definitions(Settings.from_env())
