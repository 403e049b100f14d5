"""``validate``: A/B test two alert-scorer files with the validators' tiers 1-3."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from aml_pipeline.cli.arguments import day_span
from aml_pipeline.settings import Settings


def budget(budget: int | None, network: str | None) -> int:
    """The daily alert budget: ``budget`` if given, else the network's ``alert_budget``
    (or the environment's, without a network)."""
    if budget is not None:
        return budget
    settings = Settings.from_env()
    return settings.network(network).alert_budget if network else settings.alert_budget


def maturity_days(days: int | None, network: str | None) -> int:
    """The label maturity to judge by: ``days`` if given, else the network's
    ``label_maturity_days`` (0: estimated from the ground truth)."""
    if days is not None:
        return days
    return Settings.from_env().network(network).label_maturity_days if network else 0


def validate(args: argparse.Namespace) -> int:
    """A/B test two alert-scorer files with the validators' tiers 1-3 (the seed's
    validate_models.py); writes the JSON, comparison_report.md and its plots."""
    from aml_pipeline.evaluation.ab_test import run_ab_test
    from aml_pipeline.evaluation.maturity import LabelMaturity

    day_span(args.start_date, args.end_date)
    try:
        result = run_ab_test(
            Path(args.model_a),
            Path(args.model_b),
            Path(args.test_data),
            args.start_date,
            args.end_date,
            Path(args.ground_truth),
            Path(args.output),
            n_resamples=args.resamples,
            seed=args.seed,
            budget=budget(args.budget, args.network),
            label_maturity_days=maturity_days(args.label_maturity_days, args.network),
        )
    except (FileNotFoundError, ValueError) as exc:
        print(f"validation failed: {exc}", file=sys.stderr)
        return 1
    for warning in result["inputs"]["warnings"]:
        print(f"WARNING: {warning}; those alerts' label history is incomplete", file=sys.stderr)
    for model in ("model_a", "model_b"):
        if "unchecked" in result["inputs"][model]:
            print(f"WARNING: {model}: {result['inputs'][model]['unchecked']}", file=sys.stderr)
    for name, aggregate in result["aggregate"].items():
        pooled = aggregate["tier3"]["pooled"]["metrics"]
        tiers = ", ".join(
            f"{part} {aggregate[part]['mean_score']:.3f}"
            for part in ("tier1", "tier2", "tier3", "total")
            if aggregate[part]["mean_score"] is not None
        )
        aucs = ", ".join(f"{m} {pooled[m]:.3f}" for m in ("auc_roc", "auc_pr") if pooled.get(m))
        print(f"  {name}: {tiers}; pooled {aucs}")
    inputs = result["inputs"]
    print(
        f"judged on {len(result['judged_days'])} of {len(inputs['n_alerts'])} test days, "
        f"those whose labels are mature by {inputs['labels_through']} "
        f"({LabelMaturity(**inputs['label_maturity']).describe()})"
    )
    print(f"winner: {result['winner']}\n{result['recommendation']}")
    print(f"written: {args.output} and {Path(args.output).parent / 'comparison_report.md'}")
    return 0
