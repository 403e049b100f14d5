"""Daily evaluation assets of one network: the validators' tiers 1-3 on the published
scores, and the per-model evaluation files ``validation_results/{network}/``.

``tier1_evaluation`` carries a blocking check, and ``published_scores`` depends on it: a
day that fails integrity is never published. ``tier3_evaluation`` runs again whenever
that day's labels are refreshed (the label-arrival sensor re-materializes both).
Numeric results are materialization metadata, so the UI plots them across days.
"""

import datetime as dt
import json
import sys
from collections.abc import Mapping
from typing import Any

import dagster as dg
import pandas as pd

from aml_pipeline.defs.assets import daily as daily_module
from aml_pipeline.defs.assets import labels as labels_module
from aml_pipeline.defs.assets.daily import BACKFILL, day_rows, partition_days
from aml_pipeline.defs.assets.labels import (
    last_label_day,
    network_label_maturity,
    read_known_labels,
)
from aml_pipeline.defs.metadata import daily_frame_metadata
from aml_pipeline.defs.resources import PipelineConfig
from aml_pipeline.defs.warehouse import Warehouse
from aml_pipeline.evaluation import (
    Tier1Validator,
    Tier2Validator,
    Tier3Validator,
    tier1_validator,
    tier2_validator,
    tier3_validator,
    to_jsonable,
    total_score,
)
from aml_pipeline.evaluation.maturity import labelled_share
from aml_pipeline.features.alert_features import CATEGORIES
from aml_pipeline.models.registry import ModelRegistry
from aml_pipeline.models.scoring import score_frame
from aml_pipeline.provenance import module_version
from aml_pipeline.sources.landing import read_landed_traps
from aml_pipeline.storage import layout
from aml_pipeline.storage.objects import Storage
from aml_pipeline.storage.tables import TableStore

TIERS = ("tier1", "tier2", "tier3")
VALIDATOR_MODULES = (tier1_validator, tier2_validator, tier3_validator)
EVALUATION_ASSETS = tuple(f"{tier}_evaluation" for tier in TIERS)
#: Numeric results plotted per day in the UI.
_PLOTTED = {
    "tier1": ("score",),
    "tier2": ("score",),
    "tier3": ("score", "auc_roc", "auc_pr", "brier", "ece", "n_samples", "n_positive"),
}


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


def _metadata(
    context: dg.AssetExecutionContext,
    tier: str,
    frame: pd.DataFrame,
    trained_on: Mapping[str, tuple[str, str] | None] | None = None,
) -> dict[str, Any]:
    """The schema of the run's rows; each day's row count and plotted numbers on its own
    partition (so the UI's per-partition plots show daily values, not a run's mean). A day
    its model was trained on (``trained_on``: the range per version) is plotted under
    ``..._in_sample`` names, apart from the held-out days."""
    for _, row in frame.iterrows():
        details = json.loads(row["details_json"])
        day = row["processing_date"].isoformat()
        trained = (trained_on or {}).get(row["model_version"])
        in_sample = bool(trained and trained[0] <= day <= trained[1])
        values = {
            f"{tier}_{name}{'_in_sample' if in_sample else ''}": row["score"]
            if name == "score"
            else details.get("metrics", {}).get(name)
            for name in _PLOTTED[tier]
        }
        day_metadata: dict[str, Any] = {
            k: float(v) for k, v in values.items() if v is not None and not pd.isna(v)
        }
        if trained_on is not None:
            day_metadata["in_sample"] = in_sample
        if not pd.isna(row["passed"]):
            day_metadata["passed"] = bool(row["passed"])
        context.add_asset_metadata(day_metadata, partition_key=day)
    return daily_frame_metadata(context, frame)


def _version(scores: pd.DataFrame) -> str:
    versions = scores["model_version"].unique()
    return str(versions[0]) if len(versions) else ""


