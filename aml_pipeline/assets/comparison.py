"""The ``model_comparison`` asset: the A/B test of ``aml-pipeline validate`` on two
registered alert scorers over landed days, optionally promoting a significant winner."""

import datetime as dt

import dagster as dg
from pydantic import Field

from aml_pipeline.assets.training import read_days
from aml_pipeline.contract.files import parquet_bytes
from aml_pipeline.dates import date_range
from aml_pipeline.models.registry import ModelRegistry
from aml_pipeline.resources import PipelineConfig
from aml_pipeline.validation.ab_test import run_ab_test


class ModelComparisonConfig(dg.Config):
    """Which two alert-scorer versions to compare on which days."""

    start_date: str = Field(description="First processing date of the test range.")
    end_date: str = Field(description="Last processing date of the test range.")
    model_a: str = Field(default="", description="Baseline version; empty = the champion.")
    model_b: str = Field(default="", description="Challenger version; empty = the latest.")
    resamples: int = Field(default=1000, description="Paired bootstrap resamples.")
    promote_winner: bool = Field(
        default=False,
        description="Make B the champion when it wins significantly (recorded in the registry).",
    )


def build_comparison_asset(network: str) -> dg.AssetsDefinition:
    """``model_comparison`` of one network."""

    @dg.asset(
        key=[network, "model_comparison"],
        group_name=f"{network}_validation",
        deps=[
            dg.AssetKey([network, "alert_scorer"]),
            dg.AssetKey([network, "alert_features"]),
            dg.AssetKey([network, "ground_truth"]),
        ],
        kinds={"lightgbm", "json"},
        description="A/B test of two alert-scorer versions on the same landed days with the "
        "validators' tiers 1-3: per-day metrics, deltas, paired-bootstrap 95% intervals "
        "for the AUC differences, winner and recommendation, written to "
        f"validation_results/{network}/v{{A}}_vs_v{{B}}/ with comparison_report.md.",
    )
    def model_comparison(
        config: ModelComparisonConfig, pipeline: PipelineConfig
    ) -> dg.MaterializeResult:
        storage = pipeline.storage()
        registry = ModelRegistry(storage, network)
        versions = [e["version"] for e in registry.entries("alert_scorer")]
        if not versions:
            raise dg.Failure(description=f"{network} has no alert_scorer yet: train one first")
        a = config.model_a or registry.champions().get("alert_scorer", "")
        b = config.model_b or versions[-1]
        if not a or a == b:
            raise dg.Failure(
                description=f"name two different versions (model A {a or 'no champion'}, "
                f"model B {b})"
            )
        days = _range(config.start_date, config.end_date)
        for version in (a, b):
            _check_held_out(registry, version, days)
        folder = f"validation_results/{network}/v{a}_vs_v{b}"
        labels = read_days(
            pipeline,
            network,
            "ground_truth",
            days,
            "the test range (aml-pipeline score or download lands it)",
        )
        storage.write_bytes(f"{folder}/ground_truth.parquet", parquet_bytes(labels))
        result = run_ab_test(
            storage.local_path(registry.model_key("alert_scorer", a)),
            storage.local_path(registry.model_key("alert_scorer", b)),
            pipeline.input_storage().local_path(network),
            days[0],
            days[-1],
            storage.local_path(f"{folder}/ground_truth.parquet"),
            storage.local_path(f"{folder}/comparison.json"),
            n_resamples=config.resamples,
        )
        promoted = None
        if config.promote_winner and result["significant"] and result["winner"].startswith("B"):
            promoted = registry.promote("alert_scorer", b, result["recommendation"])
        delta = result["delta"]
        return dg.MaterializeResult(
            metadata={
                "model_a": a,
                "model_b": b,
                "winner": result["winner"],
                "significant": bool(result["significant"]),
                "recommendation": result["recommendation"],
                **{
                    f"delta_{k}": float(v)
                    for k, v in delta.items()
                    if k in ("pooled_auc_roc", "pooled_auc_pr") and v is not None
                },
                "bootstrap": dg.MetadataValue.json(result["bootstrap"]),
                "promoted": dg.MetadataValue.json(promoted),
                "report": dg.MetadataValue.path(
                    str(storage.local_path(f"{folder}/comparison_report.md"))
                ),
            }
        )

    return model_comparison


def _check_held_out(registry: ModelRegistry, version: str, days: list[dt.date]) -> None:
    """Refuse a test range that overlaps the days a model was trained on."""
    entry = registry.entry("alert_scorer", version)
    if entry is None:
        raise dg.Failure(description=f"{registry.network} has no alert_scorer v{version}")
    first, last = entry.get("training_range", ["", ""])
    if first and first <= days[-1].isoformat() and days[0].isoformat() <= last:
        raise dg.Failure(
            description=f"alert_scorer v{version} was trained on {first}..{last}, which "
            f"overlaps the test range {days[0]}..{days[-1]}: compare on held-out days"
        )


def _range(start: str, end: str) -> list[dt.date]:
    try:
        return date_range(dt.date.fromisoformat(start), dt.date.fromisoformat(end))
    except ValueError as exc:
        raise dg.Failure(description=f"test range: {exc}") from exc
