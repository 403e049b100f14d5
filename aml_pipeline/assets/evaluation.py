"""Daily evaluation assets of one network: the validators' tiers 1-3 on the published
scores, and the per-model evaluation files ``validation_results/{network}/``.

``tier1_evaluation`` carries a blocking check, and ``published_scores`` depends on it: a
day that fails integrity is never published. ``tier3_evaluation`` runs again whenever
that day's labels are refreshed (the label-arrival sensor re-materializes both).
Numeric results are materialization metadata, so the UI plots them across days.
"""

import datetime as dt
import json
from collections.abc import Iterator
from typing import Any

import dagster as dg
import pandas as pd

from aml_pipeline.assets.ingestion import BACKFILL, partition_days
from aml_pipeline.assets.metadata import frame_metadata
from aml_pipeline.features.alert_features import CATEGORIES
from aml_pipeline.ingestion import read_landed_traps
from aml_pipeline.io_manager import read_parquet
from aml_pipeline.models.registry import ModelRegistry
from aml_pipeline.models.scoring import score_frame
from aml_pipeline.resources import PipelineConfig
from aml_pipeline.storage import LocalStorage
from aml_pipeline.validation import (
    Tier1Validator,
    Tier2Validator,
    Tier3Validator,
    to_jsonable,
    total_score,
)

TIERS = ("tier1", "tier2", "tier3")
EVALUATION_ASSETS = tuple(f"{tier}_evaluation" for tier in TIERS)
#: Numeric results plotted per day in the UI.
_PLOTTED = {
    "tier1": ("score",),
    "tier2": ("score",),
    "tier3": ("score", "auc_roc", "auc_pr", "n_samples", "n_positive"),
}


def _day(frame: pd.DataFrame, day: dt.date) -> pd.DataFrame:
    return frame[frame["processing_date"] == day].reset_index(drop=True)


def _row(network: str, day: dt.date, version: str, result: dict[str, Any]) -> dict[str, Any]:
    return {
        "network": network,
        "processing_date": day,
        "model_version": version,
        "passed": result.get("passed"),
        "score": result.get("score"),
        "details_json": json.dumps(to_jsonable(result), sort_keys=True),
    }


def _frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    frame = pd.DataFrame(
        rows,
        columns=["network", "processing_date", "model_version", "passed", "score", "details_json"],
    )
    frame["passed"] = frame["passed"].astype("boolean")
    frame["score"] = frame["score"].astype("float64")
    return frame


def _metadata(tier: str, frame: pd.DataFrame) -> dict[str, Any]:
    """Row count and schema; each plotted number (the mean when a run spans days)."""
    values: dict[str, list[float]] = {name: [] for name in _PLOTTED[tier]}
    for _, row in frame.iterrows():
        details = json.loads(row["details_json"])
        for name in values:
            value = row["score"] if name == "score" else details.get("metrics", {}).get(name)
            if value is not None and not pd.isna(value):
                values[name].append(float(value))
    extra: dict[str, Any] = {
        f"{tier}_{name}": sum(v) / len(v) for name, v in values.items() if v and name != "score"
    }
    if values["score"]:
        extra[f"{tier}_score"] = sum(values["score"]) / len(values["score"])
    if frame["passed"].notna().any():
        extra["days_passed"] = int(frame["passed"].fillna(False).sum())
    return frame_metadata(frame, days=len(frame), **extra)


def _version(scores: pd.DataFrame) -> str:
    versions = scores["model_version"].unique()
    return str(versions[0]) if len(versions) else ""


