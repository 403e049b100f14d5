"""The record on S3 against the local disk, same machine, same run (``make bench-s3``).

Starts SeaweedFS on 127.0.0.1, then for each data root (a local folder, then
``s3://bench/record``): lands and trains on 8 days, and times a 30-day backfill (``aml-pipeline
score``: land, features, score, evaluate, publish; runs of 14 days), with each step's time
from Dagster's step stats. Then the results API over each root: p95 latency of a one-day and
a 30-day range request (in process, 60 requests each after one warm-up request; the first,
cold request is reported apart: on S3 it downloads the day's files into the cache).

Prints one table; small simulator profile (about 550 alerts a day).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import dagster as dg

from aml_pipeline import cli
from aml_pipeline.storage.s3 import client

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from aml_pipeline_tests.seaweed import seaweedfs  # noqa: E402

NETWORK = "ethereum"
TRAIN = ("2025-03-01", "2025-03-08")
START = dt.date(2025, 3, 9)


def _env(home: Path, root: str) -> None:
    os.environ.update(
        DAGSTER_HOME=str(home),
        AML_DATA_ROOT=root,
        AML_SIM_PROFILE="small",
        AML_LABELS_AS_OF="2025-05-01",
        AML_NETWORKS=NETWORK,
    )
    home.mkdir(parents=True, exist_ok=True)
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")


def _run(*args: str) -> None:
    if cli.main(list(args)) != 0:
        raise SystemExit(f"aml-pipeline {' '.join(args)} failed")


def backfill(home: Path, root: str, days: int) -> tuple[float, dict[str, float]]:
    """Train, then time the backfill; (seconds, seconds per step summed over its runs)."""
    _env(home, root)
    _run("download", "--network", NETWORK, "--start-date", TRAIN[0], "--end-date", TRAIN[1])
    _run("train", "--network", NETWORK, "--start-date", TRAIN[0], "--end-date", TRAIN[1])
    end = START + dt.timedelta(days - 1)
    began, since = time.monotonic(), time.time()
    _run("score", "--network", NETWORK, "--start-date", str(START), "--end-date", str(end))
    seconds = time.monotonic() - began
    steps: dict[str, float] = defaultdict(float)
    with dg.DagsterInstance.get() as instance:
        for run in instance.get_runs():
            if instance.get_run_record_by_id(run.run_id).create_timestamp.timestamp() < since:
                continue
            for stat in instance.get_run_step_stats(run.run_id):
                if stat.end_time and stat.start_time:
                    name = stat.step_key.split("__", 1)[-1]
                    steps[name] += stat.end_time - stat.start_time
    return seconds, dict(steps)


def api_latency(root: str, days: int) -> dict[str, float]:
    """Cold first request and warm p95 (ms) of a one-day and a range request."""
    from fastapi.testclient import TestClient

    from aml_pipeline.api.app import create_app

    end = START + dt.timedelta(days - 1)
    routes = {
        "one day": f"/scores/alerts/{end}?limit=100",
        f"{days} days": f"/scores/alerts?start_date={START}&end_date={end}&limit=100",
    }
    found = {}
    with TestClient(create_app(root, [NETWORK], NETWORK), base_url="http://127.0.0.1") as api:
        for name, route in routes.items():
            began = time.perf_counter()
            assert api.get(route).status_code == 200, route
            found[f"{name} cold"] = (time.perf_counter() - began) * 1000
            timings = []
            for _ in range(60):
                began = time.perf_counter()
                api.get(route)
                timings.append((time.perf_counter() - began) * 1000)
            found[f"{name} p95"] = statistics.quantiles(timings, n=20)[-1]
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=30)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="aml-bench-s3-") as folder:
        work = Path(folder)
        with seaweedfs(work / "seaweedfs", work / "weed.log") as server:
            os.environ.update(server.env())
            client().create_bucket(Bucket="bench")
            roots = {"local disk": str(work / "local" / "data"), "SeaweedFS": "s3://bench/record"}
            results = {}
            for name, root in roots.items():
                home = work / name.replace(" ", "_")
                seconds, steps = backfill(home, root, args.days)
                results[name] = (seconds, steps, api_latency(root, args.days))
    local, remote = results["local disk"], results["SeaweedFS"]
    print(f"\n{args.days}-day backfill: local disk {local[0]:.1f} s, SeaweedFS {remote[0]:.1f} s,"
          f" ratio {remote[0] / local[0]:.2f}")  # fmt: skip
    print(f"{'step (summed over runs)':<28}{'local s':>9}{'S3 s':>9}{'extra s':>9}")
    for step in sorted(local[1], key=lambda s: remote[1].get(s, 0) - local[1][s], reverse=True):
        extra = remote[1].get(step, 0) - local[1][step]
        print(f"{step:<28}{local[1][step]:>9.1f}{remote[1].get(step, 0):>9.1f}{extra:>9.1f}")
    print(f"\n{'API request (ms)':<28}{'local':>9}{'S3':>9}")
    for key, value in local[2].items():
        print(f"{key:<28}{value:>9.1f}{remote[2][key]:>9.1f}")


if __name__ == "__main__":
    main()
