"""A/B comparison of two models that scored the same days.

Each model is validated per day with all three tiers; the labelled alerts of all days are
then pooled (only alerts both models scored with a finite score, so the comparison is
paired) and a paired bootstrap over addresses (whole blocks of alerts, since alerts on one
address are not independent) gives confidence intervals for the AUC-ROC and AUC-PR
differences B - A. The winner is decided on pooled AUC-ROC; the recommendation states
whether the difference is significant (the CI excludes 0).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import precision_recall_curve, roc_curve

from aml_pipeline.evaluation.budget import DEFAULT_DAILY_BUDGET
from aml_pipeline.evaluation.tier3_validator import (
    LABEL,
    labels_frame,
    score_ranking,
    scores_frame,
)
from aml_pipeline.evaluation.tiers import validate_day
from aml_pipeline.evaluation.validator_utils import SCORE_DECIMALS, to_jsonable
from aml_pipeline.models.bootstrap import paired_bootstrap
from aml_pipeline.models.calibration import brier_score, expected_calibration_error, reliability

DayFrames = Mapping[str, pd.DataFrame]
MAX_CURVE_POINTS = 500
TIERS = ("tier1", "tier2", "tier3")


def _thin(*arrays: np.ndarray) -> list[list[float]]:
    """At most MAX_CURVE_POINTS evenly spaced points of each array, ends kept."""
    keep = np.unique(np.linspace(0, len(arrays[0]) - 1, MAX_CURVE_POINTS).round().astype(int))
    return [array[keep].tolist() for array in arrays]


def _curves(y_true: np.ndarray, scores: np.ndarray) -> dict[str, Any] | None:
    """ROC and PR curve points for plotting, or None when a curve is undefined."""
    if y_true.all() or not y_true.any():
        return None
    fpr, tpr, _ = roc_curve(y_true, scores)
    precision, recall, _ = precision_recall_curve(y_true, scores)
    fpr, tpr = _thin(fpr, tpr)
    recall, precision = _thin(recall, precision)
    return {"roc": {"fpr": fpr, "tpr": tpr}, "pr": {"recall": recall, "precision": precision}}


def _calibration(y_true: np.ndarray, scores: np.ndarray) -> dict[str, Any] | None:
    """Brier score, ECE and the reliability table of pooled scores that are probabilities
    (None for scores outside [0, 1], or labels of a single class, as for the curves)."""
    if y_true.all() or not y_true.any() or not np.all((scores >= 0) & (scores <= 1)):
        return None
    return {
        "brier": brier_score(y_true, scores),
        "ece": expected_calibration_error(y_true, scores),
        "reliability": reliability(y_true, scores),
    }


def _day_labels(ground_truth: pd.DataFrame, day: str) -> pd.DataFrame:
    """Ground truth for ``day``: filtered on processing_date when that column exists."""
    if "processing_date" not in ground_truth.columns:
        return ground_truth
    dates = pd.to_datetime(ground_truth["processing_date"]).dt.strftime("%Y-%m-%d")
    return ground_truth[(dates == pd.Timestamp(day).strftime("%Y-%m-%d")).to_numpy()]


def _pooled_pairs(
    scores: Mapping[str, DayFrames],
    labels_by_day: DayFrames,
    names: Sequence[str],
    alerts: DayFrames,
) -> tuple[pd.DataFrame, dict[str, int]]:
    """Labelled alerts of all days with both models' finite scores (``a``, ``b``) and the
    alert's ``address`` (None where the alerts do not say), and counts."""
    frames = []
    for day, day_truth in labels_by_day.items():
        merged = labels_frame(day_truth)
        if "address" in alerts[day].columns:
            addresses = pd.DataFrame(
                {
                    "alert_id": alerts[day]["alert_id"].astype(str).to_numpy(),
                    "address": alerts[day]["address"].to_numpy(),
                }
            ).drop_duplicates("alert_id")
            merged = merged.merge(addresses, on="alert_id", how="left")
        else:
            merged["address"] = None
        for suffix, name in zip(("a", "b"), names, strict=True):
            day_scores = scores_frame(scores[name][day]).rename(columns={"score": suffix})
            merged = merged.merge(day_scores, on="alert_id", how="left")
        frames.append(merged)
    if not frames:
        columns = {"alert_id": object, LABEL: bool, "address": object, "a": float, "b": float}
        frames = [pd.DataFrame({c: pd.Series(dtype=t) for c, t in columns.items()})]
    pooled = pd.concat(frames, ignore_index=True)
    scored_a, scored_b = pooled["a"].notna(), pooled["b"].notna()
    finite = np.isfinite(pooled["a"].to_numpy()) & np.isfinite(pooled["b"].to_numpy())
    counts = {
        "n_labelled": len(pooled),
        "n_scored_by_one_model": int((scored_a ^ scored_b).sum()),
        "n_non_finite_excluded": int((scored_a & scored_b & ~finite).sum()),
    }
    return pooled[finite].reset_index(drop=True), counts


