"""Alert-level model features, computed the same way for training and for scoring.

Every value comes from data available on the alert's processing date: the alert itself,
its address's contract features, the day's clusters, earlier days' alerts, the labels
of earlier alerts on the same address that were known before the day (``label_date``
before the processing date) and the money-flow graph around the address
(``flow_features``). No label known on or after the day and no statistic over
"whatever range was loaded" is used, so a row means the same thing whenever it is
computed. Categoricals use fixed, recorded vocabularies; values outside them share one
``__other__`` code.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sized

import numpy as np
import pandas as pd

from aml_pipeline.contract.schema import FEATURES
from aml_pipeline.domain import HOUR_MS
from aml_pipeline.features.flow_features import FLOW_FEATURES
from aml_pipeline.features.history import (
    COVERAGE_FEATURE,
    HISTORY_COUNTS,
    HISTORY_FEATURES,
)

FEATURE_SCHEMA_VERSION = 3
OTHER = "__other__"

#: Categorical feature -> its fixed vocabulary (code = position; OTHER is the last code).
CATEGORIES: dict[str, tuple[str, ...]] = {
    "typology_type": (
        "FAN_IN",
        "FAN_OUT",
        "CYCLE_DETECTION",
        "PEEL_CHAIN",
        "LAYERING_PATH",
        "STRUCTURING",
        "MIXER_USE",
        "RAPID_PASS_THROUGH",
        "DORMANT_REACTIVATION",
        "TEMPORAL_BURST",
        OTHER,
    ),
    "pattern_type": (
        "",
        "cycle",
        "layering_path",
        "smurfing_network",
        "proximity_risk",
        "motif_fanin",
        "motif_fanout",
        "temporal_burst",
        "threshold_evasion",
        OTHER,
    ),
    "severity": ("low", "medium", "high", "critical", OTHER),
    "suspected_address_type": (
        "unknown",
        "wallet",
        "exchange",
        "dex",
        "mixer",
        "defi",
        "bridge",
        "staking",
        "scam",
        "institutional",
        "merchant",
        OTHER,
    ),
}
SEVERITY_RANK = {"low": 0, "medium": 1, "high": 2, "critical": 3}

#: Contract feature columns that are not model inputs: keys, an arbitrary component id,
#: per-hour/day lists (summarized by other columns) and asset names.
_NOT_MODEL_INPUTS = {
    "window_days",
    "processing_date",
    "address",
    "community_id",
    "hourly_activity",
    "daily_activity",
    "dominant_asset_in",
    "dominant_asset_out",
    "first_activity_timestamp",
    "last_activity_timestamp",
}
ADDRESS_FEATURES: tuple[str, ...] = tuple(
    c.name for c in FEATURES.columns if c.name not in _NOT_MODEL_INPUTS
)
ALERT_FEATURES = (
    "alert_confidence_score",
    "log_volume_usd",
    "has_pattern",
    "risk_indicator_count",
    *CATEGORIES,
)
ACTIVITY_FEATURES = ("hours_since_first_activity", "hours_since_last_activity")
CLUSTER_FEATURES = (
    "cluster_count",
    "cluster_max_alerts",
    "cluster_max_addresses",
    "cluster_max_volume_usd",
    "cluster_max_severity",
    "cluster_mean_confidence",
    "cluster_volume_share",
    "in_pattern_cluster",
    "in_network_cluster",
)
#: Required direction of the score in a feature, for the alert models.
MONOTONE: dict[str, int] = {
    "known_sar_180d": 1,
    "known_sar_rate_180d": 1,
    "days_since_known_sar": -1,
}
#: Every model input column, in a fixed order.
FEATURE_COLUMNS: tuple[str, ...] = (
    *ALERT_FEATURES,
    *ADDRESS_FEATURES,
    *ACTIVITY_FEATURES,
    *CLUSTER_FEATURES,
    *HISTORY_FEATURES,
    *FLOW_FEATURES,
)
KEY_COLUMNS = ("alert_id", "processing_date", "address")


def encode(values: pd.Series, column: str) -> np.ndarray:
    """Codes of ``values`` in the fixed vocabulary of ``column`` (unknown -> OTHER)."""
    vocab = CATEGORIES[column]
    lookup = {v: i for i, v in enumerate(vocab)}
    other = lookup[OTHER]
    return np.array(
        [lookup.get(v, other) if isinstance(v, str) else other for v in values], dtype=np.int64
    )


def list_length(values: Sized | float | None) -> float:
    """Length of a list cell; NaN for a missing one."""
    return float(len(values)) if values is not None and not isinstance(values, float) else np.nan


def cluster_members(clusters: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """(cluster row position, alert_id) for every member alert of every cluster: an
    ``explode`` of ``related_alert_ids`` without copying the other columns."""
    lists = [
        () if ids is None or isinstance(ids, float) else ids
        for ids in clusters["related_alert_ids"]
    ]
    rows = np.repeat(np.arange(len(lists)), [len(ids) for ids in lists])
    alert_ids = np.array([a for ids in lists for a in ids], dtype=object)
    return rows, alert_ids


def _cluster_features(alerts: pd.DataFrame, clusters: pd.DataFrame) -> pd.DataFrame:
    empty = pd.DataFrame(index=alerts["alert_id"], columns=list(CLUSTER_FEATURES), dtype=float)
    if clusters.empty or alerts.empty:
        return empty.fillna(
            {"cluster_count": 0, "in_pattern_cluster": 0, "in_network_cluster": 0}
        ).reset_index(drop=True)
    per_cluster = pd.DataFrame(
        {
            "cluster_type": clusters["cluster_type"].to_numpy(dtype=object),
            "total_alerts": pd.to_numeric(clusters["total_alerts"]).to_numpy(dtype=float),
            "n_addresses": [list_length(a) for a in clusters["addresses_involved"]],
            "total_volume_usd": pd.to_numeric(clusters["total_volume_usd"]).to_numpy(dtype=float),
            "severity_max": clusters["severity_max"].to_numpy(dtype=object),
            "confidence_avg": pd.to_numeric(clusters["confidence_avg"]).to_numpy(dtype=float),
        }
    )
    rows, alert_ids = cluster_members(clusters)
    member = per_cluster.iloc[rows].reset_index(drop=True)
    member["alert_id"] = alert_ids
    member["severity_rank"] = member["severity_max"].map(SEVERITY_RANK)
    member["is_pattern"] = (member["cluster_type"] == "pattern").astype(float)
    member["is_network"] = (member["cluster_type"] == "network").astype(float)
    volume = alerts.set_index("alert_id")["volume_usd"]
    member["share"] = member["alert_id"].map(volume) / member["total_volume_usd"].where(
        member["total_volume_usd"] > 0
    )
    grouped = member.groupby("alert_id")
    out = pd.DataFrame(
        {
            "cluster_count": grouped.size(),
            "cluster_max_alerts": grouped["total_alerts"].max(),
            "cluster_max_addresses": grouped["n_addresses"].max(),
            "cluster_max_volume_usd": grouped["total_volume_usd"].max(),
            "cluster_max_severity": grouped["severity_rank"].max(),
            "cluster_mean_confidence": grouped["confidence_avg"].mean(),
            "cluster_volume_share": grouped["share"].max(),
            "in_pattern_cluster": grouped["is_pattern"].max(),
            "in_network_cluster": grouped["is_network"].max(),
        }
    )
    out = out.reindex(alerts["alert_id"])
    out[["cluster_count", "in_pattern_cluster", "in_network_cluster"]] = out[
        ["cluster_count", "in_pattern_cluster", "in_network_cluster"]
    ].fillna(0)
    return out.reset_index(drop=True).astype("float64")


def _per_address(
    frame: pd.DataFrame | None, alerts: pd.DataFrame, columns: tuple[str, ...]
) -> pd.DataFrame:
    """``columns`` of ``frame`` (a row per address) for each alert's address, in the alerts'
    order; missing where the address has no row."""
    if frame is None or frame.empty:
        return pd.DataFrame(np.nan, index=range(len(alerts)), columns=list(columns))
    per_address = frame.drop_duplicates("address").set_index("address")[list(columns)]
    return per_address.reindex(alerts["address"]).astype("float64").reset_index(drop=True)


def build_alert_features(
    alerts: pd.DataFrame,
    address_features: pd.DataFrame,
    clusters: pd.DataFrame,
    history: pd.DataFrame | None = None,
    flows: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """One row per alert of one day: keys plus every column of ``FEATURE_COLUMNS``.

    ``address_features`` may lack rows or optional columns (missing values result);
    ``history`` is ``build_alert_history`` of the alerts' day (addresses without a row
    have no history: zero counts and coverage, missing rate and days); ``flows`` is
    ``build_flow_features`` of the day (without it the flow features are missing).
    """
    days = set(alerts["processing_date"])
    if len(days) > 1:
        raise ValueError(f"alert features are built one day at a time, got {len(days)} days")
    alerts = alerts.sort_values("alert_id", kind="stable").reset_index(drop=True)
    out = pd.DataFrame({k: alerts[k] for k in KEY_COLUMNS})
    out["alert_confidence_score"] = pd.to_numeric(alerts["alert_confidence_score"]).astype(float)
    out["log_volume_usd"] = np.log1p(pd.to_numeric(alerts["volume_usd"]).clip(lower=0))
    out["has_pattern"] = (alerts["pattern_id"].fillna("") != "").astype(float)
    out["risk_indicator_count"] = alerts["risk_indicators"].map(
        lambda r: float(len(r)) if r is not None and not isinstance(r, float) else 0.0
    )
    for column in CATEGORIES:
        out[column] = encode(alerts[column], column)

    per_address = address_features.drop_duplicates("address").set_index("address")
    joined = per_address.reindex(alerts["address"])
    for column in ADDRESS_FEATURES:
        values = joined[column] if column in joined else pd.Series(np.nan, index=joined.index)
        out[column] = pd.to_numeric(values, errors="coerce").astype("float64").to_numpy()
    day = next(iter(days)) if days else dt.date(1970, 1, 1)
    day_end_ms = int(
        dt.datetime.combine(day + dt.timedelta(1), dt.time(), dt.UTC).timestamp() * 1000
    )
    for name, column in (
        ("hours_since_first_activity", "first_activity_timestamp"),
        ("hours_since_last_activity", "last_activity_timestamp"),
    ):
        ts = (
            pd.to_numeric(joined[column], errors="coerce")
            if column in joined
            else pd.Series(np.nan, index=joined.index)
        )
        out[name] = ((day_end_ms - ts.astype("float64")) / HOUR_MS).to_numpy()

    prior = _per_address(history, alerts, HISTORY_FEATURES)
    prior[list(HISTORY_COUNTS)] = prior[list(HISTORY_COUNTS)].fillna(0.0)
    prior[COVERAGE_FEATURE] = prior[COVERAGE_FEATURE].fillna(0.0)
    out = pd.concat(
        [
            out,
            _cluster_features(alerts, clusters),
            prior,
            _per_address(flows, alerts, FLOW_FEATURES),
        ],
        axis=1,
    )
    for column in FEATURE_COLUMNS:  # plain numpy dtypes, whatever the inputs carried
        out[column] = out[column].astype("int64" if column in CATEGORIES else "float64")
    return out[[*KEY_COLUMNS, *FEATURE_COLUMNS]]


#: Feature column -> the raw (table, column) pairs it is computed from.
LINEAGE: dict[str, list[tuple[str, str]]] = {
    "alert_confidence_score": [("raw_alerts", "alert_confidence_score")],
    "log_volume_usd": [("raw_alerts", "volume_usd")],
    "has_pattern": [("raw_alerts", "pattern_id")],
    "risk_indicator_count": [("raw_alerts", "risk_indicators")],
    **{c: [("raw_alerts", c)] for c in CATEGORIES},
    **{c: [("raw_features", c), ("raw_alerts", "address")] for c in ADDRESS_FEATURES},
    "hours_since_first_activity": [("raw_features", "first_activity_timestamp")],
    "hours_since_last_activity": [("raw_features", "last_activity_timestamp")],
    **{
        c: [
            ("raw_clusters", "related_alert_ids"),
            ("raw_clusters", "total_alerts"),
            ("raw_clusters", "total_volume_usd"),
            ("raw_clusters", "severity_max"),
            ("raw_clusters", "confidence_avg"),
            ("raw_clusters", "cluster_type"),
        ]
        for c in CLUSTER_FEATURES
    },
    **{c: [("alert_history", c)] for c in HISTORY_FEATURES},
    **{c: [("flow_features", c)] for c in FLOW_FEATURES},
}
