"""``pattern_traps.json``: the one parser of pattern traps, used by landing (the contract
check) and by tier 2.

A traps file is a list of traps, or an object ``{"traps": [...]}``; each trap an object
with a non-empty string ``alert_id`` (distinct across traps) and an ``expected_score``
that is a finite number in [0, 1].
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, cast

_MAX_EXAMPLES = 5


class PatternTrapsError(ValueError):
    """Pattern traps that are unreadable or malformed; the message names source and problem."""


def _listing(items: Sequence[str]) -> str:
    return ", ".join(items[:_MAX_EXAMPLES]) + (", ..." if len(items) > _MAX_EXAMPLES else "")


def trap_problems(traps: Any) -> tuple[list[dict[str, Any]], list[tuple[str, str]]]:
    """The well-formed traps of a parsed JSON document, and every problem found, each as
    ``(field, message)`` (field ``""`` for the document or a whole trap)."""
    if isinstance(traps, Mapping):
        traps = traps.get("traps")
    if not isinstance(traps, Sequence) or isinstance(traps, str | bytes):
        return [], [("", "must be a list of traps or an object {'traps': [...]}")]
    parsed: list[dict[str, Any]] = []
    not_objects: list[str] = []
    bad_ids: list[str] = []
    bad_scores: list[str] = []
    for i, trap in enumerate(traps):
        if not isinstance(trap, Mapping):
            not_objects.append(f"trap #{i}")
            continue
        alert_id, score = trap.get("alert_id"), trap.get("expected_score")
        id_ok = isinstance(alert_id, str) and alert_id != ""
        score_ok = (
            isinstance(score, int | float)
            and not isinstance(score, bool)
            and math.isfinite(score)
            and 0.0 <= score <= 1.0
        )
        if not id_ok:
            bad_ids.append(f"trap #{i} ({'missing' if alert_id is None else repr(alert_id)})")
        if not score_ok:
            bad_scores.append(f"trap #{i} ({'missing' if score is None else repr(score)})")
        if id_ok and score_ok:
            parsed.append({"alert_id": alert_id, "expected_score": float(cast(float, score))})
    problems = []
    for field, bad, what in (
        ("", not_objects, "are not objects"),
        ("alert_id", bad_ids, "without a non-empty string alert_id"),
        ("expected_score", bad_scores, "without a finite number in [0, 1]"),
    ):
        if bad:
            problems.append((field, f"{len(bad)} trap(s) {what}: {_listing(bad)}"))
    duplicated = sorted(a for a, n in Counter(t["alert_id"] for t in parsed).items() if n > 1)
    if duplicated:
        shown = _listing([repr(a) for a in duplicated])
        problems.append(
            ("alert_id", f"{len(duplicated)} duplicate alert_id(s) listed more than once: {shown}")
        )
    return parsed, problems


def parse_pattern_traps(traps: Any, source: str = "pattern traps") -> list[dict[str, Any]]:
    """Validated traps as ``[{"alert_id": str, "expected_score": float}, ...]``; raises
    ``PatternTrapsError`` naming ``source`` and every problem."""
    parsed, problems = trap_problems(traps)
    if problems:
        raise PatternTrapsError(f"{source}: " + "; ".join(message for _, message in problems))
    return parsed


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
