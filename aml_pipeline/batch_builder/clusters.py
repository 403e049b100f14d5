"""Alert clusters: same entity, shared pattern, and alerted addresses that trade."""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd
from scipy.sparse import csgraph

from aml_pipeline.batch_builder.window import Window
from aml_pipeline.contract.schema import CLUSTERS

_SEVERITY = np.array(["low", "medium", "high", "critical"], dtype=object)


def _memberships(
    alerts: pd.DataFrame, w: Window, alert_codes: np.ndarray, hub: np.ndarray
) -> pd.DataFrame:
    """(cluster_type, key, alert row) for every cluster of >= 2 addresses or alerts."""
    frames = []
    rows = np.arange(len(alerts))
    by_address = alerts.groupby("address")["alert_id"].transform("size").to_numpy()
    keep = by_address >= 2
    frames.append(
        pd.DataFrame(
            {
                "cluster_type": "same_entity",
                "key": alerts["address"].to_numpy()[keep],
                "row": rows[keep],
            }
        )
    )
    patterned = alerts["pattern_id"].to_numpy() != ""
    spread = alerts[patterned].groupby("pattern_id")["address"].transform("nunique")
    keep = np.zeros(len(alerts), bool)
    keep[np.flatnonzero(patterned)[spread.to_numpy() >= 2]] = True
    frames.append(
        pd.DataFrame(
            {
                "cluster_type": "pattern",
                "key": alerts["pattern_id"].to_numpy()[keep],
                "row": rows[keep],
            }
        )
    )
    members = np.unique(alert_codes[~hub[alert_codes]]) if len(alert_codes) else alert_codes
    if len(members) >= 2:
        n = w.n_addresses
        _, labels = csgraph.connected_components(
            w.directed[members][:, members], directed=True, connection="weak"
        )
        component = np.full(n, -1)
        component[members] = labels
        label = component[alert_codes]
        size = pd.Series(alert_codes).groupby(label).transform("nunique").to_numpy()
        keep = (label >= 0) & (size >= 2)
        frames.append(
            pd.DataFrame(
                {"cluster_type": "network", "key": label[keep].astype(str), "row": rows[keep]}
            )
        )
    return pd.concat(frames, ignore_index=True)


def build_clusters(
    alerts: pd.DataFrame, w: Window, alert_codes: np.ndarray, hub: np.ndarray
) -> pd.DataFrame:
    """Clusters of >= 2 alerts: same_entity (one address), pattern (one pattern_id, >= 2
    addresses) and network (alerted non-hub addresses joined by direct transfers)."""
    m = _memberships(alerts, w, alert_codes, hub)
    if not len(m):
        return pd.DataFrame(columns=CLUSTERS.column_names)
    a = alerts.iloc[m["row"].to_numpy()].reset_index(drop=True)
    m = pd.concat([m.reset_index(drop=True), a], axis=1)
    m["severity_rank"] = m["severity"].map({s: i for i, s in enumerate(_SEVERITY)})
    m = m.sort_values(
        ["cluster_type", "key", "alert_confidence_score", "alert_id"],
        ascending=[True, True, False, True],
        kind="stable",
    )
    grouped = m.groupby(["cluster_type", "key"], sort=True)
    out = grouped.agg(
        primary_address=("address", "first"),
        primary_alert_id=("alert_id", "first"),
        related_alert_ids=("alert_id", lambda s: sorted(s)),
        addresses_involved=("address", lambda s: sorted(set(s))),
        total_alerts=("alert_id", "size"),
        total_volume_usd=("volume_usd", "sum"),
        severity_rank=("severity_rank", "max"),
        confidence_avg=("alert_confidence_score", "mean"),
        earliest_alert_timestamp=("alert_ts", "min"),
        latest_alert_timestamp=("alert_ts", "max"),
    ).reset_index()
    out["cluster_id"] = [
        f"{kind}-" + hashlib.sha1(f"{kind}|{'|'.join(ids)}".encode()).hexdigest()[:24]
        for kind, ids in zip(out["cluster_type"], out["related_alert_ids"], strict=True)
    ]
    out["pattern_id"] = np.where(out["cluster_type"] == "pattern", out["key"], "")
    out["severity_max"] = _SEVERITY[out["severity_rank"].to_numpy()]
    out["window_days"] = w.window_days
    out["processing_date"] = [w.day] * len(out)
    return out[CLUSTERS.column_names]
