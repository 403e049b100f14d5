"""What a run did, read from its events: a ranged run's outcome (executed here or in
another process), its days, why it failed, what it landed and the metadata it recorded."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

import dagster as dg

from aml_pipeline.defs.instance import project_instance
from aml_pipeline.defs.run_failures import user_message
from aml_pipeline.defs.tags import RANGE_END, RANGE_START


@dataclass(frozen=True)
class RunOutcome:
    """What a finished run did: its record and its Dagster events (an in-process result
    without the outputs it holds in memory, or the same read back from the instance)."""

    run_id: str
    success: bool
    dagster_run: dg.DagsterRun
    all_events: Sequence[dg.DagsterEvent]

    @classmethod
    def of(cls, result: dg.ExecuteInProcessResult) -> RunOutcome:
        return cls(result.run_id, result.success, result.dagster_run, result.all_events)

    @classmethod
    def load(cls, instance: dg.DagsterInstance, run_id: str) -> RunOutcome:
        """The outcome of a run another process executed, from the instance."""
        run = instance.get_run_by_id(run_id)
        if run is None:
            raise ValueError(f"run {run_id} is not in the instance")
        events = [e.dagster_event for e in instance.all_logs(run_id) if e.dagster_event]
        return cls(run_id, run.status == dg.DagsterRunStatus.SUCCESS, run, events)

    def get_asset_materialization_events(self) -> list[dg.DagsterEvent]:
        return [e for e in self.all_events if e.is_step_materialization]


def run_span(result: RunOutcome | dg.ExecuteInProcessResult) -> str:
    """The days a ranged run covered: ``D`` or ``D1..D2``."""
    first, last = result.dagster_run.tags[RANGE_START], result.dagster_run.tags[RANGE_END]
    return first if first == last else f"{first}..{last}"


def failure_text(result: RunOutcome | dg.ExecuteInProcessResult) -> str:
    """Why a failed run's first failed step failed: its ``dg.Failure`` description, else the
    root cause."""
    failure = next((e for e in result.all_events if e.is_step_failure), None)
    if failure is None:
        return "run failed"
    return user_message(failure.step_failure_data.error)


def _materializations(
    result: RunOutcome | dg.ExecuteInProcessResult,
) -> Iterator[dg.AssetMaterialization]:
    """The asset materializations the run recorded, in order."""
    for event in result.get_asset_materialization_events():
        yield event.step_materialization_data.materialization


def landed_counts(result: RunOutcome, network: str) -> dict[str, str]:
    """Per landed day of the run, its tables' row counts as one line."""
    counts = {}
    for mat in _materializations(result):
        if mat.asset_key == dg.AssetKey([network, "landed_batch"]) and mat.partition:
            rows = cast(Mapping[str, int], mat.metadata["row_counts"].value)
            counts[mat.partition] = ", ".join(f"{n} {table}" for table, n in rows.items())
    return counts


def materialized_metadata(
    result: RunOutcome | dg.ExecuteInProcessResult,
) -> dict[str, dict[str, Any]]:
    """Each materialized asset's metadata values, by the asset's name."""
    return {
        mat.asset_key.path[-1]: {k: v.value for k, v in mat.metadata.items()}
        for mat in _materializations(result)
    }


def fetched_without_labels(network: str, days: list[dt.date]) -> list[dt.date]:
    """The label days among ``days`` whose latest fetch found no labels file (the
    ``labels_file`` its materialization recorded): stored empty, to be fetched again."""
    key, wanted = dg.AssetKey([network, "label_events"]), [d.isoformat() for d in days]
    latest: dict[str, str] = {}
    with project_instance() as instance:
        cursor = None
        while wanted:
            result = instance.fetch_materializations(  # newest first
                dg.AssetRecordsFilter(asset_key=key, asset_partitions=wanted),
                limit=1000,
                cursor=cursor,
            )
            for record in result.records:
                mat = record.asset_materialization
                if mat is None or mat.partition is None:
                    continue
                found = mat.metadata.get("labels_file")
                latest.setdefault(mat.partition, str(found.value) if found else "found")
            if not result.has_more:
                break
            cursor = result.cursor
    return [dt.date.fromisoformat(p) for p, found in sorted(latest.items()) if found != "found"]
