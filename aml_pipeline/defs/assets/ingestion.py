"""Daily ingestion assets for one network: landed batch, raw tables, metadata, labels."""

import datetime as dt
import json
import sys

import dagster as dg
import pandas as pd

from aml_pipeline.contract import conform as conform_module
from aml_pipeline.contract import problems as problems_module
from aml_pipeline.contract import schema as schema_module
from aml_pipeline.contract import validation as validation_module
from aml_pipeline.contract.conform import conform_table
from aml_pipeline.contract.problems import contract_problems, label_event_problems
from aml_pipeline.contract.schema import BATCH_TABLES, GROUND_TRUTH, TableSpec
from aml_pipeline.contract.validation import BatchRefused
from aml_pipeline.defs.assets import daily as daily_module
from aml_pipeline.defs.assets.daily import BACKFILL, daily_pool, daily_table_args, partition_days
from aml_pipeline.defs.metadata import (
    columns_schema,
    contract_types,
    daily_frame_metadata,
    table_schema,
)
from aml_pipeline.defs.resources import PipelineConfig
from aml_pipeline.defs.warehouse import PARTITION_COLUMN_KEY, Warehouse
from aml_pipeline.provenance import module_version
from aml_pipeline.sources import base as source_module
from aml_pipeline.sources import landing as landing_module
from aml_pipeline.sources import record as record_module
from aml_pipeline.sources.base import BatchNotAvailable
from aml_pipeline.sources.landing import (
    NoSpace,
    check_space,
    fetch_and_validate,
    land,
    landed_view,
    read_landed_meta,
)
from aml_pipeline.sources.record import record_landing
from aml_pipeline.storage import layout
from aml_pipeline.storage.tables import duckdb_cursor, frame_columns, one_row

#: The code version of the ingestion assets: this module, the daily tables' shared code, and
#: the landing and contract code.
CODE_VERSION = module_version(
    sys.modules[__name__],
    daily_module,
    problems_module,
    landing_module,
    conform_module,
    schema_module,
    validation_module,
    record_module,
    source_module,
)


def _build_landed_batch(
    network: str, partitions: dg.PartitionsDefinition, freshness: dg.FreshnessPolicy | None
):
    key = dg.AssetKey([network, "landed_batch"])

    @dg.asset(
        key=key,
        group_name=network,
        partitions_def=partitions,
        freshness_policy=freshness,
        backfill_policy=BACKFILL,
        kinds={"parquet", "json"},
        code_version=CODE_VERSION,
        pool=daily_pool(network),
        description=(
            f"The day's {network} SOT batch, fetched from the configured source, validated "
            "against the contract and published atomically to input/{network}/{date}/. "
            "A batch with any contract error is refused and nothing of it is written."
        ),
    )
    def landed_batch(
        context: dg.AssetExecutionContext, pipeline: PipelineConfig, warehouse: Warehouse
    ) -> dg.MaterializeResult:
        storage, days = pipeline.input_storage(), partition_days(context)
        record, configured = pipeline.record(network), pipeline.configured_source(network)
        if record is not None and days[0] < record.since:
            _refuse_moving_the_first_day(warehouse, network, record.since, days[0])
        spec = record.source if record is not None else configured
        if spec.identity() != configured.identity():
            context.log.warning(
                f"{network} is landed from {spec.describe()}, its recorded source; the "
                f"configured source ({configured.describe()}) is not used"
            )
        try:
            checked = fetch_and_validate(
                pipeline.source(network),
                network,
                days,
                pipeline.window_days(network),
                pipeline.fetch_workers,
            )
        except BatchNotAvailable as exc:
            raise dg.Failure(description=str(exc)) from exc
        except BatchRefused as exc:
            raise dg.Failure(
                description=f"batch refused:\n{exc.report.format()}",
                metadata={"validation_report": dg.MetadataValue.json(exc.report.to_dict())},
            ) from exc
        try:
            check_space(storage, network, checked, pipeline.min_free_mb * 2**20)
        except NoSpace as exc:
            raise dg.Failure(description=str(exc)) from exc
        record_landing(storage, network, spec, days[0])
        digests = {}
        for item in checked:
            day = item.batch.processing_date.isoformat()
            try:
                digests[day] = land(storage, item)
            except OSError as exc:
                landed = f"{days[0]}..{list(digests)[-1]} landed, " if digests else ""
                raise dg.Failure(
                    description=f"landing {network} {day} failed ({exc}): {landed}{day}.."
                    f"{days[-1]} not; every landed day is whole. Free space or fix the "
                    "cause and re-run the range"
                ) from exc
            context.log.info(item.report.format())
            context.add_asset_metadata(
                {"row_counts": dg.MetadataValue.json(item.report.row_counts)}, partition_key=day
            )
        contract_warnings = [str(p) for c in checked for p in c.report.warnings]
        return dg.MaterializeResult(
            metadata={
                "origin": checked[0].batch.origin,
                "source": spec.describe(),
                "landed_dirs": dg.MetadataValue.json(
                    [storage.url(layout.landed_day(network, d)) for d in days[:31]]
                ),
                "sha256": dg.MetadataValue.json(digests if len(days) <= 31 else {}),
                "contract_warnings": dg.MetadataValue.md(
                    "\n".join(f"- {w}" for w in contract_warnings) or "none"
                ),
            },
        )

    return landed_batch


