"""Replay days the way a scheduled deployment runs them, through the CLI of the
``aml_pipeline`` that is importable: run this file as a script with
``PYTHONPATH=<checkout>`` to replay another version of the code on the same days.

Steps: land the training range and train with the labels known at the cut; then, for
every later day, one ``score`` run of that day alone with ``AML_LABELS_AS_OF`` set to the
day (the label cut-off advances with the day, as it does for the daily schedule). Prints
one JSON line with the time of each step and of every replayed day.

    python benchmarks/live_replay.py --root /tmp/r --network ethereum \\
        --start 2025-03-01 --cut 2025-04-09 --end 2025-04-24
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import time
from pathlib import Path


def _days(first: dt.date, last: dt.date) -> list[dt.date]:
    return [first + dt.timedelta(i) for i in range((last - first).days + 1)]


def _cli(*args: str, labels_as_of: dt.date) -> float:
    """Run one CLI command in this process; its wall time in seconds."""
    from aml_pipeline import cli

    os.environ["AML_LABELS_AS_OF"] = labels_as_of.isoformat()
    began = time.perf_counter()
    if cli.main(list(args)) != 0:
        raise SystemExit(f"aml-pipeline {' '.join(args)} failed")
    return time.perf_counter() - began


def replay(args: argparse.Namespace) -> dict:
    """Land and train up to ``args.cut``, then score each later day on its own."""
    root = Path(args.root)
    (root / "dagster_home").mkdir(parents=True, exist_ok=True)
    (root / "dagster_home" / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    os.environ.update(
        DAGSTER_HOME=str(root / "dagster_home"),
        AML_DATA_ROOT=str(root / "data"),
        AML_NETWORKS=args.network,
        AML_PARTITIONS_START=args.partitions_start,
        AML_SIM_PROFILE=args.sim_profile,
    )
    network, start, cut, end = args.network, args.start, args.cut, args.end
    report: dict = {"network": network, "steps_s": {}}
    if args.transfers:
        source = root / "sot"
        imported = ["import-transfers", "--transfers", args.transfers, "--network", network]
        if args.labels:
            imported += ["--labels", args.labels]
        report["steps_s"]["import"] = _cli(
            *imported,
            *("--start-date", str(start), "--end-date", str(end), "--output-dir", str(source)),
            labels_as_of=cut,
        )
        os.environ.update(AML_BATCH_SOURCE="local", AML_SOURCE_DIR=str(source))
    train_range = ("--network", network, "--start-date", str(start), "--end-date", str(cut))
    report["steps_s"]["download"] = _cli("download", *train_range, labels_as_of=cut)
    report["steps_s"]["train"] = _cli("train", *train_range, "--as-of", str(cut), labels_as_of=cut)
    report["day_s"] = {}
    for day in _days(cut + dt.timedelta(1), end):
        one_day = ("--network", network, "--start-date", str(day), "--end-date", str(day))
        report["day_s"][str(day)] = round(_cli("score", *one_day, labels_as_of=day), 3)
    report["steps_s"] = {k: round(v, 2) for k, v in report["steps_s"].items()}
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--root", required=True, help="data, models and Dagster home go here")
    parser.add_argument("--network", required=True)
    parser.add_argument("--start", required=True, type=dt.date.fromisoformat)
    parser.add_argument("--cut", required=True, type=dt.date.fromisoformat)
    parser.add_argument("--end", required=True, type=dt.date.fromisoformat)
    parser.add_argument("--sim-profile", default="demo")
    parser.add_argument("--partitions-start", required=True)
    parser.add_argument("--transfers", default=None, help="import these transfers (local source)")
    parser.add_argument("--labels", default=None, help="their illicit-address labels")
    print(json.dumps(replay(parser.parse_args())), flush=True)


if __name__ == "__main__":
    main()
