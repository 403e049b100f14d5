"""The gates a model version passes before it becomes the champion that scores every day.

- ``compatible``: its feature schema version and every categorical vocabulary equal the
  code's (a model fed codes it reads as other values scores silently wrong);
- ``tier1`` (the alert scorer, the model validators judge): tier 1 of the validators
  passes on every gate day: every alert scored once, scores in [0, 1], the latency
  budget, and the same scores again from its stored file in a fresh process.

A failing gate refuses the promotion, naming the gate, unless it is overridden with a
reason, which the registry records with the promotion.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

import pandas as pd

from aml_pipeline.evaluation.ab_test import ModelLoader, rescore_in_fresh_process, score_days
from aml_pipeline.evaluation.tier1_validator import Tier1Validator
from aml_pipeline.models.registry import LoadedModel, ModelSchemaError, check_compatible


@dataclass(frozen=True)
class Gate:
    """One gate's verdict on one model version."""

    name: str
    passed: bool
    detail: str

    def to_dict(self) -> dict:
        return asdict(self)


def compatibility_gate(model: LoadedModel, categories: Mapping[str, Sequence[str]]) -> Gate:
    """Whether ``model``'s feature schema and vocabularies are the code's ``categories``."""
    try:
        check_compatible(model, categories)
    except ModelSchemaError as exc:
        return Gate("compatible", False, str(exc))
    return Gate(
        "compatible",
        True,
        f"feature schema {model.entry.get('feature_schema_version')} and the vocabularies "
        f"of {', '.join(c for c in categories if c in model.features)} match the code",
    )


def tier1_gate(load: ModelLoader, features: Mapping[dt.date, pd.DataFrame]) -> Gate:
    """Tier 1 on each day of ``features`` (the model's alert features of those days), the
    determinism check against a re-scoring from the stored file in a fresh process."""
    if not features:
        return Gate("tier1", False, "no day to run tier 1 on: land and score a day first")
    days = dict(sorted(features.items()))
    scores = score_days(load(), days)
    again = rescore_in_fresh_process({"model": load}, days)["model"]
    failed = {}
    for day, frame in days.items():
        key = day.isoformat()
        result = Tier1Validator().validate(scores[key], frame, again[key])
        if not result["passed"]:
            failed[key] = result["failed_checks"]
    span = f"{min(days)}..{max(days)} ({len(days)} days)"
    if failed:
        listed = "; ".join(f"{day}: {', '.join(checks)}" for day, checks in failed.items())
        return Gate("tier1", False, f"tier 1 failed on {span}: {listed}")
    return Gate("tier1", True, f"tier 1 passed on {span}")


def failed_gates(gates: Sequence[Gate]) -> list[Gate]:
    return [gate for gate in gates if not gate.passed]


def refusal(kind: str, version: str, gates: Sequence[Gate]) -> str:
    """The message refusing ``kind`` v``version``, naming every failed gate."""
    failed = failed_gates(gates)
    named = "; ".join(f"gate {gate.name}: {gate.detail}" for gate in failed)
    return (
        f"{kind} v{version} is not promoted: {named} (promote it anyway only with an "
        "override reason, which the registry records)"
    )
