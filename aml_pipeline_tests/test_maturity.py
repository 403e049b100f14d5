"""Label maturity: estimated from the delays observed, censoring included."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from aml_pipeline.evaluation.maturity import LabelMaturity, estimate_label_maturity

AS_OF = dt.date(2025, 6, 1)


def _history(days: int, per_day: int = 200, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Alerts of the ``days`` before AS_OF and every label they will ever get: SARs (5 %)
    5-44 days after the alert, closures 7-60 days (the true 95 % point is 58 days)."""
    rng = np.random.default_rng(seed)
    alerts, labels = [], []
    for i in range(days):
        day = AS_OF - dt.timedelta(days - i)
        sar = rng.random(per_day) < 0.05
        delay = np.where(sar, rng.integers(5, 45, per_day), rng.integers(7, 61, per_day))
        for j in range(per_day):
            alerts.append((f"{i}-{j}", day))
            labels.append((f"{i}-{j}", day + dt.timedelta(int(delay[j]))))
    return (
        pd.DataFrame(alerts, columns=["alert_id", "processing_date"]),
        pd.DataFrame(labels, columns=["alert_id", "label_date"]),
    )


def test_the_estimate_finds_the_day_by_which_95_percent_of_labels_arrived():
    alerts, labels = _history(150)
    maturity = estimate_label_maturity(alerts, labels, AS_OF)
    assert maturity.complete and maturity.source == "estimated"
    assert 57 <= maturity.days <= 59
    assert maturity.labelled_share == pytest.approx(1.0)
    # labels after the as-of date are not seen: the recent days count as censored
    assert labels["label_date"].max() > AS_OF


def test_censoring_is_counted_not_dropped():
    """With 75 days of history most recent alerts still wait for their label; leaving them
    out would make delays look short (most waiting alerts are slow closures)."""
    alerts, labels = _history(75)
    maturity = estimate_label_maturity(alerts, labels, AS_OF)
    assert maturity.complete and 56 <= maturity.days <= 60
    known = labels[labels["label_date"] <= AS_OF].merge(alerts, on="alert_id")
    observed = pd.to_datetime(known["label_date"]) - pd.to_datetime(known["processing_date"])
    assert observed.dt.days.quantile(0.95) < maturity.days - 3  # the naive estimate is short


def test_a_short_history_gives_a_lower_bound_and_says_so():
    alerts, labels = _history(40)
    maturity = estimate_label_maturity(alerts, labels, AS_OF)
    assert not maturity.complete and maturity.days == 40
    assert "at least 40 days" in maturity.describe() and "still arriving" in maturity.describe()


def test_a_day_is_mature_by_age_or_by_its_own_labelled_share():
    maturity = LabelMaturity.from_setting(30)
    day = dt.date(2025, 5, 1)
    assert maturity.mature(day, day + dt.timedelta(30), share=0.2)
    assert not maturity.mature(day, day + dt.timedelta(29), share=0.9)
    assert maturity.mature(day, day + dt.timedelta(10), share=0.96)
    assert "30 days (setting)" in maturity.describe()
    none_yet = estimate_label_maturity(
        pd.DataFrame({"alert_id": ["a"], "processing_date": [AS_OF]}),
        pd.DataFrame({"alert_id": pd.Series(dtype=str), "label_date": pd.Series(dtype=object)}),
        AS_OF + dt.timedelta(3),
    )
    assert none_yet.labelled_share == 0 and not none_yet.complete
    empty = estimate_label_maturity(
        pd.DataFrame(columns=["alert_id", "processing_date"]),
        pd.DataFrame(columns=["alert_id", "label_date"]),
        AS_OF,
    )
    assert empty.n_alerts == 0 and not empty.complete and "unknown" in empty.describe()


def test_a_lower_bound_does_not_make_its_own_oldest_day_mature():
    bound = LabelMaturity(53, "estimated", False, 53, 0.87, 1120)
    oldest, through = dt.date(2025, 3, 9), dt.date(2025, 5, 1)
    assert not bound.mature(oldest, through, 0.87)
    assert bound.mature(oldest, through + dt.timedelta(1), 0.87)
    assert LabelMaturity.from_setting(53).mature(oldest, through, None)


def test_validation_labels_say_how_complete_and_mature_they_were():
    from types import SimpleNamespace

    from aml_pipeline.defs.assets.training import validation_labels

    first, second = dt.date(2025, 5, 1), dt.date(2025, 5, 2)
    alerts = pd.DataFrame({"processing_date": [first] * 10 + [second] * 10})
    frame = pd.DataFrame({"processing_date": [first] * 10 + [second] * 9})  # labelled rows
    split = {"early_stopping_days": [str(first)], "calibration_days": [str(second)]}
    model = SimpleNamespace(data={"validation": split})
    setting = LabelMaturity.from_setting(30)
    young = validation_labels(alerts, frame, model, setting, second + dt.timedelta(5))
    assert young["labelled_share"] == 0.95 and not young["mature"]  # the second day: 90 %
    old = validation_labels(alerts, frame, model, setting, second + dt.timedelta(30))
    assert old["mature"] and old["label_maturity"]["days"] == 30