def _diff(b: float | None, a: float | None) -> float | None:
    return None if a is None or b is None else round(b - a, SCORE_DECIMALS)


def _metric(day_result: Mapping[str, Any], name: str) -> float | None:
    return day_result["tier3"]["metrics"].get(name)


def _day_delta(a: Mapping[str, Any], b: Mapping[str, Any]) -> dict[str, float | None]:
    """B - A for each tier score, the total and the day's AUCs."""
    delta = {tier: _diff(b[tier]["score"], a[tier]["score"]) for tier in TIERS}
    delta["total"] = _diff(b["total_score"], a["total_score"])
    for metric in ("auc_roc", "auc_pr"):
        delta[metric] = _diff(_metric(b, metric), _metric(a, metric))
    return delta


def _mean(values: list[float]) -> float | None:
    return float(np.mean(values)) if values else None


def _aggregate(runs: list[Mapping[str, Any]], pooled: Mapping[str, Any]) -> dict[str, Any]:
    """One model's tier scores over the days, plus Tier 3 on the pooled paired alerts."""
    tier3 = [run["tier3"]["score"] for run in runs if run["tier3"]["score"] is not None]
    at_budget = {
        name: [run["tier3"]["metrics"].get(name) for run in runs]
        for name in ("precision_at_budget", "recall_at_budget")
    }
    return {
        "n_days": len(runs),
        "tier1": {
            "mean_score": _mean([run["tier1"]["score"] for run in runs]),
            "days_passed": sum(run["tier1"]["passed"] for run in runs),
        },
        "tier2": {
            "mean_score": _mean([run["tier2"]["score"] for run in runs]),
            "days_passed": sum(run["tier2"]["passed"] for run in runs),
        },
        "tier3": {
            "mean_score": _mean(tier3),
            "days_scored": len(tier3),
            "pooled": pooled,
            # what the analysts' daily budget finds, averaged over the days with labels
            **{
                f"mean_{name}": _mean([v for v in values if v is not None])
                for name, values in at_budget.items()
            },
        },
        "total": {"mean_score": _mean([run["total_score"] for run in runs])},
    }


def _aggregate_delta(a: Mapping[str, Any], b: Mapping[str, Any]) -> dict[str, float | None]:
    delta = {
        part: _diff(b[part]["mean_score"], a[part]["mean_score"]) for part in (*TIERS, "total")
    }
    pooled_a, pooled_b = a["tier3"]["pooled"], b["tier3"]["pooled"]
    delta["pooled_tier3"] = _diff(pooled_b["score"], pooled_a["score"])
    for metric in ("auc_roc", "auc_pr"):
        delta[f"pooled_{metric}"] = _diff(
            pooled_b["metrics"].get(metric), pooled_a["metrics"].get(metric)
        )
    return delta


def _verdict(
    names: Sequence[str], bootstrap: Mapping[str, Any], aggregate: Mapping[str, Any]
) -> tuple[str | None, bool, str]:
    """Winner (on pooled AUC-ROC), significance and a recommendation sentence."""
    name_a, name_b = names
    roc, pr = bootstrap["auc_roc_diff"], bootstrap["auc_pr_diff"]
    warnings = "".join(
        f" Warning: {name} failed Tier 1 on {agg['n_days'] - agg['tier1']['days_passed']}"
        f" of {agg['n_days']} day(s)."
        for name, agg in aggregate.items()
        if agg["tier1"]["days_passed"] < agg["n_days"]
    )
    if roc["estimate"] is None:
        return None, False, f"No verdict: {bootstrap['reason']}.{warnings}"
    estimate = roc["estimate"]
    winner = name_b if estimate > 0 else name_a if estimate < 0 else "tie"
    level = f"{100 * bootstrap['confidence']:g}% CI [{roc['ci_low']:+.4f}, {roc['ci_high']:+.4f}]"
    change = f"AUC-ROC {name_b} - {name_a} = {estimate:+.4f}, {level}"
    pr_note = (
        f" AUC-PR difference {pr['estimate']:+.4f} is "
        f"{'significant' if pr['significant'] else 'not significant'}."
    )
    if roc["significant"]:
        action = f"adopt {name_b}" if winner == name_b else f"keep {name_a}"
        text = f"{winner} is significantly better ({change} excludes 0): {action}."
    else:
        text = f"No significant difference ({change} includes 0): keep {name_a}."
    return winner, bool(roc["significant"]), text + pr_note + warnings


