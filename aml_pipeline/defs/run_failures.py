"""Operators hear about failed runs: the run-failure sensor records every failed run of
the instance (launched from the UI, the schedule, a sensor or the command line, or marked
failed because its process died) in the failed-run record the API serves, tells the
optional webhook, and shows each as a materialization of the ``run_failures`` asset.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import dagster as dg

from aml_pipeline.defs.resources import PipelineConfig
from aml_pipeline.defs.tags import RANGE_END, RANGE_START
from aml_pipeline.failures import RunFailure, first_line, record, tell
from aml_pipeline.storage import layout
from aml_pipeline.storage.objects import storage_at

RUN_FAILURES = dg.AssetSpec(
    key="run_failures",
    group_name="monitoring",
    kinds={"parquet"},
    description="Every failed run (network, days, failed step, the error's first line), "
    "one Parquet file per day under monitoring/run_failures/, written by the "
    "run_failure_sensor and the command line; served by the API at /runs/failures. Each "
    "materialization is one failure.",
)


def user_message(error: dg.SerializableErrorInfo) -> str:
    """What a step's error says to a user: its ``dg.Failure`` description, else the root
    cause (without the exception's qualified class name in front)."""
    while error.cause is not None and error.cls_name != "Failure":
        error = error.cause
    message = error.message.strip()
    if error.cls_name == "Failure":  # its description is written for the user
        return message.split(f"{error.cls_name}: ", 1)[-1]
    return message


def run_days(tags: dict[str, str]) -> tuple[dt.date | None, dt.date | None]:
    """A run's first and last day: its range tags, else its partition, else none."""
    first = tags.get(RANGE_START) or tags.get("dagster/partition")
    last = tags.get(RANGE_END) or first
    if not (first and last and layout.is_day(first) and layout.is_day(last)):
        return None, None
    return dt.date.fromisoformat(first), dt.date.fromisoformat(last)


def failure_of(
    run: dg.DagsterRun,
    step_failures: Sequence[dg.DagsterEvent],
    run_message: str,
    failed_at: dt.datetime,
) -> RunFailure:
    """The record of failed ``run``: its first failed step and that step's error, else the
    run's failure message (a run that failed outside any step)."""
    step, error = "", run_message
    if step_failures and step_failures[0].step_failure_data is not None:
        step = step_failures[0].step_key or ""
        error = user_message(step_failures[0].step_failure_data.error)
    if "network" in run.tags:
        networks = [run.tags["network"]]
    elif run.asset_selection:
        networks = sorted({key.path[0] for key in run.asset_selection if len(key.path) > 1})
    else:
        networks = [step.split("__", 1)[0]] if "__" in step else []
    first_day, last_day = run_days(dict(run.tags))
    return RunFailure(
        failed_at=failed_at,
        run_id=run.run_id,
        job_name=run.job_name,
        network=",".join(networks),
        first_day=first_day,
        last_day=last_day,
        step=step,
        error=first_line(error) or "failed",
    )


def materialization(failure: RunFailure) -> dg.AssetMaterialization:
    """The ``run_failures`` event that shows ``failure`` in the UI."""
    return dg.AssetMaterialization(
        asset_key=RUN_FAILURES.key,
        description=failure.summary(),
        metadata={
            "run": dg.MetadataValue.dagster_run(failure.run_id),
            "job": failure.job_name,
            "network": failure.network,
            "days": failure.days(),
            "step": failure.step,
            "error": failure.error,
        },
    )


def report_failed_run(
    instance: dg.DagsterInstance, run_id: str, data_root: str, webhook: str
) -> tuple[RunFailure, bool, str | None]:
    """Record failed run ``run_id`` from what the instance holds of it; the first time, show
    it in the UI (a ``run_failures`` materialization) and tell ``webhook``. Returns the
    failure, whether it was new, and why the webhook was not reached (if it was not)."""
    record_of_run = instance.get_run_record_by_id(run_id)
    if record_of_run is None:
        raise ValueError(f"run {run_id} is not in the instance")
    ended = record_of_run.end_time
    failed = instance.all_logs(run_id, of_type=dg.DagsterEventType.RUN_FAILURE)
    steps = instance.all_logs(run_id, of_type=dg.DagsterEventType.STEP_FAILURE)
    failure = failure_of(
        record_of_run.dagster_run,
        [e.dagster_event for e in steps if e.dagster_event is not None],
        failed[-1].message if failed else "",
        dt.datetime.fromtimestamp(ended, dt.UTC) if ended else dt.datetime.now(dt.UTC),
    )
    if not record(storage_at(data_root), failure):
        return failure, False, None
    instance.report_runless_asset_event(materialization(failure))
    return failure, True, tell(webhook, failure)


def build_run_failure_sensor(webhook: str) -> dg.SensorDefinition:
    """The sensor that reports each failed run (``report_failed_run``); on by default,
    over every run of the instance (command-line runs have no code location)."""

    @dg.run_failure_sensor(
        name="run_failure_sensor",
        monitor_all_code_locations=True,
        default_status=dg.DefaultSensorStatus.RUNNING,
        minimum_interval_seconds=30,
        description="Records every failed run (network, days, step, error) in "
        "monitoring/run_failures/ for the UI and the API, and posts it to "
        "AML_FAILURE_WEBHOOK when set.",
    )
    def run_failure_sensor(context: dg.RunFailureSensorContext, pipeline: PipelineConfig) -> None:
        failure, new, problem = report_failed_run(
            context.instance, context.dagster_run.run_id, pipeline.data_root, webhook
        )
        if problem:
            context.log.warning(problem)
        context.log.info(f"{'recorded' if new else 'already recorded'}: {failure.summary()}")

    return run_failure_sensor
