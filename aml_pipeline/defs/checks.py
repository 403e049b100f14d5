"""Asset checks of one network's daily tables, each its own ``@asset_check``.

The assets refuse a hard contract violation before anything is written; these checks then
verify what was stored (the landed files against META.json, each raw table against its
batch's counts and keys, the label events, tier 1), so a run stops before anything
downstream reads a day that does not hold. Each can also be run, and re-run, alone from
the UI: in a partitioned run it checks the run's days and records one result on each
day's partition, alone it checks the latest stored day.
``contract_drift`` only warns (schema drift and unknown columns of the landed batch).
"""

import datetime as dt
import json
import warnings
from collections.abc import Callable, Iterator, Mapping
from typing import Any, NamedTuple, cast

import dagster as dg

# Dagster has no public name for this yet; the result's link to the day's materialization
# is what lets the UI mark a check result outdated when the day is materialized again.
from dagster._core.definitions.asset_checks.asset_check_evaluation import (
    AssetCheckEvaluationTargetMaterializationData,
)

from aml_pipeline.contract.problems import contract_problems, label_event_problems
from aml_pipeline.contract.schema import BATCH_TABLES, TableSpec
from aml_pipeline.dates import date_range
from aml_pipeline.defs.resources import PipelineConfig
from aml_pipeline.defs.warehouse import Warehouse
from aml_pipeline.sources.landing import LANDING_FILE, read_landed_meta, verify_landed
from aml_pipeline.storage import layout
from aml_pipeline.storage.tables import one_row

# Partitioned asset checks are a preview in Dagster 1.13, used on purpose: without them a
# ranged run's check result belongs to no day.
warnings.filterwarnings(
    "ignore", message="Specifying a partitions_def on an AssetCheckSpec", category=dg.PreviewWarning
)


class CheckDays(NamedTuple):
    """The days a check evaluates, and whether they are the run's partitions."""

    days: list[dt.date]
    partitioned: bool


def check_days(
    context: dg.AssetCheckExecutionContext, stored: Callable[[], list[dt.date]]
) -> CheckDays:
    """The run's days, or the latest stored day when the check runs on its own."""
    if not (context.has_partition_key or context.has_partition_key_range):
        return CheckDays(stored()[-1:], partitioned=False)
    keys = context.partition_key_range
    days = date_range(dt.date.fromisoformat(keys.start), dt.date.fromisoformat(keys.end))
    return CheckDays(days, partitioned=True)


def _targets(
    instance: dg.DagsterInstance, key: dg.AssetKey, days: list[dt.date]
) -> dict[str, AssetCheckEvaluationTargetMaterializationData]:
    """Each day's latest materialization, so the UI can tell when a day's result is
    outdated: one query for the run's days, then one per day it did not reach."""
    found: dict[str, AssetCheckEvaluationTargetMaterializationData] = {}

    def newest(partitions: list[str], limit: int) -> None:
        records = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=key, asset_partitions=partitions), limit=limit
        ).records  # newest first
        for record in records:
            if record.partition_key is not None and record.partition_key not in found:
                found[record.partition_key] = AssetCheckEvaluationTargetMaterializationData(
                    run_id=record.run_id, storage_id=record.storage_id, timestamp=record.timestamp
                )

    wanted = [d.isoformat() for d in days]
    newest(wanted, 2 * len(wanted))
    for day in wanted:
        if day not in found:
            newest([day], 1)
    return found


def day_results(
    context: dg.AssetCheckExecutionContext,
    checked: CheckDays,
    found: Mapping[dt.date, list[str]],
    *,
    severity: dg.AssetCheckSeverity = dg.AssetCheckSeverity.ERROR,
    metadata: Mapping[dt.date, Mapping[str, Any]] | None = None,
) -> Iterator[dg.AssetCheckEvaluation | dg.Output]:
    """One result per day of the run, each recorded on its own partition, so a check's
    history and the partitions page read day by day; alone, one result for the day checked.

    Dagster records an ``AssetCheckResult`` on a partition only when the step has a single
    partition key; a ranged run (a backfill's or the command line's) yields these instead,
    then the check step's own (empty) output, which an ``AssetCheckResult`` would imply.
    """
    (spec,) = context.check_specs
    blocking = spec.blocking and severity == dg.AssetCheckSeverity.ERROR
    targets = _targets(context.instance, spec.asset_key, checked.days)
    for day in checked.days:
        problems = found.get(day, [])
        yield dg.AssetCheckEvaluation(
            asset_key=spec.asset_key,
            check_name=spec.name,
            passed=not problems,
            metadata={
                "day": day.isoformat(),
                "problems": dg.MetadataValue.json(problems[:50]),
                "problem_count": len(problems),
                **(metadata or {}).get(day, {}),
            },
            target_materialization_data=targets.get(day.isoformat()),
            severity=severity,
            blocking=blocking,
            partition=day.isoformat() if checked.partitioned else None,
        )
    yield dg.Output(None)


#: A check function that records one result per day of its run (``day_results``).
DayCheckFn = Callable[..., Iterator[dg.AssetCheckEvaluation | dg.Output]]


def day_check(**spec: Any) -> Callable[[DayCheckFn], dg.AssetChecksDefinition]:
    """``dg.asset_check`` for a check that yields one result per day (``day_results``):
    Dagster runs such a generator, though its type hints expect a single
    ``AssetCheckResult``."""
    return cast(Callable[[DayCheckFn], dg.AssetChecksDefinition], dg.asset_check(**spec))


