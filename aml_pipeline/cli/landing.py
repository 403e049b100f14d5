"""``download`` (land verified daily batches) and ``import-transfers`` (build batches from
a transfers file)."""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from pathlib import Path

from aml_pipeline.cli.arguments import day_span, partition_days, settings_for, source_config
from aml_pipeline.dates import date_range
from aml_pipeline.defs import runs
from aml_pipeline.defs.run_results import RunOutcome, failure_text, landed_counts, run_span
from aml_pipeline.defs.tags import STAGE_TAG
from aml_pipeline.settings import Settings, parse_networks
from aml_pipeline.sources.record import SourceMismatch, check_requested


def ingest(network: str, days: list[dt.date], overrides: dict[str, str]) -> int:
    """Land the network's batches of ``days`` and their label arrivals (``runs.land``),
    printing a line per landed day; 1 after printing why a run failed."""
    done = 0

    def progress(first: dt.date, last: dt.date, result: RunOutcome) -> None:
        nonlocal done
        counts = landed_counts(result, network)
        for day in date_range(first, last):
            done += 1
            print(
                f"[{done}/{len(days)}] {network} {day}: landed "
                f"({counts.get(day.isoformat(), 'no counts')}; run {result.run_id[:8]})",
                flush=True,
            )

    try:
        runs.land(settings_for(network), network, days, overrides, progress)
    except runs.RunFailed as failed:
        run = failed.run
        where = (
            f"[{done + 1}/{len(days)}] {network} {run_span(run)}: FAILED"
            if failed.purpose == "landing"
            else f"label events of {run_span(run)} FAILED"
        )
        print(f"{where} (run {run.run_id})\n{failure_text(run)}", file=sys.stderr)
        return 1
    return 0


def download(args: argparse.Namespace) -> int:
    """Land verified batches for ``--network`` over a date range (the seed's download).

    The network's first landing records its source; a later ``--source`` that names
    another one is refused before any run."""
    settings = settings_for(args.network)
    days = partition_days(settings, args.start_date, args.end_date)
    overrides = source_config(args.source)
    if args.output_dir:
        overrides["input_dir"] = str(Path(args.output_dir).resolve())
    pipeline = runs.pipeline_config(settings, args.network, overrides)
    if args.source is not None:
        try:
            check_requested(
                pipeline.input_storage(),
                args.network,
                pipeline.configured_source(args.network),
                pipeline.input_storage().url(""),
            )
        except SourceMismatch as exc:
            raise SystemExit(str(exc)) from None
    code = ingest(args.network, days, overrides)
    problem = pipeline.source(args.network).labels_problem(args.network)
    if problem:
        print(f"warning: {problem}", file=sys.stderr)
    return code


def import_transfers(args: argparse.Namespace) -> int:
    """Build batches from a transfers file through the ``import_transfers_job``."""
    try:
        parse_networks(args.network)  # one safe name: it becomes a directory
    except ValueError as exc:
        raise SystemExit(str(exc)) from exc
    config = {
        "transfers": str(Path(args.transfers).resolve()),
        "labels": str(Path(args.labels).resolve()) if args.labels else "",
        "network": args.network,
        "start_date": args.start_date.isoformat(),
        "end_date": day_span(args.start_date, args.end_date)[-1].isoformat(),
        "output_dir": str(Path(args.output_dir).resolve()),
        "window_days": args.window_days,
        "label_delay_days": args.label_delay_days,
    }
    result = runs.run_job(
        Settings.from_env(),
        "import_transfers_job",
        {
            "ops": {"import_transfers_op": {"config": config}},
            "loggers": {"console": {"config": {"log_level": "INFO"}}},
        },
        tags={"network": args.network, STAGE_TAG: "import"},
    )
    if not result.success:
        print(f"import failed (run {result.run_id}):\n{failure_text(result)}", file=sys.stderr)
        return 1
    summary = result.output_for_node("import_transfers_op")
    print(
        f"imported {summary['days']} days: {summary['alerts']} alerts, "
        f"{summary['positives']} SAR-labelled, into {config['output_dir']}\n"
        f"land them with: aml-pipeline download --network {args.network} "
        f"--start-date {config['start_date']} --end-date {config['end_date']} "
        f"--source {config['output_dir']}"
    )
    return 0
