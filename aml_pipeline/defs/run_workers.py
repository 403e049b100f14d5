"""Run workers: each run executes on a Celery worker (dagster-celery's run launcher) instead
of beside the daemon that launched it.

The instance names ``CeleryWorkerRunLauncher`` as its ``run_launcher`` (``deploy/dagster.yaml``)
and each worker machine runs ``celery -A aml_pipeline.defs.run_workers worker -Q dagster``;
both take the broker and the result store from ``DAGSTER_CELERY_BROKER_URL`` and
``DAGSTER_CELERY_BACKEND_URL`` (Redis in the deployment), so they cannot disagree.

A worker executes each run in a process of its own (``dagster api execute_run``, as Dagster's
default launcher does): the Celery pool's processes are daemonic and may not start the
processes a run's steps use, and a fresh process per run keeps one run's memory from the next.

dagster-celery's own health check reads the task's state, which a worker that died with its
run never updates (it stays ``STARTED``), so run monitoring would wait for that run forever.
Here the check also asks the worker holding the task whether it is alive; one that does not
answer has died with its run, which is then marked failed and its pool slots freed.
"""

from __future__ import annotations

import functools
import os
import signal
import subprocess
import sys

from celery import Celery
from dagster import DagsterRun
from dagster._core.launcher import CheckRunHealthResult, WorkerStatus
from dagster._grpc.types import ExecuteRunArgs, ResumeRunArgs
from dagster._serdes import serialize_value, unpack_value
from dagster_celery.config import DEFAULT_CONFIG, TASK_EXECUTE_JOB_NAME, TASK_RESUME_JOB_NAME
from dagster_celery.defaults import task_default_queue
from dagster_celery.launcher import CeleryRunLauncher
from dagster_celery.make_app import make_app
from dagster_celery.tags import DAGSTER_CELERY_TASK_ID_TAG

BROKER_URL = "DAGSTER_CELERY_BROKER_URL"
BACKEND_URL = "DAGSTER_CELERY_BACKEND_URL"
#: How long a worker has to answer the liveness ping.
PING_SECONDS = 5.0
#: What the launcher and the workers both set on their Celery app: each worker takes one run
#: at a time and the result store keeps which worker took a task (for the liveness ping).
CELERY_SETTINGS = {
    **DEFAULT_CONFIG,
    "result_extended": True,
    "worker_prefetch_multiplier": 1,
    "broker_connection_retry_on_startup": True,
}


def celery_app_args(broker: str | None = None, backend: str | None = None) -> dict:
    """The Celery app's settings, from the arguments or else the environment."""
    broker, backend = broker or os.environ.get(BROKER_URL), backend or os.environ.get(BACKEND_URL)
    if not broker or not backend:
        raise RuntimeError(f"run workers need {BROKER_URL} and {BACKEND_URL} (e.g. redis://...)")
    return {
        "broker": broker,
        "backend": backend,
        "include": [],
        "config_source": CELERY_SETTINGS,
        "task_default_queue": task_default_queue,
    }


class CeleryWorkerRunLauncher(CeleryRunLauncher):
    """dagster-celery's run launcher whose health check also notices a dead worker."""

    def __init__(self, broker: str | None = None, backend: str | None = None, **kwargs) -> None:
        args = celery_app_args(broker, backend)
        config_source = {**args["config_source"], **(kwargs.pop("config_source", None) or {})}
        kwargs.setdefault("default_queue", task_default_queue)
        super().__init__(
            broker=args["broker"], backend=args["backend"], config_source=config_source, **kwargs
        )

    def check_run_worker_health(self, run: DagsterRun) -> CheckRunHealthResult:
        """The task's state; a ``STARTED`` task whose worker does not answer has failed."""
        health = super().check_run_worker_health(run)
        if health.status != WorkerStatus.RUNNING:
            return health
        worker = self.celery.AsyncResult(run.tags[DAGSTER_CELERY_TASK_ID_TAG]).worker
        if not worker:
            return health
        answers = self.celery.control.ping(destination=[worker], timeout=PING_SECONDS)
        if any(worker in answer for answer in answers):
            return health
        return CheckRunHealthResult(
            WorkerStatus.FAILED, f"Celery worker {worker} does not answer: it died with the run"
        )


def run_forwarding_sigterm(command: list[str]) -> int:
    """Run ``command`` to its end; a SIGTERM to this process (Celery's revoke when the run is
    terminated from the UI) is passed on to it, so the run stops as Dagster's own run
    processes do on termination. Its exit code."""
    process = subprocess.Popen(command)
    previous = signal.signal(signal.SIGTERM, lambda *_: process.send_signal(signal.SIGTERM))
    try:
        return process.wait()
    finally:
        signal.signal(signal.SIGTERM, previous)


def execute_in_process(command: str, args: ExecuteRunArgs | ResumeRunArgs) -> int:
    """``dagster api {command}`` (``execute_run`` or ``resume_run``) of the run, in a process
    of its own on this worker's interpreter; a process that dies or fails fails the Celery
    task, which the health check reports."""
    dagster = [sys.executable, "-m", "dagster", "api", command, serialize_value(args)]
    code = run_forwarding_sigterm(dagster)
    if code:
        raise RuntimeError(f"run {args.run_id}: its process exited with code {code}")
    return code


@functools.cache
def worker_app() -> Celery:
    """The Celery app a run worker serves: the launcher's settings and its two tasks."""
    celery = make_app(celery_app_args())

    @celery.task(name=TASK_EXECUTE_JOB_NAME, track_started=True)
    def execute_job(execute_job_args_packed: dict) -> int:
        args = unpack_value(execute_job_args_packed, as_type=ExecuteRunArgs)
        return execute_in_process("execute_run", args)

    @celery.task(name=TASK_RESUME_JOB_NAME, track_started=True)
    def resume_job(execute_job_args_packed: dict) -> int:  # the launcher sends this name
        return execute_in_process(
            "resume_run", unpack_value(execute_job_args_packed, as_type=ResumeRunArgs)
        )

    return celery


#: ``celery -A aml_pipeline.defs.run_workers worker`` serves this app (only workers load it).
def __getattr__(name: str) -> Celery:
    if name == "app":
        return worker_app()
    raise AttributeError(name)
