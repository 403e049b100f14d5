"""Tier 1: integrity of one day's submission (worth 0.2, all or nothing).

Every check runs and reports its details; a check whose input is unusable (e.g. the score
column is missing) is reported as ``not_run`` with the reason, and the schema check fails.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from aml_pipeline.evaluation.validator_utils import (
    TIER_MAX_SCORES,
    examples,
    float_values,
    is_member,
    is_numeric_column,
    to_jsonable,
)

REQUIRED_COLUMNS = ("alert_id", "score", "model_version", "latency_ms")
NUMERIC_COLUMNS = ("score", "latency_ms")
MAX_MEAN_LATENCY_MS = 100.0
DETERMINISM_TOLERANCE = 1e-12
PASSED, FAILED, NOT_RUN = "passed", "failed", "not_run"


def _result(ok: bool, **details: Any) -> dict[str, Any]:
    return {"status": PASSED if ok else FAILED, "details": details}


def _not_run(reason: str) -> dict[str, Any]:
    return {"status": NOT_RUN, "details": {"reason": reason}}


def _offenders(scores_df: pd.DataFrame, mask: np.ndarray) -> list[Any]:
    """Alert ids of offending rows (row positions if there is no alert_id column)."""
    if "alert_id" in scores_df.columns:
        return examples(scores_df["alert_id"].to_numpy()[mask])
    return examples(np.flatnonzero(mask))


def _usable(scores_df: pd.DataFrame, column: str) -> bool:
    return column in scores_df.columns and is_numeric_column(scores_df[column])


def check_completeness(scores_df: pd.DataFrame, alerts_df: pd.DataFrame) -> dict[str, Any]:
    """Every input alert scored exactly once and no score for an unknown alert."""
    expected = alerts_df["alert_id"].unique()
    counts = {"n_alerts": len(expected), "n_scores": len(scores_df)}
    if "alert_id" not in scores_df.columns:
        return _result(False, reason="scores have no 'alert_id' column", **counts)
    scored = scores_df["alert_id"]
    missing = expected[~is_member(expected, scored)]
    unknown = scored[~is_member(scored, expected)]
    duplicated = scored[scored.duplicated() & scored.notna()].unique()
    return _result(
        len(missing) == 0 and unknown.empty and len(duplicated) == 0,
        **counts,
        n_missing=len(missing),
        missing_examples=examples(missing),
        n_unknown=len(unknown),
        unknown_examples=examples(unknown),
        n_duplicated=len(duplicated),
        duplicated_examples=examples(duplicated),
    )


def check_schema(scores_df: pd.DataFrame) -> dict[str, Any]:
    """Required columns present; score and latency_ms numeric."""
    missing = [col for col in REQUIRED_COLUMNS if col not in scores_df.columns]
    non_numeric = {
        col: str(scores_df[col].dtype)
        for col in NUMERIC_COLUMNS
        if col in scores_df.columns and not is_numeric_column(scores_df[col])
    }
    return _result(
        not missing and not non_numeric,
        missing_columns=missing,
        non_numeric_columns=non_numeric,
    )


def check_score_range(scores_df: pd.DataFrame) -> dict[str, Any]:
    """Every score finite and within [0, 1]."""
    if not _usable(scores_df, "score"):
        return _not_run("score column missing or not numeric (see schema)")
    scores = float_values(scores_df["score"])
    nan, inf = np.isnan(scores), np.isinf(scores)
    out_of_range = np.isfinite(scores) & ((scores < 0) | (scores > 1))
    bad = nan | inf | out_of_range
    finite = scores[~nan & ~inf]
    return _result(
        not bad.any(),
        n_nan=int(nan.sum()),
        n_inf=int(inf.sum()),
        n_out_of_range=int(out_of_range.sum()),
        offending_examples=_offenders(scores_df, bad),
        min_score=finite.min() if finite.size else None,
        max_score=finite.max() if finite.size else None,
    )


def check_latency(scores_df: pd.DataFrame) -> dict[str, Any]:
    """Mean latency per alert below 100 ms; every latency finite and non-negative."""
    if not _usable(scores_df, "latency_ms"):
        return _not_run("latency_ms column missing or not numeric (see schema)")
    latency = float_values(scores_df["latency_ms"])
    invalid = ~np.isfinite(latency) | (latency < 0)
    valid = latency[~invalid]
    mean = valid.mean() if valid.size else None
    return _result(
        not invalid.any() and (mean is None or mean < MAX_MEAN_LATENCY_MS),
        mean_latency_ms=mean,
        max_latency_ms=valid.max() if valid.size else None,
        threshold_ms=MAX_MEAN_LATENCY_MS,
        n_invalid=int(invalid.sum()),
        invalid_examples=_offenders(scores_df, invalid),
    )


def _scores_by_id(frame: pd.DataFrame) -> pd.Series:
    """Score per alert_id (first row of duplicated ids; rows without id dropped)."""
    frame = frame[frame["alert_id"].notna()].drop_duplicates("alert_id")
    return pd.Series(float_values(frame["score"]), index=frame["alert_id"].to_numpy())


def check_determinism(scores_df: pd.DataFrame, rescored_df: pd.DataFrame | None) -> dict[str, Any]:
    """Re-scoring the same input gives the same score per alert_id (within 1e-12)."""
    if rescored_df is None:
        return _not_run("no re-scored submission given")
    for name, frame in (("scores", scores_df), ("re-scored", rescored_df)):
        if not {"alert_id", "score"} <= set(frame.columns):
            return _result(False, reason=f"{name} lack alert_id or score column")
    first, second = _scores_by_id(scores_df), _scores_by_id(rescored_df)
    in_second = is_member(first.index, second.index)
    only_first, common = first.index[~in_second], first.index[in_second]
    only_second = second.index[~is_member(second.index, first.index)]
    a, b = first[common].to_numpy(), second[common].to_numpy()
    with np.errstate(invalid="ignore"):
        diff = np.abs(a - b)
        same = (a == b) | (diff <= DETERMINISM_TOLERANCE) | (np.isnan(a) & np.isnan(b))
    finite_diff = diff[np.isfinite(diff)]
    return _result(
        same.all() and only_first.empty and only_second.empty,
        tolerance=DETERMINISM_TOLERANCE,
        n_compared=len(common),
        n_mismatched=int((~same).sum()),
        mismatch_examples=examples(common[~same]),
        max_abs_diff=finite_diff.max() if finite_diff.size else None,
        n_missing_in_rescore=len(only_first),
        missing_in_rescore_examples=examples(only_first),
        n_extra_in_rescore=len(only_second),
        extra_in_rescore_examples=examples(only_second),
    )


class Tier1Validator:
    """Integrity: completeness, schema, score range, latency and determinism."""

    max_score = TIER_MAX_SCORES["tier1"]

    def validate(
        self,
        scores_df: pd.DataFrame,
        alerts_df: pd.DataFrame,
        rescored_df: pd.DataFrame | None = None,
    ) -> dict[str, Any]:
        """Run every check; ``passed`` when no check fails, ``score`` 0.2 if passed else 0.

        ``rescored_df`` is a second scoring of the same alerts; without it determinism is
        ``not_run`` (neutral). Raises ``ValueError`` if ``alerts_df`` has no alert_id.
        """
        if "alert_id" not in alerts_df.columns:
            raise ValueError("alerts_df has no 'alert_id' column")
        checks = {
            "completeness": check_completeness(scores_df, alerts_df),
            "schema": check_schema(scores_df),
            "score_range": check_score_range(scores_df),
            "latency": check_latency(scores_df),
            "determinism": check_determinism(scores_df, rescored_df),
        }
        failed = [name for name, check in checks.items() if check["status"] == FAILED]
        return to_jsonable(
            {
                "passed": not failed,
                "score": 0.0 if failed else self.max_score,
                "max_score": self.max_score,
                "failed_checks": failed,
                "checks": checks,
            }
        )
