"""Daily scoring assets of one network.

``{network}__score`` is one step with four outputs: ``alert_scores``, ``alert_rankings``,
``cluster_scores`` and ``scoring_manifest`` (which models, which inputs, how long). The
``published_scores`` asset then writes the day's output directory
``output/{network}/{date}/`` exactly as the seed lays it out, all files at once.
"""

import datetime as dt
import json
import sys
import time
from collections.abc import Iterator

import dagster as dg
import pandas as pd

from aml_pipeline.contract.files import parquet_bytes, sha256_hex
from aml_pipeline.defs.assets import daily as daily_module
from aml_pipeline.defs.assets.champions import champion_key
from aml_pipeline.defs.assets.daily import BACKFILL, day_rows, partition_days
from aml_pipeline.defs.metadata import daily_frame_metadata, storage_types
from aml_pipeline.defs.resources import PipelineConfig
from aml_pipeline.defs.warehouse import COLUMNS_KEY
from aml_pipeline.features.alert_features import CATEGORIES
from aml_pipeline.features.cluster_features import CLUSTER_TYPES
from aml_pipeline.models import calibration as calibration_module
from aml_pipeline.models import scoring as scoring_module
from aml_pipeline.models.registry import MODEL_KINDS, LoadedModel, ModelNotFound, ModelRegistry
from aml_pipeline.models.scoring import rank_frame, score_frame
from aml_pipeline.provenance import code_version, module_version
from aml_pipeline.sources.landing import read_landed_meta
from aml_pipeline.storage import layout

#: The alert's own columns each alert score carries.
ALERT_CONTEXT = ("address", "typology_type")
SCORE_OUTPUTS = ("alert_scores", "alert_rankings", "cluster_scores", "scoring_manifest")
OUTPUT_FILES = {
    "alert_scores": "alert_scores.parquet",
    "alert_rankings": "alert_rankings.parquet",
    "cluster_scores": "cluster_scores.parquet",
}
PROCESSING_METADATA = "processing_metadata.json"
_DESCRIPTIONS = {
    "alert_scores": "Calibrated P(SAR filed) per alert from the champion alert scorer, with its "
    "per-alert latency, a tree-SHAP explanation (top features, signed contributions, "
    "base value) and the alert's address and typology_type.",
    "alert_rankings": "The day's alerts ordered by the champion ranker (rank 1 = most "
    "suspicious; ties by alert_id), with its ranker_score (a ranking score, not a "
    "probability).",
    "cluster_scores": "Calibrated P(any member SAR filed) per cluster from the champion cluster "
    "scorer, with a tree-SHAP explanation.",
    "scoring_manifest": "One row per day: the model versions and file hashes that scored "
    "it, the run, the code version and the time of each stage.",
}


#: The code version of the scoring assets: this module and the scoring code.
CODE_VERSION = module_version(
    sys.modules[__name__], daily_module, scoring_module, calibration_module
)


def _load_champions(registry: ModelRegistry) -> dict[str, LoadedModel]:
    try:
        return {kind: registry.load(kind) for kind in MODEL_KINDS}
    except ModelNotFound as exc:
        raise dg.Failure(
            description=f"{exc}. Train first: aml-pipeline train --network {registry.network} "
            "--start-date D1 --end-date D2"
        ) from exc


def with_alert_context(scores: pd.DataFrame, alerts: pd.DataFrame) -> pd.DataFrame:
    """``scores`` with each alert's ``address`` and ``typology_type`` (row order kept)."""
    context = alerts.drop_duplicates("alert_id").set_index("alert_id")[list(ALERT_CONTEXT)]
    joined = context.reindex(scores["alert_id"])
    if joined.isna().any(axis=None):
        missing = scores["alert_id"][joined.isna().any(axis=1).to_numpy()].head(3).tolist()
        raise dg.Failure(description=f"scored alerts missing from raw_alerts: {missing}")
    return scores.assign(**{c: joined[c].to_numpy() for c in ALERT_CONTEXT})


def _stamp(frame: pd.DataFrame, network: str, day: dt.date, window_days: int) -> pd.DataFrame:
    return frame.assign(
        network=network,
        processing_date=pd.Series([day] * len(frame), index=frame.index, dtype="object"),
        window_days=pd.Series(window_days, index=frame.index, dtype="int32"),
    )


#: Which model of the scoring manifest scored each output.
SCORED_BY = {
    "alert_scores": "alert_scorer",
    "alert_rankings": "alert_ranker",
    "cluster_scores": "cluster_scorer",
}


def version_mismatch(frames: dict[str, pd.DataFrame], manifest: dict) -> str | None:
    """What disagrees between a day's scored outputs and its scoring manifest (None when
    every output was scored by the model versions the manifest records), as after a run
    that stored only some of the score step's outputs with other champions."""
    for name, kind in SCORED_BY.items():
        found = set(frames[name]["model_version"].dropna().astype(str))
        recorded = str(manifest[f"{kind}_version"])
        if found - {recorded}:
            return (
                f"{name} were scored by {kind} v{', v'.join(sorted(found))}, the scoring "
                f"manifest records v{recorded}"
            )
    return None


