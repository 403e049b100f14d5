"""Argument types and the checks every command makes of its arguments before any run."""

from __future__ import annotations

import argparse
import datetime as dt
from pathlib import Path

from aml_pipeline.dates import date_range
from aml_pipeline.defs.partitions import last_partition
from aml_pipeline.settings import Settings


def iso_date(text: str) -> dt.date:
    """An ``--*-date`` argument."""
    try:
        return dt.date.fromisoformat(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not an ISO date (YYYY-MM-DD): {text!r}") from exc


def positive(text: str) -> int:
    """A whole-number argument of at least 1."""
    try:
        value = int(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from exc
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def day_span(start: dt.date, end: dt.date) -> list[dt.date]:
    """The days from ``start`` to ``end``; exits if ``end`` is before ``start``."""
    if end < start:
        raise SystemExit(f"--end-date {end} is before --start-date {start}")
    return date_range(start, end)


def source_config(source: str | None) -> dict[str, str]:
    """The pipeline settings a ``--source`` argument stands for."""
    if source is None:
        return {}
    if source == "simulated":
        return {"batch_source": "simulated"}
    if Path(source).is_dir():
        return {"batch_source": "local", "source_dir": str(Path(source).resolve())}
    raise SystemExit(f"--source must be 'simulated' or an existing directory, got {source!r}")


def settings_for(network: str) -> Settings:
    """The environment's settings; exits if ``network`` is not one of its networks."""
    settings = Settings.from_env()
    if network not in settings.networks:
        raise SystemExit(
            f"network {network!r} is not configured (AML_NETWORKS={','.join(settings.networks)})"
        )
    return settings


def partition_days(settings: Settings, start: dt.date, end: dt.date) -> list[dt.date]:
    """The days from ``start`` to ``end``; exits, naming the setting, unless every one is a
    daily partition (from AML_PARTITIONS_START to the last day that is over, UTC)."""
    days = day_span(start, end)
    first, last = settings.partitions_start, last_partition()
    if start < first:
        raise SystemExit(
            f"{start} is before the first daily partition {first}: set "
            f"AML_PARTITIONS_START={start} (or earlier) and run the command again"
        )
    if end > last:
        raise SystemExit(
            f"{end} has no daily partition yet: the last one is {last} (a day becomes a "
            "partition once it is over, UTC)"
        )
    return days
