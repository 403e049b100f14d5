"""The one daily partitioning every partitioned asset shares."""

from __future__ import annotations

import dagster as dg


def daily_partitions(start_date: str) -> dg.DailyPartitionsDefinition:
    """UTC days from ``start_date``; the last partition is the last day that is over."""
    return dg.DailyPartitionsDefinition(start_date=start_date, timezone="UTC")
