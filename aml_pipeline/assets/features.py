"""Daily model-feature assets of one network: alert_history, alert_features and
cluster_features."""

import warnings

import dagster as dg
import pandas as pd

from aml_pipeline.assets.ingestion import daily_table_args, day_rows, partition_days
from aml_pipeline.assets.metadata import frame_metadata, storage_types
from aml_pipeline.features.alert_features import (
    CATEGORIES,
    FEATURE_COLUMNS,
    FEATURE_SCHEMA_VERSION,
    HISTORY_DAYS,
    HISTORY_LINEAGE,
    LABEL_HISTORY_DAYS,
    LINEAGE,
    build_alert_features,
    build_alert_history,
)
from aml_pipeline.features.cluster_features import CLUSTER_FEATURE_COLUMNS, build_cluster_features
from aml_pipeline.io_manager import ALLOW_MISSING_KEY, COLUMNS_KEY

# Look-back inputs must reach before the first partition; the flag is beta in Dagster 1.13.
warnings.filterwarnings(
    "ignore", message="Parameter `allow_nonexistent_upstream_partitions`", category=dg.BetaWarning
)
HISTORY = dg.TimeWindowPartitionMapping(
    start_offset=-LABEL_HISTORY_DAYS, end_offset=-1, allow_nonexistent_upstream_partitions=True
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


def _history_in(network: str, table: str, columns: list[str]) -> dg.AssetIn:
    """Earlier days of ``table`` (``HISTORY``), only ``columns``; missing days are empty."""
    return dg.AssetIn(
        key=[network, table],
        partition_mapping=HISTORY,
        metadata={ALLOW_MISSING_KEY: True, COLUMNS_KEY: columns},
    )


def build_feature_assets(
    network: str, partitions: dg.PartitionsDefinition
) -> list[dg.AssetsDefinition]:
    """``alert_history``, ``alert_features`` and ``cluster_features`` of one network."""

    @dg.asset(
        key=[network, "alert_history"],
        ins={
            "prior_alerts": _history_in(
                network,
                "raw_alerts",
                ["alert_id", "address", "processing_date", "typology_type"],
            ),
            "prior_labels": _history_in(
                network,
                "ground_truth",
                ["alert_id", "processing_date", "is_sar_filed", "label_date"],
            ),
        },
        description=(
            f"Per address alerted in the {LABEL_HISTORY_DAYS} days before the day: how often "
            f"it was alerted in the last {HISTORY_DAYS} days, on how many days, with how many "
            "typologies; how many of its alerts were labelled, and SAR-filed, by labels known "
            "before the day (label_date < day); and how many days of data the look-back "
            f"holds. Reads only earlier days (partition mapping -{LABEL_HISTORY_DAYS}..-1); "
            "days before the data began count as no alerts."
        ),
        metadata={
            "dagster/column_lineage": _lineage(network, HISTORY_LINEAGE),
            **storage_types(),
        },
        **daily_table_args(network, partitions),
    )
    def alert_history(
        context: dg.AssetExecutionContext, prior_alerts: pd.DataFrame, prior_labels: pd.DataFrame
    ) -> dg.Output[pd.DataFrame]:
        frames = [
            build_alert_history(prior_alerts, day, prior_labels) for day in partition_days(context)
        ]
        df = pd.concat(frames, ignore_index=True)
        return dg.Output(df, metadata=frame_metadata(df))

    @dg.asset(
        key=[network, "alert_features"],
        ins={
            "alerts": dg.AssetIn(key=[network, "raw_alerts"]),
            "address_features": dg.AssetIn(key=[network, "raw_features"]),
            "clusters": dg.AssetIn(key=[network, "raw_clusters"]),
            "history": dg.AssetIn(key=[network, "alert_history"]),
        },
        description=(
            "One row per alert: the alert, its address's contract features, its clusters and "
            "the address's alert history (alert counts; labels known before the day). The "
            "one feature function training and scoring share; no label of the day or later."
        ),
        metadata={
            "feature_schema_version": FEATURE_SCHEMA_VERSION,
            "categories": dg.MetadataValue.json({k: list(v) for k, v in CATEGORIES.items()}),
            "dagster/column_lineage": _lineage(network, {c: LINEAGE[c] for c in FEATURE_COLUMNS}),
            **storage_types(),
        },
        **daily_table_args(network, partitions),
    )
    def alert_features(
        context: dg.AssetExecutionContext,
        alerts: pd.DataFrame,
        address_features: pd.DataFrame,
        clusters: pd.DataFrame,
        history: pd.DataFrame,
    ) -> dg.Output[pd.DataFrame]:
        frames = [
            build_alert_features(
                day_rows(alerts, day),
                day_rows(address_features, day),
                day_rows(clusters, day),
                day_rows(history, day),
            )
            for day in partition_days(context)
        ]
        df = pd.concat(frames, ignore_index=True)
        missing = df[list(FEATURE_COLUMNS)].isna().mean()
        return dg.Output(
            df,
            metadata=frame_metadata(
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
        **daily_table_args(network, partitions),
    )
    def cluster_features(
        context: dg.AssetExecutionContext, clusters: pd.DataFrame, alert_features: pd.DataFrame
    ) -> dg.Output[pd.DataFrame]:
        frames = [
            build_cluster_features(day_rows(clusters, day), day_rows(alert_features, day))
            for day in partition_days(context)
        ]
        df = pd.concat(frames, ignore_index=True)
        return dg.Output(df, metadata=frame_metadata(df))

    return [alert_history, alert_features, cluster_features]
