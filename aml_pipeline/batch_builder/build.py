"""Build a contract-valid SOT batch from a transfers table."""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from aml_pipeline.batch_builder.clusters import build_clusters
from aml_pipeline.batch_builder.detectors import Detectors, confidence, severity
from aml_pipeline.batch_builder.features import address_features
from aml_pipeline.batch_builder.flows import money_flows
from aml_pipeline.batch_builder.graph import khop_features
from aml_pipeline.batch_builder.traps import select_traps, traps_bytes
from aml_pipeline.batch_builder.window import Window
from aml_pipeline.contract.files import build_meta, parquet_bytes
from aml_pipeline.contract.schema import (
    ALERTS,
    BATCH_TABLES,
    FEATURES,
    META_FILE,
    PATTERN_TRAPS_FILE,
    RETIRED_FEATURES,
)


@dataclass(frozen=True)
class BuiltBatch:
    """The four tables of one batch, ready to serialize with its pattern traps."""

    network: str
    day: dt.date
    window_days: int
    tables: dict[str, pd.DataFrame]

    @property
    def traps(self) -> list[dict[str, Any]]:
        """The batch's pattern traps (see ``batch_builder.traps``)."""
        return select_traps(self.tables["alerts"], self.network, self.day)

    def files(self) -> dict[str, bytes]:
        """Parquet files, pattern_traps.json and META.json with counts (tables) and
        checksums (every file); deterministic bytes."""
        specs = {t.name: t for t in BATCH_TABLES}
        files = {specs[name].file: parquet_bytes(df) for name, df in self.tables.items()}
        files[PATTERN_TRAPS_FILE] = traps_bytes(self.traps)
        files[META_FILE] = build_meta(
            self.network,
            self.day.isoformat(),
            self.window_days,
            files,
            {name: len(df) for name, df in self.tables.items()},
            generated_at=f"{self.day + dt.timedelta(1)}T00:05:00Z",
        )
        return files


def alert_id(network: str, address: str, typology: str, day: dt.date) -> str:
    """Upstream-style id from address + typology + date (date-specific)."""
    return hashlib.sha1(f"{network}|{address}|{typology}|{day}".encode()).hexdigest()[:32]


def _alerts_table(
    raw: pd.DataFrame, w: Window, network: str, tags: Mapping[str, str], last_ts: np.ndarray
) -> pd.DataFrame:
    address = w.addresses[raw["code"].to_numpy()]
    conf = confidence(raw["strength"].to_numpy(dtype="float64"))
    typology = raw["typology_type"].to_numpy()
    alerts = pd.DataFrame(
        {
            "window_days": w.window_days,
            "processing_date": [w.day] * len(raw),
            "alert_id": [
                alert_id(network, a, t, w.day) for a, t in zip(address, typology, strict=True)
            ],
            "address": address,
            "typology_type": typology,
            "pattern_id": raw["pattern_id"].to_numpy(),
            "pattern_type": raw["pattern_type"].to_numpy(),
            "severity": severity(conf),
            "suspected_address_type": [tags.get(a, "unknown") for a in address],
            "suspected_address_subtype": "",
            "alert_confidence_score": conf,
            "description": [
                f"{t.replace('_', ' ').lower()} activity by {a[:12]}..."
                for t, a in zip(typology, address, strict=True)
            ],
            "volume_usd": np.round(raw["volume_usd"].to_numpy(dtype="float64"), 2),
            "evidence_json": raw["evidence_json"].to_numpy(),
            "risk_indicators": raw["risk_indicators"].tolist(),
            "alert_ts": last_ts[raw["code"].to_numpy()],
        }
    )
    return alerts.sort_values("alert_id", kind="stable").reset_index(drop=True)


def build_batch(
    transfers: pd.DataFrame,
    network: str,
    day: dt.date,
    window_days: int,
    tags: Mapping[str, str] | None = None,
) -> BuiltBatch:
    """Features, money flows, alerts and clusters of ``day`` over the trailing window.

    ``transfers`` needs ``timestamp_ms``, ``from_address``, ``to_address``, ``amount_usd``
    and optionally ``asset``; rows outside the window are ignored. ``tags`` are public
    service tags (exchange, defi, mixer, bridge, ...), used as suspected address types.
    """
    tags = tags or {}
    w = Window.build(transfers, day, window_days)
    features = address_features(w)
    detectors = Detectors(w, features, tags)
    raw_alerts = detectors.run()
    codes = raw_alerts["code"].to_numpy(dtype=np.int64)
    for name, values in khop_features(w, np.unique(codes)).items():
        features[name] = values
    alerts = _alerts_table(
        raw_alerts, w, network, tags, features["last_activity_timestamp"].to_numpy()
    )
    code_of = dict(zip(w.addresses, range(w.n_addresses), strict=True))
    clusters = build_clusters(
        alerts, w, np.array([code_of[a] for a in alerts["address"]], dtype=np.int64), detectors.hub
    )
    columns = [c for c in FEATURES.column_names if c not in RETIRED_FEATURES]
    features = features.assign(window_days=window_days, processing_date=[day] * len(features))
    return BuiltBatch(
        network,
        day,
        window_days,
        {
            "alerts": alerts[ALERTS.column_names],
            "features": features[columns],
            "clusters": clusters.sort_values("cluster_id", kind="stable").reset_index(drop=True),
            "money_flows": money_flows(w),
        },
    )
