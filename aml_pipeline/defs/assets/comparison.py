"""The ``model_comparison`` asset: the A/B test of ``aml-pipeline validate`` on two
registered alert scorers over days the daily run processed. Its verdict promotes nothing
by itself: the ``alert_scorer_champion`` asset, materialized with ``from_comparison``,
promotes a challenger that won significantly, through its gates."""

import datetime as dt
import functools
import sys
import tempfile
from pathlib import Path

import dagster as dg
from pydantic import Field

from aml_pipeline.dates import configured_range
from aml_pipeline.defs.assets import daily as daily_module
from aml_pipeline.defs.assets import labels as labels_module
from aml_pipeline.defs.assets.daily import day_rows
from aml_pipeline.defs.assets.labels import (
    last_label_day,
    network_label_maturity,
    read_known_labels,
)
from aml_pipeline.defs.resources import PipelineConfig
from aml_pipeline.defs.warehouse import Warehouse
from aml_pipeline.evaluation import ab_test, comparison, report
from aml_pipeline.evaluation.ab_test import compare_loaded
from aml_pipeline.evaluation.maturity import labelled_share
from aml_pipeline.models.registry import ModelRegistry
from aml_pipeline.provenance import module_version
from aml_pipeline.sources.landing import read_landed_traps
from aml_pipeline.storage import layout
from aml_pipeline.storage.tables import MissingPartitions


class ModelComparisonConfig(dg.Config):
    """Which two alert-scorer versions to compare on which days."""

    start_date: str = Field(
        default="",
        description="First processing date of the test range; empty = the first day with "
        "stored features after both models' training ranges.",
    )
    end_date: str = Field(
        default="",
        description="Last processing date of the test range; empty = the last "
        "day with stored features.",
    )
    model_a: str = Field(default="", description="Baseline version; empty = the champion.")
    model_b: str = Field(default="", description="Challenger version; empty = the latest.")
    resamples: int = Field(default=1000, description="Paired bootstrap resamples.")


def build_comparison_asset(network: str) -> dg.AssetsDefinition:
    """``model_comparison`` of one network."""

    @dg.asset(
        key=[network, "model_comparison"],
        group_name=f"{network}_validation",
        deps=[
            dg.AssetKey([network, "alert_scorer"]),
            dg.AssetKey([network, "alert_features"]),
            dg.AssetKey([network, "label_events"]),
        ],
        kinds={"lightgbm", "json"},
        code_version=module_version(
            sys.modules[__name__], daily_module, labels_module, ab_test, comparison, report
        ),
        description="A/B test of two alert-scorer versions on the same days with the "
        "validators' tiers 1-3, on the features the daily run stored for those days (so the "
        "label history is what production had) and the labels that arrived so far: per-day "
        "metrics, deltas, 95% intervals for the AUC differences from a paired bootstrap over "
        "addresses, calibration, winner and recommendation, written to "
        f"validation_results/{network}/v{{A}}_vs_v{{B}}/ with comparison_report.md.",
    )
    def model_comparison(
        config: ModelComparisonConfig,
        pipeline: PipelineConfig,
        warehouse: Warehouse,
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
        stored = warehouse.stored_days(dg.AssetKey([network, "alert_features"]))
        days = _test_days(config, stored, [_trained_through(registry, v) for v in (a, b)])
        for version in (a, b):
            _check_held_out(registry, version, days)
        try:
            features = warehouse.read_days(dg.AssetKey([network, "alert_features"]), days)
        except MissingPartitions as exc:
            raise dg.Failure(
                description=f"the test range needs the daily run's features: {exc} "
                "(aml-pipeline score or the daily job computes them)"
            ) from exc
        through = last_label_day(warehouse, network, days)
        labels = read_known_labels(warehouse, network, days, through, pipeline.data_since(network))
        by_day = {day: day_rows(features, day) for day in days}
        maturity = network_label_maturity(pipeline, warehouse, network, through)
        mature = [
            day
            for day, frame in by_day.items()
            if maturity.mature(day, through, labelled_share(frame["alert_id"], labels))
        ]
        folder = layout.comparison_folder(network, a, b)
        # written beside each other in a scratch folder, then stored file by file
        with tempfile.TemporaryDirectory(prefix="aml-comparison-") as scratch:
            result = compare_loaded(
                {
                    "A": functools.partial(registry.load, "alert_scorer", a),
                    "B": functools.partial(registry.load, "alert_scorer", b),
                },
                by_day,
                {day: frame[["alert_id", "address"]] for day, frame in by_day.items()},
                labels,
                {day: read_landed_traps(pipeline.input_storage(), network, day) for day in days},
                Path(scratch) / "comparison.json",
                {
                    "model_a": a,
                    "model_b": b,
                    "features": f"warehouse {network}/alert_features",
                    "labels_through": through.isoformat(),
                    "label_maturity": maturity.to_dict(),
                    "n_alerts": {day.isoformat(): len(frame) for day, frame in by_day.items()},
                    "warnings": [],
                },
                n_resamples=config.resamples,
                budget=pipeline.alert_budget(network),
                judged_days=mature,
            )
            for written in sorted(Path(scratch).iterdir()):
                storage.write_bytes(f"{folder}/{written.name}", written.read_bytes())
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
                "test_range": dg.MetadataValue.json([days[0].isoformat(), days[-1].isoformat()]),
                "labels_through": through.isoformat(),
                "judged_days": dg.MetadataValue.json(result["judged_days"]),
                "report": dg.MetadataValue.path(storage.url(f"{folder}/comparison_report.md")),
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


def _trained_through(registry: ModelRegistry, version: str) -> str:
    """The last day ``version`` was trained on (empty when unknown)."""
    entry = registry.entry("alert_scorer", version) or {}
    return entry.get("training_range", ["", ""])[1]


def _test_days(
    config: ModelComparisonConfig, stored: list[dt.date], trained_through: list[str]
) -> list[dt.date]:
    """The test range: as configured, an empty end taken from the ``stored`` feature days
    after every model's training range."""
    after = max(trained_through)
    held_out = [d for d in stored if d.isoformat() > after]
    try:
        days = configured_range(config.start_date, config.end_date, held_out)
    except ValueError as exc:
        raise dg.Failure(description=f"test range: {exc}") from exc
    if days is None:
        raise dg.Failure(
            description=f"no test range: start_date {config.start_date or '(empty)'}, end_date "
            f"{config.end_date or '(empty)'}, and no day with stored features after the models' "
            f"training ranges (through {after or 'unknown'}): score later days first"
        )
    return days
