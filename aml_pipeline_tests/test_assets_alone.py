"""Assets invoked alone, with Dagster's own test context (``build_asset_context``): no job,
no instance, no IO manager. An asset that records per-day metadata (``add_asset_metadata``
with a partition) cannot run to its end this way in Dagster 1.13, so what is tested here is
what such an asset decides before it writes: its refusals."""

from __future__ import annotations

import dagster as dg
import pytest

from aml_pipeline.defs.assets.ingestion import build_ingestion_assets
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
