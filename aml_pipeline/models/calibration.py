"""Calibrated probabilities for the binary scorers, how calibrated a score is, and the
F1 of flagging alerts above a threshold.

The classifiers are trained with ``scale_pos_weight``, so their raw probabilities are
inflated. A Platt map (a logistic regression on the model's raw log-odds) fitted on the
validation days turns them into probabilities. It is strictly increasing, so rankings and
AUCs stay exactly as they were; an isotonic map would create ties and move the AUCs.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import f1_score, precision_recall_curve

#: Equal-width bins of the expected calibration error and the reliability diagram.
CALIBRATION_BINS = 10


class CalibrationError(ValueError):
    """No increasing calibration map can be fitted (the model ranks backwards)."""


@dataclass(frozen=True)
class PlattCalibration:
    """``P(SAR) = 1 / (1 + exp(-(slope * raw + intercept)))`` of the raw log-odds."""

    slope: float
    intercept: float
    method: str = "platt"

    def apply(self, raw: np.ndarray) -> np.ndarray:
        """Calibrated probabilities of raw log-odds."""
        z = self.slope * np.asarray(raw, dtype="float64") + self.intercept
        return 1.0 / (1.0 + np.exp(-z))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PlattCalibration:
        if data.get("method") != "platt":
            raise ValueError(f"unknown calibration method {data.get('method')!r}")
        return cls(float(data["slope"]), float(data["intercept"]))


def fit_platt(raw: np.ndarray, y: np.ndarray) -> PlattCalibration:
    """The Platt map of raw log-odds ``raw`` to labels ``y`` (nearly unregularized)."""
    model = LogisticRegression(C=1e6, max_iter=1000)
    model.fit(np.asarray(raw, dtype="float64").reshape(-1, 1), np.asarray(y, dtype=int))
    slope, intercept = float(model.coef_[0][0]), float(model.intercept_[0])
    if not slope > 0:
        raise CalibrationError(
            f"the calibration slope is {slope:.4g}: on the validation days higher raw scores "
            "do not mean more SARs, so no increasing map exists"
        )
    return PlattCalibration(slope, intercept)


def brier_score(y: np.ndarray, p: np.ndarray) -> float:
    """Mean squared difference between probabilities and outcomes."""
    y, p = np.asarray(y, dtype="float64"), np.asarray(p, dtype="float64")
    return float(np.mean((p - y) ** 2))


def reliability(y: np.ndarray, p: np.ndarray, bins: int = CALIBRATION_BINS) -> list[dict]:
    """Per non-empty equal-width bin of ``p``: its count, mean probability and SAR share."""
    y, p = np.asarray(y, dtype="float64"), np.asarray(p, dtype="float64")
    which = np.minimum((p * bins).astype(int), bins - 1)
    out = []
    for b in range(bins):
        mask = which == b
        if mask.any():
            out.append(
                {
                    "bin": [b / bins, (b + 1) / bins],
                    "count": int(mask.sum()),
                    "mean_score": float(p[mask].mean()),
                    "sar_rate": float(y[mask].mean()),
                }
            )
    return out


def expected_calibration_error(y: np.ndarray, p: np.ndarray, bins: int = CALIBRATION_BINS) -> float:
    """Count-weighted mean gap between mean probability and SAR share over the bins."""
    table = reliability(y, p, bins)
    total = sum(row["count"] for row in table)
    return float(
        sum(row["count"] * abs(row["mean_score"] - row["sar_rate"]) for row in table) / total
    )


def best_f1(y_true: np.ndarray, y_score: np.ndarray) -> tuple[float, float]:
    """The highest F1 over the thresholds of ``y_score`` and that threshold (alerts scoring
    at or above it are flagged)."""
    precision, recall, thresholds = precision_recall_curve(y_true, y_score)
    precision, recall = precision[:-1], recall[:-1]
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros_like(denom), where=denom > 0)
    best = int(np.argmax(f1))
    return float(f1[best]), float(thresholds[best])


def f1_at(y_true: np.ndarray, y_score: np.ndarray, threshold: float) -> float:
    """F1 of flagging the alerts scoring at or above ``threshold``."""
    return float(f1_score(np.asarray(y_true, dtype=bool), y_score >= threshold, zero_division=0))
