"""Running partitioned asset jobs over date ranges in bounded chunks."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator, Sequence

import dagster as dg

#: Days one run materializes at most: few runs for a backfill, bounded memory per run.
MAX_DAYS_PER_RUN = 14
RANGE_START = "dagster/asset_partition_range_start"
RANGE_END = "dagster/asset_partition_range_end"


def day_chunks(
    start: dt.date, end: dt.date, size: int = MAX_DAYS_PER_RUN
) -> Iterator[tuple[dt.date, dt.date]]:
    """``[start, end]`` cut into consecutive ranges of at most ``size`` days."""
    while start <= end:
        last = min(end, start + dt.timedelta(size - 1))
        yield start, last
        start = last + dt.timedelta(1)


def run_range(
    job: dg.JobDefinition,
    instance: dg.DagsterInstance,
    start: dt.date,
    end: dt.date,
    run_config: dict | None = None,
    asset_selection: Sequence[dg.AssetKey] | None = None,
    on_chunk: Callable[[dt.date, dt.date, dg.ExecuteInProcessResult], None] | None = None,
) -> dg.ExecuteInProcessResult | None:
    """Materialize ``job`` over the range, one run per chunk; the first failed run's result,
    or None when every chunk succeeded. ``on_chunk`` sees each successful chunk's result
    (progress); results are dropped at once: an in-process result holds its outputs in
    memory."""
    for first, last in day_chunks(start, end):
        result = job.execute_in_process(
            instance=instance,
            run_config=run_config,
            asset_selection=asset_selection,
            tags={RANGE_START: first.isoformat(), RANGE_END: last.isoformat()},
            raise_on_error=False,
        )
        if not result.success:
            return result
        if on_chunk is not None:
            on_chunk(first, last, result)
    return None
