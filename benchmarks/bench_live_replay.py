"""The daily path's cost: a live replay of 60 demo-profile days (``make bench``).

Lands and trains on 40 days, then runs one daily ``score`` run per day for 60 days with
the label cut-off advancing with the day (``benchmarks/live_replay.py``). Reports the wall
time per day and, from the Dagster event log of those runs, the median time of each
step — so the label steps (``label_events`` now; ``ground_truth`` before the
point-in-time change) and the look-back reader ``alert_history`` show what labels by
arrival cost. With ``--before CHECKOUT`` the same replay runs on that version of the code
first (one after the other, not in parallel, so the timings compare).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import subprocess
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

import dagster as dg
import numpy as np

HERE = Path(__file__).resolve().parent
START, CUT = dt.date(2025, 3, 1), dt.date(2025, 4, 9)


def replay(root: Path, checkout: Path, days: int) -> dict:
    """Run the live replay of ``days`` days with the code of ``checkout``."""
    end = CUT + dt.timedelta(days)
    args = [
        *("--root", str(root), "--network", "ethereum", "--partitions-start", "2025-01-01"),
        *("--start", str(START), "--cut", str(CUT), "--end", str(end)),
    ]
    with (root.parent / f"{root.name}.log").open("w") as log:
        out = subprocess.run(
            [sys.executable, str(HERE / "live_replay.py"), *args],
            env={**os.environ, "PYTHONPATH": str(checkout)},
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
            check=True,
        ).stdout
    return json.loads(out.strip().splitlines()[-1])


def step_medians(home: Path, first_day: str) -> dict[str, float]:
    """Median duration in seconds of each step over the replayed days' runs."""
    durations: dict[str, list[float]] = defaultdict(list)
    os.environ["DAGSTER_HOME"] = str(home)
    with dg.DagsterInstance.get() as instance:
        for record in instance.get_run_records():
            tags = record.dagster_run.tags
            day = tags.get("dagster/partition") or tags.get("dagster/asset_partition_range_start")
            if record.dagster_run.job_name != "daily_job" or not day or day < first_day:
                continue
            for step in instance.get_run_step_stats(record.dagster_run.run_id):
                if step.end_time and step.start_time:
                    name = step.step_key.split("__", 1)[-1]
                    durations[name].append(step.end_time - step.start_time)
    return {k: round(float(np.median(v)), 3) for k, v in sorted(durations.items())}


def summary(report: dict, home: Path) -> dict:
    per_day = np.array(list(report["day_s"].values()))
    return {
        **report["steps_s"],
        "days": len(per_day),
        "day_s_median": round(float(np.median(per_day)), 2),
        "day_s_p90": round(float(np.percentile(per_day, 90)), 2),
        "day_s_total": round(float(per_day.sum()), 1),
        "step_s_median": step_medians(home, str(CUT + dt.timedelta(1))),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--days", type=int, default=60)
    parser.add_argument("--before", default=None, help="also replay this checkout's code")
    parser.add_argument("--workdir", default=None, help="keep the replays here")
    args = parser.parse_args()
    with contextlib.ExitStack() as stack:
        work = Path(args.workdir or stack.enter_context(tempfile.TemporaryDirectory()))
        work.mkdir(parents=True, exist_ok=True)
        versions = {"before": Path(args.before)} if args.before else {}
        versions["after"] = HERE.parent
        for name, checkout in versions.items():
            root = work / name
            result = summary(replay(root, checkout, args.days), root / "dagster_home")
            print(json.dumps({"code": name, **result}), flush=True)


if __name__ == "__main__":
    main()