def build_evaluation_assets(
    network: str, partitions: dg.PartitionsDefinition
) -> list[dg.AssetsDefinition]:
    """tier1_evaluation (blocking), tier2_evaluation and tier3_evaluation of one network."""
    common = {
        "group_name": f"{network}_validation",
        "partitions_def": partitions,
        "backfill_policy": BACKFILL,
        "io_manager_key": "warehouse_io_manager",
        "kinds": {"pandas", "parquet", "duckdb"},
    }
    tier1_key = dg.AssetKey([network, "tier1_evaluation"])

    @dg.asset(
        key=tier1_key,
        ins={
            "alert_scores": dg.AssetIn(key=[network, "alert_scores"]),
            "alerts": dg.AssetIn(key=[network, "raw_alerts"]),
            "alert_features": dg.AssetIn(key=[network, "alert_features"]),
        },
        description="Tier 1 integrity (0.2): every alert scored once and nothing else, "
        "schema, scores in [0, 1], mean latency under 100 ms, and determinism (the day is "
        "scored again with the same model and must give the same scores).",
        check_specs=[
            dg.AssetCheckSpec(
                "tier1_passed",
                asset=tier1_key,
                blocking=True,
                description="Every day of the run passes tier 1; otherwise nothing is published.",
            )
        ],
        **common,
    )
    def tier1_evaluation(
        context: dg.AssetExecutionContext,
        pipeline: PipelineConfig,
        alert_scores: pd.DataFrame,
        alerts: pd.DataFrame,
        alert_features: pd.DataFrame,
    ) -> Iterator[dg.Output | dg.AssetCheckResult]:
        registry = ModelRegistry(pipeline.storage(), network)
        rows = []
        for day in partition_days(context):
            scores = _day(alert_scores, day)
            version = _version(scores)
            rescored = None
            if version:
                model = registry.load("alert_scorer", version)
                rescored = score_frame(model, _day(alert_features, day), "alert_id", CATEGORIES, 0)
            result = Tier1Validator().validate(scores, _day(alerts, day), rescored)
            rows.append(_row(network, day, version, result))
        frame = _frame(rows)
        yield dg.Output(frame, metadata=_metadata("tier1", frame))
        failed = frame.loc[~frame["passed"].fillna(False), "processing_date"]
        yield dg.AssetCheckResult(
            check_name="tier1_passed",
            passed=failed.empty,
            metadata={"failed_days": dg.MetadataValue.json([str(d) for d in failed])},
        )

    @dg.asset(
        key=[network, "tier2_evaluation"],
        ins={"alert_scores": dg.AssetIn(key=[network, "alert_scores"])},
        description="Tier 2 behaviour (0 to 0.3): constant scores and the batch's pattern "
        "traps (pattern_traps.json); a trap alert left unscored counts against the model.",
        **common,
    )
    def tier2_evaluation(
        context: dg.AssetExecutionContext, pipeline: PipelineConfig, alert_scores: pd.DataFrame
    ) -> dg.Output[pd.DataFrame]:
        storage = pipeline.input_storage()
        rows = []
        for day in partition_days(context):
            scores = _day(alert_scores, day)
            traps = read_landed_traps(storage, network, day)
            result = Tier2Validator().validate(scores, traps)
            rows.append(_row(network, day, _version(scores), result))
        frame = _frame(rows)
        return dg.Output(frame, metadata=_metadata("tier2", frame))

    @dg.asset(
        key=[network, "tier3_evaluation"],
        ins={
            "alert_scores": dg.AssetIn(key=[network, "alert_scores"]),
            "ground_truth": dg.AssetIn(key=[network, "ground_truth"]),
        },
        deps=[tier1_key, dg.AssetKey([network, "tier2_evaluation"])],
        description="Tier 3 ground truth (0 to 0.5): AUC-ROC and AUC-PR against the labels "
        "known so far, with sample counts and the best F1. A day without both classes "
        "yet has no metric and says why. Also rewrites the per-model evaluation files "
        f"validation_results/{network}/model_v{{version}}_evaluation.json.",
        **common,
    )
    def tier3_evaluation(
        context: dg.AssetExecutionContext,
        pipeline: PipelineConfig,
        alert_scores: pd.DataFrame,
        ground_truth: pd.DataFrame,
    ) -> dg.Output[pd.DataFrame]:
        rows = []
        for day in partition_days(context):
            scores = _day(alert_scores, day)
            result = Tier3Validator().validate(scores, _day(ground_truth, day))
            result["passed"] = None
            rows.append(_row(network, day, _version(scores), result))
        frame = _frame(rows)
        written = write_model_evaluations(pipeline.storage(), network, frame)
        metadata = _metadata("tier3", frame)
        metadata["evaluation_files"] = dg.MetadataValue.json(written)
        return dg.Output(frame, metadata=metadata)

    return [tier1_evaluation, tier2_evaluation, tier3_evaluation]


def _stored(storage: LocalStorage, network: str, asset: str) -> pd.DataFrame:
    folder = f"warehouse/{network}/{asset}"
    files = [f"{folder}/{n}" for n in storage.list_dir(folder) if n.endswith(".parquet")]
    if not files:
        return _frame([])
    return read_parquet([str(storage.local_path(f)) for f in files])


def write_model_evaluations(
    storage: LocalStorage, network: str, tier3_rows: pd.DataFrame
) -> list[str]:
    """Rewrite ``validation_results/{network}/model_v{version}_evaluation.json`` for every
    model version in ``tier3_rows``: each evaluated day's tiers and their total, plus a
    summary. Stored tier 1 and 2 results are read back; ``tier3_rows`` replace the stored
    tier 3 rows of their days. Returns the written keys."""
    tiers = {tier: _stored(storage, network, f"{tier}_evaluation") for tier in TIERS}
    replaced = tiers["tier3"]["processing_date"].isin(set(tier3_rows["processing_date"]))
    tiers["tier3"] = pd.concat([tiers["tier3"][~replaced], tier3_rows], ignore_index=True)
    written = []
    for version in sorted(set(tier3_rows["model_version"]) - {""}):
        by_day: dict[str, dict[str, Any]] = {}
        for tier, frame in tiers.items():
            for _, row in frame[frame["model_version"] == version].iterrows():
                by_day.setdefault(str(row["processing_date"]), {})[tier] = json.loads(
                    row["details_json"]
                )
        days = {}
        for day, results in sorted(by_day.items()):
            if "tier1" in results and "tier2" in results:
                results["total"] = total_score(
                    results["tier1"]["score"],
                    results["tier2"]["score"],
                    results.get("tier3", {}).get("score"),
                )
            days[day] = results
        totals = [d["total"] for d in days.values() if "total" in d]
        aucs = [
            d["tier3"]["metrics"]["auc_roc"]
            for d in days.values()
            if d.get("tier3", {}).get("score") is not None
        ]
        report = {
            "network": network,
            "model_version": version,
            "updated_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "summary": {
                "days": len(days),
                "tier1_passed_days": sum(
                    1 for d in days.values() if d.get("tier1", {}).get("passed")
                ),
                "days_with_tier3": len(aucs),
                "mean_total_score": sum(totals) / len(totals) if totals else None,
                "mean_auc_roc": sum(aucs) / len(aucs) if aucs else None,
            },
            "days": days,
        }
        key = f"validation_results/{network}/model_v{version}_evaluation.json"
        storage.write_bytes(key, (json.dumps(report, indent=2) + "\n").encode())
        written.append(key)
    return written
