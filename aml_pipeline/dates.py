"""Date ranges, shared by the CLI, the assets and the validators (no Dagster here)."""

from __future__ import annotations

import datetime as dt


def date_range(start: dt.date, end: dt.date) -> list[dt.date]:
    """Every day from ``start`` to ``end``, both included."""
    if end < start:
        raise ValueError(f"end date {end} is before start date {start}")
    return [start + dt.timedelta(i) for i in range((end - start).days + 1)]
