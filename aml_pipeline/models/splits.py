"""Which labelled rows a model learns from, stops early on, and is calibrated on.

Labels arrive weeks after their alerts and SAR filings arrive first, so the labels known
on a young day over-represent SARs. Validation therefore uses *mature* days only (days
whose labels are complete enough to judge by, ``evaluation.maturity``): the latest
``valid_fraction`` of the range's days, taken from its mature days, split day by day into
an early-stopping slice and a calibration slice that alternate over the same period (so
neither is later than the other). The calibration map is fitted on the calibration slice
and judged on the early-stopping slice; the ranking figures are measured on the
calibration slice, which early stopping never saw.

Younger (immature) days can still teach the model. With ``immature="weight"`` each of
their labelled rows is weighted by the inverse of the probability that a label of its
class had arrived at its age (``1 / F_class(age)``, estimated from the label delays of the
mature days), so the SARs that arrive first do not outweigh the closures still to come;
``immature="exclude"`` leaves them out. Weighted, they come after the validation days:
the validation is then not a forward-in-time holdout (``make quality`` measures whether
that makes the figures optimistic). Without enough mature days the split falls back to the
latest days, unweighted, and says so (``mature`` False).
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

LABEL = "is_sar_filed"
#: Modes of ``LabelTiming.immature``.
IMMATURE_MODES = ("weight", "exclude")
#: An immature row's arrival probability is floored here (its weight capped at 1/0.05).
MIN_ARRIVAL = 0.05


class NotEnoughLabels(ValueError):
    """Too few labelled rows (or only one class) to train or validate."""


@dataclass(frozen=True)
class LabelTiming:
    """What the labels of a training frame rest on: the days whose labels are mature and
    the last label day known (``through``)."""

    mature_days: frozenset[dt.date]
    through: dt.date


@dataclass(frozen=True)
class Split:
    """Row masks of a training frame, and per-row training weights."""

    train: np.ndarray
    stop: np.ndarray  # early stopping
    calibrate: np.ndarray  # the calibration map, and the ranking figures
    weight: np.ndarray
    mature: bool  # the validation slices are mature days only
    young: np.ndarray  # training rows of immature days (weighted by their label arrival)

    @property
    def valid(self) -> np.ndarray:
        return self.stop | self.calibrate

    def describe(self, frame: pd.DataFrame) -> dict:
        """The days and rows of each part, for the registry."""
        days = frame["processing_date"]

        def span(mask: np.ndarray) -> list[str]:
            return sorted(str(d) for d in set(days[mask]))

        return {
            "split": "mature days" if self.mature else "latest days (no mature days)",
            "early_stopping_days": span(self.stop),
            "calibration_days": span(self.calibrate),
            "weighted_rows": int(self.young.sum()),
            "max_weight": round(float(self.weight[self.train].max(initial=1.0)), 3),
        }


def validation_days(days: list[dt.date], valid_fraction: float) -> int:
    """How many of ``days`` are validated on: ``valid_fraction`` of them, at least 2."""
    return max(2, math.ceil(len(days) * valid_fraction))


def split_by_maturity(
    frame: pd.DataFrame,
    valid_fraction: float,
    timing: LabelTiming | None = None,
    immature: str = "weight",
) -> Split:
    """The split of ``frame`` (sorted by processing_date, with ``LABEL`` and, to weight
    immature rows, ``label_date``): validation on the latest mature days when more than
    the validation days are mature, else on the latest days; ``immature`` (one of
    ``IMMATURE_MODES``) says how the younger days train."""
    if immature not in IMMATURE_MODES:
        raise ValueError(f"immature must be one of {IMMATURE_MODES}, got {immature!r}")
    days = sorted(set(frame["processing_date"]))
    n_valid = validation_days(days, valid_fraction)
    if len(days) <= n_valid:
        raise NotEnoughLabels(
            f"need labelled rows on more than {n_valid} days to validate on {n_valid}, "
            f"got {len(days)}"
        )
    mature = [d for d in days if timing and d in timing.mature_days]
    on_mature = len(mature) > n_valid
    valid_days = mature[-n_valid:] if on_mature else days[-n_valid:]
    calibrate_days = set(valid_days[::-2])  # the latest, then every other day back
    day = frame["processing_date"]
    calibrate = day.isin(calibrate_days).to_numpy()
    stop = day.isin(set(valid_days) - calibrate_days).to_numpy()
    train = ~(calibrate | stop)
    weight = np.ones(len(frame))
    young = np.zeros(len(frame), dtype=bool)
    if on_mature and timing is not None:
        young = train & ~day.isin(timing.mature_days).to_numpy()
        if immature == "exclude":
            train &= ~young
            young = np.zeros(len(frame), dtype=bool)
        else:
            weight[young] = 1.0 / arrival_probability(frame, timing, young)
    return Split(train, stop, calibrate, weight, on_mature, young)


def _delays(frame: pd.DataFrame) -> np.ndarray:
    label_day = pd.to_datetime(frame["label_date"])
    return (label_day - pd.to_datetime(frame["processing_date"])).dt.days.to_numpy()


def arrival_probability(frame: pd.DataFrame, timing: LabelTiming, rows: np.ndarray) -> np.ndarray:
    """For the labelled ``rows`` of immature days: the probability that a label of the
    row's class had arrived at the row's age on ``timing.through``, from the label delays
    of that class on the frame's mature days (floored at ``MIN_ARRIVAL``)."""
    y = frame[LABEL].to_numpy()
    delays = _delays(frame)
    on_mature = frame["processing_date"].isin(timing.mature_days).to_numpy()
    age = (
        pd.Timestamp(timing.through) - pd.to_datetime(frame.loc[rows, "processing_date"])
    ).dt.days.to_numpy()
    out = np.ones(int(rows.sum()))
    for label in (0, 1):
        known = np.sort(delays[on_mature & (y == label)])
        mine = y[rows] == label
        if len(known):
            out[mine] = np.searchsorted(known, age[mine], side="right") / len(known)
    return np.clip(out, MIN_ARRIVAL, 1.0)
