"""Pattern traps: canary alerts that catch submissions echoing the detector's confidence.

Each batch names a few of its alerts with ``expected_score`` equal to the detector's own
``alert_confidence_score`` (rounded to 4 decimals). A submission that merely copies that
confidence instead of modelling the alert scores within the validators' tolerance of it
and falls into the trap (Tier 2 penalty). The selection is a pure function of network,
date and alert ids (hash-ranked), so the same batch always carries the same traps.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
from collections.abc import Sequence
from typing import Any

import pandas as pd

TRAPS_PER_DAY = 5
SCORE_DECIMALS = 4


def _rank(network: str, day: dt.date, alert_id: str) -> str:
    return hashlib.sha256(f"pattern-trap|{network}|{day}|{alert_id}".encode()).hexdigest()


def select_traps(
    alerts: pd.DataFrame, network: str, day: dt.date, n: int = TRAPS_PER_DAY
) -> list[dict[str, Any]]:
    """Up to ``n`` of ``alerts`` (fewer on a small day) as traps, ordered by alert_id.

    Alerts without a finite confidence score cannot be traps.
    """
    candidates = [
        (str(a), float(c))
        for a, c in zip(alerts["alert_id"], alerts["alert_confidence_score"], strict=True)
        if math.isfinite(c)
    ]
    chosen = sorted(candidates, key=lambda ac: _rank(network, day, ac[0]))[:n]
    return [{"alert_id": a, "expected_score": round(c, SCORE_DECIMALS)} for a, c in sorted(chosen)]


def traps_bytes(traps: Sequence[dict[str, Any]]) -> bytes:
    """``pattern_traps.json`` content for ``traps`` (deterministic bytes)."""
    return (json.dumps(list(traps), indent=2) + "\n").encode()
