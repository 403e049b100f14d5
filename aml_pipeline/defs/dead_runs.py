"""Runs whose process died (``kill -9``, an out-of-memory kill, a reboot) are marked failed,
so the schedule, the sensors and the run queue stop waiting on them.

Where a run executes is on record: the command line's in-process runs carry the tags
``aml/host`` (host name and boot id) and ``aml/process`` (pid and the process's start
time, which tells a reused pid apart); a run launched by Dagster's default run launcher
logs its worker's pid in a "Started process for run" engine event, and on an instance
whose run storage is a local SQLite file that worker ran on this host. A run still in
progress is dead when it ran on this host and its process is gone or is another process
now, or when this host has rebooted since it started. Runs of other hosts are never
touched: nothing here can see their processes.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
from dagster._core.storage.runs.sqlite.sqlite_run_storage import SqliteRunStorage

HOST_TAG = "aml/host"
PROCESS_TAG = "aml/process"
#: The statuses of a run that has not finished (a dead one never will by itself).
IN_PROGRESS = [
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
]
_STARTED_PROCESS = "Started process for run"


def _boot_id() -> str:
    """This boot of the machine (Linux), else empty."""
    path = Path("/proc/sys/kernel/random/boot_id")
    return path.read_text().strip() if path.is_file() else ""


def _start_ticks(pid: int) -> int | None:
    """When process ``pid`` started, in clock ticks since boot (Linux); None when there is
    no such process or no /proc to tell."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # the command name (field 2) may hold spaces and parentheses: split after its last ')'
    return int(stat.rsplit(")", 1)[1].split()[19])


def _start_epoch(pid: int) -> float | None:
    """When process ``pid`` started, in seconds since the epoch (Linux), else None."""
    ticks = _start_ticks(pid)
    if ticks is None:
        return None
    boot = next(
        int(line.split()[1])
        for line in Path("/proc/stat").read_text().splitlines()
        if line.startswith("btime ")
    )
    return boot + ticks / os.sysconf("SC_CLK_TCK")


def _pid_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: it exists
        return True
    return True


def _host() -> str:
    return f"{socket.gethostname()}/{_boot_id()}"


def process_tags() -> dict[str, str]:
    """The tags that say which process on which host (and boot) runs a run: every run the
    command line executes in its own process carries them."""
    pid = os.getpid()
    ticks = _start_ticks(pid)
    return {HOST_TAG: _host(), PROCESS_TAG: f"{pid}:{'' if ticks is None else ticks}"}


@dataclass(frozen=True)
class DeadRun:
    """A run marked failed because its process had died, and why."""

    run_id: str
    job_name: str
    reason: str


def _tagged_death(run: dg.DagsterRun) -> str | None:
    """Why the command-line run ``run`` is dead, or None while its process lives or when
    it ran on another host."""
    name, _, boot = run.tags[HOST_TAG].partition("/")
    if name != socket.gethostname():
        return None
    pid_text, _, ticks = run.tags[PROCESS_TAG].partition(":")
    pid = int(pid_text)
    if boot and boot != _boot_id():
        return f"host {name} restarted since process {pid} started the run"
    if not _pid_exists(pid):
        return f"process {pid} on {name} is gone"
    if ticks and str(_start_ticks(pid)) != ticks:
        return f"process {pid} on {name} is gone (the pid now belongs to another process)"
    return None


def _launched_death(instance: dg.DagsterInstance, run: dg.DagsterRun) -> str | None:
    """Why the launched run ``run`` of a local (SQLite) instance is dead, from the worker
    pid its "Started process for run" engine event recorded; None while that process lives
    or before it has started (run monitoring times out a start that never happens)."""
    events = instance.all_logs(run.run_id, of_type=dg.DagsterEventType.ENGINE_EVENT)
    started = next(
        (e for e in events if e.message and e.message.startswith(_STARTED_PROCESS)), None
    )
    if started is None or started.dagster_event is None:
        return None
    data = started.dagster_event.engine_event_data
    pid = int(str(data.metadata["pid"].value))  # recorded as text by Dagster's launcher
    host = socket.gethostname()
    if not _pid_exists(pid):
        return f"its run worker, process {pid} on {host}, is gone"
    began = _start_epoch(pid)
    if began is not None and began > started.timestamp + 1:
        return f"its run worker, process {pid} on {host}, is gone (the pid was reused)"
    return None


def reap_dead_runs(instance: dg.DagsterInstance) -> list[DeadRun]:
    """Mark every unfinished run whose process has died failed (see the module's text),
    give back the concurrency slots it held, and return what was marked."""
    local_launches = isinstance(instance.run_storage, SqliteRunStorage)
    dead = []
    for run in instance.get_runs(filters=dg.RunsFilter(statuses=IN_PROGRESS)):
        if HOST_TAG in run.tags and PROCESS_TAG in run.tags:
            reason = _tagged_death(run)
        elif local_launches:
            reason = _launched_death(instance, run)
        else:
            reason = None
        if reason is None:
            continue
        instance.report_run_failed(
            run, f"Run marked failed: {reason}; it will never finish by itself."
        )
        if instance.event_log_storage.supports_global_concurrency_limits:
            instance.event_log_storage.free_concurrency_slots_for_run(run.run_id)
        dead.append(DeadRun(run.run_id, run.job_name, reason))
    return dead


def build_dead_run_sensor() -> dg.SensorDefinition:
    """A sensor that marks dead runs failed every minute the daemon runs, so a killed run
    never blocks the run queue, a schedule or a sensor; on by default."""

    @dg.sensor(
        name="dead_run_sensor",
        minimum_interval_seconds=60,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Marks failed each unfinished run whose process has died (killed, out "
        "of memory, host restarted), so it blocks no queue, schedule or sensor.",
    )
    def dead_run_sensor(context: dg.SensorEvaluationContext) -> dg.SkipReason:
        dead = reap_dead_runs(context.instance)
        for run in dead:
            context.log.warning(f"run {run.run_id} ({run.job_name}) marked failed: {run.reason}")
        return dg.SkipReason(f"marked {len(dead)} dead run(s) failed" if dead else "no dead runs")

    return dead_run_sensor
