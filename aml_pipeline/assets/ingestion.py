"""Daily ingestion assets for one network: landed batch, raw tables, metadata, labels."""

import datetime as dt
import json
import warnings
from collections.abc import Iterator
from typing import Any

import dagster as dg
import pandas as pd

from aml_pipeline.assets.metadata import frame_metadata, table_schema
from aml_pipeline.contract.conform import conform_table
from aml_pipeline.contract.schema import BATCH_TABLES, GROUND_TRUTH, TableSpec
from aml_pipeline.contract.validation import BatchRefused
from aml_pipeline.ingestion import (
    fetch_and_validate,
    land,
    landed_dir,
    read_landed_meta,
    read_landed_table,
    verify_landed,
)
from aml_pipeline.resources import PipelineConfig
from aml_pipeline.runs import MAX_DAYS_PER_RUN
from aml_pipeline.sources.base import BatchNotAvailable
from aml_pipeline.sources.record import read_record, write_record

# Backfills run up to MAX_DAYS_PER_RUN days per run: a month is a few runs, not thirty
# process start-ups, and memory stays bounded. The parameter is beta in Dagster 1.13.
warnings.filterwarnings("ignore", message="Parameter `backfill_policy`", category=dg.BetaWarning)
BACKFILL = dg.BackfillPolicy.multi_run(max_partitions_per_run=MAX_DAYS_PER_RUN)


def daily_table_args(network: str, partitions: dg.PartitionsDefinition) -> dict[str, Any]:
    """Decorator arguments every daily table asset of a network shares."""
    return {
        "group_name": network,
        "partitions_def": partitions,
        "backfill_policy": BACKFILL,
        "io_manager_key": "warehouse_io_manager",
        "kinds": {"duckdb", "parquet", "pandas"},
    }


def partition_days(context: dg.AssetExecutionContext) -> list[dt.date]:
    return [dt.date.fromisoformat(k) for k in context.partition_keys]


def day_rows(frame: pd.DataFrame, day: dt.date) -> pd.DataFrame:
    """The rows of one processing day of a multi-day input (an empty input as it is)."""
    if frame.empty:
        return frame
    return frame[frame["processing_date"] == day].reset_index(drop=True)


def _contract_problems(
    df: pd.DataFrame, spec: TableSpec, days: list[dt.date], window_days: int
) -> list[str]:
    """What is wrong with a conformed table of the given days (empty when nothing)."""
    problems = []
    keyed = df[["processing_date", *spec.key]]
    if keyed[list(spec.key)].isna().any(axis=None):
        problems.append(f"null values in key {spec.key}")
    if keyed.duplicated().any():
        problems.append(f"duplicate keys {spec.key} within a day")
    outside = set(df["processing_date"].dropna()) - set(days)
    if outside or df["processing_date"].isna().any():
        problems.append(f"rows outside the run's days: {sorted(map(str, outside))[:3]}")
    if "window_days" in df and (df["window_days"].dropna() != window_days).any():
        problems.append(f"window_days differs from {window_days}")
    return problems


