"""Asset checks of one network's daily tables, each its own ``@asset_check``.

The assets refuse a hard contract violation before anything is written; these checks then
verify what was stored (the landed files against META.json, each raw table against its
batch's counts and keys, the label events, tier 1), so a run stops before anything
downstream reads a day that does not hold. Each can also be run, and re-run, alone from
the UI: in a partitioned run it checks the run's days, alone the latest stored day.
``contract_drift`` only warns (schema drift and unknown columns of the landed batch).
"""

import datetime as dt
import json
from collections.abc import Callable

import dagster as dg

from aml_pipeline.contract.schema import BATCH_TABLES, TableSpec
from aml_pipeline.dates import date_range
from aml_pipeline.defs.assets.ingestion import contract_problems, label_event_problems
from aml_pipeline.defs.io_manager import Warehouse
from aml_pipeline.defs.resources import PipelineConfig
from aml_pipeline.sources.landing import LANDING_FILE, read_landed_meta, verify_landed
from aml_pipeline.storage import layout


def check_days(context: dg.AssetCheckExecutionContext, stored: Callable[[], list[dt.date]]):
    """The run's days, or the latest stored day when the check runs on its own."""
    try:
        keys = context.partition_key_range
    except dg.DagsterInvariantViolationError:
        days = stored()
        return days[-1:]
    return date_range(dt.date.fromisoformat(keys.start), dt.date.fromisoformat(keys.end))


def _result(problems: list[str], **metadata: object) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        passed=not problems,
        metadata={"problems": dg.MetadataValue.json(problems[:50]), **metadata},
    )


def _landed_days(pipeline: PipelineConfig, network: str) -> list[dt.date]:
    names = pipeline.input_storage().list_dir(network)
    return sorted(dt.date.fromisoformat(n) for n in names if layout.is_day(n))


def build_checks(network: str) -> list[dg.AssetChecksDefinition]:
    """Every asset check of one network's daily tables."""
    landed_key = dg.AssetKey([network, "landed_batch"])

    @dg.asset_check(
        asset=landed_key,
        name="landed_files_match_meta",
        blocking=True,
        description="Every landed file of the day is there and its sha256 matches META.json.",
    )
    def landed_files_match_meta(
        context: dg.AssetCheckExecutionContext, pipeline: PipelineConfig
    ) -> dg.AssetCheckResult:
        days = check_days(context, lambda: _landed_days(pipeline, network))
        storage = pipeline.input_storage()
        problems = [p for day in days for p in verify_landed(storage, network, day)]
        return _result(problems, days=len(days))

    @dg.asset_check(
        asset=landed_key,
        name="contract_drift",
        description="Schema drift (optional feature columns missing) and unknown columns of "
        "the landed batch: a warning, the batch is still valid.",
    )
    def contract_drift(
        context: dg.AssetCheckExecutionContext, pipeline: PipelineConfig
    ) -> dg.AssetCheckResult:
        days = check_days(context, lambda: _landed_days(pipeline, network))
        storage, drift = pipeline.input_storage(), []
        for day in days:
            landing = json.loads(
                storage.read_bytes(f"{layout.landed_day(network, day)}/{LANDING_FILE}")
            )
            for p in landing["validation"]["problems"]:
                if p["severity"] == "warning" or "unknown column" in p["problem"]:
                    drift.append(f"{day} {p['file']} {p['column']}: {p['problem']}")
        return dg.AssetCheckResult(
            passed=not drift,
            severity=dg.AssetCheckSeverity.WARN,
            metadata={"findings": dg.MetadataValue.json(drift[:50]), "count": len(drift)},
        )

    def raw_table_check(spec: TableSpec) -> dg.AssetChecksDefinition:
        key = dg.AssetKey([network, f"raw_{spec.name}"])

        @dg.asset_check(
            asset=key,
            name="conforms_to_contract",
            blocking=True,
            description="The stored day: keys non-null and unique, dates and window as the "
            "run's, and as many rows as the batch's META.json counts (one DuckDB scan).",
        )
        def conforms_to_contract(
            context: dg.AssetCheckExecutionContext,
            pipeline: PipelineConfig,
            warehouse_io_manager: Warehouse,
        ) -> dg.AssetCheckResult:
            warehouse = warehouse_io_manager
            days = check_days(context, lambda: warehouse.stored_days(key))
            missing = warehouse.tables.missing(key.path, [d.isoformat() for d in days])
            if missing:
                return _result([f"{d}: not stored" for d in missing], days=len(days))
            with warehouse.tables.scanning(key.path, [d.isoformat() for d in days]) as con:
                problems = contract_problems(con, spec, days, pipeline.window_days(network))
                counts = dict(
                    con.execute("SELECT processing_date, count(*) FROM frame GROUP BY 1").fetchall()
                )
            for day in days:
                expected = read_landed_meta(pipeline.input_storage(), network, day)
                want = expected.get("counts", {}).get(spec.name)
                if want is not None and int(counts.get(day, 0)) != int(want):
                    problems.append(
                        f"{day}: {int(counts.get(day, 0))} rows stored, META.json counts {want}"
                    )
            return _result(problems, days=len(days))

        return conforms_to_contract

    events_key = dg.AssetKey([network, "label_events"])

    @dg.asset_check(
        asset=events_key,
        name="labels_known_in_time",
        blocking=True,
        description="Each stored label is dated on its partition's day, after its alert, and "
        "an alert is labelled once.",
    )
    def labels_known_in_time(
        context: dg.AssetCheckExecutionContext, warehouse_io_manager: Warehouse
    ) -> dg.AssetCheckResult:
        warehouse = warehouse_io_manager
        days = check_days(context, lambda: warehouse.stored_days(events_key))
        return _result(label_event_problems(warehouse.read_days(events_key, days), days))

    tier1_key = dg.AssetKey([network, "tier1_evaluation"])

    @dg.asset_check(
        asset=tier1_key,
        name="tier1_passed",
        blocking=True,
        description="Every day of the run passes tier 1; otherwise nothing is published.",
    )
    def tier1_passed(
        context: dg.AssetCheckExecutionContext, warehouse_io_manager: Warehouse
    ) -> dg.AssetCheckResult:
        warehouse = warehouse_io_manager
        days = check_days(context, lambda: warehouse.stored_days(tier1_key))
        stored = warehouse.read_days(tier1_key, days)
        failed = stored.loc[~stored["passed"].fillna(False).astype(bool), "processing_date"]
        return _result([f"{d}: tier 1 failed" for d in failed], days=len(days))

    return [
        landed_files_match_meta,
        contract_drift,
        *(raw_table_check(spec) for spec in BATCH_TABLES),
        labels_known_in_time,
        tier1_passed,
    ]