def _check_inputs(scores: Mapping[str, DayFrames], days: Sequence[str]) -> list[str]:
    names = list(scores)
    if len(names) != 2:
        raise ValueError(f"expected scores of exactly 2 models, got {len(names)}: {names}")
    if not days:
        raise ValueError("no days to compare")
    for name in names:
        if set(scores[name]) != set(days):
            raise ValueError(
                f"model {name!r} scored days {sorted(scores[name])}, expected {sorted(days)}"
            )
    return names


def compare_models(
    scores: Mapping[str, DayFrames],
    alerts: DayFrames,
    ground_truth: pd.DataFrame,
    pattern_traps: Mapping[str, Sequence[Mapping[str, Any]]] | None = None,
    *,
    rescored: Mapping[str, DayFrames] | None = None,
    thresholds: Mapping[str, float | None] | None = None,
    budget: int = DEFAULT_DAILY_BUDGET,
    judged_days: Sequence[str] | None = None,
    n_resamples: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
) -> dict[str, Any]:
    """Compare model A (baseline) with model B on the same days; JSON-safe result.

    Args:
        scores: ``{model_name: {day: scores_df}}`` for exactly two models, A first.
        alerts: ``{day: alerts_df}``; both models must score exactly these days.
        ground_truth: ``alert_id``, ``is_sar_filed`` and optionally ``processing_date``
            (then day keys must be ISO dates and each day uses its own labels).
        pattern_traps: ``{day: traps}``; days without traps use none.
        rescored: ``{model_name: {day: rescored_df}}`` for the Tier 1 determinism check.
        thresholds: ``{model_name: threshold}``, each model's alerting threshold chosen on
            its validation days (tier 3 reports the F1 at it).
        budget: the alerts the analysts work a day (the network's ``alert_budget``).
        judged_days: the days whose labels are mature: the pooled figures, the bootstrap
            and the verdict rest on them alone (None: every day); each day's tiers are
            still reported.
        n_resamples, seed, confidence: paired bootstrap settings.
    """
    days = sorted(alerts)
    names = _check_inputs(scores, days)
    traps, rescored, thresholds = pattern_traps or {}, rescored or {}, thresholds or {}
    labels_by_day = {day: _day_labels(ground_truth, day) for day in days}
    per_day: dict[str, dict[str, Any]] = {}
    for day in days:
        runs = {
            name: validate_day(
                scores[name][day],
                alerts[day],
                traps.get(day, []),
                labels_by_day[day],
                rescored.get(name, {}).get(day),
                thresholds.get(name),
                budget,
            )
            for name in names
        }
        per_day[day] = {"models": runs, "delta": _day_delta(*runs.values())}
    judged = days if judged_days is None else sorted(set(days) & set(judged_days))
    pooled, pool_counts = _pooled_pairs(
        scores, {day: labels_by_day[day] for day in judged}, names, alerts
    )
    y_true = pooled[LABEL].to_numpy(dtype=bool)
    # alerts whose address is unknown are blocks of their own
    blocks = (
        pooled["address"]
        .astype(object)
        .where(pooled["address"].notna(), "alert:" + pooled["alert_id"])
    )
    columns = dict(zip(names, ("a", "b"), strict=True))
    aggregate = {
        name: _aggregate(
            [per_day[day]["models"][name] for day in days],
            score_ranking(y_true, pooled[column].to_numpy(), threshold=thresholds.get(name)),
        )
        for name, column in columns.items()
    }
    bootstrap = paired_bootstrap(
        y_true,
        pooled["a"].to_numpy(),
        pooled["b"].to_numpy(),
        groups=blocks.to_numpy(),
        n_resamples=n_resamples,
        seed=seed,
        confidence=confidence,
    )
    if not judged:
        bootstrap["reason"] = "no test day's labels are mature yet"
    winner, significant, recommendation = _verdict(names, bootstrap, aggregate)
    if judged_days is not None and judged:
        recommendation += (
            f" Judged on the {len(judged)} of {len(days)} day(s) whose labels are mature."
        )
    return to_jsonable(
        {
            "models": {"a": names[0], "b": names[1]},
            "days": days,
            "judged_days": judged,
            "per_day": per_day,
            "aggregate": aggregate,
            "delta": _aggregate_delta(*aggregate.values()),
            "pooled": pool_counts | {"n_paired": len(pooled)},
            "bootstrap": bootstrap,
            "curves": {
                name: _curves(y_true, pooled[column].to_numpy()) for name, column in columns.items()
            },
            "calibration": {
                name: _calibration(y_true, pooled[column].to_numpy())
                for name, column in columns.items()
            },
            "winner": winner,
            "significant": significant,
            "recommendation": recommendation,
        }
    )
