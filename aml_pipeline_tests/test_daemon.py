"""The daemon's own loops against a test instance made from the project's dagster.yaml:
an asset backfill launched through the GraphQL API exactly as the UI's dialog sends it,
the daily schedule's tick and the new-batch sensor. Each iteration is the daemon's code
(backfill, run-queue, scheduler and sensor loops). Backfill runs are processes of their own,
started by Dagster's default run launcher from a gRPC code server, as under
``dagster-daemon run``; the schedule and sensor test freezes the clock in this process, so
its code location and runs are in memory here."""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import dagster as dg
import pyarrow.parquet as pq
import pytest
from dagster._core.execution.backfill import BulkActionStatus
from dagster._core.remote_origin import InProcessCodeLocationOrigin
from dagster._core.storage.tags import REPOSITORY_LABEL_TAG
from dagster._core.test_utils import create_test_daemon_workspace_context, freeze_time
from dagster._core.types.loadable_target_origin import LoadableTargetOrigin
from dagster._core.workspace.context import WorkspaceProcessContext
from dagster._core.workspace.load_target import InProcessWorkspaceLoadTarget, PythonFileTarget
from dagster._daemon.backfill import execute_backfill_iteration
from dagster._daemon.run_coordinator.queued_run_coordinator_daemon import QueuedRunCoordinatorDaemon
from dagster._daemon.sensor import execute_sensor_iteration
from dagster._scheduler.scheduler import launch_scheduled_runs
from dagster_graphql.test.utils import execute_dagster_graphql

from aml_pipeline import cli
from aml_pipeline.dates import date_range
from aml_pipeline.defs import automation, dead_runs
from aml_pipeline.defs.network import DAILY_ASSETS
from aml_pipeline.defs.tags import RANGE_END, RANGE_START
from aml_pipeline.storage import layout
from aml_pipeline_tests.conftest import add_started_run

ROOT = Path(__file__).resolve().parents[1]
NETWORK = "ethereum"
FIRST = dt.date(2025, 3, 1)  # the partitions' first day
DEFS = """from aml_pipeline.defs.definitions import build_definitions
from aml_pipeline.settings import Settings

defs = build_definitions(Settings.from_env())
"""
LAUNCH = """
mutation Launch($params: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $params) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on PythonError { message }
  }
}"""
LOG = logging.getLogger("aml_pipeline_tests.daemon")
# Dagster's own code on these paths uses two deprecated APIs: the snapshot of a schedule
# (what a code location sends the daemon) reads `environment_vars`, which our schedules do
# not set, and the asset backfill calls `AssetSelection.sources()`.
pytestmark = [
    pytest.mark.filterwarnings(
        "ignore:Property `ScheduleDefinition.environment_vars`:DeprecationWarning"
    ),
    pytest.mark.filterwarnings("ignore:Function `AssetSelection.sources`:DeprecationWarning"),
]