def _build_raw_table(network: str, spec: TableSpec, partitions: dg.PartitionsDefinition):
    key = dg.AssetKey([network, f"raw_{spec.name}"])

    @dg.asset(
        key=key,
        deps=[dg.AssetKey([network, "landed_batch"])],
        **daily_table_args(network, partitions, CODE_VERSION),
        description=f"{spec.description} Read from the landed {spec.file}, cast to the "
        "contract; a day whose keys, dates or window break the contract is refused before "
        "it is written. Landed files whose columns already have their contract types are "
        "cast and sorted in DuckDB without a copy through pandas.",
        metadata={"dagster/column_schema": table_schema(spec), "contract_key": list(spec.key)},
    )
    def raw_table(
        context: dg.AssetExecutionContext, pipeline: PipelineConfig, warehouse: Warehouse
    ) -> dg.MaterializeResult:
        storage, days = pipeline.input_storage(), partition_days(context)
        window, problems = pipeline.window_days(network), []
        for day in days:  # every day is checked before any is written
            with duckdb_cursor() as con:
                landed_view(con, storage, network, day, spec)
                problems += [f"{day}: {p}" for p in contract_problems(con, spec, [day], window)]
        if problems:
            raise dg.Failure(
                description=f"{network} {spec.file} of {days[0]}..{days[-1]} refused, nothing "
                "written: " + "; ".join(problems)
            )
        store, declared = warehouse.tables, contract_types(spec)
        for day in days:
            with duckdb_cursor() as con:
                landed_view(con, storage, network, day, spec)
                store.write_from(con, key.path, day.isoformat(), declared, order_by=spec.key)
                (count,) = one_row(con, "SELECT count(*) FROM frame")
                columns = frame_columns(con, declared)
            context.add_asset_metadata(
                {"dagster/row_count": dg.MetadataValue.int(count)}, partition_key=day.isoformat()
            )
        provenance = {
            day.isoformat(): read_landed_meta(storage, network, day)
            .get("sha256", {})
            .get(spec.file, "absent")
            for day in days
        }
        return dg.MaterializeResult(
            metadata={
                "dagster/column_schema": columns_schema(columns),
                "source_sha256": dg.MetadataValue.json(provenance),
            }
        )

    return raw_table


def _build_batch_metadata(network: str, partitions: dg.PartitionsDefinition):
    @dg.asset(
        key=[network, "batch_metadata"],
        deps=[dg.AssetKey([network, "landed_batch"])],
        **daily_table_args(network, partitions, CODE_VERSION),
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
                    "window_days": int(meta.get("window_days", pipeline.window_days(network))),
                    "schema_version": str(meta.get("schema_version", "")),
                    "generated_at": str(meta.get("generated_at", "")),
                    "counts_json": json.dumps(meta.get("counts", {}), sort_keys=True),
                    "sha256_json": json.dumps(meta.get("sha256", {}), sort_keys=True),
                }
            )
        df = pd.DataFrame(rows)
        return dg.Output(df, metadata=daily_frame_metadata(context, df))

    return batch_metadata


