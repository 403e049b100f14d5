"""A small deterministic source of contract-valid batches with delayed labels.

It needs no SOT access and no files: every (network, date) batch is generated from a
seed, so a fresh clone can run the pipeline end to end. Like a live SOT it only serves
days that are over, and a label only once its ``label_date`` has passed.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import zlib
from collections.abc import Callable

import numpy as np
import pandas as pd

from aml_pipeline.contract.files import build_meta, parquet_bytes
from aml_pipeline.contract.schema import (
    ALERTS,
    CLUSTERS,
    FEATURES,
    GROUND_TRUTH,
    META_FILE,
    MONEY_FLOWS,
    ColumnType,
)
from aml_pipeline.sources.base import BatchNotAvailable, BatchSource, FetchedBatch, known_labels

_TYPOLOGIES = (
    "PEEL_CHAIN",
    "STRUCTURING",
    "CYCLE_DETECTION",
    "LAYERING_PATH",
    "FAN_IN",
    "FAN_OUT",
    "MIXER_USE",
)
_PATTERNS = (
    "cycle",
    "layering_path",
    "smurfing_network",
    "motif_fanin",
    "motif_fanout",
    "temporal_burst",
    "threshold_evasion",
)
_ADDRESS_TYPES = ("wallet", "exchange", "dex", "mixer", "defi", "unknown")
_ASSETS = ("ETH", "USDT", "USDC", "DAI", "WBTC")


def _severity(confidence: np.ndarray) -> np.ndarray:
    """Upstream's rule: severity from confidence alone."""
    return np.select(
        [confidence >= 0.9, confidence >= 0.75, confidence >= 0.6],
        ["critical", "high", "medium"],
        "low",
    )


def _random_column(rng: np.random.Generator, type_: ColumnType, n: int, lift: np.ndarray):
    if type_ == "int":
        return pd.array(rng.poisson(5 * lift), dtype="Int64")
    if type_ == "float":
        return rng.lognormal(0.0, 1.0, n) * lift
    if type_ == "bool":
        return pd.array(rng.random(n) < 0.2, dtype="boolean")
    if type_ == "string":
        return rng.choice(_ASSETS, n)
    if type_ == "timestamp_ms":
        return pd.array(1_700_000_000_000 + rng.integers(0, 10**10, n), dtype="Int64")
    length = 24 if type_ == "int_list" else 2
    return [list(map(int, row)) for row in rng.poisson(2, (n, length))]


