"""When the daily job runs by itself: a schedule for yesterday, a sensor that runs every
newly available (or missed) batch, and a sensor that refreshes old days' labels and tier 3
evaluations as ground truth arrives. All are stopped until turned on in the UI."""

import datetime as dt
from typing import TYPE_CHECKING

import dagster as dg

from aml_pipeline.models.registry import MODEL_KINDS, ModelRegistry
from aml_pipeline.resources import PipelineConfig

if TYPE_CHECKING:  # what define_asset_job returns; not exported by dagster
    from dagster._core.definitions.unresolved_asset_job_definition import (
        UnresolvedAssetJobDefinition,
    )


def build_daily_schedule(job: "UnresolvedAssetJobDefinition", hour: int) -> dg.ScheduleDefinition:
    """Every day at ``hour``:00 UTC, run the job for the previous (last complete) day."""

    @dg.schedule(
        name="daily_scoring_schedule",
        job=job,
        cron_schedule=f"0 {hour} * * *",
        execution_timezone="UTC",
        default_status=dg.DefaultScheduleStatus.STOPPED,
        description=f"Ingest, featurize, score and publish yesterday's batch at {hour:02d}:00 UTC.",
    )
    def daily_scoring_schedule(context: dg.ScheduleEvaluationContext) -> dg.RunRequest:
        day = context.scheduled_execution_time.astimezone(dt.UTC).date() - dt.timedelta(1)
        return dg.RunRequest(run_key=day.isoformat(), partition_key=day.isoformat())

    return daily_scoring_schedule


def utc_today() -> dt.date:
    return dt.datetime.now(dt.UTC).date()


def _missing_days(
    context: dg.SensorEvaluationContext,
    pipeline: PipelineConfig,
    network: str,
    lookback_days: int,
) -> list[dt.date]:
    """Days of the look-back window the source has but the network has not published."""
    today = utc_today()
    first = max(
        today - dt.timedelta(lookback_days), dt.date.fromisoformat(pipeline.partitions_start)
    )
    available = {
        d
        for d in pipeline.source().available_dates(network, pipeline.window_days)
        if first <= d < today
    }
    published = context.instance.get_materialized_partitions(
        dg.AssetKey([network, "published_scores"])
    )
    return sorted(d for d in available if d.isoformat() not in published)


def build_new_batch_sensor(
    job: "UnresolvedAssetJobDefinition",
    networks: list[str],
    daily_assets: tuple[str, ...],
    lookback_days: int,
) -> dg.SensorDefinition:
    """A sensor that runs the daily job for each batch the source has and the network has
    not published, within the last ``lookback_days`` days (so missed days are caught up)."""

    @dg.sensor(
        name="new_batch_sensor",
        job=job,
        minimum_interval_seconds=600,
        default_status=dg.DefaultSensorStatus.STOPPED,
        description=f"Runs each batch the source has and that is not published yet, looking "
        f"back {lookback_days} days, once the network has champion models.",
    )
    def new_batch_sensor(
        context: dg.SensorEvaluationContext, pipeline: PipelineConfig
    ) -> dg.SensorResult:
        requests, waiting = [], []
        for network in networks:
            champions = ModelRegistry(pipeline.storage(), network).champions()
            if not set(MODEL_KINDS) <= set(champions):
                waiting.append(network)
                continue
            for day in _missing_days(context, pipeline, network, lookback_days):
                requests.append(
                    dg.RunRequest(
                        run_key=f"{network}:{day.isoformat()}",
                        partition_key=day.isoformat(),
                        asset_selection=[dg.AssetKey([network, a]) for a in daily_assets],
                        tags={"network": network},
                    )
                )
        if requests:
            return dg.SensorResult(run_requests=requests)
        reason = "every available batch is published"
        if waiting:
            reason = (
                f"no champion models yet for {', '.join(waiting)} (run aml-pipeline train); "
                + reason.replace("every", "otherwise every")
            )
        return dg.SensorResult(skip_reason=dg.SkipReason(reason))

    return new_batch_sensor


#: Days after a processing date at which its labels are fetched again (T+tau). Labels
#: arrive weeks later; Dagster's eager/on-cron conditions only target the latest day.
LABEL_HORIZONS = (7, 14, 30, 60, 90)


def label_refreshes(
    published: set[str], today: dt.date, horizons: tuple[int, ...] = LABEL_HORIZONS
) -> list[tuple[str, int]]:
    """(day, horizon) for each published day that has reached a horizon: the latest one
    it reached, so every horizon refreshes a day once and missed ticks catch up."""
    due = []
    for day in sorted(published):
        age = (today - dt.date.fromisoformat(day)).days
        reached = [h for h in horizons if h <= age]
        if reached and age <= horizons[-1]:
            due.append((day, reached[-1]))
    return due


def build_label_arrival_sensor(
    job: "UnresolvedAssetJobDefinition", networks: list[str]
) -> dg.SensorDefinition:
    """A sensor that re-fetches a published day's ground truth and re-runs its tier 3
    evaluation at T+7, 14, 30, 60 and 90 days, one run per day and horizon."""

    @dg.sensor(
        name="label_arrival_sensor",
        job=job,
        minimum_interval_seconds=3600,
        default_status=dg.DefaultSensorStatus.STOPPED,
        description="Refreshes ground_truth and tier3_evaluation of published days at "
        f"T+{', '.join(map(str, LABEL_HORIZONS))} days, as labels arrive.",
    )
    def label_arrival_sensor(context: dg.SensorEvaluationContext) -> dg.SensorResult:
        requests = []
        for network in networks:
            published = context.instance.get_materialized_partitions(
                dg.AssetKey([network, "published_scores"])
            )
            for day, horizon in label_refreshes(published, utc_today()):
                requests.append(
                    dg.RunRequest(
                        run_key=f"{network}:{day}:labels:T+{horizon}",
                        partition_key=day,
                        asset_selection=[
                            dg.AssetKey([network, "ground_truth"]),
                            dg.AssetKey([network, "tier3_evaluation"]),
                        ],
                        tags={"network": network, "label_horizon_days": str(horizon)},
                    )
                )
        if requests:
            return dg.SensorResult(run_requests=requests)
        return dg.SensorResult(skip_reason=dg.SkipReason("no published day reached a horizon"))

    return label_arrival_sensor
