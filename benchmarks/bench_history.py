"""Questions across days at a year of history (``python -m benchmarks.bench_history``).

Synthetic history as the pipeline stores it (``bench_api.generate``'s published days plus
the warehouse's ``label_events``), 20,000 alerts a day, for 365 days; the
30-day history hard-links the newest 30. Each history is served by a real uvicorn server
(``aml_pipeline.api.server.serve``, its own process).

1. Latency, one keep-alive client: a 30-day range top-100 (``/scores/alerts``), an address's
   history over 30 days and over the whole history, and a one-day page; at 365 and at 30
   days of history. The seed's Option A (pandas reads every file, then filters) answers
   the 30-day range beside it.
2. Load: ``--clients`` concurrent clients (asyncio + httpx) for ``--seconds`` mixing one-day,
   30-day range and address queries against the 365-day history while one day is
   re-published every ``--republish-every`` seconds; every error is counted.

Targets: 30-day range and address history at 365 days p95 < 100 ms and within 1.5x of the
same at 30 days; one-day p95 < 10 ms; the load test has zero errors.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import multiprocessing as mp
import os
import statistics
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from aml_pipeline.api.console import open_console, run_query
from aml_pipeline.storage import layout
from aml_pipeline.storage.objects import LocalStorage
from benchmarks.bench_api import (
    LAST_DAY,
    NETWORK,
    _connect,
    _free_port,
    _run_server,
    generate,
    link_newest,
)

RANGE_P95_MS, DAY_P95_MS, GROWTH = 100.0, 10.0, 1.5


def generate_labels(root: Path, days: int, alerts: int, seed: int = 1) -> None:
    """``label_events``: a tenth of each day's alerts labelled 30 days later."""
    rng = np.random.default_rng(seed)
    for k in range(days):
        label_day = LAST_DAY - dt.timedelta(days - 1 - k)
        alert_day = label_day - dt.timedelta(30)
        labelled = rng.choice(alerts, size=alerts // 10, replace=False)
        events = pa.table(
            {
                "alert_id": [f"{alert_day:%Y%m%d}-{i:06d}" for i in labelled],
                "processing_date": pa.array([alert_day] * len(labelled), pa.date32()),
                "is_sar_filed": pa.array(rng.random(len(labelled)) < 0.2),
                "label_date": pa.array([label_day] * len(labelled), pa.date32()),
            }
        )
        path = root / layout.table_partition((NETWORK, "label_events"), label_day)
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(events, path, compression="zstd")


def link_labels(source: Path, target: Path, days: int) -> None:
    """Give ``target`` the newest ``days`` label partitions of ``source`` (hard links)."""
    folder = source / layout.table_folder((NETWORK, "label_events"))
    into = target / layout.table_folder((NETWORK, "label_events"))
    into.mkdir(parents=True)
    for file in sorted(folder.iterdir())[-days:]:
        os.link(file, into / file.name)


def frequent_addresses(root: Path, n: int) -> list[str]:
    """``n`` addresses of the newest day (each has alerts on many days)."""
    table = pq.read_table(root / layout.output_day(NETWORK, LAST_DAY) / "alert_scores.parquet")
    return table.column("address").to_pylist()[:n]


def latency(
    server: mp.process.BaseProcess, port: int, paths: list[str], requests: int, warmup: int = 10
) -> dict:
    """p50/p95 (ms) of sequential keep-alive GETs cycling over ``paths``."""
    conn, timings = _connect(port, server, "api"), []
    for i in range(warmup + requests):
        start = time.perf_counter()
        conn.request("GET", paths[i % len(paths)])
        response = conn.getresponse()
        response.read()
        if response.status != 200:
            raise RuntimeError(f"{paths[i % len(paths)]}: HTTP {response.status}")
        if i >= warmup:
            timings.append((time.perf_counter() - start) * 1000)
    conn.close()
    q = statistics.quantiles(timings, n=100, method="inclusive")
    return {"requests": requests, "p50_ms": round(q[49], 2), "p95_ms": round(q[94], 2)}


@contextlib.contextmanager
def serving(kind: str, root: Path) -> Iterator[tuple[mp.process.BaseProcess, int]]:
    """A ``kind`` server over ``root`` in its own process, stopped on exit."""
    port = _free_port()
    server = mp.get_context("spawn").Process(target=_run_server, args=(kind, str(root), port))
    server.start()
    try:
        _connect(port, server, kind).close()
        yield server, port
    finally:
        server.terminate()
        server.join(30)


def console_filters(root: Path, repeats: int = 20) -> list[dict]:
    """The SQL console over the whole history: a one-day filter against a full scan."""
    day = LAST_DAY - dt.timedelta(100)
    queries = {
        "console, one-day filter": (
            f"SELECT count(*), max(score) FROM alert_scores WHERE processing_date = DATE '{day}'"
        ),
        "console, every day": "SELECT count(*), max(score) FROM alert_scores",
    }
    rows = []
    with open_console(root, [NETWORK]) as (conn, _):
        for name, sql in queries.items():
            timings = []
            for _ in range(repeats):
                began = time.perf_counter()
                run_query(conn, sql)
                timings.append((time.perf_counter() - began) * 1000)
            rows.append(
                {"days": 365, "route": name, "p50_ms": round(statistics.median(timings), 2)}
            )
    return rows


def routes(addresses: list[str]) -> dict[str, list[str]]:
    """The measured routes, each a cycle of request paths."""
    end = LAST_DAY
    days = [end - dt.timedelta(k) for k in range(30)]
    span = f"start_date={end - dt.timedelta(29)}&end_date={end}"
    return {
        "30-day range top-100": [f"/scores/alerts?{span}&limit=100"],
        "30-day range, one typology": [f"/scores/alerts?{span}&typology=FAN_IN&limit=100"],
        "address, 30 days": [f"/addresses/{a}/alerts?{span}" for a in addresses],
        "address, whole history": [f"/addresses/{a}/alerts" for a in addresses],
        "one day": [f"/scores/alerts/{d}" for d in days],
    }


async def _client(base: str, paths: list[str], stop: float, out: list, errors: list) -> None:
    async with httpx.AsyncClient(base_url=base, timeout=30) as client:
        i = 0
        while time.monotonic() < stop:
            path = paths[i % len(paths)]
            i += 1
            began = time.perf_counter()
            try:
                response = await client.get(path)
                if response.status_code != 200:
                    errors.append(f"{path}: {response.status_code}")
            except httpx.HTTPError as exc:
                errors.append(f"{path}: {exc!r}")
            out.append((time.perf_counter() - began) * 1000)


def load(root: Path, port: int, addresses: list[str], args: argparse.Namespace) -> dict:
    """Concurrent mixed clients while a day is re-published in a loop."""
    mixed = [
        path
        for route, cycle in routes(addresses[:50]).items()
        if route != "address, whole history"
        for path in cycle[:10]
    ]
    storage, day = LocalStorage(root), LAST_DAY - dt.timedelta(3)
    key = layout.output_day(NETWORK, day)
    files = {n: storage.read_bytes(f"{key}/{n}") for n in storage.list_dir(key)}
    storage.publish_dir(key, files)  # the day as the pipeline publishes it (versioned)
    republished, stop_publishing = 0, threading.Event()

    def republish() -> None:
        nonlocal republished
        while not stop_publishing.wait(args.republish_every):
            storage.publish_dir(key, files)
            republished += 1

    publisher = threading.Thread(target=republish)
    publisher.start()
    timings: list[float] = []
    errors: list[str] = []
    stop = time.monotonic() + args.seconds
    base = f"http://127.0.0.1:{port}"

    async def run() -> None:
        rng = np.random.default_rng(0)
        await asyncio.gather(
            *(
                _client(base, list(rng.permutation(mixed)), stop, timings, errors)
                for _ in range(args.clients)
            )
        )

    asyncio.run(run())
    stop_publishing.set()
    publisher.join()
    q = statistics.quantiles(timings, n=100, method="inclusive")
    return {
        "clients": args.clients,
        "seconds": args.seconds,
        "requests": len(timings),
        "requests_per_s": round(len(timings) / args.seconds, 1),
        "errors": len(errors),
        "first_errors": errors[:5],
        "republished": republished,
        "p50_ms": round(q[49], 1),
        "p95_ms": round(q[94], 1),
        "p99_ms": round(q[98], 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--alerts", type=int, default=20_000, help="alerts per day")
    parser.add_argument("--requests", type=int, default=200, help="measured requests a route")
    parser.add_argument("--option-a-requests", type=int, default=5)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--republish-every", type=float, default=3.0)
    parser.add_argument("--workdir", help="keep the generated data here (default: temp dir)")
    parser.add_argument(
        "--parts", default="latency,console,load", help="which parts to run, comma-separated"
    )
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        year, month = Path(tmp) / "days_365", Path(tmp) / "days_30"
        began = time.perf_counter()
        generate(year, 365, args.alerts)
        generate_labels(year, 365, args.alerts)
        link_newest(year, month, 30)
        link_labels(year, month, 30)
        results: dict = {
            "alerts_per_day": args.alerts,
            "generate_s": round(time.perf_counter() - began),
        }
        addresses = frequent_addresses(year, 200)
        results["latency"] = []
        if "latency" in args.parts:
            for days, root in ((365, year), (30, month)):
                with serving("duckdb", root) as (server, port):
                    for route, paths in routes(addresses).items():
                        stats = latency(server, port, paths, args.requests)
                        results["latency"].append({"days": days, "route": route, **stats})
                        print(json.dumps(results["latency"][-1]), flush=True)
            with serving("option_a", year) as (server, port):
                paths = routes(addresses)["30-day range top-100"]
                stats = latency(server, port, paths, args.option_a_requests, warmup=1)
                route = "30-day range top-100 (Option A: pandas, every file)"
                results["latency"].append({"days": 365, "route": route, **stats})
                print(json.dumps(results["latency"][-1]), flush=True)
        if "console" in args.parts:
            results["console"] = console_filters(year)
            print(json.dumps(results["console"]), flush=True)
        if "load" in args.parts:
            with serving("duckdb", year) as (_, port):
                results["load"] = load(year, port, addresses, args)
    if "latency" in args.parts and "load" in args.parts:
        results["targets"] = targets(results)
    print(json.dumps(results, indent=2))


def targets(results: dict) -> dict:
    """Whether the measured figures meet the issue's targets."""
    by = {(r["days"], r["route"]): r["p95_ms"] for r in results["latency"]}
    ranged = ("30-day range top-100", "30-day range, one typology", "address, 30 days")
    growth = {r: round(by[(365, r)] / by[(30, r)], 2) for r in ranged}
    return {
        "range_p95_under_100ms_at_365": all(by[(365, r)] < RANGE_P95_MS for r in ranged),
        "growth_30_to_365": growth,
        "growth_within_1.5x": all(g <= GROWTH for g in growth.values()),
        "one_day_p95_under_10ms": by[(365, "one day")] < DAY_P95_MS,
        "load_zero_errors": results["load"]["errors"] == 0,
    }


if __name__ == "__main__":
    main()
