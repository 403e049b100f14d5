"""A run whose process died is marked failed, so nothing waits on it: not the next command,
not the schedule, not the sensors, not the run queue."""

from __future__ import annotations

import datetime as dt
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import pytest
from dagster._core.events import EngineEventData

from aml_pipeline import cli
from aml_pipeline.defs import dead_runs
from aml_pipeline.defs.dead_runs import HOST_TAG, IN_PROGRESS, PROCESS_TAG, reap_dead_runs
from aml_pipeline.defs.definitions import build_definitions
from aml_pipeline.defs.tags import RANGE_END, RANGE_START
from aml_pipeline_tests.conftest import add_started_run, settings_for

pytestmark = pytest.mark.integration  # starts and kills processes

JOB = "ethereum_daily_job"


def _add_run(instance: dg.DagsterInstance, tags: dict[str, str]) -> str:
    return add_started_run(instance, {RANGE_START: "2025-03-11", RANGE_END: "2025-03-12", **tags})


def _status(instance: dg.DagsterInstance, run_id: str) -> dg.DagsterRunStatus:
    run = instance.get_run_by_id(run_id)
    assert run is not None
    return run.status


@pytest.fixture
def gone_process() -> tuple[int, int]:
    """The pid and start ticks of a process that has exited."""
    child = subprocess.Popen(["sleep", "30"])
    ticks = dead_runs._start_ticks(child.pid)
    assert ticks is not None
    child.kill()
    child.wait()
    return child.pid, ticks


def test_runs_of_dead_processes_are_marked_failed_and_live_ones_kept(gone_process):
    pid, ticks = gone_process
    here = dead_runs.process_tags()
    host = here[HOST_TAG]
    name = socket.gethostname()
    with dg.instance_for_test() as instance:
        live = _add_run(instance, here)
        killed = _add_run(instance, {HOST_TAG: host, PROCESS_TAG: f"{pid}:{ticks}"})
        reused = _add_run(instance, {HOST_TAG: host, PROCESS_TAG: f"{os.getpid()}:1"})
        rebooted = _add_run(instance, {HOST_TAG: f"{name}/another-boot", **{
            PROCESS_TAG: here[PROCESS_TAG]}})  # fmt: skip
        elsewhere = _add_run(instance, {HOST_TAG: "other-host/x", PROCESS_TAG: f"{pid}:{ticks}"})
        untagged = _add_run(instance, {})  # an in-memory instance: no launch to look at

        reasons = {run.run_id: run.reason for run in reap_dead_runs(instance)}

        assert set(reasons) == {killed, reused, rebooted}
        assert reasons[killed] == f"process {pid} on {name} is gone"
        assert "belongs to another process" in reasons[reused]
        assert "restarted" in reasons[rebooted]
        for run_id in (killed, reused, rebooted):
            assert _status(instance, run_id) == dg.DagsterRunStatus.FAILURE
            (failure,) = instance.all_logs(run_id, of_type=dg.DagsterEventType.RUN_FAILURE)
            assert "it will never finish by itself" in failure.message
        for run_id in (live, elsewhere, untagged):
            assert _status(instance, run_id) == dg.DagsterRunStatus.STARTED
        assert reap_dead_runs(instance) == []  # marked once


def test_a_launched_run_whose_worker_died_is_marked_failed_on_a_local_instance(
    tmp_path, gone_process
):
    pid, _ = gone_process
    with dg.instance_for_test(temp_dir=str(tmp_path)) as instance:  # SQLite storage
        runs = {}
        for worker in (pid, os.getpid()):
            run_id = runs[worker] = _add_run(instance, {})
            instance.report_engine_event(
                f"Started process for run (pid: {worker}).",
                instance.get_run_by_id(run_id),
                EngineEventData.in_process(worker),
            )
        (dead,) = reap_dead_runs(instance)
        assert dead.run_id == runs[pid] and f"process {pid}" in dead.reason
        assert _status(instance, runs[os.getpid()]) == dg.DagsterRunStatus.STARTED


def test_the_dead_run_sensor_marks_dead_runs_and_is_on_by_default(gone_process):
    pid, ticks = gone_process
    sensor = next(s for s in build_definitions(settings_for(Path("/tmp"))).sensors
                  if s.name == "dead_run_sensor")  # fmt: skip
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING
    with dg.instance_for_test() as instance:
        run_id = _add_run(instance, {**dead_runs.process_tags(), PROCESS_TAG: f"{pid}:{ticks}"})
        result = sensor(dg.build_sensor_context(instance=instance))
        assert result.skip_message == "marked 1 dead run(s) failed"
        assert _status(instance, run_id) == dg.DagsterRunStatus.FAILURE
        again = sensor(dg.build_sensor_context(instance=instance))
        assert again.skip_message == "no dead runs"


def _started_runs(home: Path) -> list[dg.DagsterRun]:
    with dg.DagsterInstance.get() as instance:
        return list(instance.get_runs(filters=dg.RunsFilter(statuses=IN_PROGRESS)))


def test_a_killed_command_blocks_nothing(scratch, monkeypatch):
    """``kill -9`` of a ranged ``score`` mid-run: the schedule's next tick runs a day the
    dead run covered, the next command succeeds, and no run is left in progress."""
    monkeypatch.setenv("DAGSTER_HOME", str(scratch))
    monkeypatch.setenv("AML_DATA_ROOT", str(scratch / "data"))
    score = ["score", "--network", "ethereum", "--start-date", "2025-03-11", "--end-date",
             "2025-03-14"]  # fmt: skip
    command = subprocess.Popen(
        [sys.executable, "-m", "aml_pipeline.cli", *score],
        env={**os.environ, "AML_SIM_PROFILE": "small", "AML_LABELS_AS_OF": "2025-05-01"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 120
        while not _started_runs(scratch):
            assert command.poll() is None and time.monotonic() < deadline, "no run started"
            time.sleep(0.2)
    finally:
        os.killpg(command.pid, signal.SIGKILL)
        command.wait()
    (dead,) = _started_runs(scratch)

    schedule = next(
        s
        for s in build_definitions(settings_for(scratch, labels_as_of="2025-05-01")).schedules
        if s.name == "ethereum_daily_schedule"
    )
    with dg.DagsterInstance.get() as instance:
        tick = dg.build_schedule_context(
            instance=instance, scheduled_execution_time=dt.datetime(2025, 3, 13, 2, tzinfo=dt.UTC)
        )
        request = schedule(tick)
        assert isinstance(request, dg.RunRequest) and request.partition_key == "2025-03-12"
        failed = instance.get_run_by_id(dead.run_id)
        assert failed is not None and failed.status == dg.DagsterRunStatus.FAILURE

    assert cli.main(score) == 0
    assert _started_runs(scratch) == []
    assert (scratch / "data" / "output" / "ethereum" / "2025-03-14").is_dir()
