"""``score``: score, rank, explain, validate and publish a date range (a backfill)."""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import time

from aml_pipeline.cli.arguments import partition_days, settings_for
from aml_pipeline.defs import runs
from aml_pipeline.defs.run_results import RunOutcome, failure_text


def score_range(network: str, start: dt.date, end: dt.date, names: tuple[str, ...]) -> int:
    """Run the daily assets ``names`` of ``network`` over the range in runs of at most
    MAX_DAYS_PER_RUN days, printing progress."""
    settings = settings_for(network)
    days = partition_days(settings, start, end)
    done = 0
    began = time.perf_counter()

    def progress(first: dt.date, last: dt.date, result: RunOutcome) -> None:
        nonlocal done
        done += (last - first).days + 1
        print(
            f"[{done}/{len(days)} days] {network} {first}..{last} scored and published "
            f"(run {result.run_id[:8]}, {time.perf_counter() - began:.0f} s)",
            flush=True,
        )

    failed = runs.materialize(settings, network, days, names, on_chunk=progress)
    if failed is not None:
        print(f"scoring failed (run {failed.run_id}):\n{failure_text(failed)}", file=sys.stderr)
        return 1
    return 0


def score(args: argparse.Namespace) -> int:
    """Score and publish a date range (a backfill): ingest, features, score, publish."""
    from aml_pipeline.defs.network import (
        DAILY_ASSETS,
        EVALUATION_ASSETS,
        FEATURE_ASSETS,
        SCORING_ASSETS,
    )

    names = (
        DAILY_ASSETS
        if not args.no_ingest
        else (*FEATURE_ASSETS, *SCORING_ASSETS, *EVALUATION_ASSETS)
    )
    return score_range(args.network, args.start_date, args.end_date, names)