def _build_label_events(network: str, partitions: dg.PartitionsDefinition):
    @dg.asset(
        key=[network, "label_events"],
        deps=[dg.AssetKey([network, "landed_batch"])],
        **daily_table_args(network, partitions, CODE_VERSION),
        description=(
            "The labels (is_sar_filed) that became known on the day, for alerts of earlier "
            "days: partitioned by label_date, fetched once the day is over and never changed "
            "after. Feature look-backs, training and tier 3 read labels from here, so each "
            "sees exactly the labels known at its time. Depends on landed_batch so that a "
            "network's first landing records its source before labels are fetched."
        ),
        metadata={
            "dagster/column_schema": table_schema(GROUND_TRUTH),
            PARTITION_COLUMN_KEY: "label_date",
        },
    )
    def label_events(
        context: dg.AssetExecutionContext, pipeline: PipelineConfig
    ) -> dg.Output[pd.DataFrame]:
        days, as_of = partition_days(context), pipeline.as_of()
        if days[-1] > as_of:
            raise dg.Failure(
                description=f"the labels of {days[-1]} are not known as of {as_of} "
                "(labels_as_of, AML_LABELS_AS_OF): a label day is fetched once it is over"
            )
        source = pipeline.source(network)
        labels_problem = source.labels_problem(network)
        if labels_problem:
            context.log.warning(labels_problem)
        try:
            window = pipeline.window_days(network)
            frames = [source.fetch_label_events(network, day, window) for day in days]
        except BatchNotAvailable as exc:
            raise dg.Failure(description=str(exc)) from exc
        events = conform_table(pd.concat(frames, ignore_index=True), GROUND_TRUTH)
        events = events.sort_values(["label_date", "alert_id"], kind="stable")
        events = events.reset_index(drop=True)
        problems = label_event_problems(events, days)
        if problems:  # refused before anything is written
            raise dg.Failure(
                description=f"{network} label events of {days[0]}..{days[-1]} refused: "
                + "; ".join(problems)
            )
        alert_days = sorted({str(d) for d in events["processing_date"]})
        return dg.Output(
            events,
            metadata=daily_frame_metadata(
                context,
                events,
                "label_date",
                per_day=lambda day: {"positives": int(day["is_sar_filed"].sum())},
                alert_days=dg.MetadataValue.json(alert_days),
                labels_file=labels_problem or "found",
            ),
        )

    return label_events


def _refuse_moving_the_first_day(
    warehouse: Warehouse, network: str, since: dt.date, day: dt.date
) -> None:
    """Refuse to land ``day`` before the network's recorded first day once anything counts
    from it: the features' look-back (``history_coverage_days``), and the label days
    fetched for the alerts from that day on (an earlier day's alerts would never get the
    labels that arrived on them). Moving the first day would silently change or starve
    days already stored."""
    tables = warehouse.tables
    derived = tables.stored_days((network, "alert_features"))
    fetched = tables.stored_days((network, "label_events"))
    if not (derived or fetched):
        return
    what = (
        f"the features of {len(derived)} day(s) from {derived[0]} count their look-back "
        f"from it: landing {day} before it would silently change them"
        if derived
        else f"the label events of {len(fetched)} day(s) from {fetched[0]} were fetched for "
        f"the alerts from it: {day}'s alerts would never get the labels that arrived on them"
    )
    record = layout.network_record(network)
    raise dg.Failure(
        description=f"{network}'s data begins on {since} (recorded in {record}), and {what}. "
        f"Land the earlier days as another network, or start {network} over (remove its "
        f"warehouse tables and {record})"
    )


def build_ingestion_assets(
    network: str,
    partitions: dg.PartitionsDefinition,
    freshness: dg.FreshnessPolicy | None = None,
) -> list[dg.AssetsDefinition]:
    """Every ingestion asset of one network (key prefix and group = the network); the
    landed batch carries the daily ``freshness`` policy."""
    return [
        _build_landed_batch(network, partitions, freshness),
        *(_build_raw_table(network, spec, partitions) for spec in BATCH_TABLES),
        _build_batch_metadata(network, partitions),
        _build_label_events(network, partitions),
    ]
