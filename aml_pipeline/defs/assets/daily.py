"""What every daily-partitioned table asset shares: the backfill policy, the network's pool,
the decorator arguments, and the days of a run."""

import datetime as dt
import warnings
from typing import Any

import dagster as dg
import pandas as pd

from aml_pipeline.defs.partitions import MAX_DAYS_PER_RUN

# Backfills run up to MAX_DAYS_PER_RUN days per run: a month is a few runs, not thirty
# process start-ups, and memory stays bounded. The parameter is beta in Dagster 1.13.
warnings.filterwarnings("ignore", message="Parameter `backfill_policy`", category=dg.BetaWarning)
BACKFILL = dg.BackfillPolicy.multi_run(max_partitions_per_run=MAX_DAYS_PER_RUN)


def daily_pool(network: str) -> str:
    """The concurrency pool of a network's landing and feature assets. With the instance's
    run-granularity pool limit of 1, runs that write or read the look-back (one per backfill
    chunk, the daily run) go one at a time, so a chunk never reads days still in flight."""
    return f"{network}_daily_tables"


def daily_table_args(
    network: str, partitions: dg.PartitionsDefinition, code_version: str
) -> dict[str, Any]:
    """Decorator arguments every daily table asset of a network shares."""
    return {
        "group_name": network,
        "partitions_def": partitions,
        "backfill_policy": BACKFILL,
        "io_manager_key": "warehouse_io_manager",
        "kinds": {"duckdb", "parquet", "pandas"},
        "code_version": code_version,
        "pool": daily_pool(network),
    }


def partition_days(context: dg.AssetExecutionContext) -> list[dt.date]:
    """The days of the run's partitions, in order."""
    return [dt.date.fromisoformat(k) for k in context.partition_keys]


def day_rows(frame: pd.DataFrame, day: dt.date) -> pd.DataFrame:
    """The rows of one processing day of a multi-day input (an empty input as it is)."""
    if frame.empty:
        return frame
    return frame[frame["processing_date"] == day].reset_index(drop=True)