class ExampleSource(BatchSource):
    """Deterministic example batches for any day from ``start`` until yesterday."""

    name = "example"

    def __init__(
        self,
        start: dt.date,
        seed: int = 7,
        addresses: int = 400,
        alerts_per_day: int = 60,
        today: Callable[[], dt.date] = lambda: dt.datetime.now(dt.UTC).date(),
    ) -> None:
        self.start, self.seed = start, seed
        self.addresses, self.alerts_per_day = addresses, alerts_per_day
        self.today = today

    def available_dates(self, network: str, window_days: int) -> list[dt.date]:
        days = (self.today() - self.start).days
        return [self.start + dt.timedelta(d) for d in range(max(days, 0))]

    def _rng(self, network: str, *parts: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, zlib.crc32(network.encode()), *parts])

    @functools.lru_cache(maxsize=16)  # noqa: B019 - sources live as long as the process
    def _generate(self, network: str, day: dt.date, window_days: int):
        population = self._rng(network, 0)
        address = np.array(
            [
                f"0x{hashlib.sha1(f'{network}:{i}'.encode()).hexdigest()[:40]}"
                for i in range(self.addresses)
            ]
        )
        illicit = population.random(self.addresses) < 0.12
        rng = self._rng(network, day.toordinal())
        n = int(min(rng.poisson(self.alerts_per_day), self.addresses))
        idx = rng.choice(self.addresses, n, replace=False)
        bad = illicit[idx]
        confidence = np.clip(rng.beta(4, 3, n) + 0.1 * bad, 0, 1).astype("float64")
        typology = rng.choice(_TYPOLOGIES, n)
        patterned = rng.random(n) < 0.4
        pattern_id = np.where(
            patterned, [f"pat-{day:%Y%m%d}-{k}" for k in rng.integers(0, max(n // 6, 1), n)], ""
        )
        alert_id = [
            hashlib.sha1(f"{a}|{t}|{day}".encode()).hexdigest()[:20]
            for a, t in zip(address[idx], typology, strict=True)
        ]
        base = {
            "window_days": pd.array([window_days] * n, dtype="Int64"),
            "processing_date": [day] * n,
        }
        alerts = pd.DataFrame(
            {
                **base,
                "alert_id": alert_id,
                "address": address[idx],
                "typology_type": typology,
                "pattern_id": pattern_id,
                "pattern_type": np.where(patterned, rng.choice(_PATTERNS, n), ""),
                "severity": _severity(confidence),
                "suspected_address_type": rng.choice(_ADDRESS_TYPES, n),
                "suspected_address_subtype": "",
                "alert_confidence_score": confidence,
                "description": [
                    f"{t} activity around {a[:10]}"
                    for t, a in zip(typology, address[idx], strict=True)
                ],
                "volume_usd": rng.lognormal(8 + 0.7 * bad, 1.5, n),
                "evidence_json": "{}",
                "risk_indicators": [[t.lower()] for t in typology],
            }
        )
        featured = np.union1d(idx, rng.choice(self.addresses, self.addresses // 4, False))
        lift = 1 + 0.6 * illicit[featured] * rng.random(len(featured))
        m = len(featured)
        features = pd.DataFrame(
            {
                "window_days": pd.array([window_days] * m, dtype="Int64"),
                "processing_date": [day] * m,
                "address": address[featured],
                **{
                    c.name: _random_column(rng, c.type, m, lift)
                    for c in FEATURES.columns
                    if not c.required
                },
            }
        )
        alerts = alerts.sort_values("alert_id", kind="stable").reset_index(drop=True)
        clusters = self._clusters(alerts, window_days, day)
        money_flows = self._money_flows(rng, address, window_days, day)
        labels = pd.DataFrame(
            {
                "alert_id": alert_id,
                "processing_date": [day] * n,
                "is_sar_filed": np.where(bad, rng.random(n) < 0.8, rng.random(n) < 0.03),
                "label_date": [day + dt.timedelta(int(d)) for d in rng.integers(3, 31, n)],
            }
        )
        return {
            "alerts": alerts,
            "features": features,
            "clusters": clusters,
            "money_flows": money_flows,
        }, labels

    @staticmethod
    def _clusters(alerts: pd.DataFrame, window_days: int, day: dt.date) -> pd.DataFrame:
        rows = []
        for kind, column in (("same_entity", "address"), ("pattern", "pattern_id")):
            members = alerts[alerts[column] != ""].groupby(column, sort=True)
            for value, group in members:
                if len(group) < 2 and kind == "pattern":
                    continue
                rows.append(
                    {
                        "window_days": window_days,
                        "processing_date": day,
                        "cluster_id": hashlib.sha1(f"{kind}|{value}|{day}".encode()).hexdigest()[
                            :16
                        ],
                        "cluster_type": kind,
                        "primary_address": group["address"].iloc[0],
                        "pattern_id": value if kind == "pattern" else "",
                        "primary_alert_id": group["alert_id"].iloc[0],
                        "related_alert_ids": group["alert_id"].tolist(),
                        "addresses_involved": sorted(set(group["address"])),
                        "total_alerts": len(group),
                        "total_volume_usd": float(group["volume_usd"].sum()),
                        "severity_max": max(
                            group["severity"], key=["low", "medium", "high", "critical"].index
                        ),
                        "confidence_avg": float(group["alert_confidence_score"].mean()),
                    }
                )
        columns = [c for c in CLUSTERS.column_names if not c.endswith("_timestamp")]
        return pd.DataFrame(rows, columns=columns)

    def _money_flows(
        self, rng: np.random.Generator, address: np.ndarray, window_days: int, day: dt.date
    ) -> pd.DataFrame:
        pairs = rng.integers(0, self.addresses, (self.addresses * 2, 2))
        pairs = np.unique(pairs[pairs[:, 0] != pairs[:, 1]], axis=0)
        k = len(pairs)
        usd = rng.lognormal(7, 1.5, k)
        return pd.DataFrame(
            {
                "window_days": pd.array([window_days] * k, dtype="Int64"),
                "processing_date": [day] * k,
                "from_address": address[pairs[:, 0]],
                "to_address": address[pairs[:, 1]],
                "tx_count": pd.array(rng.integers(1, 20, k), dtype="Int64"),
                "amount_sum": usd / 2000.0,
                "amount_usd_sum": usd,
            }
        )

    def fetch(self, network: str, processing_date: dt.date, window_days: int) -> FetchedBatch:
        if not self.start <= processing_date < self.today():
            raise BatchNotAvailable(
                f"example source has no batch for {network} {processing_date}: "
                f"days from {self.start} until yesterday are served"
            )
        tables, _ = self._generate(network, processing_date, window_days)
        specs = {
            "alerts": ALERTS,
            "features": FEATURES,
            "clusters": CLUSTERS,
            "money_flows": MONEY_FLOWS,
        }
        files = {specs[name].file: parquet_bytes(df) for name, df in tables.items()}
        day = processing_date.isoformat()
        files[META_FILE] = build_meta(
            network,
            day,
            window_days,
            files,
            {k: len(v) for k, v in tables.items()},
            generated_at=f"{processing_date + dt.timedelta(1)}T00:05:00Z",
        )
        return FetchedBatch(
            network, processing_date, window_days, files, origin=f"example(seed={self.seed})"
        )

    def fetch_labels(self, network: str, processing_date: dt.date, as_of: dt.date) -> pd.DataFrame:
        if not self.start <= processing_date < self.today():
            return known_labels(
                pd.DataFrame(columns=GROUND_TRUTH.column_names), processing_date, as_of
            )
        _, labels = self._generate(network, processing_date, 7)
        return known_labels(labels, processing_date, min(as_of, self.today()))