def _landed_days(pipeline: PipelineConfig, network: str) -> list[dt.date]:
    names = pipeline.input_storage().list_dir(network)
    return sorted(dt.date.fromisoformat(n) for n in names if layout.is_day(n))


def build_checks(
    network: str, partitions: dg.DailyPartitionsDefinition
) -> list[dg.AssetChecksDefinition]:
    """Every asset check of one network's daily tables, each partitioned like its asset."""
    landed_key = dg.AssetKey([network, "landed_batch"])

    @day_check(
        asset=landed_key,
        name="landed_files_match_meta",
        blocking=True,
        partitions_def=partitions,
        description="Every landed file of the day is there and its sha256 matches META.json.",
    )
    def landed_files_match_meta(
        context: dg.AssetCheckExecutionContext, pipeline: PipelineConfig
    ) -> Iterator[dg.AssetCheckEvaluation | dg.Output]:
        checked = check_days(context, lambda: _landed_days(pipeline, network))
        storage = pipeline.input_storage()
        found = {day: verify_landed(storage, network, day) for day in checked.days}
        yield from day_results(context, checked, found)

    @day_check(
        asset=landed_key,
        name="contract_drift",
        partitions_def=partitions,
        description="Schema drift (optional feature columns missing) and unknown columns of "
        "the landed batch: a warning, the batch is still valid.",
    )
    def contract_drift(
        context: dg.AssetCheckExecutionContext, pipeline: PipelineConfig
    ) -> Iterator[dg.AssetCheckEvaluation | dg.Output]:
        checked = check_days(context, lambda: _landed_days(pipeline, network))
        storage, drift = pipeline.input_storage(), {}
        for day in checked.days:
            landing = json.loads(
                storage.read_bytes(f"{layout.landed_day(network, day)}/{LANDING_FILE}")
            )
            drift[day] = [
                f"{p['file']} {p['column']}: {p['problem']}"
                for p in landing["validation"]["problems"]
                if p["severity"] == "warning" or "unknown column" in p["problem"]
            ]
        yield from day_results(context, checked, drift, severity=dg.AssetCheckSeverity.WARN)

    def raw_table_check(spec: TableSpec) -> dg.AssetChecksDefinition:
        key = dg.AssetKey([network, f"raw_{spec.name}"])

        @day_check(
            asset=key,
            name="conforms_to_contract",
            blocking=True,
            partitions_def=partitions,
            description="The stored day: keys non-null and unique, dates and window as the "
            "day's, and as many rows as the batch's META.json counts (DuckDB over the day).",
        )
        def conforms_to_contract(
            context: dg.AssetCheckExecutionContext,
            pipeline: PipelineConfig,
            warehouse: Warehouse,
        ) -> Iterator[dg.AssetCheckEvaluation | dg.Output]:
            tables = warehouse.tables
            checked = check_days(context, lambda: warehouse.stored_days(key))
            stored = set(checked.days) - {
                dt.date.fromisoformat(d)
                for d in tables.missing(key.path, [d.isoformat() for d in checked.days])
                if d is not None
            }
            found, rows = {}, {}
            for day in checked.days:
                if day not in stored:
                    found[day] = ["not stored"]
                    continue
                with tables.scanning(key.path, [day.isoformat()]) as con:
                    found[day] = contract_problems(con, spec, [day], pipeline.window_days(network))
                    (rows[day],) = one_row(con, "SELECT count(*) FROM frame")
                want = read_landed_meta(pipeline.input_storage(), network, day)
                counted = want.get("counts", {}).get(spec.name)
                if counted is not None and rows[day] != int(counted):
                    found[day].append(f"{rows[day]} rows stored, META.json counts {counted}")
            metadata = {day: {"rows": int(n)} for day, n in rows.items()}
            yield from day_results(context, checked, found, metadata=metadata)

        return conforms_to_contract

    events_key = dg.AssetKey([network, "label_events"])

    @day_check(
        asset=events_key,
        name="labels_known_in_time",
        blocking=True,
        partitions_def=partitions,
        description="Each stored label is dated on its partition's day, after its alert, and "
        "an alert is labelled once.",
    )
    def labels_known_in_time(
        context: dg.AssetCheckExecutionContext, warehouse: Warehouse
    ) -> Iterator[dg.AssetCheckEvaluation | dg.Output]:
        checked = check_days(context, lambda: warehouse.stored_days(events_key))
        found = {
            day: label_event_problems(warehouse.read_days(events_key, [day]), [day])
            for day in checked.days
        }
        yield from day_results(context, checked, found)

    tier1_key = dg.AssetKey([network, "tier1_evaluation"])

    @day_check(
        asset=tier1_key,
        name="tier1_passed",
        blocking=True,
        partitions_def=partitions,
        description="The day passes tier 1; otherwise nothing of it is published.",
    )
    def tier1_passed(
        context: dg.AssetCheckExecutionContext, warehouse: Warehouse
    ) -> Iterator[dg.AssetCheckEvaluation | dg.Output]:
        checked = check_days(context, lambda: warehouse.stored_days(tier1_key))
        stored = warehouse.read_days(tier1_key, checked.days)
        failed = set(stored.loc[~stored["passed"].fillna(False).astype(bool), "processing_date"])
        found = {day: ["tier 1 failed"] if day in failed else [] for day in checked.days}
        yield from day_results(context, checked, found)

    return [
        landed_files_match_meta,
        contract_drift,
        *(raw_table_check(spec) for spec in BATCH_TABLES),
        labels_known_in_time,
        tier1_passed,
    ]
