"""Jobs over the asset graph (partitioning is inferred from the selected assets)."""

from __future__ import annotations

import dagster as dg


def ingestion_job(networks: list[str]) -> dg.UnresolvedAssetJobDefinition:
    """Land and load the day's batch and known labels for every network."""
    return dg.define_asset_job(
        name="ingestion_job",
        selection=dg.AssetSelection.groups(*networks),
        description=(
            "Fetch, validate and land each network's daily batch; load raw tables and labels."
        ),
    )
