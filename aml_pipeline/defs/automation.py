"""When a network's daily job runs by itself: a schedule for yesterday, a sensor that runs
every newly available (or missed) batch, and a sensor that re-evaluates tier 3 of old days
when their labels arrive. Each network has its own three; all are stopped until turned on
in the UI."""

import datetime as dt
from typing import TYPE_CHECKING, cast

import dagster as dg

from aml_pipeline.dates import date_range
from aml_pipeline.defs.dead_runs import reap_dead_runs
from aml_pipeline.defs.partitions import MAX_DAYS_PER_RUN
from aml_pipeline.defs.resources import PipelineConfig
from aml_pipeline.defs.tags import RANGE_END, RANGE_START, STAGE_TAG
from aml_pipeline.models.registry import MODEL_KINDS, ModelRegistry

if TYPE_CHECKING:  # what define_asset_job returns; not exported by dagster
    from dagster._core.definitions.unresolved_asset_job_definition import (
        UnresolvedAssetJobDefinition,
    )


def build_daily_schedule(
    job: "UnresolvedAssetJobDefinition", network: str, hour: int
) -> dg.ScheduleDefinition:
    """Every day at ``hour``:00 UTC, run the network's job for the previous (last complete)
    day, unless the network has published it or a run is already processing it."""

    @dg.schedule(
        name=f"{network}_daily_schedule",
        job=job,
        cron_schedule=f"0 {hour} * * *",
        execution_timezone="UTC",
        default_status=dg.DefaultScheduleStatus.STOPPED,
        description=f"Ingest, featurize, score and publish {network}'s batch of yesterday at "
        f"{hour:02d}:00 UTC.",
    )
    def daily_scoring_schedule(
        context: dg.ScheduleEvaluationContext,
    ) -> dg.RunRequest | dg.SkipReason:
        day = context.scheduled_execution_time.astimezone(dt.UTC).date() - dt.timedelta(1)
        key = day.isoformat()
        published = key in context.instance.get_materialized_partitions(
            dg.AssetKey([network, "published_scores"])
        )
        if published or key in _in_flight_days(context.instance, job.name):
            return dg.SkipReason(f"{key} is already published or being processed")
        return dg.RunRequest(run_key=key, partition_key=key)

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
        for d in pipeline.source(network).available_dates(network, pipeline.window_days(network))
        if first <= d < today
    }
    published = context.instance.get_materialized_partitions(
        dg.AssetKey([network, "published_scores"])
    )
    return sorted(d for d in available if d.isoformat() not in published)


def _in_flight_days(instance: dg.DagsterInstance, job_name: str) -> set[str]:
    """Days that a queued or running run of the job already covers (dead runs are marked
    failed first: their days are not in flight)."""
    reap_dead_runs(instance)
    runs = instance.get_runs(
        filters=dg.RunsFilter(
            job_name=job_name,
            statuses=[
                dg.DagsterRunStatus.QUEUED,
                dg.DagsterRunStatus.NOT_STARTED,
                dg.DagsterRunStatus.STARTING,
                dg.DagsterRunStatus.STARTED,
            ],
        )
    )
    days = set()
    for run in runs:
        if "dagster/partition" in run.tags:
            days.add(run.tags["dagster/partition"])
        elif RANGE_START in run.tags:
            first = dt.date.fromisoformat(run.tags[RANGE_START])
            last = dt.date.fromisoformat(run.tags[RANGE_END])
            days.update(d.isoformat() for d in date_range(first, last))
    return days


def range_tags(network: str, first: dt.date, last: dt.date, stage: str) -> dict[str, str]:
    """The tags of a ranged run of ``network``'s ``stage`` over ``first``..``last``."""
    return {
        "network": network,
        STAGE_TAG: stage,
        RANGE_START: first.isoformat(),
        RANGE_END: last.isoformat(),
    }


def contiguous_chunks(days: list[dt.date]) -> list[tuple[dt.date, dt.date]]:
    """Sorted days grouped into runs of consecutive days, at most MAX_DAYS_PER_RUN each."""
    chunks: list[tuple[dt.date, dt.date]] = []
    for day in sorted(days):
        if chunks and day - chunks[-1][1] == dt.timedelta(1):
            first, _ = chunks[-1]
            if (day - first).days < MAX_DAYS_PER_RUN:
                chunks[-1] = (first, day)
                continue
        chunks.append((day, day))
    return chunks


