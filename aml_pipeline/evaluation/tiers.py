"""All three validator tiers on one day's submission, and their total."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from aml_pipeline.evaluation.budget import DEFAULT_DAILY_BUDGET
from aml_pipeline.evaluation.tier1_validator import Tier1Validator
from aml_pipeline.evaluation.tier2_validator import Tier2Validator
from aml_pipeline.evaluation.tier3_validator import Tier3Validator, no_tier3_score
from aml_pipeline.evaluation.validator_utils import MAX_TOTAL_SCORE, total_score


def validate_day(
    scores_df: pd.DataFrame,
    alerts_df: pd.DataFrame,
    pattern_traps: Sequence[Mapping[str, Any]] | Mapping[str, Any],
    ground_truth_df: pd.DataFrame | None = None,
    rescored_df: pd.DataFrame | None = None,
    threshold: float | None = None,
    budget: int = DEFAULT_DAILY_BUDGET,
) -> dict[str, Any]:
    """All three tiers for one day and their total (JSON-safe); ``threshold`` is the
    model's alerting threshold, for tier 3's F1 at it, and ``budget`` the alerts the
    analysts work a day, for tier 3's precision and recall in the day's top ``budget``.

    Without ``ground_truth_df`` (labels arrive at T+τ) Tier 3 has score None and a reason.
    """
    tier1 = Tier1Validator().validate(scores_df, alerts_df, rescored_df)
    tier2 = Tier2Validator().validate(scores_df, pattern_traps)
    if ground_truth_df is None:
        tier3 = no_tier3_score("no ground truth supplied (labels arrive at T+tau)")
    else:
        tier3 = Tier3Validator(budget, threshold).validate(scores_df, ground_truth_df)
    return {
        "tier1": tier1,
        "tier2": tier2,
        "tier3": tier3,
        "total_score": total_score(tier1["score"], tier2["score"], tier3["score"]),
        "max_score": MAX_TOTAL_SCORE,
    }
