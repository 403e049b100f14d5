"""Run workers: one Celery run worker against two, same machine, same run (``make bench-workers``).

Starts the production shape of ``make deploy-check`` on 127.0.0.1 (Postgres, SeaweedFS with
the record, Redis, the gRPC code server, the daemon, the webserver; deploy/dagster.yaml),
lands and trains the networks on 8 days through the CLI, then for one worker and then two
(``--workers``): an asset backfill of each network's daily assets over 60 days (``--days``),
launched at once through the GraphQL API as the UI's dialog does. Per configuration: the
wall time from launch to every backfill done, the runs and their summed execution time, the
wait of a run between its creation and its start, runs and days per hour, and the peak
memory of a run (the resident set of its ``dagster api execute_run`` process and its
children, sampled every 0.5 s from /proc). Two networks, small simulator profile (about 550
alerts a day per network) unless ``--networks`` and ``--profile`` say otherwise.

Runs of one network never overlap (its pool of limit 1), so a second worker can only take
the other network's runs: the speed-up it buys is bounded by the number of networks, and on
2 cores by the cores.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from aml_pipeline.dates import date_range

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from deploy.loopback_check import (  # noqa: E402
    NETWORKS,
    TRAIN,
    Deployment,
    cli,
    dagster_services,
    deployment,
    launch_backfill,
    succeeded,
    wait_backfill,
)

PAGE = os.sysconf("SC_PAGE_SIZE")


def _processes() -> dict[int, tuple[int, int, bytes]]:
    """pid -> (parent pid, resident bytes, command line) of every process."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        found[int(entry.name)] = (int(fields[1]), int(fields[21]) * PAGE, cmdline)
    return found


@contextmanager
def run_memory() -> Iterator[dict[int, int]]:
    """Peak resident bytes of each run process (``api execute_run``) with its children."""
    peaks: dict[int, int] = {}
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(0.5):
            processes = _processes()
            children: dict[int, list[int]] = {}
            for pid, (parent, _, _) in processes.items():
                children.setdefault(parent, []).append(pid)
            for pid, (_, _, cmdline) in processes.items():
                if b"api\x00execute_run" not in cmdline:
                    continue
                tree, total = [pid], 0
                while tree:
                    member = tree.pop()
                    total += processes.get(member, (0, 0, b""))[1]
                    tree.extend(children.get(member, []))
                peaks[pid] = max(peaks.get(pid, 0), total)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        yield peaks
    finally:
        stop.set()
        sampler.join()


def measure(
    deployed: Deployment, networks: tuple[str, ...], days: list[dt.date], workers: tuple[str, ...],
    timeout: float,
) -> dict:  # fmt: skip
    """Each network's backfill of ``days`` (launched at once) through ``workers``."""
    with dagster_services(deployed, workers) as (url, _), run_memory() as peaks:
        launched = time.monotonic()
        ids = [launch_backfill(url, (network,), days) for network in networks]
        backfills = [wait_backfill(url, backfill, timeout) for backfill in ids]
        wall = time.monotonic() - launched
    if not all(succeeded(backfill) for backfill in backfills):
        raise SystemExit(f"a backfill failed: {[b['status'] for b in backfills]}")
    runs = [run for backfill in backfills for run in backfill["runs"]]
    durations = [run["endTime"] - run["startTime"] for run in runs]
    waits = [run["startTime"] - run["creationTime"] for run in runs]
    return {
        "workers": len(workers),
        "wall_s": round(wall, 1),
        "runs": len(runs),
        "run_time_sum_s": round(sum(durations), 1),
        "run_median_s": round(statistics.median(durations), 1),
        "wait_median_s": round(statistics.median(waits), 1),
        "runs_per_hour": round(len(runs) * 3600 / wall, 1),
        "network_days_per_hour": round(len(networks) * len(days) * 3600 / wall),
        "run_peak_mb_max": round(max(peaks.values(), default=0) / 2**20),
        "run_peak_mb_median": round(statistics.median(peaks.values()) / 2**20) if peaks else 0,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="small", help="simulator profile")
    parser.add_argument("--days", type=int, default=60, help="days of each backfill")
    parser.add_argument("--networks", type=int, default=2, choices=(1, 2))
    parser.add_argument("--workers", default="1,2", help="worker counts to compare")
    parser.add_argument("--timeout", type=float, default=3600, help="for each backfill, s")
    args = parser.parse_args()
    networks = NETWORKS[: args.networks]
    days = date_range(dt.date(2025, 3, 9), dt.date(2025, 3, 8) + dt.timedelta(args.days))
    counts = [int(count) for count in args.workers.split(",")]
    work = Path(tempfile.mkdtemp(prefix="aml-bench-workers-"))
    os.chmod(work, 0o755)
    results = []
    # every backfilled day's labels known (a day's labels are fetched once it is over)
    labels_as_of = days[-1] + dt.timedelta(1)
    with deployment(work, networks, args.profile, labels_as_of) as deployed:
        first, last = (d.isoformat() for d in TRAIN)
        for network in networks:
            cli(deployed.env, "download", "--network", network, "--start-date", first,
                "--end-date", last)  # fmt: skip
            cli(deployed.env, "train", "--network", network, "--start-date", first,
                "--end-date", last)  # fmt: skip
        for count in counts:
            workers = tuple(f"worker-{n}" for n in range(count))
            results.append(measure(deployed, networks, days, workers, args.timeout))
            print(json.dumps(results[-1]), flush=True)
    print(f"\n{len(networks)} network(s) x {len(days)} days, {args.profile} profile, "
          f"{os.cpu_count()} cores")  # fmt: skip
    labels = [f"{result['workers']} worker(s)" for result in results]
    print(f"{'':24}" + "".join(f"{label:>13}" for label in labels))
    for key in results[0]:
        if key != "workers":
            print(f"{key:24}" + "".join(f"{r[key]:>13}" for r in results))
    if len(results) > 1:
        print(f"speed-up: {results[0]['wall_s'] / results[-1]['wall_s']:.2f}x")


if __name__ == "__main__":
    main()
