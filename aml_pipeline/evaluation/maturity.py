"""Label maturity: how many days after an alert its labels are complete enough to judge by.

Labels arrive weeks after their alerts, and not at random: SAR filings come sooner than
closures, so the labels known a few days after an alert over-represent SARs, and a score
judged on them looks better than it is. A day is *mature* once ``maturity_days`` have
passed (by then ``MATURITY_QUANTILE`` of the labels that arrive at all have arrived), or
once that share of its own alerts is labelled.

The delay distribution is estimated with the Kaplan-Meier product-limit estimator over
every alert of the observed days, so an alert still waiting for its label counts as
censored at its follow-up (today minus its day) instead of being left out (which would
make delays look short) or counted as never labelled (which would make them look long).
The 95 % point is the time by which 95 % of the labels that arrive within the longest
follow-up observed have arrived: what is left is small enough not to move AUC by more
than its noise, while a median would call days mature that still lack most closures.
When labels were still arriving at the end of that follow-up (the share labelled grew by
more than ``STILL_ARRIVING`` over its last ``TAIL_DAYS`` days), the delays are not fully
observed yet: the estimate is then the follow-up itself, a lower
bound, and says so (``complete`` False).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

MATURITY_QUANTILE = 0.95
TAIL_DAYS = 7
STILL_ARRIVING = 0.01


@dataclass(frozen=True)
class LabelMaturity:
    """The days after which a day's labels count as mature, and what it rests on."""

    days: int
    source: str  # "setting" or "estimated"
    complete: bool  # the delays were observed to their end (always True for a setting)
    follow_up_days: int  # the longest follow-up the estimate saw
    labelled_share: float | None  # share of alerts labelled within that follow-up
    n_alerts: int

    @classmethod
    def from_setting(cls, days: int) -> LabelMaturity:
        return cls(days, "setting", True, days, None, 0)

    def mature(self, day: dt.date, labels_through: dt.date, share: float | None) -> bool:
        """Whether ``day``'s labels are mature with the label days up to ``labels_through``
        known: the maturity has passed (beyond a lower bound: a day followed up exactly as
        long as the estimate's longest follow-up may still lack labels), or ``share`` (of
        the day's alerts labelled so far) is at least ``MATURITY_QUANTILE`` already."""
        age = (labels_through - day).days
        passed = age >= self.days if self.complete else age > self.days
        return passed or (share is not None and share >= MATURITY_QUANTILE)

    def describe(self) -> str:
        if self.source == "setting":
            return f"label maturity {self.days} days (setting)"
        if not self.n_alerts:
            return "label maturity unknown: no alert stored yet"
        bound = "" if self.complete else "at least "
        return (
            f"label maturity {bound}{self.days} days, estimated from {self.n_alerts} alerts "
            f"followed up to {self.follow_up_days} days ({self.labelled_share:.1%} labelled)"
            + ("" if self.complete else "; labels were still arriving at the end")
        )

    def to_dict(self) -> dict:
        return asdict(self)


def estimate_label_maturity(
    alerts: pd.DataFrame, label_events: pd.DataFrame, as_of: dt.date
) -> LabelMaturity:
    """Kaplan-Meier estimate of the label maturity from ``alerts`` (``alert_id``,
    ``processing_date``: every alert of the observed days, labelled yet or not) and the
    ``label_events`` (``alert_id``, ``label_date``) known by ``as_of``."""
    end = pd.Timestamp(as_of)
    day = pd.to_datetime(alerts["processing_date"])
    alerts, day = alerts[(day <= end).to_numpy()], day[day <= end]
    if alerts.empty:
        return LabelMaturity(0, "estimated", False, 0, None, 0)
    label_date = pd.to_datetime(label_events["label_date"])
    arrived = label_date[label_date <= end].groupby(label_events["alert_id"]).min()
    # reindex, not map: mapping through an empty Series of dates fails in pandas
    label_day = pd.Series(
        pd.to_datetime(arrived.reindex(alerts["alert_id"].to_numpy())).to_numpy(),
        index=day.index,
    )
    follow = (end - day).dt.days.to_numpy()
    labelled = label_day.notna().to_numpy()
    waited = (label_day - day).dt.days.fillna(0).to_numpy()
    delay = np.where(labelled, waited, follow).astype(np.int64).clip(0, None)
    longest = int(follow.max())
    events = np.bincount(delay[labelled], minlength=longest + 1)
    exits = np.bincount(delay, minlength=longest + 1)  # labelled at t or censored at t
    at_risk = len(delay) - np.r_[0, np.cumsum(exits)[:-1]]
    with np.errstate(divide="ignore", invalid="ignore"):
        hazard = np.where(at_risk > 0, events / at_risk, 0.0)
    arrived_by = 1.0 - np.cumprod(1.0 - hazard)  # F(t): share labelled within t days
    final = float(arrived_by[-1])
    if final <= 0:
        return LabelMaturity(longest, "estimated", False, longest, 0.0, len(delay))
    days_needed = int(np.argmax(arrived_by >= MATURITY_QUANTILE * final))
    tail = arrived_by[-1] - arrived_by[max(longest - TAIL_DAYS, 0)]
    complete = bool(longest > TAIL_DAYS and tail <= STILL_ARRIVING)
    return LabelMaturity(
        days_needed if complete else longest,
        "estimated",
        complete,
        longest,
        round(final, 4),
        len(delay),
    )


def labelled_share(alert_ids: pd.Series, label_events: pd.DataFrame) -> float | None:
    """The share of ``alert_ids`` with a label among ``label_events``."""
    if not len(alert_ids):
        return None
    return float(alert_ids.isin(set(label_events["alert_id"])).mean())
