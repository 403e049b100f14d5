"""Date ranges, shared by the CLI, the assets and the validators (no Dagster here)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence


def date_range(start: dt.date, end: dt.date) -> list[dt.date]:
    """Every day from ``start`` to ``end``, both included."""
    if end < start:
        raise ValueError(f"end date {end} is before start date {start}")
    return [start + dt.timedelta(i) for i in range((end - start).days + 1)]


def split_evenly(days: Sequence[dt.date], parts: int) -> list[list[dt.date]]:
    """``days`` cut into at most ``parts`` consecutive slices of near-equal length."""
    parts = max(1, min(parts, len(days)))
    size, extra = divmod(len(days), parts)
    bounds = [i * size + min(i, extra) for i in range(parts + 1)]
    return [list(days[bounds[i] : bounds[i + 1]]) for i in range(parts)]
