"""Running partitioned asset jobs over date ranges in bounded chunks."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass

import dagster as dg
from dagster._core.definitions.repository_definition import SINGLETON_REPOSITORY_NAME
from dagster._core.storage.tags import REPOSITORY_LABEL_TAG

from aml_pipeline.defs.dead_runs import process_tags

#: Days one run materializes at most: few runs for a backfill, bounded memory per run.
MAX_DAYS_PER_RUN = 14
RANGE_START = "dagster/asset_partition_range_start"
RANGE_END = "dagster/asset_partition_range_end"
#: The tag that says which stage of the pipeline a run is (filter runs by it in the UI).
STAGE_TAG = "aml/stage"
#: The code location the project's definitions load as (workspace.yaml, pyproject's dg
#: project, deploy/): the UI lists a job's runs by their repository label tag, which a run
#: the command line executes in process does not get by itself.
CODE_LOCATION = "aml_pipeline"


def command_line_tags() -> dict[str, str]:
    """The tags of a run the command line executes in this process: its repository label
    (so the UI lists it under its job) and where it runs (``dead_runs``)."""
    return {REPOSITORY_LABEL_TAG: f"{SINGLETON_REPOSITORY_NAME}@{CODE_LOCATION}", **process_tags()}


@dataclass(frozen=True)
class RunOutcome:
    """What a finished run did: its record and its Dagster events (an in-process result
    without the outputs it holds in memory, or the same read back from the instance)."""

    run_id: str
    success: bool
    dagster_run: dg.DagsterRun
    all_events: Sequence[dg.DagsterEvent]

    @classmethod
    def of(cls, result: dg.ExecuteInProcessResult) -> RunOutcome:
        return cls(result.run_id, result.success, result.dagster_run, result.all_events)

    @classmethod
    def load(cls, instance: dg.DagsterInstance, run_id: str) -> RunOutcome:
        """The outcome of a run another process executed, from the instance."""
        run = instance.get_run_by_id(run_id)
        if run is None:
            raise ValueError(f"run {run_id} is not in the instance")
        events = [e.dagster_event for e in instance.all_logs(run_id) if e.dagster_event]
        return cls(run_id, run.status == dg.DagsterRunStatus.SUCCESS, run, events)

    def get_asset_materialization_events(self) -> list[dg.DagsterEvent]:
        return [e for e in self.all_events if e.is_step_materialization]


def day_chunks(
    start: dt.date, end: dt.date, size: int = MAX_DAYS_PER_RUN
) -> Iterator[tuple[dt.date, dt.date]]:
    """``[start, end]`` cut into consecutive ranges of at most ``size`` days."""
    while start <= end:
        last = min(end, start + dt.timedelta(size - 1))
        yield start, last
        start = last + dt.timedelta(1)


def balanced_chunks(start: dt.date, end: dt.date, workers: int) -> list[tuple[dt.date, dt.date]]:
    """``[start, end]`` in ranges of at most MAX_DAYS_PER_RUN days, as many as the 14-day
    cut needs rounded up to a multiple of ``workers``, of near-equal length: each worker
    then gets the same number of days (42 days on 2 workers: 4 runs of 10-11 days, not
    14 + 14 then 14 alone)."""
    from aml_pipeline.dates import date_range, split_evenly

    days = date_range(start, end)
    needed = -(-len(days) // MAX_DAYS_PER_RUN)
    parts = -(-needed // workers) * workers
    return [(part[0], part[-1]) for part in split_evenly(days, parts)]


def run_chunk(
    job: dg.JobDefinition,
    instance: dg.DagsterInstance,
    first: dt.date,
    last: dt.date,
    run_config: dict | None = None,
    asset_selection: Sequence[dg.AssetKey] | None = None,
    tags: Mapping[str, str] | None = None,
) -> RunOutcome:
    """Materialize ``job`` over ``first..last`` in one run, in this process (its tags say
    which, so a killed run is noticed: ``dead_runs``; and ``tags``); failures are
    returned, not raised."""
    result = job.execute_in_process(
        instance=instance,
        run_config=run_config,
        asset_selection=asset_selection,
        tags={
            **(tags or {}),
            RANGE_START: first.isoformat(),
            RANGE_END: last.isoformat(),
            **command_line_tags(),
        },
        raise_on_error=False,
    )
    return RunOutcome.of(result)


def run_range(
    job: dg.JobDefinition,
    instance: dg.DagsterInstance,
    start: dt.date,
    end: dt.date,
    run_config: dict | None = None,
    asset_selection: Sequence[dg.AssetKey] | None = None,
    on_chunk: Callable[[dt.date, dt.date, RunOutcome], None] | None = None,
    tags: Mapping[str, str] | None = None,
) -> RunOutcome | None:
    """Materialize ``job`` over the range, one run per chunk, one after the other; the
    first failed run's outcome, or None when every chunk succeeded. ``on_chunk`` sees each
    successful chunk's outcome (progress)."""
    for first, last in day_chunks(start, end):
        outcome = run_chunk(job, instance, first, last, run_config, asset_selection, tags)
        if not outcome.success:
            return outcome
        if on_chunk is not None:
            on_chunk(first, last, outcome)
    return None
