"""Tier 2: gaming and pattern-trap detection (0 to 0.3).

Starting from 0.3 the submission loses 0.1 for constant scores (variance < 0.001) and 0.05
for each trap it falls into (score within 0.01 of the trap's expected score), each trap
alert it did not score, and each non-finite score (NaN/inf is never compared to a trap).
Trap alert ids are matched as strings; a duplicated alert_id uses its first row.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from aml_pipeline.contract.traps import parse_pattern_traps
from aml_pipeline.evaluation.validator_utils import (
    SCORE_DECIMALS,
    TIER_MAX_SCORES,
    examples,
    float_values,
    is_member,
    to_jsonable,
)

CONSTANT_VARIANCE_THRESHOLD = 0.001
CONSTANT_PENALTY = 0.1
TRAP_PENALTY = 0.05
TRAP_TOLERANCE = 0.01
HIT, MISSING, INVALID, AVOIDED = "hit", "missing", "invalid", "avoided"


def check_constant_scores(finite_scores: np.ndarray) -> dict[str, Any]:
    """Sample variance of the finite scores; undefined (not penalized) below 2 scores."""
    if finite_scores.size < 2:
        return {
            "constant": None,
            "variance": None,
            "threshold": CONSTANT_VARIANCE_THRESHOLD,
            "reason": f"variance undefined for {finite_scores.size} finite score(s)",
        }
    variance = float(np.var(finite_scores, ddof=1))
    return {
        "constant": variance < CONSTANT_VARIANCE_THRESHOLD,
        "variance": variance,
        "threshold": CONSTANT_VARIANCE_THRESHOLD,
        "reason": None,
    }


def _trap_outcome(trap: dict[str, Any], score_by_id: pd.Series) -> dict[str, Any]:
    """Whether the submission fell into ``trap``; missing and NaN/inf scores count against it."""
    outcome = {**trap, "actual_score": None}
    if trap["alert_id"] not in score_by_id.index:
        return {**outcome, "outcome": MISSING}
    actual = float(score_by_id[trap["alert_id"]])
    if not np.isfinite(actual):
        return {**outcome, "outcome": INVALID}
    hit = abs(actual - trap["expected_score"]) < TRAP_TOLERANCE
    return {**outcome, "actual_score": actual, "outcome": HIT if hit else AVOIDED}


class Tier2Validator:
    """Constant-score and pattern-trap detection."""

    max_score = TIER_MAX_SCORES["tier2"]

    def validate(
        self,
        scores_df: pd.DataFrame,
        pattern_traps: Sequence[Mapping[str, Any]] | Mapping[str, Any],
    ) -> dict[str, Any]:
        """Score in [0, 0.3]; ``passed`` when nothing was penalized (score == 0.3).

        ``pattern_traps`` is a list of ``{"alert_id", "expected_score"}`` (or
        ``{"traps": [...]}``); malformed traps raise ``PatternTrapsError``.
        """
        traps = parse_pattern_traps(pattern_traps)
        lacking = [col for col in ("alert_id", "score") if col not in scores_df.columns]
        if lacking:
            return to_jsonable(self._unusable(f"scores lack column(s) {lacking}", len(traps)))
        ids = scores_df["alert_id"].astype(str).to_numpy()
        scores = float_values(scores_df["score"])
        finite = np.isfinite(scores)
        first = ~pd.Series(ids).duplicated().to_numpy()
        score_by_id = pd.Series(scores[first], index=ids[first])
        trap_rows = first & is_member(ids, [trap["alert_id"] for trap in traps])
        invalid_rows = ~finite & ~trap_rows

        constant = check_constant_scores(scores[finite])
        outcomes = [_trap_outcome(trap, score_by_id) for trap in traps]
        by_outcome = {
            kind: [o["alert_id"] for o in outcomes if o["outcome"] == kind]
            for kind in (HIT, MISSING, INVALID, AVOIDED)
        }
        penalties = {
            "constant_scores": CONSTANT_PENALTY if constant["constant"] else 0.0,
            "trap_hits": TRAP_PENALTY * len(by_outcome[HIT]),
            "missing_traps": TRAP_PENALTY * len(by_outcome[MISSING]),
            "invalid_traps": TRAP_PENALTY * len(by_outcome[INVALID]),
            "invalid_scores": TRAP_PENALTY * int(invalid_rows.sum()),
        }
        penalty = sum(penalties.values())
        detected = ["constant_scores"] if constant["constant"] else []
        detected += [f"trap_{alert_id}" for alert_id in by_outcome[HIT]]
        return to_jsonable(
            {
                "passed": penalty == 0,
                "score": self._clip(self.max_score - penalty),
                "max_score": self.max_score,
                "traps_detected": detected,
                "missing_traps": by_outcome[MISSING],
                "invalid_traps": by_outcome[INVALID],
                "counts": {
                    "n_scores": len(scores_df),
                    "n_invalid_scores": int(invalid_rows.sum()),
                    "n_traps": len(traps),
                    "n_hit": len(by_outcome[HIT]),
                    "n_missing": len(by_outcome[MISSING]),
                    "n_invalid": len(by_outcome[INVALID]),
                    "n_avoided": len(by_outcome[AVOIDED]),
                },
                "penalties": penalties,
                "details": {
                    "constant_scores": constant,
                    "traps": outcomes,
                    "invalid_score_examples": examples(ids[invalid_rows]),
                    "tolerance": TRAP_TOLERANCE,
                },
            }
        )

    def _clip(self, score: float) -> float:
        return round(min(self.max_score, max(0.0, score)), SCORE_DECIMALS)

    def _unusable(self, reason: str, n_traps: int) -> dict[str, Any]:
        """Result for a submission whose scores cannot be read at all."""
        return {
            "passed": False,
            "score": 0.0,
            "max_score": self.max_score,
            "traps_detected": [],
            "missing_traps": [],
            "invalid_traps": [],
            "counts": {"n_traps": n_traps},
            "penalties": {},
            "details": {"reason": reason},
        }