def _build_landed_batch(network: str, partitions: dg.PartitionsDefinition):
    key = dg.AssetKey([network, "landed_batch"])

    @dg.asset(
        key=key,
        group_name=network,
        partitions_def=partitions,
        backfill_policy=BACKFILL,
        kinds={"parquet", "json"},
        description=(
            f"The day's {network} SOT batch, fetched from the configured source, validated "
            "against the contract and published atomically to input/{network}/{date}/. "
            "A batch with any contract error is refused and nothing of it is written."
        ),
        check_specs=[
            dg.AssetCheckSpec(
                "landed_files_match_meta",
                asset=key,
                blocking=True,
                description="Every landed file's sha256 matches META.json.",
            )
        ],
    )
    def landed_batch(
        context: dg.AssetExecutionContext, pipeline: PipelineConfig
    ) -> Iterator[dg.MaterializeResult]:
        storage, days = pipeline.input_storage(), partition_days(context)
        recorded = read_record(storage, network)
        spec = recorded or pipeline.configured_source()
        if recorded is not None and recorded.identity() != pipeline.configured_source().identity():
            context.log.warning(
                f"{network} is landed from {recorded.describe()}, its recorded source; the "
                f"configured source ({pipeline.configured_source().describe()}) is not used"
            )
        source = pipeline.source(network)
        try:
            checked = fetch_and_validate(source, network, days, pipeline.window_days)
        except BatchNotAvailable as exc:
            raise dg.Failure(description=str(exc)) from exc
        except BatchRefused as exc:
            raise dg.Failure(
                description=f"batch refused:\n{exc.report.format()}",
                metadata={"validation_report": dg.MetadataValue.json(exc.report.to_dict())},
            ) from exc
        if recorded is None:
            write_record(storage, network, spec)
        digests = {}
        for item in checked:
            digests[item.batch.processing_date.isoformat()] = land(storage, item)
            context.log.info(item.report.format())
        problems = [p for day in days for p in verify_landed(storage, network, day)]
        contract_warnings = [str(p) for c in checked for p in c.report.warnings]
        yield dg.MaterializeResult(
            metadata={
                "days": len(days),
                "origin": checked[0].batch.origin,
                "source": spec.describe(),
                "landed_dirs": dg.MetadataValue.json(
                    [str(storage.local_path(landed_dir(network, d))) for d in days[:31]]
                ),
                "sha256": dg.MetadataValue.json(digests if len(days) <= 31 else {}),
                "row_counts": dg.MetadataValue.json(
                    {c.batch.processing_date.isoformat(): c.report.row_counts for c in checked}
                ),
                "contract_warnings": dg.MetadataValue.md(
                    "\n".join(f"- {w}" for w in contract_warnings) or "none"
                ),
            },
            check_results=[
                dg.AssetCheckResult(
                    check_name="landed_files_match_meta",
                    passed=not problems,
                    metadata={"problems": dg.MetadataValue.json(problems)},
                )
            ],
        )

    return landed_batch


def _build_raw_table(network: str, spec: TableSpec, partitions: dg.PartitionsDefinition):
    key = dg.AssetKey([network, f"raw_{spec.name}"])
    check = "conforms_to_contract"

    @dg.asset(
        key=key,
        deps=[dg.AssetKey([network, "landed_batch"])],
        **daily_table_args(network, partitions),
        description=f"{spec.description} Read from the landed {spec.file}, cast to the contract.",
        metadata={"dagster/column_schema": table_schema(spec), "contract_key": list(spec.key)},
        check_specs=[
            dg.AssetCheckSpec(
                check,
                asset=key,
                blocking=True,
                description="Keys non-null and unique per day; dates and window match the run.",
            )
        ],
    )
    def raw_table(
        context: dg.AssetExecutionContext, pipeline: PipelineConfig
    ) -> Iterator[dg.Output | dg.AssetCheckResult]:
        storage, days = pipeline.input_storage(), partition_days(context)
        frames = [read_landed_table(storage, network, day, spec) for day in days]
        df = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
        provenance = {
            day.isoformat(): read_landed_meta(storage, network, day)
            .get("sha256", {})
            .get(spec.file, "absent")
            for day in days
        }
        yield dg.Output(
            df, metadata=frame_metadata(df, source_sha256=dg.MetadataValue.json(provenance))
        )
        problems = _contract_problems(df, spec, days, pipeline.window_days)
        yield dg.AssetCheckResult(
            check_name=check,
            passed=not problems,
            metadata={"problems": dg.MetadataValue.json(problems)},
        )

    return raw_table