@pytest.fixture
def project(scratch: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of the shared project (2025-03-01..08 landed, champions trained, 03-01..10
    published) on the project's own dagster.yaml, its partitions starting on 2025-03-01,
    its environment set (runs inherit it)."""
    _environment(monkeypatch, scratch)
    return scratch


def _environment(mp: pytest.MonkeyPatch, home: Path) -> None:
    (home / "dagster.yaml").write_text((ROOT / "dagster.yaml").read_text())
    (home / "aml_defs.py").write_text(DEFS)
    for name, value in {
        "DAGSTER_HOME": str(home),
        "AML_DATA_ROOT": str(home / "data"),
        "AML_SIM_PROFILE": "small",
        "AML_LABELS_AS_OF": "2025-05-01",
        "AML_PARTITIONS_START": FIRST.isoformat(),
        "AML_NETWORKS_DIR": str(home / "networks"),
    }.items():
        mp.setenv(name, value)


@contextlib.contextmanager
def daemon_context(home: Path, code_server: bool = True) -> Iterator[WorkspaceProcessContext]:
    """The instance of ``home`` and the code location the daemon loads: from a gRPC code
    server (as ``dagster-daemon run`` does; runs are processes of their own) or, for time
    travel, in this process (the instance's launcher must then run runs in memory)."""
    defs_file, folder = str(home / "aml_defs.py"), str(home)
    target = (
        PythonFileTarget(defs_file, "defs", folder, "aml_pipeline")
        if code_server
        else InProcessWorkspaceLoadTarget(
            InProcessCodeLocationOrigin(
                LoadableTargetOrigin(
                    executable_path=sys.executable,
                    python_file=defs_file,
                    attribute="defs",
                    working_directory=folder,
                ),
                location_name="aml_pipeline",
            )
        )
    )
    instance = dg.DagsterInstance.get()
    try:
        with create_test_daemon_workspace_context(target, instance) as context:
            yield context
    finally:
        instance.dispose()


ACTIVE = {
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
}


def drain(context: WorkspaceProcessContext, done: Callable[[], bool], seconds: float = 240) -> None:
    """Run the daemon's backfill and run-queue iterations until ``done`` (which waits for
    the launched runs too), then check that no run is left unfinished."""
    deadline = time.monotonic() + seconds
    with QueuedRunCoordinatorDaemon(interval_seconds=1) as queue:
        while not done():
            assert time.monotonic() < deadline, "the daemon did not finish in time"
            list(execute_backfill_iteration(context, LOG))
            list(queue.run_iteration(context))
            time.sleep(0.5)
    assert runs_settled(context.instance)(), "a run is left unfinished"


def runs_settled(instance: dg.DagsterInstance) -> Callable[[], bool]:
    return lambda: not instance.get_runs(filters=dg.RunsFilter(statuses=list(ACTIVE)))


def launch_backfill(context: WorkspaceProcessContext, params: dict) -> dict:
    """``launchPartitionBackfill`` through Dagster's GraphQL schema, as the webserver runs it."""
    result = execute_dagster_graphql(context.create_request_context(), LAUNCH, {"params": params})
    assert not result.errors, result.errors
    return result.data["launchPartitionBackfill"]


def backfill(context: WorkspaceProcessContext, params: dict) -> list[dg.DagsterRun]:
    """Launch a backfill, let the daemon process it to the end: its runs, oldest first,
    once it completed without a failed run."""
    launched = launch_backfill(context, params)
    assert launched["__typename"] == "LaunchBackfillSuccess", launched
    instance, backfill_id = context.instance, launched["backfillId"]
    drain(context, lambda: instance.get_backfill(backfill_id).status != BulkActionStatus.REQUESTED)
    assert instance.get_backfill(backfill_id).status == BulkActionStatus.COMPLETED_SUCCESS
    runs = instance.get_runs(filters=dg.RunsFilter(tags={"dagster/backfill": backfill_id}))
    assert {r.status for r in runs} == {dg.DagsterRunStatus.SUCCESS}
    return list(reversed(runs))


def _span(run: dg.DagsterRun) -> tuple[str, str]:
    return (
        run.tags["dagster/asset_partition_range_start"],
        run.tags["dagster/asset_partition_range_end"],
    )


def _daily_assets() -> list[dict]:
    return [{"path": [NETWORK, name]} for name in DAILY_ASSETS]


def _scores(home: Path, day: dt.date) -> list[tuple]:
    table = pq.read_table(
        home / "data" / layout.output_day(NETWORK, day) / "alert_scores.parquet",
        columns=["alert_id", "score"],
    )
    return sorted(zip(*(c.to_pylist() for c in table.columns), strict=True))


def _file_stamps(home: Path, days: list[dt.date]) -> dict[str, int]:
    """Every stored file of ``days`` (landed, warehouse, published) and its mtime."""
    keys = {d.isoformat() for d in days}
    return {
        str(p): p.stat().st_mtime_ns
        for p in (home / "data").rglob("*")
        if p.is_file() and any(k in p.name or k in p.parent.name for k in keys)
    }


def test_an_asset_backfill_from_the_ui_dialog_runs_in_two_week_runs(project):
    """21 days from the partitions' first day, the daily job's assets, as the Materialize
    dialog sends them: two runs (14 + 7 days), none failed, 21 days published, the days the
    CLI published before with the same scores, and later days left untouched."""
    days = date_range(FIRST, FIRST + dt.timedelta(20))
    later = date_range(days[-1] + dt.timedelta(1), days[-1] + dt.timedelta(2))
    assert cli.main(["download", "--network", NETWORK, "--start-date", later[0].isoformat(),
                     "--end-date", later[-1].isoformat()]) == 0  # fmt: skip
    local = {d: _scores(project, d) for d in date_range(FIRST, dt.date(2025, 3, 10))}
    untouched = _file_stamps(project, later)
    assert untouched
    with daemon_context(project) as context:
        # the pool is new to the instance: Dagster's queue gives it its default limit only
        # after choosing the first iteration's runs, so only the backfill's own tag limit
        # (dagster.yaml) keeps its two runs apart
        assert not context.instance.event_log_storage.get_concurrency_keys()
        params = {"assetSelection": _daily_assets(), "partitionNames": [str(d) for d in days]}
        runs = backfill(context, params)
        records = context.instance.get_run_records(
            dg.RunsFilter(run_ids=[r.run_id for r in runs]), ascending=True
        )
        # the runs take their tags from the dialog; the tagging sensor adds the usual ones
        _tick_sensors(context, dt.datetime.now(dt.UTC))
        tagged = [context.instance.get_run_by_id(r.run_id) for r in runs]
    assert [_span(r) for r in runs] == [("2025-03-01", "2025-03-14"), ("2025-03-15", "2025-03-21")]
    assert records[0].end_time <= records[1].start_time, "the two runs overlapped"
    assert all(r.tags["network"] == NETWORK and r.tags["aml/stage"] == "daily" for r in tagged)
    assert all(_published(project, d) for d in days)
    assert {d: _scores(project, d) for d in local} == local
    assert _file_stamps(project, later) == untouched


def test_a_backfill_from_the_job_page_is_the_jobs_and_refuses_unknown_days(project):
    """The same dialog opened on ``ethereum_daily_job``'s page sends the job's partition
    set too: Dagster makes that a job backfill, whose runs carry the job's name (so they
    are listed under the job) and the same two-week ranges, and a day outside the
    partitions is refused with a typed error instead of being dropped."""
    repository = {"repositoryName": "__repository__", "repositoryLocationName": "aml_pipeline"}
    page = {
        "selector": {
            "partitionSetName": f"{NETWORK}_daily_job_partition_set",
            "repositorySelector": repository,
        },
        "assetSelection": _daily_assets(),
        "fromFailure": False,
    }
    with daemon_context(project) as context:
        for unknown in (["2025-02-28"], ["2025-03-11", "2099-01-01"]):
            refused = launch_backfill(context, {**page, "partitionNames": unknown})
            assert refused["__typename"] == "PartitionKeysNotFoundError", refused
        assert not context.instance.get_backfills()
        (run,) = backfill(context, {**page, "partitionNames": ["2025-03-11", "2025-03-12"]})
    assert run.job_name == f"{NETWORK}_daily_job"
    assert _span(run) == ("2025-03-11", "2025-03-12")
    assert all(_published(project, d) for d in (dt.date(2025, 3, 11), dt.date(2025, 3, 12)))


IN_MEMORY_RUNS = """
run_launcher:
  module: dagster._core.launcher.sync_in_memory_run_launcher
  class: SyncInMemoryRunLauncher
"""


def _at(day: dt.date, hour: int, minute: int = 0) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(hour, minute), dt.UTC)


def _tick_schedules(context: WorkspaceProcessContext, now: dt.datetime) -> None:
    with freeze_time(now):
        list(launch_scheduled_runs(context, LOG, now, {}))


def _tick_sensors(context: WorkspaceProcessContext, now: dt.datetime) -> None:
    with freeze_time(now):
        list(execute_sensor_iteration(context, LOG, None, None))


def _killed_command_run(instance: dg.DagsterInstance) -> str:
    """A run of the command line, STARTED, whose process is gone; its id."""
    child = subprocess.Popen(["sleep", "30"])
    process = f"{child.pid}:{dead_runs._start_ticks(child.pid)}"
    child.kill()
    child.wait()
    tags = {**dead_runs.process_tags(), dead_runs.PROCESS_TAG: process}
    tags |= {RANGE_START: "2025-03-14", RANGE_END: "2025-03-14", "network": NETWORK}
    return add_started_run(instance, tags)


def _run_failures(home: Path) -> list[dict]:
    folder = home / "data" / layout.run_failures_folder()
    return [row for f in sorted(folder.glob("*.parquet")) for row in pq.read_table(f).to_pylist()]


def _published(home: Path, day: dt.date) -> bool:
    return (home / "data" / layout.output_day(NETWORK, day) / "alert_scores.parquet").is_file()


def test_the_schedule_and_the_sensor_under_the_daemon(project, monkeypatch):
    """The scheduler's tick at 02:00 runs yesterday and publishes it; the new-batch sensor
    catches up the missed days in one ranged run, then skips with a reason; a failed day is
    not requested again that day (the run key carries the date) but is the next day."""
    with (project / "dagster.yaml").open("a") as config:
        config.write(IN_MEMORY_RUNS)
    with daemon_context(project, code_server=False) as context:
        instance = context.instance
        repository = (
            context.create_request_context()
            .get_code_location("aml_pipeline")
            .get_repository("__repository__")
        )
        with freeze_time(_at(dt.date(2025, 3, 12), 1)):
            instance.start_schedule(repository.get_schedule(f"{NETWORK}_daily_schedule"))
            sensor = repository.get_sensor(f"{NETWORK}_new_batch_sensor")
            instance.start_sensor(sensor)

        earlier = {r.run_id for r in instance.get_runs()}  # the CLI's, in the copied instance
        # ... listed under their jobs, by the filter the job page's Runs tab uses
        label = repository.handle.get_remote_origin().get_label()
        for job in (f"{NETWORK}_daily_job", "training_job"):
            listed = instance.get_runs(
                filters=dg.RunsFilter(job_name=job, tags={REPOSITORY_LABEL_TAG: label})
            )
            every = [r for r in instance.get_runs() if r.job_name == job]
            assert listed and {r.run_id for r in listed} == {r.run_id for r in every}, job

        def runs() -> list[dg.DagsterRun]:  # the daily job's (the freshness sensor's aside)
            return [
                r
                for r in reversed(instance.get_runs())
                if r.run_id not in earlier and r.job_name == f"{NETWORK}_daily_job"
            ]

        _tick_schedules(context, _at(dt.date(2025, 3, 12), 2, 1))
        drain(context, runs_settled(instance))
        (scheduled,) = runs()
        assert scheduled.tags["dagster/partition"] == "2025-03-11"
        assert scheduled.status == dg.DagsterRunStatus.SUCCESS
        assert _published(project, dt.date(2025, 3, 11))

        # 2025-03-15: the look-back (7 days) has 03-12..14 unpublished: one ranged run
        monkeypatch.setattr(automation, "utc_today", lambda: dt.date(2025, 3, 15))
        _tick_sensors(context, _at(dt.date(2025, 3, 15), 3))
        drain(context, runs_settled(instance))
        caught_up = runs()[1:]
        assert [(r.tags[RANGE_START], r.tags[RANGE_END], r.status) for r in caught_up] == [
            ("2025-03-12", "2025-03-14", dg.DagsterRunStatus.SUCCESS)
        ]
        assert all(
            _published(project, d) for d in date_range(dt.date(2025, 3, 12), dt.date(2025, 3, 14))
        )
        _tick_sensors(context, _at(dt.date(2025, 3, 15), 4))
        ticks = instance.get_ticks(sensor.get_remote_origin_id(), sensor.selector_id, limit=1)
        assert ticks[0].skip_reason == "every available batch is published or being processed"
        assert len(runs()) == 2

        # 2025-03-16: the day fails (its raw_alerts file cannot be written) ...
        blocker = project / "data" / "warehouse" / NETWORK / "raw_alerts" / "2025-03-15.parquet"
        (blocker / "in-the-way").mkdir(parents=True)
        monkeypatch.setattr(automation, "utc_today", lambda: dt.date(2025, 3, 16))
        _tick_sensors(context, _at(dt.date(2025, 3, 16), 3))
        drain(context, runs_settled(instance))
        assert runs()[-1].status == dg.DagsterRunStatus.FAILURE
        failed = runs()[-1].run_id
        # a command's run killed meanwhile (no code location: only its tags say where it ran)
        killed = _killed_command_run(instance)
        # ... is not requested again the same day, however often the sensor ticks ...
        _tick_sensors(context, _at(dt.date(2025, 3, 16), 4))
        _tick_sensors(context, _at(dt.date(2025, 3, 16), 5))
        drain(context, runs_settled(instance))
        assert len(runs()) == 4 and runs()[-1].run_id == killed
        # the run-failure sensor recorded both failed runs for the UI and the API
        recorded = {row["run_id"]: row for row in _run_failures(project)}
        assert set(recorded) == {failed, killed}
        assert recorded[failed]["step"] == f"{NETWORK}__raw_alerts"
        assert (recorded[failed]["first_day"], recorded[failed]["last_day"]) == (
            dt.date(2025, 3, 15),
            dt.date(2025, 3, 15),
        )
        assert recorded[killed]["step"] == "" and "is gone" in recorded[killed]["error"]
        shown = instance.fetch_materializations(dg.AssetKey("run_failures"), limit=10).records
        assert {e.asset_materialization.metadata["run"].value for e in shown} == {failed, killed}
        # ... and is retried the next day, with the day that came since
        shutil.rmtree(blocker)
        monkeypatch.setattr(automation, "utc_today", lambda: dt.date(2025, 3, 17))
        _tick_sensors(context, _at(dt.date(2025, 3, 17), 3))
        drain(context, runs_settled(instance))
        retried = runs()[-1]
        assert (retried.tags[RANGE_START], retried.tags[RANGE_END]) == ("2025-03-15", "2025-03-16")
        assert retried.status == dg.DagsterRunStatus.SUCCESS
        assert _published(project, dt.date(2025, 3, 15)) and _published(
            project, dt.date(2025, 3, 16)
        )