def build_new_batch_sensor(
    job: "UnresolvedAssetJobDefinition", network: str, lookback_days: int
) -> dg.SensorDefinition:
    """A sensor that runs the network's daily job for the batches its source has and it has
    not published, within the last ``lookback_days`` days (so missed days are caught up).

    Consecutive missing days go in one ranged run, in order, so a day's look-back features
    never read an earlier day that is still being processed; days a queued or running run
    covers are left to it; a failed range is requested again the next day (the run key
    carries the date), not in a loop.
    """

    @dg.sensor(
        name=f"{network}_new_batch_sensor",
        job=job,
        minimum_interval_seconds=600,
        default_status=dg.DefaultSensorStatus.STOPPED,
        description=f"Runs each {network} batch the source has and that is not published yet, "
        f"looking back {lookback_days} days, once the network has champion models.",
    )
    def new_batch_sensor(
        context: dg.SensorEvaluationContext, pipeline: PipelineConfig
    ) -> dg.SensorResult:
        champions = ModelRegistry(pipeline.storage(), network).champions()
        if not set(MODEL_KINDS) <= set(champions):
            return dg.SensorResult(
                skip_reason=dg.SkipReason(
                    f"no champion models yet for {network} (run aml-pipeline train)"
                )
            )
        busy = _in_flight_days(context.instance, job.name)
        missing = _missing_days(context, pipeline, network, lookback_days)
        today = utc_today()
        requests = [
            dg.RunRequest(
                run_key=f"{network}:{first}..{last}@{today}",
                tags=range_tags(network, first, last, "daily"),
            )
            for first, last in contiguous_chunks([d for d in missing if d.isoformat() not in busy])
        ]
        if requests:
            return dg.SensorResult(run_requests=requests)
        return dg.SensorResult(
            skip_reason=dg.SkipReason("every available batch is published or being processed")
        )

    return new_batch_sensor


def label_arrivals(
    instance: dg.DagsterInstance, network: str, after_storage_id: int | None
) -> tuple[set[str], int | None]:
    """The alert days whose labels arrived in ``label_events`` materialized after the
    storage id, and the newest storage id seen (the sensor's cursor)."""
    days: set[str] = set()
    newest = after_storage_id
    cursor = None
    while True:
        result = instance.fetch_materializations(
            dg.AssetRecordsFilter(
                asset_key=dg.AssetKey([network, "label_events"]),
                after_storage_id=after_storage_id,
            ),
            limit=1000,
            cursor=cursor,
            ascending=True,
        )
        for record in result.records:
            mat = record.asset_materialization
            alert_days = mat.metadata.get("alert_days") if mat is not None else None
            days.update(cast(list[str], alert_days.value) if alert_days is not None else [])
            newest = max(newest or 0, record.storage_id)
        if not result.has_more:
            return days, newest
        cursor = result.cursor


def build_label_arrival_sensor(
    job: "UnresolvedAssetJobDefinition", network: str
) -> dg.SensorDefinition:
    """A sensor that re-runs ``tier3_evaluation`` of the scored days whose labels arrived:
    it reads each new ``label_events`` materialization's ``alert_days`` and requests one
    run per range of consecutive such days (at most MAX_DAYS_PER_RUN each)."""

    @dg.sensor(
        name=f"{network}_label_arrival_sensor",
        job=job,
        minimum_interval_seconds=3600,
        default_status=dg.DefaultSensorStatus.STOPPED,
        description="Re-runs tier3_evaluation of each scored day whose labels arrived in a "
        "new label_events partition (T+tau as it happens, no fixed horizons).",
    )
    def label_arrival_sensor(context: dg.SensorEvaluationContext) -> dg.SensorResult:
        seen = int(context.cursor) if context.cursor else None
        arrived, newest = label_arrivals(context.instance, network, seen)
        scored = context.instance.get_materialized_partitions(
            dg.AssetKey([network, "alert_scores"])
        )
        days = [dt.date.fromisoformat(d) for d in sorted(arrived & scored)]
        requests = [
            dg.RunRequest(
                run_key=f"{network}:labels@{newest}:{first}..{last}",
                asset_selection=[dg.AssetKey([network, "tier3_evaluation"])],
                tags=range_tags(network, first, last, "evaluate"),
            )
            for first, last in contiguous_chunks(days)
        ]
        return dg.SensorResult(
            run_requests=requests,
            cursor=None if newest is None else str(newest),
            skip_reason=None if requests else dg.SkipReason("no new labels for a scored day"),
        )

    return label_arrival_sensor
