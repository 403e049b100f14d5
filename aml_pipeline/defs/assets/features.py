"""Daily model-feature assets of one network: alert_history, flow_features,
alert_features and cluster_features."""

import datetime as dt
import sys
import time

import dagster as dg
import pandas as pd

from aml_pipeline.dates import date_range
from aml_pipeline.defs.assets import daily as daily_module
from aml_pipeline.defs.assets.daily import daily_table_args, day_rows, partition_days
from aml_pipeline.defs.metadata import daily_frame_metadata, storage_types
from aml_pipeline.defs.resources import PipelineConfig
from aml_pipeline.defs.warehouse import COLUMNS_KEY, Warehouse
from aml_pipeline.features import alert_features as alert_features_module
from aml_pipeline.features import cluster_features as cluster_features_module
from aml_pipeline.features import flow_features as flow_features_module
from aml_pipeline.features import history as history_module
from aml_pipeline.features.alert_features import (
    CATEGORIES,
    FEATURE_COLUMNS,
    FEATURE_SCHEMA_VERSION,
    LINEAGE,
    build_alert_features,
)
from aml_pipeline.features.cluster_features import CLUSTER_FEATURE_COLUMNS, build_cluster_features
from aml_pipeline.features.flow_features import (
    FLOW_COLUMNS,
    FLOW_LINEAGE,
    HUB_DEGREE,
    build_flow_features,
)
from aml_pipeline.features.history import (
    HISTORY_ALERT_COLUMNS,
    HISTORY_DAYS,
    HISTORY_LINEAGE,
    LABEL_HISTORY_DAYS,
    build_alert_history,
)
from aml_pipeline.provenance import module_version
from aml_pipeline.storage.tables import MissingPartitions

#: The code version of the feature assets: this module, the daily tables' shared code and
#: the feature code.
CODE_VERSION = module_version(
    sys.modules[__name__],
    daily_module,
    alert_features_module,
    cluster_features_module,
    flow_features_module,
    history_module,
)


def _lineage(network: str, lineage: dict[str, list[tuple[str, str]]]) -> dg.TableColumnLineage:
    return dg.TableColumnLineage(
        deps_by_column={
            column: [
                dg.TableColumnDep(asset_key=dg.AssetKey([network, table]), column_name=raw)
                for table, raw in deps
            ]
            for column, deps in lineage.items()
        }
    )


def _look_back(
    network: str, pipeline: PipelineConfig, warehouse: Warehouse, days: list[dt.date]
) -> tuple[dt.date, pd.DataFrame, pd.DataFrame]:
    """The day the network's data began, and the alerts (``HISTORY_ALERT_COLUMNS``) and label
    events of the ``LABEL_HISTORY_DAYS`` before ``days``; a look-back day missing after the
    data began fails the step, naming it."""
    since = pipeline.data_since(network)
    look_back = date_range(days[0] - dt.timedelta(LABEL_HISTORY_DAYS), days[-1])[:-1]
    try:
        prior_alerts = warehouse.read_days(
            dg.AssetKey([network, "raw_alerts"]), look_back, HISTORY_ALERT_COLUMNS, since
        )
        events = warehouse.read_days(dg.AssetKey([network, "label_events"]), look_back, None, since)
    except MissingPartitions as exc:
        raise dg.Failure(description=f"the look-back of {days[0]}..{days[-1]}: {exc}") from exc
    return since, prior_alerts, events


