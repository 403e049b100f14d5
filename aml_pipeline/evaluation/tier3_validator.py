"""Tier 3: accuracy against ground truth arriving at T+τ (0 to 0.5).

score = 0.3 * AUC-ROC + 0.2 * AUC-PR over the scored alerts that have a label; the Brier
score and expected calibration error are reported beside it (scores in [0, 1]), and what
the ranking is worth at an analyst's budget: precision and recall in the day's top
``budget`` labelled alerts and the precision at recall 0.6 (``evaluation/budget.py``). Alert ids
are matched as strings; a duplicated scored alert_id uses its first row. NaN/inf scores are
excluded from the metrics and counted (``n_non_finite_excluded``): Tier 1 already fails
them and Tier 2 penalizes them, so they are not ranked a second time here. With no labelled
alert or a single class the score is None and ``reason`` says why.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, roc_auc_score

from aml_pipeline.evaluation.budget import (
    DEFAULT_DAILY_BUDGET,
    RECALL_METRIC,
    TARGET_RECALL,
    precision_at_recall,
    top_k,
)
from aml_pipeline.evaluation.validator_utils import (
    SCORE_DECIMALS,
    TIER_MAX_SCORES,
    examples,
    float_values,
    to_jsonable,
)
from aml_pipeline.models.calibration import (
    best_f1,
    brier_score,
    expected_calibration_error,
    f1_at,
)

LABEL = "is_sar_filed"
AUC_ROC_WEIGHT = 0.3
AUC_PR_WEIGHT = 0.2


def labels_frame(ground_truth_df: pd.DataFrame) -> pd.DataFrame:
    """Labelled alerts as ``alert_id`` (str) and ``is_sar_filed`` (bool); NA rows dropped.

    Raises ``ValueError`` on missing columns, non-boolean labels or duplicated alert ids.
    """
    lacking = [col for col in ("alert_id", LABEL) if col not in ground_truth_df.columns]
    if lacking:
        raise ValueError(f"ground truth lacks column(s) {lacking}")
    labelled = ground_truth_df[ground_truth_df[LABEL].notna() & ground_truth_df["alert_id"].notna()]
    if not set(labelled[LABEL].unique()) <= {0, 1}:
        raise ValueError(f"ground truth {LABEL} must be boolean")
    ids = labelled["alert_id"].astype(str)
    duplicated = ids[ids.duplicated()].unique()
    if len(duplicated):
        raise ValueError(f"ground truth has duplicated alert_id(s) {examples(duplicated)}")
    return pd.DataFrame({"alert_id": ids.to_numpy(), LABEL: labelled[LABEL].to_numpy(dtype=bool)})


def scores_frame(scores_df: pd.DataFrame) -> pd.DataFrame:
    """``alert_id`` (str) and float ``score``, one row per alert (the first with an id).

    Empty when ``scores_df`` lacks either column (no alert counts as scored).
    """
    if not {"alert_id", "score"} <= set(scores_df.columns):
        return pd.DataFrame({"alert_id": pd.Series(dtype=str), "score": pd.Series(dtype=float)})
    ids = scores_df["alert_id"].astype(str)
    first = (~ids.duplicated() & scores_df["alert_id"].notna()).to_numpy()
    return pd.DataFrame(
        {"alert_id": ids[first].to_numpy(), "score": float_values(scores_df["score"])[first]}
    )


def no_tier3_score(reason: str, **metrics: Any) -> dict[str, Any]:
    """A Tier 3 result without a score (no metric can honestly be computed)."""
    return {
        "score": None,
        "max_score": TIER_MAX_SCORES["tier3"],
        "reason": reason,
        "metrics": metrics,
    }


def score_ranking(
    y_true: np.ndarray,
    y_score: np.ndarray,
    budget: int = DEFAULT_DAILY_BUDGET,
    threshold: float | None = None,
) -> dict[str, Any]:
    """Tier 3 result for boolean labels and finite scores of the same alerts (in a stable
    order: ties at the budget are broken by it); with the model's ``threshold`` (chosen on
    its validation days), also the F1 of flagging the alerts at or above it."""
    n, n_positive = len(y_true), int(np.sum(y_true))
    counts = {
        "n_samples": n,
        "n_positive": n_positive,
        "positive_rate": n_positive / n if n else None,
    }
    if n == 0:
        return no_tier3_score("no labelled alert with a finite score", **counts)
    if n_positive in (0, n):
        kind = "positive" if n_positive else "negative"
        return no_tier3_score(f"single class: all {n} labelled alerts are {kind}", **counts)
    auc_roc = float(roc_auc_score(y_true, y_score))
    auc_pr = float(average_precision_score(y_true, y_score))
    top_f1, best_threshold = best_f1(y_true, y_score)
    score = AUC_ROC_WEIGHT * auc_roc + AUC_PR_WEIGHT * auc_pr
    probabilities = bool(np.all((y_score >= 0) & (y_score <= 1)))
    at_budget = top_k(y_true, y_score, budget)
    return {
        "score": round(score, SCORE_DECIMALS),
        "max_score": TIER_MAX_SCORES["tier3"],
        "reason": None,
        "metrics": {
            **counts,
            "auc_roc": auc_roc,
            "auc_pr": auc_pr,
            "best_f1": top_f1,
            "best_f1_threshold": best_threshold,
            "alert_budget": budget,
            "precision_at_budget": at_budget["precision"],
            "recall_at_budget": at_budget["recall"],
            RECALL_METRIC: precision_at_recall(y_true, y_score, TARGET_RECALL),
            "model_threshold": threshold,
            "f1_at_model_threshold": None
            if threshold is None
            else f1_at(y_true, y_score, threshold),
            # calibration: how far the scores are from probabilities (not part of the score)
            "brier": brier_score(y_true, y_score) if probabilities else None,
            "ece": expected_calibration_error(y_true, y_score) if probabilities else None,
        },
    }


class Tier3Validator:
    """Ground-truth accuracy: AUC-ROC and AUC-PR of the scores against ``is_sar_filed``,
    and the figures at a daily ``budget`` of alerts."""

    max_score = TIER_MAX_SCORES["tier3"]

    def __init__(self, budget: int = DEFAULT_DAILY_BUDGET, threshold: float | None = None) -> None:
        self.budget, self.threshold = budget, threshold

    def validate(self, scores_df: pd.DataFrame, ground_truth_df: pd.DataFrame) -> dict[str, Any]:
        """Inner-join scores with the labels on alert_id and score the ranking."""
        labels = labels_frame(ground_truth_df)
        lacking = [col for col in ("alert_id", "score") if col not in scores_df.columns]
        if lacking:
            return to_jsonable(no_tier3_score(f"scores lack column(s) {lacking}"))
        scores = scores_frame(scores_df)
        merged = scores.merge(labels, on="alert_id", how="inner")
        finite = np.isfinite(merged["score"].to_numpy())
        result = score_ranking(
            merged[LABEL].to_numpy()[finite],
            merged["score"].to_numpy()[finite],
            self.budget,
            self.threshold,
        )
        if not len(merged):
            result["reason"] = "no scored alert has a ground-truth label"
        result["metrics"].update(
            n_scored=len(scores),
            n_labelled=len(labels),
            n_matched=len(merged),
            n_non_finite_excluded=int((~finite).sum()),
            n_duplicate_scores_ignored=len(scores_df) - len(scores),
        )
        return to_jsonable(result)
