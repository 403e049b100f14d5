"""Cluster-level model features, aggregated from the member alerts' features."""

from __future__ import annotations

import numpy as np
import pandas as pd

from aml_pipeline.features.alert_features import (
    CATEGORIES,
    OTHER,
    SEVERITY_RANK,
    cluster_members,
    list_length,
)

CLUSTER_TYPES = ("same_entity", "pattern", "network", "time_proximity", OTHER)
#: Member alert features summarized per cluster by their mean and maximum.
MEMBER_COLUMNS = (
    "alert_confidence_score",
    "log_volume_usd",
    "degree_total",
    "velocity_score",
    "structuring_score",
    "kcore",
    "pagerank",
    "khop2_count",
    "night_transaction_ratio",
    "amount_predictability",
    "prior_alerts_30d",
    "known_sar_180d",
)
TYPOLOGIES = tuple(t for t in CATEGORIES["typology_type"] if t != OTHER)
CLUSTER_FEATURE_COLUMNS: tuple[str, ...] = (
    "cluster_type",
    "total_alerts",
    "address_count",
    "log_total_volume_usd",
    "severity_max",
    "confidence_avg",
    "distinct_typologies",
    *(f"{agg}_{c}" for c in MEMBER_COLUMNS for agg in ("mean", "max")),
    *(f"typology_{t.lower()}" for t in TYPOLOGIES),
)
CLUSTER_KEY_COLUMNS = ("cluster_id", "processing_date")


def build_cluster_features(clusters: pd.DataFrame, alert_features: pd.DataFrame) -> pd.DataFrame:
    """One row per cluster: its own columns and aggregates of its members' features."""
    clusters = clusters.sort_values("cluster_id", kind="stable").reset_index(drop=True)
    out = pd.DataFrame({k: clusters[k] for k in CLUSTER_KEY_COLUMNS})
    lookup = {v: i for i, v in enumerate(CLUSTER_TYPES)}
    out["cluster_type"] = [lookup.get(t, lookup[OTHER]) for t in clusters["cluster_type"]]
    out["total_alerts"] = pd.to_numeric(clusters["total_alerts"]).astype(float)
    out["address_count"] = [list_length(a) for a in clusters["addresses_involved"]]
    out["log_total_volume_usd"] = np.log1p(
        pd.to_numeric(clusters["total_volume_usd"]).clip(lower=0).astype(float)
    )
    out["severity_max"] = clusters["severity_max"].map(SEVERITY_RANK).astype(float)
    out["confidence_avg"] = pd.to_numeric(clusters["confidence_avg"]).astype(float)

    rows, alert_ids = cluster_members(clusters)
    members = pd.DataFrame(
        {"cluster_id": clusters["cluster_id"].to_numpy(dtype=object)[rows], "alert_id": alert_ids}
    ).merge(
        alert_features[["alert_id", *MEMBER_COLUMNS, "typology_type"]], on="alert_id", how="left"
    )
    for code, typology in enumerate(TYPOLOGIES):
        members[f"typology_{typology.lower()}"] = (members["typology_type"] == code).astype(float)
    grouped = members.groupby("cluster_id")
    aggregates = {}
    for column in MEMBER_COLUMNS:
        aggregates[f"mean_{column}"] = grouped[column].mean()
        aggregates[f"max_{column}"] = grouped[column].max()
    aggregates["distinct_typologies"] = grouped["typology_type"].nunique()
    for typology in TYPOLOGIES:
        aggregates[f"typology_{typology.lower()}"] = grouped[f"typology_{typology.lower()}"].sum()
    table = pd.DataFrame(aggregates).reindex(clusters["cluster_id"]).reset_index(drop=True)
    out = pd.concat([out, table.astype("float64")], axis=1)
    for column in CLUSTER_FEATURE_COLUMNS:
        out[column] = out[column].astype("int64" if column == "cluster_type" else "float64")
    return out[[*CLUSTER_KEY_COLUMNS, *CLUSTER_FEATURE_COLUMNS]]