def build_feature_assets(
    network: str, partitions: dg.PartitionsDefinition
) -> list[dg.AssetsDefinition]:
    """``alert_history``, ``flow_features``, ``alert_features`` and ``cluster_features`` of
    one network."""

    @dg.asset(
        key=[network, "alert_history"],
        ins={
            "alerts": dg.AssetIn(
                key=[network, "raw_alerts"], metadata={COLUMNS_KEY: ["address", "processing_date"]}
            )
        },
        deps=[dg.AssetKey([network, "label_events"])],
        description=(
            f"Per address alerted on the day: how often it was alerted in the {HISTORY_DAYS} "
            "days before, on how many days, with how many typologies; how many of its alerts "
            f"of the {LABEL_HISTORY_DAYS} days before were labelled, and SAR-filed, by the "
            "label events that arrived before the day; and how many days of data the look-back "
            f"holds. Reads raw_alerts and label_events of the {LABEL_HISTORY_DAYS} days before "
            "the day: partitions that never change after their day, so a row is the same "
            "whenever it is computed. The look-back is read, not a partition dependency, so a "
            "backfill of N days computes N days; a day missing from it after the network's "
            "data began (NETWORK.json) is an error that names the day."
        ),
        metadata={
            "dagster/column_lineage": _lineage(network, HISTORY_LINEAGE),
            "look_back_days": LABEL_HISTORY_DAYS,
            **storage_types(),
        },
        **daily_table_args(network, partitions, CODE_VERSION),
    )
    def alert_history(
        context: dg.AssetExecutionContext,
        pipeline: PipelineConfig,
        warehouse: Warehouse,
        alerts: pd.DataFrame,
    ) -> dg.Output[pd.DataFrame]:
        days = partition_days(context)
        since, prior_alerts, events = _look_back(network, pipeline, warehouse, days)
        frames = [
            build_alert_history(day_rows(alerts, day)["address"], prior_alerts, day, events, since)
            for day in days
        ]
        df = pd.concat(frames, ignore_index=True)
        metadata = daily_frame_metadata(
            context, df, data_since=str(since), label_events=len(events)
        )
        return dg.Output(df, metadata=metadata)

    @dg.asset(
        key=[network, "flow_features"],
        ins={
            "alerts": dg.AssetIn(
                key=[network, "raw_alerts"], metadata={COLUMNS_KEY: ["address", "processing_date"]}
            ),
            "flows": dg.AssetIn(
                key=[network, "raw_money_flows"],
                metadata={COLUMNS_KEY: ["processing_date", *FLOW_COLUMNS]},
            ),
        },
        deps=[dg.AssetKey([network, "label_events"])],
        description=(
            "Per address alerted on the day, the money-flow graph around it (the day's "
            "money_flows): how concentrated its USD in and out is, how much passes through, "
            "its widest scatter-gather and gather-scatter, cycles of 3 and 4 through it and "
            "the USD that goes round; and guilt by association: its counterparties (1 hop, "
            f"and 2 hops through addresses with at most {HUB_DEGREE} counterparties) alerted "
            f"on the day or in the {HISTORY_DAYS} days before, or with an alert labelled "
            "SAR-filed by a label known before the day, the USD share exchanged with those and "
            f"the days since their latest SAR. Reads the {LABEL_HISTORY_DAYS}-day look-back "
            "of raw_alerts and label_events as alert_history does."
        ),
        metadata={
            "dagster/column_lineage": _lineage(network, FLOW_LINEAGE),
            "hub_degree": HUB_DEGREE,
            **storage_types(),
        },
        **daily_table_args(network, partitions, CODE_VERSION),
    )
    def flow_features(
        context: dg.AssetExecutionContext,
        pipeline: PipelineConfig,
        warehouse: Warehouse,
        alerts: pd.DataFrame,
        flows: pd.DataFrame,
    ) -> dg.Output[pd.DataFrame]:
        days = partition_days(context)
        _, prior_alerts, events = _look_back(network, pipeline, warehouse, days)
        started = time.perf_counter()
        frames = [
            build_flow_features(
                day_rows(alerts, day)["address"], day_rows(flows, day), prior_alerts, events, day
            )
            for day in days
        ]
        df = pd.concat(frames, ignore_index=True)
        seconds = round(time.perf_counter() - started, 3)
        metadata = daily_frame_metadata(context, df, flows=len(flows), seconds=seconds)
        return dg.Output(df, metadata=metadata)

    @dg.asset(
        key=[network, "alert_features"],
        ins={
            "alerts": dg.AssetIn(key=[network, "raw_alerts"]),
            "address_features": dg.AssetIn(key=[network, "raw_features"]),
            "clusters": dg.AssetIn(key=[network, "raw_clusters"]),
            "history": dg.AssetIn(key=[network, "alert_history"]),
            "flows": dg.AssetIn(key=[network, "flow_features"]),
        },
        description=(
            "One row per alert: the alert, its address's contract features, its clusters, "
            "the address's alert history (alert counts; labels known before the day) and its "
            "flow features (the money-flow graph around it). The "
            "one feature function training and scoring share; no label of the day or later."
        ),
        metadata={
            "feature_schema_version": FEATURE_SCHEMA_VERSION,
            "categories": dg.MetadataValue.json({k: list(v) for k, v in CATEGORIES.items()}),
            "dagster/column_lineage": _lineage(network, {c: LINEAGE[c] for c in FEATURE_COLUMNS}),
            **storage_types(),
        },
        **daily_table_args(network, partitions, CODE_VERSION),
    )
    def alert_features(
        context: dg.AssetExecutionContext,
        alerts: pd.DataFrame,
        address_features: pd.DataFrame,
        clusters: pd.DataFrame,
        history: pd.DataFrame,
        flows: pd.DataFrame,
    ) -> dg.Output[pd.DataFrame]:
        frames = [
            build_alert_features(
                day_rows(alerts, day),
                day_rows(address_features, day),
                day_rows(clusters, day),
                day_rows(history, day),
                day_rows(flows, day),
            )
            for day in partition_days(context)
        ]
        df = pd.concat(frames, ignore_index=True)
        missing = df[list(FEATURE_COLUMNS)].isna().mean()
        return dg.Output(
            df,
            metadata=daily_frame_metadata(
                context,
                df,
                missing_share=dg.MetadataValue.json(
                    {c: round(float(v), 4) for c, v in missing.items() if v > 0}
                ),
            ),
        )

    @dg.asset(
        key=[network, "cluster_features"],
        ins={
            "clusters": dg.AssetIn(key=[network, "raw_clusters"]),
            "alert_features": dg.AssetIn(key=[network, "alert_features"]),
        },
        description="One row per cluster: its own columns and aggregates of its member "
        "alerts' features.",
        metadata={
            "feature_columns": dg.MetadataValue.json(list(CLUSTER_FEATURE_COLUMNS)),
            **storage_types(),
        },
        **daily_table_args(network, partitions, CODE_VERSION),
    )
    def cluster_features(
        context: dg.AssetExecutionContext, clusters: pd.DataFrame, alert_features: pd.DataFrame
    ) -> dg.Output[pd.DataFrame]:
        frames = [
            build_cluster_features(day_rows(clusters, day), day_rows(alert_features, day))
            for day in partition_days(context)
        ]
        df = pd.concat(frames, ignore_index=True)
        return dg.Output(df, metadata=daily_frame_metadata(context, df))

    return [alert_history, flow_features, alert_features, cluster_features]
