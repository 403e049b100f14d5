"""Helpers shared by the validators: examples, numeric checks, JSON-safe output, tier
totals. (``tiers.validate_day`` runs all three tiers on one day's submission.)"""

from __future__ import annotations

import datetime as dt
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


def examples(values: Iterable[Any], limit: int = MAX_EXAMPLES) -> list[Any]:
    """The first ``limit`` values, e.g. offending alert ids shown in a check's details."""
    out: list[Any] = []
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


def total_score(tier1: float, tier2: float, tier3: float | None) -> float:
    """Sum of the tier scores (a missing Tier 3 score counts as 0); at most 1.0."""
    parts = {"tier1": tier1, "tier2": tier2, "tier3": 0.0 if tier3 is None else tier3}
    for tier, value in parts.items():
        if not 0.0 <= value <= TIER_MAX_SCORES[tier]:
            raise ValueError(f"{tier} score {value} outside [0, {TIER_MAX_SCORES[tier]}]")
    return round(min(MAX_TOTAL_SCORE, sum(parts.values())), SCORE_DECIMALS)