def build_evaluation_assets(
    network: str, partitions: dg.PartitionsDefinition
) -> list[dg.AssetsDefinition]:
    """tier1_evaluation (blocking), tier2_evaluation and tier3_evaluation of one network."""
    common: dict[str, Any] = {
        "group_name": f"{network}_validation",
        "partitions_def": partitions,
        "backfill_policy": BACKFILL,
        "io_manager_key": "warehouse_io_manager",
        "kinds": {"pandas", "parquet", "duckdb"},
        "code_version": module_version(
            sys.modules[__name__], daily_module, labels_module, *VALIDATOR_MODULES
        ),
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
        **common,
    )
    def tier1_evaluation(
        context: dg.AssetExecutionContext,
        pipeline: PipelineConfig,
        alert_scores: pd.DataFrame,
        alerts: pd.DataFrame,
        alert_features: pd.DataFrame,
    ) -> dg.Output[pd.DataFrame]:
        registry = ModelRegistry(pipeline.storage(), network)
        rows = []
        for day in partition_days(context):
            scores = day_rows(alert_scores, day)
            version = _version(scores)
            rescored = None
            if version:
                model = registry.load("alert_scorer", version)
                rescored = score_frame(
                    model, day_rows(alert_features, day), "alert_id", CATEGORIES, 0
                )
            result = Tier1Validator().validate(scores, day_rows(alerts, day), rescored)
            rows.append(_row(network, day, version, result))
        frame = _frame(rows)
        return dg.Output(frame, metadata=_metadata(context, "tier1", frame))

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
            scores = day_rows(alert_scores, day)
            traps = read_landed_traps(storage, network, day)
            result = Tier2Validator().validate(scores, traps)
            rows.append(_row(network, day, _version(scores), result))
        frame = _frame(rows)
        return dg.Output(frame, metadata=_metadata(context, "tier2", frame))

    @dg.asset(
        key=[network, "tier3_evaluation"],
        ins={"alert_scores": dg.AssetIn(key=[network, "alert_scores"])},
        deps=[tier1_key, dg.AssetKey([network, "tier2_evaluation"])],
        description="Tier 3 ground truth (0 to 0.5): AUC-ROC and AUC-PR against the labels "
        "of the day's alerts that have arrived so far (the label events from the day to the "
        "latest one fetched, recorded as labels_through), with sample counts, the best F1, "
        "the Brier score and the expected calibration error. A day without both classes "
        "yet has no metric and says why. Each day says whether its labels are mature "
        "(labels_mature: the network's label maturity has passed by labels_through) and "
        "which share of its alerts is labelled so far: the labels of a young day "
        "over-represent SARs, which come sooner than closures. The label-arrival sensor "
        "re-runs it when new label events hold labels of the day's alerts. Also rewrites "
        "the per-model evaluation "
        f"files validation_results/{network}/model_v{{version}}_evaluation.json.",
        **common,
    )
    def tier3_evaluation(
        context: dg.AssetExecutionContext,
        pipeline: PipelineConfig,
        warehouse: Warehouse,
        alert_scores: pd.DataFrame,
    ) -> dg.Output[pd.DataFrame]:
        days = partition_days(context)
        through = last_label_day(warehouse, network, days)
        labels = read_known_labels(warehouse, network, days, through, pipeline.data_since(network))
        registry = ModelRegistry(pipeline.storage(), network)
        budget = pipeline.alert_budget(network)
        maturity = network_label_maturity(pipeline, warehouse, network, through)
        context.log.info(maturity.describe())
        rows = []
        for day in days:
            scores = day_rows(alert_scores, day)
            entry = registry.entry("alert_scorer", _version(scores)) or {}
            threshold = entry.get("metrics", {}).get("f1_threshold")  # older models have none
            known = day_rows(labels, day)
            result = Tier3Validator(budget, threshold).validate(scores, known)
            result["passed"] = None
            result["labels_through"] = through.isoformat()
            share = labelled_share(scores["alert_id"], known)
            result["labels_mature"] = maturity.mature(day, through, share)
            result["labelled_share"] = share
            result["label_maturity_days"] = maturity.days
            rows.append(_row(network, day, _version(scores), result))
        frame = _frame(rows)
        written = write_model_evaluations(pipeline.storage(), network, frame)
        trained_on = {v: _training_range(registry, v) for v in set(frame["model_version"])}
        metadata = _metadata(context, "tier3", frame, trained_on)
        metadata["evaluation_files"] = dg.MetadataValue.json(written)
        metadata["labels_through"] = through.isoformat()
        metadata["label_maturity"] = dg.MetadataValue.json(maturity.to_dict())
        return dg.Output(frame, metadata=metadata)

    return [tier1_evaluation, tier2_evaluation, tier3_evaluation]


