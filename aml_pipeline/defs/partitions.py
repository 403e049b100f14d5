"""The one daily partitioning every partitioned asset shares, and how many of its days a
run takes at most."""

from __future__ import annotations

import datetime as dt

import dagster as dg

#: Days one run materializes at most: few runs for a backfill, bounded memory per run.
MAX_DAYS_PER_RUN = 14


def daily_partitions(start_date: str) -> dg.DailyPartitionsDefinition:
    """UTC days from ``start_date``; the last partition is the last day that is over."""
    return dg.DailyPartitionsDefinition(start_date=start_date, timezone="UTC")


def last_partition() -> dt.date:
    """The last daily partition: the last UTC day that is over."""
    return dt.datetime.now(dt.UTC).date() - dt.timedelta(1)
