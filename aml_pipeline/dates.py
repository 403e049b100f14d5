"""Date ranges, shared by the CLI, the assets and the validators (no Dagster here)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence


def date_range(start: dt.date, end: dt.date) -> list[dt.date]:
    """Every day from ``start`` to ``end``, both included."""
    if end < start:
        raise ValueError(f"end date {end} is before start date {start}")
    return [start + dt.timedelta(i) for i in range((end - start).days + 1)]


def configured_range(start: str, end: str, candidates: Sequence[dt.date]) -> list[dt.date] | None:
    """The days ``start``..``end`` (ISO dates), an empty end taken from the first or last of
    ``candidates`` (ascending); None when that leaves no range. A malformed date raises
    ``ValueError``."""
    first = dt.date.fromisoformat(start) if start else (candidates[0] if candidates else None)
    last = dt.date.fromisoformat(end) if end else (candidates[-1] if candidates else None)
    if first is None or last is None or first > last:
        return None
    return date_range(first, last)


def split_evenly(days: Sequence[dt.date], parts: int) -> list[list[dt.date]]:
    """``days`` cut into at most ``parts`` consecutive slices of near-equal length."""
    parts = max(1, min(parts, len(days)))
    size, extra = divmod(len(days), parts)
    bounds = [i * size + min(i, extra) for i in range(parts + 1)]
    return [list(days[bounds[i] : bounds[i + 1]]) for i in range(parts)]