def _stored_row(tables: TableStore, network: str, tier: str, day: dt.date) -> dict | None:
    table, key = (network, f"{tier}_evaluation"), day.isoformat()
    if tables.missing(table, [key]):
        return None
    return json.loads(tables.read(table, [key], ["details_json"])["details_json"].iloc[0])


def _training_range(registry: ModelRegistry, version: str) -> tuple[str, str] | None:
    entry = registry.entry("alert_scorer", version)
    return tuple(entry["training_range"]) if entry and "training_range" in entry else None


def write_model_evaluations(storage: Storage, network: str, tier3_rows: pd.DataFrame) -> list[str]:
    """Record each day of ``tier3_rows`` with its stored tier 1 and 2 results in
    ``layout.day_evaluation`` (``validation_results/{network}/days/``), then rewrite
    ``model_v{version}_evaluation.json`` for each version from all its day files (under a
    lock, so concurrent runs never drop each other's days). Days inside the model's
    training range are marked ``in_sample`` and left out of the summary. Returns the
    model files written."""
    registry, tables = ModelRegistry(storage, network), TableStore(storage)
    versions = set(tier3_rows["model_version"])
    trained_on = {version: _training_range(registry, version) for version in versions}
    for _, row in tier3_rows.iterrows():
        day, version = row["processing_date"], row["model_version"]
        trained = trained_on[version]
        record = {
            "model_version": version,
            "in_sample": bool(trained and trained[0] <= day.isoformat() <= trained[1]),
            "tier1": _stored_row(tables, network, "tier1", day),
            "tier2": _stored_row(tables, network, "tier2", day),
            "tier3": json.loads(row["details_json"]),
        }
        if record["tier1"] and record["tier2"]:
            record["total"] = total_score(
                record["tier1"]["score"], record["tier2"]["score"], record["tier3"]["score"]
            )
        storage.write_bytes(layout.day_evaluation(network, day), _json(record))
    written = []
    for version in sorted(versions - {""}):
        key = layout.model_evaluation(network, version)
        with storage.locked(key):
            storage.write_bytes(key, _json(_model_report(storage, network, version)))
        written.append(key)
    return written


def _model_report(storage: Storage, network: str, version: str) -> dict[str, Any]:
    folder = layout.day_evaluations(network)
    days = {}
    names = storage.list_dir(folder)
    records = storage.each(lambda name: json.loads(storage.read_bytes(f"{folder}/{name}")), names)
    for name, record in zip(names, records, strict=True):
        if record["model_version"] == version:
            days[name.removesuffix(".json")] = record
    held_out = [d for d in days.values() if not d["in_sample"]]
    # judged only where the labels are mature: a young day's known labels are mostly SARs
    mature = [d for d in held_out if d["tier3"].get("labels_mature", True)]
    totals = [d["total"] for d in mature if "total" in d]
    aucs = [d["tier3"]["metrics"]["auc_roc"] for d in mature if d["tier3"]["score"] is not None]
    return {
        "network": network,
        "model_version": version,
        "updated_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "summary": {
            "days": len(days),
            "in_sample_days": len(days) - len(held_out),
            "tier1_passed_days": sum(1 for d in days.values() if (d["tier1"] or {}).get("passed")),
            "held_out_days_with_tier3": len(aucs),
            "held_out_days_immature": len(held_out) - len(mature),
            "mean_total_score_held_out": sum(totals) / len(totals) if totals else None,
            "mean_auc_roc_held_out": sum(aucs) / len(aucs) if aucs else None,
            "judged_on": "held-out days whose labels are mature"
            if mature
            else "nothing: no held-out day's labels are mature yet",
        },
        "days": dict(sorted(days.items())),
    }


def _json(value: Any) -> bytes:
    return (json.dumps(to_jsonable(value), indent=2) + "\n").encode()
