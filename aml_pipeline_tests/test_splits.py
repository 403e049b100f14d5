"""Validation on mature days, separate early-stopping and calibration slices, and
immature days weighted by their label arrival, on a synthetic frame whose label delays
depend on the class (SARs are filed sooner than closures)."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from aml_pipeline.models.splits import LABEL, LabelTiming, NotEnoughLabels, split_by_maturity
from aml_pipeline.models.training import TrainParams, labelled, train_binary

FIRST = dt.date(2025, 1, 1)
DAYS, PER_DAY, SAR_RATE = 90, 400, 0.05
AS_OF = FIRST + dt.timedelta(DAYS - 1)
MATURITY = 40  # every label has arrived 40 days after its alert
PARAMS = TrainParams(max_rounds=200, early_stopping_rounds=30, min_data_in_leaf=50)


def _alerts(days: int, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Alerts with two informative features, and labels that every alert eventually gets:
    SARs 3-20 days after the alert, closures 10-40 days after."""
    rng = np.random.default_rng(seed)
    n = days * PER_DAY
    day = np.repeat([FIRST + dt.timedelta(i) for i in range(days)], PER_DAY)
    signal = rng.normal(size=n)
    noise = rng.normal(size=n)
    logit = np.log(SAR_RATE / (1 - SAR_RATE)) - 0.5 + 1.2 * signal
    sar = rng.random(n) < 1 / (1 + np.exp(-logit))
    delay = np.where(sar, rng.integers(3, 21, n), rng.integers(10, MATURITY + 1, n))
    ids = [f"a{i}" for i in range(n)]
    features = pd.DataFrame(
        {"alert_id": ids, "processing_date": day, "signal": signal, "noise": noise}
    )
    labels = pd.DataFrame(
        {
            "alert_id": ids,
            LABEL: sar,
            "label_date": [d + dt.timedelta(int(k)) for d, k in zip(day, delay, strict=True)],
        }
    )
    return features, labels


@pytest.fixture(scope="module")
def censored() -> tuple[pd.DataFrame, LabelTiming]:
    """The labels known on ``AS_OF``, and which days were mature then."""
    features, labels = _alerts(DAYS, seed=1)
    frame = labelled(features, labels, AS_OF)
    mature = frozenset(FIRST + dt.timedelta(i) for i in range(DAYS - MATURITY))
    return frame, LabelTiming(mature, AS_OF)


def _mean_score_on_unseen_days(model) -> tuple[float, float]:
    """Mean published score and eventual SAR rate on 20 later days, every label known."""
    features, labels = _alerts(20, seed=2)
    truth = features.merge(labels, on="alert_id")
    raw = model.booster.predict(truth[["signal", "noise"]], raw_score=True)
    return float(model.calibration.apply(raw).mean()), float(truth[LABEL].mean())


def _train(frame: pd.DataFrame, timing: LabelTiming | None, params: TrainParams = PARAMS):
    return train_binary(frame, ["signal", "noise"], [], params, "signal", {}, timing=timing)


def test_validation_uses_the_latest_mature_days_alternately_for_stopping_and_calibration(
    censored,
):
    frame, timing = censored
    split = split_by_maturity(frame, 0.2, timing)
    day = frame["processing_date"]
    valid_days = sorted(set(day[split.valid]))
    assert split.mature and len(valid_days) == 18  # 20 % of the 90 days
    assert valid_days[-1] == max(timing.mature_days)
    assert set(valid_days) <= timing.mature_days
    calibration, stopping = set(day[split.calibrate]), set(day[split.stop])
    assert not calibration & stopping
    assert sorted(calibration) == valid_days[::-2][::-1] and len(stopping) == 9
    # the immature days after the validation days are trained on, weighted up
    young = split.train & ~day.isin(timing.mature_days).to_numpy()
    assert young.any() and (split.weight[young] >= 1).all() and split.weight[young].max() > 1
    assert split.describe(frame)["weighted_rows"] == int(young.sum())
    assert (split.weight[split.train & ~young] == 1).all()


def test_immature_rows_are_weighted_by_the_inverse_arrival_of_their_class(censored):
    frame, timing = censored
    split = split_by_maturity(frame, 0.2, timing)
    young = split.train & ~frame["processing_date"].isin(timing.mature_days).to_numpy()
    y = frame[LABEL].to_numpy().astype(bool)
    known = frame.loc[young, "processing_date"].value_counts()
    # weighted, the young days' SAR share is the population's again (about SAR_RATE
    # eventually), where the raw known labels are SAR-enriched
    raw_share = y[young].mean()
    weighted_share = np.average(y[young], weights=split.weight[young])
    eventual = y[split.train & ~young].mean()
    assert raw_share > 1.5 * eventual
    assert weighted_share == pytest.approx(eventual, rel=0.25)
    assert len(known) > 0


def test_excluding_immature_days_trains_on_mature_days_only(censored):
    frame, timing = censored
    split = split_by_maturity(frame, 0.2, timing, "exclude")
    trained = set(frame.loc[split.train, "processing_date"])
    assert trained <= timing.mature_days and (split.weight == 1).all()


def test_without_enough_mature_days_it_validates_on_the_latest_and_says_so(censored):
    frame, timing = censored
    few = LabelTiming(frozenset(sorted(timing.mature_days)[:18]), AS_OF)
    split = split_by_maturity(frame, 0.2, few)
    assert not split.mature and (split.weight == 1).all()
    assert max(frame.loc[split.valid, "processing_date"]) == frame["processing_date"].max()
    with pytest.raises(NotEnoughLabels, match="more than 2 days"):
        split_by_maturity(frame[frame["processing_date"] <= FIRST + dt.timedelta(1)], 0.2)


def test_calibrating_on_censored_labels_fails_and_on_mature_days_passes(censored):
    """The goal of make quality (mean score within 10 % of the eventual SAR rate on days
    the model never saw), on labels whose delays depend on the class."""
    frame, timing = censored
    old_mean, rate = _mean_score_on_unseen_days(_train(frame, None))
    new = _train(frame, timing)
    new_mean, _ = _mean_score_on_unseen_days(new)
    assert old_mean > 1.1 * rate  # fitted on the SAR-enriched young labels
    assert new_mean == pytest.approx(rate, rel=0.10)
    assert new.data["validation"]["split"] == "mature days"
    # the self-reported mean score and SAR rate (rows the map never saw) agree as well
    assert new.metrics["mean_score"] == pytest.approx(new.metrics["sar_rate"], rel=0.15)
    estimate, low, high = new.data["validation_intervals"]["auc_roc"]
    assert estimate == pytest.approx(new.metrics["auc_roc"]) and low < estimate < high
    assert new.data["validation_intervals"]["blocks"] == "rows"  # no address column
    excluded = _train(frame, timing, TrainParams(**{**vars(PARAMS), "immature": "exclude"}))
    assert _mean_score_on_unseen_days(excluded)[0] == pytest.approx(rate, rel=0.10)
