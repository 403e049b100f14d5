"""Runs a backfill starts from an asset selection (Dagster names their job ``__ASSET_JOB``)
take their tags from the backfill dialog, so they lack the ``network`` and ``aml/stage``
tags every other run carries; a sensor adds them from the run's asset selection, so the
Runs page finds every run by the same tags.
"""

from __future__ import annotations

import dagster as dg

from aml_pipeline.defs.network import run_tags

#: The newest runs looked at on each tick (older ones were tagged by earlier ticks).
SCANNED_RUNS = 500


def tag_untagged_runs(instance: dg.DagsterInstance) -> list[str]:
    """Add ``network`` and ``aml/stage`` to the newest runs that have an asset selection
    and no ``network`` tag; the ids of the runs tagged."""
    tagged = []
    for run in instance.get_runs(limit=SCANNED_RUNS):
        if "network" in run.tags or not run.asset_selection:
            continue
        keys = [key for key in run.asset_selection if len(key.path) > 1]
        if not keys:
            continue
        networks = ",".join(sorted({key.path[0] for key in keys}))
        names = tuple(sorted({key.path[-1] for key in keys}))
        instance.add_run_tags(run.run_id, run_tags(networks, names))
        tagged.append(run.run_id)
    return tagged


def build_run_tagging_sensor() -> dg.SensorDefinition:
    """The sensor that tags asset-selection runs every minute the daemon runs; on by
    default."""

    @dg.sensor(
        name="run_tagging_sensor",
        minimum_interval_seconds=60,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Adds the network and aml/stage tags to runs started from an asset "
        "selection (a backfill from the asset graph), which take their tags from the dialog.",
    )
    def run_tagging_sensor(context: dg.SensorEvaluationContext) -> dg.SkipReason:
        tagged = tag_untagged_runs(context.instance)
        return dg.SkipReason(f"tagged {len(tagged)} run(s)" if tagged else "every run is tagged")

    return run_tagging_sensor
