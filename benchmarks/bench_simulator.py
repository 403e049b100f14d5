"""Simulator and batch-builder benchmarks (``make bench``).

Each scenario runs in a fresh process so that its peak memory (max RSS) is its own:

* ``demo`` / ``large``: one simulated day built from its 7-day window and written as a
  batch (Parquet + META.json) - cold (the window's 7 days simulated first) and warm
  (the next day, as a daily run sees it);
* ``amlsim``: ``import-transfers`` of the AMLSim 10K log (720 days), if it is present.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DAY = dt.date(2025, 3, 4)  # a Tuesday: weekdays carry the full transfer rate
AMLSIM = Path(__file__).resolve().parents[1].parent / "shared" / "extdata" / "amlsim_10k"


def _build_and_write(profile: str) -> dict:
    from aml_pipeline.simulator.profiles import PROFILES
    from aml_pipeline.sources.simulated import SimulatedSource
    from aml_pipeline.storage.objects import LocalStorage

    source = SimulatedSource(PROFILES[profile], dt.date(2025, 1, 1))
    out = LocalStorage(tempfile.mkdtemp())
    timings, sizes = [], {}
    for day in (DAY, DAY + dt.timedelta(1)):
        start = time.perf_counter()
        batch = source.fetch("ethereum", day, 7)
        out.publish_dir(f"ethereum/{day}", batch.files)
        timings.append(time.perf_counter() - start)
        sizes = {n: len(b) for n, b in batch.files.items()}
    tables = source.build("ethereum", DAY + dt.timedelta(1), 7).tables
    transfers = source.simulator("ethereum").transfers(DAY + dt.timedelta(1))
    active = set(transfers["from_address"]) | set(transfers["to_address"])
    return {
        "cold_seconds": round(timings[0], 2),
        "warm_seconds": round(timings[1], 2),
        "transfers_per_day": len(transfers),
        "active_addresses_per_day": len(active),
        "addresses_in_window": len(tables["features"]),
        "rows": {name: len(df) for name, df in tables.items()},
        "bytes": sum(sizes.values()),
    }


def _amlsim() -> dict:
    from aml_pipeline.batch_builder.transfers_import import (
        import_transfers,
        read_labels,
        read_transfers,
    )

    start = time.perf_counter()
    transfers, ignored = read_transfers(AMLSIM / "transactions.csv.gz")
    labels = read_labels(AMLSIM / "sar_accounts.csv")
    result = import_transfers(
        transfers,
        labels,
        "amlsim",
        dt.date(2017, 1, 1),
        dt.date(2018, 12, 21),
        Path(tempfile.mkdtemp()),
    )
    return {
        "seconds": round(time.perf_counter() - start, 1),
        "days": result.days,
        "transfers": len(transfers),
        "alerts": result.alerts,
        "sar_alerts": result.positives,
        "ignored_columns": ignored,
    }


def run_scenario(name: str) -> dict:
    result = _amlsim() if name == "amlsim" else _build_and_write(name)
    result["peak_rss_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--scenario", choices=["demo", "large", "amlsim"])
    args = parser.parse_args()
    if args.scenario:
        print(json.dumps(run_scenario(args.scenario)))
        return
    scenarios = ["demo", "large"] + (["amlsim"] if AMLSIM.is_dir() else [])
    for name in scenarios:
        proc = subprocess.run(
            [sys.executable, "-m", "benchmarks.bench_simulator", "--scenario", name],
            capture_output=True,
            text=True,
            check=True,
        )
        print(f"{name:7} {proc.stdout.strip()}", flush=True)


if __name__ == "__main__":
    main()
