"""The one daily partitioning every partitioned asset shares."""

from __future__ import annotations

import datetime as dt

import dagster as dg


def daily_partitions(start_date: str) -> dg.DailyPartitionsDefinition:
    """UTC days from ``start_date``; the last partition is the last day that is over."""
    return dg.DailyPartitionsDefinition(start_date=start_date, timezone="UTC")


def date_range(start: dt.date, end: dt.date) -> list[dt.date]:
    """Every day from ``start`` to ``end``, both included (empty when end < start)."""
    return [start + dt.timedelta(i) for i in range((end - start).days + 1)]
