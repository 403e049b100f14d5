"""Assets and checks' plumbing invoked alone, with Dagster's own test contexts
(``build_asset_context``, ``build_asset_check_context``): no job, no instance, no IO
manager. An asset that records per-day metadata (``add_asset_metadata`` with a partition)
cannot run to its end this way in Dagster 1.13, and a check that yields one result per day
cannot be invoked directly at all, so what is tested here is what an asset decides before
it writes (its refusals) and which days a check judges."""

from __future__ import annotations

import datetime as dt
from types import SimpleNamespace

import dagster as dg
import pytest

from aml_pipeline.defs.assets.ingestion import build_ingestion_assets
from aml_pipeline.defs.checks import CheckDays, check_days
from aml_pipeline.defs.partitions import daily_partitions
from aml_pipeline.defs.resources import PipelineConfig
from aml_pipeline_tests.conftest import NETWORK, START, settings_for


def _asset(name: str) -> dg.AssetsDefinition:
    assets = build_ingestion_assets(NETWORK, daily_partitions(START.isoformat()))
    return next(a for a in assets if a.key == dg.AssetKey([NETWORK, name]))


def _pipeline(tmp_path, labels_as_of: str) -> PipelineConfig:
    return PipelineConfig.from_settings(settings_for(tmp_path, labels_as_of=labels_as_of))


def test_label_events_of_a_day_not_over_as_of_the_cut_off_are_refused(tmp_path):
    context = dg.build_asset_context(
        partition_key_range=dg.PartitionKeyRange("2025-03-01", "2025-03-02")
    )
    with pytest.raises(dg.Failure, match="the labels of 2025-03-02 are not known as of 2025-03-01"):
        _asset("label_events")(context, pipeline=_pipeline(tmp_path, "2025-03-01"))


def test_a_check_alone_judges_the_latest_stored_day_and_in_a_run_the_runs_days():
    """``check_days``: a check executed on its own (no partition, as
    ``build_asset_check_context`` builds it) judges the latest stored day; in a run of one
    partition, that day; in a ranged run, every day of the range."""
    stored = [dt.date(2025, 3, 1), dt.date(2025, 3, 2)]
    alone = check_days(dg.build_asset_check_context(), lambda: stored)
    assert alone == CheckDays([dt.date(2025, 3, 2)], partitioned=False)
    ranged = SimpleNamespace(
        has_partition_key=False,
        has_partition_key_range=True,
        partition_key_range=dg.PartitionKeyRange("2025-03-01", "2025-03-03"),
    )
    days = [dt.date(2025, 3, d) for d in (1, 2, 3)]
    assert check_days(ranged, lambda: stored) == CheckDays(days, partitioned=True)
    one_day = SimpleNamespace(
        has_partition_key=True,
        has_partition_key_range=False,  # Dagster's answer for a run of one partition
        partition_key_range=dg.PartitionKeyRange("2025-03-01", "2025-03-01"),
    )
    assert check_days(one_day, lambda: stored) == CheckDays(days[:1], partitioned=True)
