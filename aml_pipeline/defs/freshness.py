"""Is each day there by its deadline: a network's freshness policy, its partition-aware
freshness check, and the sensor that evaluates that check at every deadline.

A day's deadline is ``FRESHNESS_GRACE_HOURS`` after the daily schedule that runs it (the
schedule runs yesterday at ``schedule_hour``). Dagster's ``FreshnessPolicy.cron`` on the
landed batch and the published scores looks only at *when* the asset was last
materialized, so a backfill of old days reads as fresh; the check here asks whether the
*day* that is due has been materialized, per daily table, the way the superseded
``build_time_partition_freshness_checks`` did, and says which day is missing since when.
"""

import datetime as dt
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

import dagster as dg

from aml_pipeline.defs.tags import STAGE_TAG

if TYPE_CHECKING:  # what define_asset_job returns; not exported by dagster
    from dagster._core.definitions.unresolved_asset_job_definition import (
        UnresolvedAssetJobDefinition,
    )

#: Hours after the daily schedule by which the day's batch is landed and its scores
#: published, else freshness fails in the UI.
FRESHNESS_GRACE_HOURS = 4
FRESHNESS_CHECK = "day_on_time"


def daily_freshness(schedule_hour: int) -> dg.FreshnessPolicy:
    """A day must be landed (and published) within the 24 hours before its deadline,
    ``FRESHNESS_GRACE_HOURS`` after the network's daily schedule: a batch that never
    arrived, or a run that failed, shows as failing freshness in the UI."""
    deadline = (schedule_hour + FRESHNESS_GRACE_HOURS) % 24
    return dg.FreshnessPolicy.cron(
        deadline_cron=f"0 {deadline} * * *",
        lower_bound_delta=dt.timedelta(hours=24),
        timezone="UTC",
    )


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def due_day(now: dt.datetime, schedule_hour: int) -> tuple[dt.date, dt.datetime]:
    """The latest day whose deadline has passed at ``now`` (UTC), and that deadline."""
    late = dt.timedelta(hours=schedule_hour + FRESHNESS_GRACE_HOURS)
    day = (now.astimezone(dt.UTC) - late).date() - dt.timedelta(days=1)
    midnight = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), dt.UTC)
    return day, midnight + late


def _latest(days: set[str]) -> str:
    return max(days) if days else "none"


def build_freshness_checks(
    network: str, names: Sequence[str], schedule_hour: int, first_day: dt.date
) -> dg.AssetChecksDefinition:
    """One ``day_on_time`` check per daily table of the network: passes when the day that
    is due (see ``due_day``) is materialized, or when no day is due yet."""
    specs = [
        dg.AssetCheckSpec(
            FRESHNESS_CHECK,
            asset=dg.AssetKey([network, name]),
            description=f"The latest day past its deadline ({FRESHNESS_GRACE_HOURS} h after "
            f"the {schedule_hour:02d}:00 UTC schedule) is materialized.",
        )
        for name in names
    ]

    @dg.multi_asset_check(
        name=f"{network}_freshness",
        specs=specs,
        can_subset=True,
        description=f"Whether each {network} daily table has its due day.",
    )
    def freshness(context: dg.AssetCheckExecutionContext) -> Iterator[dg.AssetCheckResult]:
        now = utc_now()
        day, deadline = due_day(now, schedule_hour)
        for key in sorted(context.selected_asset_check_keys, key=str):
            stored = context.instance.get_materialized_partitions(key.asset_key)
            on_time = day < first_day or day.isoformat() in stored
            overdue = 0.0 if on_time else (now - deadline).total_seconds() / 3600
            yield dg.AssetCheckResult(
                asset_key=key.asset_key,
                check_name=key.name,
                passed=on_time,
                severity=dg.AssetCheckSeverity.WARN,
                description=None if on_time else f"{day} is missing since {deadline:%F %H:%M} UTC",
                metadata={
                    "due_day": day.isoformat(),
                    "deadline": deadline.isoformat(),
                    "latest_day": _latest(stored),
                    "overdue_hours": round(overdue, 1),
                },
            )

    return freshness


def build_freshness_sensor(
    job: "UnresolvedAssetJobDefinition", network: str, schedule_hour: int
) -> dg.SensorDefinition:
    """Runs the network's freshness checks once after each deadline (and on its first
    tick), so a day whose batch never came shows as failing without anyone looking."""

    @dg.sensor(
        name=f"{network}_freshness_sensor",
        job=job,
        minimum_interval_seconds=600,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=f"Checks at each deadline that every {network} daily table has its due day.",
    )
    def freshness_sensor(context: dg.SensorEvaluationContext) -> dg.SensorResult:
        day, deadline = due_day(utc_now(), schedule_hour)
        if context.cursor == deadline.isoformat():
            return dg.SensorResult(
                skip_reason=dg.SkipReason(f"{day} was checked at its deadline {deadline:%F %H:%M}")
            )
        request = dg.RunRequest(
            run_key=f"freshness-{day}",
            tags={"network": network, STAGE_TAG: "freshness"},
        )
        return dg.SensorResult(run_requests=[request], cursor=deadline.isoformat())

    return freshness_sensor
