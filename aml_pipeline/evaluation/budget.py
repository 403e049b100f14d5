"""Metrics at an analyst's budget: what the top of a day's ranking is worth.

Investigators work a fixed number of alerts a day, so a score that ranks well at the top
of each day matters more than AUC over all alerts: precision and recall in the ``k``
highest-scored alerts of each day (averaged over days), and the best precision reachable
while finding a given share of the SARs (precision at recall).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.metrics import precision_recall_curve

#: Alerts an analyst team works a day unless the network says otherwise.
DEFAULT_DAILY_BUDGET = 100
#: The share of SARs at which ``precision_at_recall`` is read.
TARGET_RECALL = 0.6
#: The name of the precision at TARGET_RECALL in reports.
RECALL_METRIC = f"precision_at_recall_{round(100 * TARGET_RECALL)}"


def top_k(y_true: np.ndarray, y_score: np.ndarray, k: int) -> dict[str, float | None]:
    """Precision and recall in the ``k`` highest scores of one day (ties broken by the
    alerts' order, which the caller makes stable); recall is None without a SAR."""
    y_true = np.asarray(y_true, dtype=bool)
    order = np.argsort(-np.asarray(y_score, dtype="float64"), kind="stable")[:k]
    found, positives = int(y_true[order].sum()), int(y_true.sum())
    return {
        "precision": found / len(order) if len(order) else None,
        "recall": found / positives if positives else None,
    }


def daily_top_k(
    y_true: np.ndarray, y_score: np.ndarray, days: np.ndarray, k: int = DEFAULT_DAILY_BUDGET
) -> dict[str, float | None]:
    """``top_k`` of each day, averaged over the days (recall over the days with a SAR)."""
    frame = pd.DataFrame({"y": np.asarray(y_true, dtype=bool), "s": y_score, "d": days})
    per_day = [top_k(g["y"].to_numpy(), g["s"].to_numpy(), k) for _, g in frame.groupby("d")]
    mean: dict[str, list[float]] = {
        name: [value for d in per_day if (value := d[name]) is not None]
        for name in ("precision", "recall")
    }
    return {
        f"precision_at_{k}": float(np.mean(mean["precision"])) if mean["precision"] else None,
        f"recall_at_{k}": float(np.mean(mean["recall"])) if mean["recall"] else None,
        "days": len(per_day),
    }


def precision_at_recall(
    y_true: np.ndarray, y_score: np.ndarray, recall: float = TARGET_RECALL
) -> float | None:
    """The highest precision of a threshold that finds at least ``recall`` of the SARs;
    None without a SAR."""
    y_true = np.asarray(y_true, dtype=bool)
    if not y_true.any():
        return None
    precision, reached, _ = precision_recall_curve(y_true, y_score)
    return float(precision[reached >= recall].max())
