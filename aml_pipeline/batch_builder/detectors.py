"""Typology detectors: rules over a window's features and graph that raise alerts.

Like upstream, each detector scores how strongly an address shows its typology; the
confidence is a monotone map of that strength and the severity follows from confidence
alone. Only addresses active on the processing date are alerted. Detectors see
transfers, features and public service tags - never labels - so honest activity with
the same shape (payroll fan-out, exchange fan-in, bridges, market makers) is alerted too.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping

import numpy as np
import pandas as pd
import scipy.sparse as sp
from scipy.sparse import csgraph

from aml_pipeline.batch_builder.window import Window
from aml_pipeline.domain import DAY_MS, HOUR_MS, NEAR_THRESHOLD_SHARE
from aml_pipeline.domain import REPORTING_THRESHOLD_USD as THRESHOLD_USD

ALERT_COLUMNS = [
    "code",
    "typology_type",
    "pattern_type",
    "pattern_id",
    "strength",
    "volume_usd",
    "evidence",
    "risk_indicators",
]


def severity(confidence: np.ndarray) -> np.ndarray:
    """Upstream's rule: >=0.9 critical, >=0.75 high, >=0.6 medium, else low."""
    return np.select(
        [confidence >= 0.9, confidence >= 0.75, confidence >= 0.6],
        ["critical", "high", "medium"],
        "low",
    )


def confidence(strength: np.ndarray) -> np.ndarray:
    """Detector confidence in [0.45, 0.99) from a non-negative strength."""
    return np.round(0.45 + 0.54 * (1.0 - np.exp(-np.clip(strength, 0, None))), 4)


def _pattern_id(kind: str, members: np.ndarray, addresses: np.ndarray) -> str:
    key = kind + "|" + "|".join(sorted(addresses[members]))
    return f"{kind}-{hashlib.sha1(key.encode()).hexdigest()[:16]}"


def _rows(
    codes: np.ndarray,
    typology: str,
    pattern_type: str,
    strength: np.ndarray,
    volume: np.ndarray,
    evidence: list[dict],
    indicators: list[str],
    pattern_ids: list[str] | None = None,
) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "code": codes,
            "typology_type": typology,
            "pattern_type": pattern_type,
            "pattern_id": pattern_ids if pattern_ids is not None else [""] * len(codes),
            "strength": strength,
            "volume_usd": volume,
            "evidence": evidence,
            "risk_indicators": [list(indicators)] * len(codes),
        },
        columns=ALERT_COLUMNS,
    )


def _concat(frames: list[pd.DataFrame]) -> pd.DataFrame:
    """Concatenate detector outputs; an empty, typed frame when none raised alerts."""
    frames = [f for f in frames if len(f)]
    if not frames:
        return pd.DataFrame(
            {c: pd.Series(dtype="int64" if c == "code" else "object") for c in ALERT_COLUMNS}
        )
    return pd.concat(frames, ignore_index=True)


def _components(
    members: np.ndarray,
    directed: sp.csr_matrix,
    min_size: int,
) -> list[np.ndarray]:
    """Weakly connected groups (>= min_size) of ``members`` linked by direct transfers."""
    if len(members) < min_size:
        return []
    sub = directed[members][:, members]
    count, labels = csgraph.connected_components(sub, directed=True, connection="weak")
    groups = [members[labels == c] for c in range(count)]
    return [g for g in groups if len(g) >= min_size]


