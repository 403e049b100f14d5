"""Metrics at an analyst's daily budget, counted by hand."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from aml_pipeline.evaluation.budget import (
    RECALL_METRIC,
    daily_top_k,
    precision_at_recall,
    top_k,
)
from aml_pipeline.evaluation.tier3_validator import Tier3Validator


def test_top_k_counts_the_highest_scores_of_the_day():
    y = np.array([1, 0, 1, 0, 0, 1, 0, 0])
    s = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.1, 0.2, 0.3])
    assert top_k(y, s, 3) == {"precision": pytest.approx(2 / 3), "recall": pytest.approx(2 / 3)}
    assert top_k(y, s, 100) == {"precision": pytest.approx(3 / 8), "recall": 1.0}
    assert top_k(np.zeros(3), s[:3], 2)["recall"] is None
    # a tie at the budget goes to the earlier alert
    assert top_k(np.array([0, 1]), np.array([0.5, 0.5]), 1)["precision"] == 0


def test_daily_top_k_averages_days_and_skips_days_without_a_sar_for_recall():
    y = np.array([1, 0, 0, 0, 1, 1])
    s = np.array([0.9, 0.1, 0.9, 0.1, 0.5, 0.4])
    days = np.array(["d1", "d1", "d2", "d2", "d3", "d3"])
    out = daily_top_k(y, s, days, k=1)
    assert out["precision_at_1"] == pytest.approx((1 + 0 + 1) / 3)
    assert out["recall_at_1"] == pytest.approx((1 + 0.5) / 2)  # d2 has no SAR
    assert out["days"] == 3


def test_precision_at_recall_is_the_best_threshold_that_finds_enough_sars():
    y = np.array([1, 0, 1, 0, 1])
    s = np.array([0.9, 0.8, 0.7, 0.6, 0.1])
    assert precision_at_recall(y, s, 0.6) == pytest.approx(2 / 3)  # top 3: 2 of 3 SARs
    assert precision_at_recall(y, s, 1.0) == pytest.approx(3 / 5)
    assert precision_at_recall(np.zeros(3), s[:3]) is None


def _day() -> tuple[pd.DataFrame, pd.DataFrame]:
    """Six scored alerts in falling score order, the 1st, 3rd and 6th SAR-filed."""
    ids = [f"a{i}" for i in range(6)]
    scores = pd.DataFrame({"alert_id": ids, "score": [0.9, 0.8, 0.7, 0.6, 0.5, 0.4]})
    truth = pd.DataFrame({"alert_id": ids, "is_sar_filed": [True, False, True, False, False, True]})
    return scores, truth


def test_tier3_reports_the_budget_figures():
    scores, truth = _day()
    metrics = Tier3Validator(budget=2).validate(scores, truth)["metrics"]
    assert metrics["alert_budget"] == 2
    assert metrics["precision_at_budget"] == pytest.approx(0.5)
    assert metrics["recall_at_budget"] == pytest.approx(1 / 3)
    assert metrics[RECALL_METRIC] == pytest.approx(2 / 3)  # top 3 find 2 of 3 SARs


def test_tier3_reports_the_f1_at_the_model_threshold_chosen_on_validation_days():
    scores, truth = _day()
    metrics = Tier3Validator(threshold=0.75).validate(scores, truth)["metrics"]
    # flags a0, a1: precision 1/2, recall 1/3
    assert metrics["model_threshold"] == 0.75
    assert metrics["f1_at_model_threshold"] == pytest.approx(2 * 0.5 * (1 / 3) / (0.5 + 1 / 3))
    assert Tier3Validator().validate(scores, truth)["metrics"]["f1_at_model_threshold"] is None