def _mean_score(day: pd.DataFrame) -> dict[str, float]:
    """A day's mean score (none for a day without rows)."""
    return {"mean_score": float(day["score"].mean())} if len(day) else {}


def build_scoring_assets(
    network: str,
    partitions: dg.PartitionsDefinition,
    freshness: dg.FreshnessPolicy | None = None,
) -> list[dg.AssetsDefinition]:
    """The scoring step and the publication asset of one network (which carries the daily
    ``freshness`` policy)."""
    group = f"{network}_scoring"

    @dg.multi_asset(
        name=f"{network}__score",
        outs={
            name: dg.AssetOut(
                key=[network, name],
                io_manager_key="warehouse_io_manager",
                group_name=group,
                kinds={"lightgbm", "parquet", "duckdb"},
                description=_DESCRIPTIONS[name],
                metadata=storage_types(window_days="INTEGER", rank="INTEGER"),
                is_required=False,
            )
            for name in SCORE_OUTPUTS
        },
        ins={
            "alert_features": dg.AssetIn(key=[network, "alert_features"]),
            "cluster_features": dg.AssetIn(key=[network, "cluster_features"]),
            # each score carries its alert's address and typology, so questions across
            # days ("this typology over a month", "this address") read the scores alone
            "raw_alerts": dg.AssetIn(
                key=[network, "raw_alerts"],
                metadata={COLUMNS_KEY: ["alert_id", "processing_date", *ALERT_CONTEXT]},
            ),
        },
        # the champions score: their assets' data versions are the champions', so a
        # promotion marks every scored day stale in the UI, and a new candidate does not
        deps=[champion_key(network, kind) for kind in MODEL_KINDS],
        partitions_def=partitions,
        backfill_policy=BACKFILL,
        code_version=CODE_VERSION,
        # Subsettable, so that Dagster's launch check of an asset backfill never compares
        # the four outputs' targets (dagster-graphql 1.13 compares them with a `!=` that
        # also sees a cached partition count, and refuses equal ranges at random); a
        # subset run scores everything and stores the selected outputs only.
        can_subset=True,
    )
    def score(
        context: dg.AssetExecutionContext,
        pipeline: PipelineConfig,
        alert_features: pd.DataFrame,
        cluster_features: pd.DataFrame,
        raw_alerts: pd.DataFrame,
    ) -> Iterator[dg.Output]:
        models = _load_champions(ModelRegistry(pipeline.storage(), network))
        coverage = pipeline.explain_coverage
        parts: dict[str, list[pd.DataFrame]] = {name: [] for name in SCORE_OUTPUTS}
        for day in partition_days(context):
            alerts, clusters = day_rows(alert_features, day), day_rows(cluster_features, day)
            began = time.perf_counter()
            scores = score_frame(models["alert_scorer"], alerts, "alert_id", CATEGORIES, coverage)
            scores = with_alert_context(scores, day_rows(raw_alerts, day))
            scored = time.perf_counter()
            ranks = rank_frame(models["alert_ranker"], alerts, CATEGORIES)
            ranked = time.perf_counter()
            cluster_scores = score_frame(
                models["cluster_scorer"],
                clusters,
                "cluster_id",
                {"cluster_type": CLUSTER_TYPES},
                coverage,
            )
            done = time.perf_counter()
            for name, frame in (
                ("alert_scores", scores),
                ("alert_rankings", ranks),
                ("cluster_scores", cluster_scores),
            ):
                parts[name].append(_stamp(frame, network, day, pipeline.window_days(network)))
            manifest = {
                "processing_date": day,
                "run_id": context.run.run_id,
                "code_version": code_version(),
                "explain_coverage": coverage,
                "explained_alerts": int(scores["explain_json"].notna().sum()),
                "alert_scoring_s": round(scored - began, 4),
                "ranking_s": round(ranked - scored, 4),
                "cluster_scoring_s": round(done - ranked, 4),
                "scored_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            }
            for kind, model in models.items():
                manifest[f"{kind}_version"] = model.version
                manifest[f"{kind}_sha256"] = model.sha256
            parts["scoring_manifest"].append(pd.DataFrame([manifest]))
        versions = {kind: model.version for kind, model in models.items()}
        selected = context.selected_asset_keys
        for name in (n for n in SCORE_OUTPUTS if dg.AssetKey([network, n]) in selected):
            frame = pd.concat(parts[name], ignore_index=True)
            metadata = daily_frame_metadata(
                context,
                frame,
                asset_key=dg.AssetKey([network, name]),
                per_day=_mean_score if "score" in frame else None,
                model_versions=dg.MetadataValue.json(versions),
            )
            yield dg.Output(frame, output_name=name, metadata=metadata)

    @dg.asset(
        key=[network, "published_scores"],
        group_name=group,
        partitions_def=partitions,
        freshness_policy=freshness,
        backfill_policy=BACKFILL,
        kinds={"parquet", "json"},
        code_version=CODE_VERSION,
        ins={
            **{name: dg.AssetIn(key=[network, name]) for name in SCORE_OUTPUTS},
            "tier1": dg.AssetIn(key=[network, "tier1_evaluation"]),
        },
        deps=[dg.AssetKey([network, "landed_batch"])],
        description=f"The day's results published to output/{network}/{{date}}/: "
        "alert_scores.parquet, alert_rankings.parquet, cluster_scores.parquet and "
        "processing_metadata.json (inputs and their checksums, models and their hashes, "
        "outputs and theirs, stage timings, run, code version). Nothing is published "
        "unless every day of the run passed tier 1 (the blocking check stops the run; "
        "a stored failing evaluation is refused here too); a day's files appear together "
        "or not at all, and a failed re-run leaves the published day as it was.",
    )
    def published_scores(
        context: dg.AssetExecutionContext,
        pipeline: PipelineConfig,
        alert_scores: pd.DataFrame,
        alert_rankings: pd.DataFrame,
        cluster_scores: pd.DataFrame,
        scoring_manifest: pd.DataFrame,
        tier1: pd.DataFrame,
    ) -> dg.MaterializeResult:
        failed = tier1.loc[~tier1["passed"].fillna(False).astype(bool), "processing_date"]
        if len(failed):
            raise dg.Failure(
                description="tier 1 failed on "
                + ", ".join(sorted(str(d) for d in failed))
                + ": nothing of this run is published (see tier1_evaluation)"
            )
        storage = pipeline.storage()
        frames = {
            "alert_scores": alert_scores,
            "alert_rankings": alert_rankings,
            "cluster_scores": cluster_scores,
        }
        days = {
            day: (
                {name: day_rows(f, day) for name, f in frames.items()},
                day_rows(scoring_manifest, day).iloc[0].to_dict(),
            )
            for day in partition_days(context)
        }
        mixed = [f"{d}: {p}" for d, inputs in days.items() if (p := version_mismatch(*inputs))]
        if mixed:
            raise dg.Failure(
                description="; ".join(mixed) + ": nothing of this run is published; "
                f"materialize the four outputs of {network}__score together"
            )
        counts = {}
        for day, (today, manifest) in days.items():
            began = time.perf_counter()
            files = {OUTPUT_FILES[name]: parquet_bytes(f) for name, f in today.items()}
            meta = processing_metadata(
                network,
                day,
                pipeline,
                manifest,
                {name: len(f) for name, f in today.items()},
                files,
            )
            meta["timings_s"]["publish"] = round(time.perf_counter() - began, 4)
            files[PROCESSING_METADATA] = (json.dumps(meta, indent=2, default=str) + "\n").encode()
            storage.publish_dir(layout.output_day(network, day), files)
            counts[day.isoformat()] = meta["outputs"]["alert_scores.parquet"]["rows"]
        return dg.MaterializeResult(
            metadata={
                "path": dg.MetadataValue.path(storage.url(layout.output_network(network))),
                "alerts_published": dg.MetadataValue.json(counts),
            }
        )

    return [score, published_scores]


def processing_metadata(
    network: str,
    day: dt.date,
    pipeline: PipelineConfig,
    manifest: dict,
    rows: dict[str, int],
    files: dict[str, bytes],
) -> dict:
    """processing_metadata.json: what went in (with checksums), which models, what came
    out (with checksums), how long each stage took, and which run and code did it."""
    batch = read_landed_meta(pipeline.input_storage(), network, day)
    registry = ModelRegistry(pipeline.storage(), network)
    return {
        "network": network,
        "processing_date": day.isoformat(),
        "window_days": pipeline.window_days(network),
        "status": "published",
        "run_id": manifest["run_id"],
        "code_version": manifest["code_version"],
        "scored_at": manifest["scored_at"],
        "published_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "inputs": {
            "batch_id": batch.get("batch_id"),
            "directory": layout.landed_day(network, day),
            "counts": batch.get("counts", {}),
            "sha256": batch.get("sha256", {}),
        },
        "models": {
            kind: {
                "version": manifest[f"{kind}_version"],
                "file": registry.model_key(kind, manifest[f"{kind}_version"]),
                "sha256": manifest[f"{kind}_sha256"],
            }
            for kind in MODEL_KINDS
        },
        "outputs": {
            OUTPUT_FILES[name]: {
                "rows": rows[name],
                "sha256": sha256_hex(files[OUTPUT_FILES[name]]),
            }
            for name in OUTPUT_FILES
        },
        "explain_coverage": int(manifest["explain_coverage"]),
        "explained_alerts": int(manifest["explained_alerts"]),
        "timings_s": {
            stage: float(manifest[f"{stage}_s"])
            for stage in ("alert_scoring", "ranking", "cluster_scoring")
        },
    }