class Detectors:
    """All typology detectors over one window."""

    def __init__(self, w: Window, features: pd.DataFrame, tags: Mapping[str, str]) -> None:
        self.w, self.f = w, features
        self.n = w.n_addresses
        self.directed = w.directed
        self.tag = np.array([tags.get(a, "") for a in w.addresses], dtype=object)
        service = np.isin(self.tag, ["exchange", "defi", "bridge", "mixer"])
        self.hub = service | w.hub  # known services and the busiest addresses
        self.today = w.active_today

    def _col(self, name: str) -> np.ndarray:
        return self.f[name].to_numpy(dtype="float64")

    def fan(self, direction: str) -> pd.DataFrame:
        """Many distinct senders (in) or recipients (out) that are thin, fresh-looking
        addresses, or that all move similar amounts (smurfing / distribution shapes)."""
        degree = self._col(f"degree_{direction}")
        volume = self._col(f"total_{direction}_usd")
        legs = self.w.legs
        side = legs[legs["outgoing"].to_numpy() == (direction == "out")]
        pairs = side[["address", "counterparty"]].drop_duplicates()
        thin = self._col("degree_total")[pairs["counterparty"].to_numpy()] <= 4
        thin_share = np.where(
            degree > 0,
            np.bincount(pairs["address"].to_numpy(), thin.astype(float), self.n)
            / np.maximum(degree, 1),
            0,
        )
        homogeneous = self._col("amount_predictability")
        ordinary = degree[~self.hub]
        busy = degree >= max(10.0, float(np.quantile(ordinary, 0.97)) if len(ordinary) else 0)
        hit = (
            self.today
            & ~self.hub
            & (degree >= 6)
            & ((thin_share >= 0.2) | (homogeneous >= 0.6) | busy)
        )
        strength = np.log1p(degree / 10.0) * (0.3 + thin_share + 0.5 * homogeneous)
        codes = np.flatnonzero(hit)
        evidence = [
            {
                "distinct_counterparties": int(degree[c]),
                "thin_counterparty_share": round(thin_share[c], 4),
                "volume_usd": round(volume[c], 2),
            }
            for c in codes
        ]
        typology = "FAN_IN" if direction == "in" else "FAN_OUT"
        return _rows(
            codes,
            typology,
            f"motif_fan{direction}",
            strength[codes],
            volume[codes],
            evidence,
            [f"many_{'senders' if direction == 'in' else 'recipients'}"],
        )

    def cycles(self) -> pd.DataFrame:
        keep = (~self.hub).astype(float)
        graph = sp.diags(keep) @ self.directed @ sp.diags(keep)
        count, labels = csgraph.connected_components(graph, directed=True, connection="strong")
        sizes = np.bincount(labels, minlength=count)
        frames = []
        for comp in np.flatnonzero((sizes >= 2) & (sizes <= 12)):
            members = np.flatnonzero(labels == comp)
            sub = graph[members][:, members]
            volume = float(sub.sum())
            sent = np.asarray(sub.sum(axis=1)).ravel()  # each member's share of the loop
            if len(members) == 2 and min(sub[0, 1], sub[1, 0]) < 0.2 * max(sub[0, 1], sub[1, 0]):
                continue  # a lopsided two-way relationship is not a cycle
            if volume < 2_000:
                continue
            today = self.today[members]
            codes = members[today]
            strength = np.full(len(codes), np.log1p(volume / 5_000) * (1.0 + 0.25 * len(members)))
            pid = _pattern_id("cycle", members, self.w.addresses)
            frames.append(
                _rows(
                    codes,
                    "CYCLE_DETECTION",
                    "cycle",
                    strength,
                    sent[today],
                    [{"cycle_size": len(members), "cycle_volume_usd": round(volume, 2)}]
                    * len(codes),
                    ["circular_flow"],
                    [pid] * len(codes),
                )
            )
        return _concat(frames)

    def _chains(
        self, candidate: np.ndarray, typology: str, min_size: int, indicator: str
    ) -> pd.DataFrame:
        frames = []
        velocity = self._col("velocity_score")
        for members in _components(np.flatnonzero(candidate), self.directed, min_size):
            codes = members[self.today[members]]
            if not len(codes):
                continue
            volume = self._col("total_in_usd")[members].sum()
            strength = np.log1p(len(members)) * (0.5 + velocity[codes])
            pid = _pattern_id(typology.lower(), members, self.w.addresses)
            frames.append(
                _rows(
                    codes,
                    typology,
                    "layering_path",
                    strength,
                    self._col("total_in_usd")[codes],
                    [{"chain_length": len(members), "chain_volume_usd": round(float(volume), 2)}]
                    * len(codes),
                    [indicator],
                    [pid] * len(codes),
                )
            )
        return _concat(frames)

    def peel_chains(self) -> pd.DataFrame:
        legs = self.w.legs
        out = legs[legs["outgoing"]]
        top = out.groupby("address")["amount"].max().reindex(range(self.n), fill_value=0.0)
        top_share = np.where(
            self._col("total_out_usd") > 0,
            top.to_numpy() / np.maximum(self._col("total_out_usd"), 1e-9),
            0,
        )
        candidate = (
            ~self.hub
            & (self._col("tx_out_count") >= 2)
            & (self._col("degree_out") <= 4)
            & (self._col("tx_in_count") <= 3)
            & (top_share >= 0.8)
            & (top_share < 0.995)
            & (self._col("total_in_usd") >= 1_000)
            & (self._col("total_out_usd") >= 0.8 * self._col("total_in_usd"))
        )
        return self._chains(candidate, "PEEL_CHAIN", 2, "peeling")

    def layering(self) -> pd.DataFrame:
        tin, tout = self._col("total_in_usd"), self._col("total_out_usd")
        balance = np.where(
            np.maximum(tin, tout) > 0,
            np.minimum(tin, tout) / np.maximum(np.maximum(tin, tout), 1e-9),
            0,
        )
        candidate = (
            ~self.hub
            & (self._col("degree_in") <= 3)
            & (self._col("degree_out") <= 3)
            & (balance >= 0.9)
            & (tin >= 2_000)
        )
        return self._chains(candidate, "LAYERING_PATH", 3, "pass_through_chain")

    def structuring(self) -> pd.DataFrame:
        legs = self.w.legs
        near = legs[
            (legs["amount"] >= NEAR_THRESHOLD_SHARE * THRESHOLD_USD)
            & (legs["amount"] < THRESHOLD_USD)
        ]
        count = np.bincount(near["address"].to_numpy(), minlength=self.n)
        score = self._col("structuring_score")
        codes = np.flatnonzero(self.today & (count >= 3) & (score >= 0.25))
        strength = np.log1p(count[codes] / 3.0) + score[codes]
        evidence = [
            {"near_threshold_transfers": int(count[c]), "threshold_usd": THRESHOLD_USD}
            for c in codes
        ]
        return _rows(
            codes,
            "STRUCTURING",
            "threshold_evasion",
            strength,
            self._col("total_volume_usd")[codes],
            evidence,
            ["below_threshold_amounts"],
        )

    def mixer_use(self) -> pd.DataFrame:
        mixer = self.tag == "mixer"
        legs = self.w.legs
        touch = legs[mixer[legs["counterparty"].to_numpy()] & ~mixer[legs["address"].to_numpy()]]
        volume = np.bincount(touch["address"].to_numpy(), touch["amount"].to_numpy(), self.n)
        share = np.where(
            self._col("total_volume_usd") > 0,
            volume / np.maximum(self._col("total_volume_usd"), 1e-9),
            0,
        )
        codes = np.flatnonzero(self.today & (volume >= 1_000))
        strength = np.log1p(volume[codes] / 2_000) * (0.5 + share[codes])
        evidence = [
            {"mixer_volume_usd": round(volume[c], 2), "mixer_share": round(share[c], 4)}
            for c in codes
        ]
        return _rows(
            codes,
            "MIXER_USE",
            "proximity_risk",
            strength,
            volume[codes],
            evidence,
            ["mixer_counterparty"],
        )

    def rapid_pass_through(self) -> pd.DataFrame:
        velocity, tin = self._col("velocity_score"), self._col("total_in_usd")
        codes = np.flatnonzero(
            self.today & (velocity >= 0.85) & (tin >= 5_000) & (self._col("degree_total") <= 6)
        )
        strength = velocity[codes] * np.log1p(tin[codes] / 5_000)
        evidence = [
            {"velocity_score": round(velocity[c], 4), "in_usd": round(tin[c], 2)} for c in codes
        ]
        return _rows(
            codes,
            "RAPID_PASS_THROUGH",
            "",
            strength,
            tin[codes],
            evidence,
            ["funds_forwarded_quickly"],
        )

    def dormant_reactivation(self) -> pd.DataFrame:
        first_ms = self._col("first_activity_timestamp")
        recent = first_ms >= self.w.day_start_ms - DAY_MS
        quiet = (first_ms - self.w.start_ms) // DAY_MS  # silent days of the window before
        out = self._col("total_out_usd")
        codes = np.flatnonzero(
            self.today
            & recent
            & (self.w.window_days >= 3)
            & (out >= 5_000)
            & (self._col("tx_out_count") >= 3)
        )
        strength = np.log1p(out[codes] / 5_000) + 0.1 * self._col("tx_out_count")[codes]
        evidence = [{"quiet_days": int(quiet[c]), "out_usd": round(out[c], 2)} for c in codes]
        return _rows(
            codes,
            "DORMANT_REACTIVATION",
            "",
            strength,
            out[codes],
            evidence,
            ["sudden_activity_after_silence"],
        )

    def bursts(self) -> pd.DataFrame:
        factor = self._col("burst_factor")
        legs = self.w.legs
        per_hour = legs.groupby(["address", legs["ts"] // HOUR_MS]).size()
        peak = per_hour.groupby(level=0).max().reindex(range(self.n), fill_value=0).to_numpy()
        codes = np.flatnonzero(self.today & (peak >= 10) & (factor >= 5))
        strength = np.log1p(peak[codes] / 10.0) + 0.05 * factor[codes]
        evidence = [
            {"transfers_in_peak_hour": int(peak[c]), "burst_factor": round(factor[c], 2)}
            for c in codes
        ]
        return _rows(
            codes,
            "TEMPORAL_BURST",
            "temporal_burst",
            strength,
            self._col("total_volume_usd")[codes],
            evidence,
            ["activity_burst"],
        )

    def run(self) -> pd.DataFrame:
        """Every detector's alerts, one row per (address, typology), strongest kept."""
        frames = [
            self.fan("in"),
            self.fan("out"),
            self.cycles(),
            self.peel_chains(),
            self.layering(),
            self.structuring(),
            self.mixer_use(),
            self.rapid_pass_through(),
            self.dormant_reactivation(),
            self.bursts(),
        ]
        alerts = _concat(frames)
        alerts = alerts.sort_values(
            ["code", "typology_type", "strength"], ascending=[True, True, False], kind="stable"
        )
        alerts = alerts.drop_duplicates(["code", "typology_type"]).reset_index(drop=True)
        alerts["evidence_json"] = [json.dumps(e, sort_keys=True) for e in alerts["evidence"]]
        return alerts.drop(columns=["evidence"])