def _build_batch_metadata(network: str, partitions: dg.PartitionsDefinition):
    @dg.asset(
        key=[network, "batch_metadata"],
        deps=[dg.AssetKey([network, "landed_batch"])],
        **daily_table_args(network, partitions),
        description="One row per landed batch: META.json identity, counts and checksums.",
    )
    def batch_metadata(
        context: dg.AssetExecutionContext, pipeline: PipelineConfig
    ) -> dg.Output[pd.DataFrame]:
        storage = pipeline.input_storage()
        rows = []
        for day in partition_days(context):
            meta = read_landed_meta(storage, network, day)
            rows.append(
                {
                    "batch_id": meta.get("batch_id", ""),
                    "network": network,
                    "processing_date": day,
                    "window_days": int(meta.get("window_days", pipeline.window_days)),
                    "schema_version": str(meta.get("schema_version", "")),
                    "generated_at": str(meta.get("generated_at", "")),
                    "counts_json": json.dumps(meta.get("counts", {}), sort_keys=True),
                    "sha256_json": json.dumps(meta.get("sha256", {}), sort_keys=True),
                }
            )
        df = pd.DataFrame(rows)
        return dg.Output(df, metadata=frame_metadata(df))

    return batch_metadata


def _build_ground_truth(network: str, partitions: dg.PartitionsDefinition):
    key = dg.AssetKey([network, "ground_truth"])
    check = "labels_known_in_time"

    @dg.asset(
        key=key,
        ins={"alerts": dg.AssetIn(key=dg.AssetKey([network, "raw_alerts"]))},
        **daily_table_args(network, partitions),
        description=(
            "Labels (is_sar_filed) for the day's alerts that were known by the configured "
            "as-of date. Re-materialize as labels arrive (T+tau)."
        ),
        metadata={"dagster/column_schema": table_schema(GROUND_TRUTH)},
        check_specs=[
            dg.AssetCheckSpec(
                check,
                asset=key,
                blocking=True,
                description="Each label is for one of the day's alerts, once, and was known "
                "between its processing date and the as-of date.",
            )
        ],
    )
    def ground_truth(
        context: dg.AssetExecutionContext, pipeline: PipelineConfig, alerts: pd.DataFrame
    ) -> Iterator[dg.Output | dg.AssetCheckResult]:
        source, as_of = pipeline.source(network), pipeline.as_of()
        labels_problem = source.labels_problem(network)
        if labels_problem:
            context.log.warning(labels_problem)
        frames = [
            source.fetch_labels(network, day, pipeline.window_days, as_of)
            for day in partition_days(context)
        ]
        labels = conform_table(pd.concat(frames, ignore_index=True), GROUND_TRUTH)
        known_alerts = set(alerts["alert_id"])
        orphan = ~labels["alert_id"].isin(known_alerts)
        if orphan.any():
            context.log.warning(f"{int(orphan.sum())} label(s) for unknown alerts dropped")
        labels = labels[~orphan].sort_values(["processing_date", "alert_id"], kind="stable")
        labels = labels.reset_index(drop=True)
        n_pos = int(labels["is_sar_filed"].sum())
        yield dg.Output(
            labels,
            metadata=frame_metadata(
                labels,
                as_of=as_of.isoformat(),
                positives=n_pos,
                label_coverage=float(len(labels) / len(alerts)) if len(alerts) else 0.0,
                dropped_unknown_alerts=int(orphan.sum()),
                labels_file=labels_problem or "found",
            ),
        )
        problems = _contract_problems(labels, GROUND_TRUTH, partition_days(context), 0)
        early = labels["label_date"] < labels["processing_date"]
        late = labels["label_date"] > as_of
        if early.any():
            problems.append(f"{int(early.sum())} label(s) dated before their alert")
        if late.any():
            problems.append(f"{int(late.sum())} label(s) not yet known on {as_of}")
        yield dg.AssetCheckResult(
            check_name=check,
            passed=not problems,
            metadata={"problems": dg.MetadataValue.json(problems)},
        )

    return ground_truth


def build_ingestion_assets(
    network: str, partitions: dg.PartitionsDefinition
) -> list[dg.AssetsDefinition]:
    """Every ingestion asset of one network (key prefix and group = the network)."""
    return [
        _build_landed_batch(network, partitions),
        *(_build_raw_table(network, spec, partitions) for spec in BATCH_TABLES),
        _build_batch_metadata(network, partitions),
        _build_ground_truth(network, partitions),
    ]
