"""Helpers shared by the validators: pattern traps, JSON-safe output, tier totals.

``validate_day`` runs all three tiers on one day's submission.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

MAX_EXAMPLES = 5
TIER_MAX_SCORES = {"tier1": 0.2, "tier2": 0.3, "tier3": 0.5}
MAX_TOTAL_SCORE = 1.0
#: Rounding applied to tier scores so that 0.3 - 0.1 reads 0.2, not 0.19999999999999998.
SCORE_DECIMALS = 12


class PatternTrapsError(ValueError):
    """Pattern traps that are unreadable or malformed; the message names source and problem."""


def examples(values: Iterable[Any], limit: int = MAX_EXAMPLES) -> list[Any]:
    """The first ``limit`` values, e.g. offending alert ids shown in a check's details."""
    out = []
    for value in values:
        if len(out) == limit:
            break
        out.append(value)
    return out


def float_values(series: pd.Series) -> np.ndarray:
    """``series`` as float64; values that are not numbers (and missing values) become NaN."""
    return pd.to_numeric(series, errors="coerce").to_numpy(dtype=float, na_value=np.nan)


def is_member(
    values: Sequence[Any] | np.ndarray, allowed: Sequence[Any] | np.ndarray
) -> np.ndarray:
    """Mask of the ``values`` found in ``allowed``.

    Uses an object-dtype hash lookup: ``isin`` on pandas' Arrow-backed strings is far slower.
    """
    index = pd.Index(np.asarray(values, dtype=object), dtype=object)
    return index.isin(np.asarray(allowed, dtype=object))


def is_numeric_column(series: pd.Series) -> bool:
    """True for numeric non-boolean columns; an empty column holds no wrong value."""
    if len(series) == 0:
        return True
    return pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series)


def to_jsonable(obj: Any) -> Any:
    """``obj`` with numpy/pandas values turned into plain Python; NaN, inf and NA become None."""
    if isinstance(obj, Mapping):
        return {str(key): to_jsonable(value) for key, value in obj.items()}
    if isinstance(obj, list | tuple | np.ndarray | pd.Series | pd.Index):
        return [to_jsonable(value) for value in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if obj is None or obj is pd.NA or obj is pd.NaT:
        return None
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, bool | int | str):
        return obj
    if isinstance(obj, dt.date | dt.datetime):
        return obj.isoformat()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"cannot convert {type(obj).__name__} to JSON")


def parse_pattern_traps(traps: Any, source: str = "pattern traps") -> list[dict[str, Any]]:
    """Validated traps as ``[{"alert_id": str, "expected_score": float}, ...]``.

    Accepts a list of traps or a dict ``{"traps": [...]}``. Raises ``PatternTrapsError``
    naming ``source``, the trap's position and the problem.
    """
    if isinstance(traps, Mapping):
        if "traps" not in traps:
            raise PatternTrapsError(f"{source}: expected a list of traps or {{'traps': [...]}}")
        traps = traps["traps"]
    if not isinstance(traps, Sequence) or isinstance(traps, str):
        raise PatternTrapsError(f"{source}: traps must be a list, got {type(traps).__name__}")
    parsed = [_parse_trap(trap, f"{source}: trap #{i}") for i, trap in enumerate(traps)]
    ids = [trap["alert_id"] for trap in parsed]
    duplicated = sorted({alert_id for alert_id in ids if ids.count(alert_id) > 1})
    if duplicated:
        raise PatternTrapsError(f"{source}: duplicate trap alert_id(s) {examples(duplicated)}")
    return parsed


def _parse_trap(trap: Any, where: str) -> dict[str, Any]:
    if not isinstance(trap, Mapping):
        raise PatternTrapsError(f"{where}: must be an object, got {type(trap).__name__}")
    missing = [key for key in ("alert_id", "expected_score") if key not in trap]
    if missing:
        raise PatternTrapsError(f"{where}: missing key(s) {missing}")
    alert_id, expected = trap["alert_id"], trap["expected_score"]
    if isinstance(alert_id, bool) or not isinstance(alert_id, str | int) or alert_id == "":
        raise PatternTrapsError(f"{where}: alert_id must be a non-empty string, got {alert_id!r}")
    if (
        isinstance(expected, bool)
        or not isinstance(expected, int | float)
        or not math.isfinite(expected)
    ):
        raise PatternTrapsError(
            f"{where}: expected_score must be a finite number, got {expected!r}"
        )
    return {"alert_id": str(alert_id), "expected_score": float(expected)}


def load_pattern_traps(path: str | Path) -> list[dict[str, Any]]:
    """Read and validate a ``pattern_traps.json`` file (see ``parse_pattern_traps``)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise PatternTrapsError(f"{path}: cannot read file ({exc.strerror or exc})") from exc
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise PatternTrapsError(
            f"{path}: invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}"
        ) from exc
    return parse_pattern_traps(data, source=str(path))


def total_score(tier1: float, tier2: float, tier3: float | None) -> float:
    """Sum of the tier scores (a missing Tier 3 score counts as 0); at most 1.0."""
    parts = {"tier1": tier1, "tier2": tier2, "tier3": 0.0 if tier3 is None else tier3}
    for tier, value in parts.items():
        if not 0.0 <= value <= TIER_MAX_SCORES[tier]:
            raise ValueError(f"{tier} score {value} outside [0, {TIER_MAX_SCORES[tier]}]")
    return round(min(MAX_TOTAL_SCORE, sum(parts.values())), SCORE_DECIMALS)


def validate_day(
    scores_df: pd.DataFrame,
    alerts_df: pd.DataFrame,
    pattern_traps: Sequence[Mapping[str, Any]] | Mapping[str, Any],
    ground_truth_df: pd.DataFrame | None = None,
    rescored_df: pd.DataFrame | None = None,
) -> dict[str, Any]:
    """All three tiers for one day and their total (JSON-safe).

    Without ``ground_truth_df`` (labels arrive at T+τ) Tier 3 has score None and a reason.
    """
    # Imported here: the tier modules import this module's helpers.
    from aml_pipeline.validation.tier1_validator import Tier1Validator
    from aml_pipeline.validation.tier2_validator import Tier2Validator
    from aml_pipeline.validation.tier3_validator import Tier3Validator, no_tier3_score

    tier1 = Tier1Validator().validate(scores_df, alerts_df, rescored_df)
    tier2 = Tier2Validator().validate(scores_df, pattern_traps)
    if ground_truth_df is None:
        tier3 = no_tier3_score("no ground truth supplied (labels arrive at T+tau)")
    else:
        tier3 = Tier3Validator().validate(scores_df, ground_truth_df)
    return {
        "tier1": tier1,
        "tier2": tier2,
        "tier3": tier3,
        "total_score": total_score(tier1["score"], tier2["score"], tier3["score"]),
        "max_score": MAX_TOTAL_SCORE,
    }
