"""Model assets of one network: alert_scorer, alert_ranker and cluster_scorer.

Each trains on a configured date range of the daily feature assets, with labels only as
known on the configured as-of date, and registers a versioned LightGBM file plus its
metadata in ``trained_models/{network}/``.
"""

import datetime as dt
from collections.abc import Callable
from typing import Any

import dagster as dg
import pandas as pd
from pydantic import Field

from aml_pipeline.dates import date_range
from aml_pipeline.features.alert_features import (
    CATEGORIES,
    FEATURE_COLUMNS,
    FEATURE_SCHEMA_VERSION,
    MONOTONE,
)
from aml_pipeline.features.cluster_features import CLUSTER_FEATURE_COLUMNS, CLUSTER_TYPES
from aml_pipeline.io_manager import DuckDBParquetIOManager, read_parquet
from aml_pipeline.models.registry import ModelRegistry
from aml_pipeline.models.training import (
    LABEL,
    NotEnoughLabels,
    TrainedModel,
    TrainParams,
    labelled,
    library_versions,
    params_dict,
    train_binary,
    train_ranker,
)
from aml_pipeline.resources import PipelineConfig


class TrainModelsConfig(dg.Config):
    """Which days to learn from, which labels count, and the hyperparameters."""

    start_date: str = Field(description="First processing date of the training range.")
    end_date: str = Field(description="Last processing date of the training range.")
    as_of: str = Field(
        default="",
        description="Only labels known on this date count; "
        "empty = the pipeline's labels_as_of (today by default).",
    )
    valid_fraction: float = Field(
        default=TrainParams.valid_fraction, description="Latest share of days validated on."
    )
    # the defaults of models.training.TrainParams, so both stay one definition
    learning_rate: float = TrainParams.learning_rate
    num_leaves: int = TrainParams.num_leaves
    min_data_in_leaf: int = TrainParams.min_data_in_leaf
    feature_fraction: float = TrainParams.feature_fraction
    lambda_l2: float = TrainParams.lambda_l2
    max_rounds: int = TrainParams.max_rounds
    early_stopping_rounds: int = TrainParams.early_stopping_rounds
    seed: int = TrainParams.seed
    num_threads: int = Field(
        default=TrainParams.num_threads, description="Fixed for reproducible models."
    )

    def params(self) -> TrainParams:
        return TrainParams(**{k: getattr(self, k) for k in TrainParams.__dataclass_fields__})

    def as_of_date(self, pipeline: PipelineConfig) -> dt.date:
        """The configured as-of date, else the pipeline's (today unless set)."""
        return dt.date.fromisoformat(self.as_of) if self.as_of else pipeline.as_of()

    def days(self) -> list[dt.date]:
        return date_range(
            dt.date.fromisoformat(self.start_date), dt.date.fromisoformat(self.end_date)
        )


def read_days(
    pipeline: PipelineConfig,
    network: str,
    table: str,
    days: list[dt.date],
    purpose: str = "the training range (aml-pipeline train materializes it)",
) -> pd.DataFrame:
    """One warehouse table over ``days`` in one scan; every day must be materialized
    (``purpose`` names the range in the error)."""
    storage = pipeline.storage()
    warehouse = DuckDBParquetIOManager(data_root=pipeline.data_root)
    keys = [warehouse.key_for(dg.AssetKey([network, table]), str(d)) for d in days]
    missing = [str(d) for d, k in zip(days, keys, strict=True) if not storage.exists(k)]
    if missing:
        raise dg.Failure(
            description=f"{network}/{table} is not materialized for {len(missing)} day(s) of "
            f"{purpose}: {', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}; "
            "materialize it first"
        )
    return read_parquet([str(storage.local_path(k)) for k in keys])


def _register(
    registry: ModelRegistry,
    kind: str,
    model: TrainedModel,
    config: TrainModelsConfig,
    as_of: dt.date,
    extra: dict[str, Any],
) -> dict[str, Any]:
    entry = {
        "version": registry.next_version(kind, FEATURE_SCHEMA_VERSION),
        "feature_schema_version": FEATURE_SCHEMA_VERSION,
        "features": model.features,
        **extra,
        "params": model.params,
        "hyperparameters": params_dict(config.params()),
        "training_range": [config.start_date, config.end_date],
        "as_of": as_of.isoformat(),
        "metrics": model.metrics,
        **model.data,
        "library_versions": library_versions(),
        "created_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }
    return registry.register(kind, model.booster, entry)


def _result(entry: dict[str, Any], registry: ModelRegistry) -> dg.MaterializeResult:
    metrics = {k: float(v) for k, v in entry["metrics"].items()}
    return dg.MaterializeResult(
        metadata={
            "version": entry["version"],
            "file": f"{registry.folder}/{entry['file']}",
            "champion": registry.champions().get(entry["kind"]) == entry["version"],
            **metrics,
            "rows": entry["rows"],
            "positives": entry["positives"],
            "baselines": dg.MetadataValue.json(entry.get("baselines", {})),
            "data_sha256": entry["data_sha256"],
        }
    )


def _alert_training_frame(
    pipeline: PipelineConfig, network: str, config: TrainModelsConfig
) -> tuple[pd.DataFrame, dt.date]:
    days = config.days()
    as_of = config.as_of_date(pipeline)
    features = read_days(pipeline, network, "alert_features", days)
    labels = read_days(pipeline, network, "ground_truth", days)
    return labelled(features, labels, as_of), as_of


def cluster_labels(
    clusters: pd.DataFrame, alert_labels: pd.DataFrame, as_of: dt.date
) -> pd.DataFrame:
    """A cluster is SAR when any member's known label is; not SAR only when every member's
    label is known and none is; otherwise it is not labelled yet."""
    known = alert_labels[alert_labels["label_date"] <= as_of].set_index("alert_id")[LABEL]
    members = clusters[["cluster_id", "related_alert_ids"]].explode("related_alert_ids")
    members["label"] = members["related_alert_ids"].map(known)
    grouped = members.groupby("cluster_id")["label"]
    any_sar = grouped.agg(lambda s: bool((s == True).any()))  # noqa: E712 - object dtype
    all_known = grouped.agg(lambda s: bool(s.notna().all()))
    out = pd.DataFrame(
        {
            "cluster_id": any_sar.index,
            LABEL: any_sar.to_numpy(),
            "label_known": (any_sar | all_known).to_numpy(),
        }
    )
    out = out[out["label_known"]].drop(columns="label_known")
    out["label_date"] = as_of
    return out


def _fit(pipeline: PipelineConfig, network: str, train: Callable[[], TrainedModel]) -> TrainedModel:
    """``train()``, its ``NotEnoughLabels`` refusal saying why no labels came, if it knows."""
    try:
        return train()
    except NotEnoughLabels as exc:
        problem = pipeline.source(network).labels_problem(network)
        raise dg.Failure(description=f"{exc}" + (f"; {problem}" if problem else "")) from exc


def build_model_assets(network: str) -> list[dg.AssetsDefinition]:
    """The three model assets of one network."""
    group = f"{network}_models"
    alert_deps = [dg.AssetKey([network, "alert_features"]), dg.AssetKey([network, "ground_truth"])]
    vocab = {c: len(v) for c, v in CATEGORIES.items()}

    def train_alert_model(
        kind: str, config: TrainModelsConfig, pipeline: PipelineConfig
    ) -> dg.MaterializeResult:
        frame, as_of = _alert_training_frame(pipeline, network, config)
        if kind == "alert_scorer":
            model = _fit(
                pipeline,
                network,
                lambda: train_binary(
                    frame,
                    list(FEATURE_COLUMNS),
                    list(CATEGORIES),
                    config.params(),
                    "alert_confidence_score",
                    vocab,
                    MONOTONE,
                ),
            )
        else:
            model = _fit(
                pipeline,
                network,
                lambda: train_ranker(
                    frame, list(FEATURE_COLUMNS), list(CATEGORIES), config.params(), MONOTONE
                ),
            )
        registry = ModelRegistry(pipeline.storage(), network)
        categories = {k: list(v) for k, v in CATEGORIES.items()}
        entry = _register(registry, kind, model, config, as_of, {"categories": categories})
        return _result(entry, registry)

    @dg.asset(
        key=[network, "alert_scorer"],
        group_name=group,
        deps=alert_deps,
        kinds={"lightgbm"},
        description="LightGBM binary classifier of P(SAR filed) "
        "per alert, with confidence-only and logistic-regression baselines.",
    )
    def alert_scorer(config: TrainModelsConfig, pipeline: PipelineConfig) -> dg.MaterializeResult:
        return train_alert_model("alert_scorer", config, pipeline)

    @dg.asset(
        key=[network, "alert_ranker"],
        group_name=group,
        deps=alert_deps,
        kinds={"lightgbm"},
        description="LightGBM lambdarank model ordering each day's "
        "alerts (one query group per day), graded relevance from the ground truth.",
    )
    def alert_ranker(config: TrainModelsConfig, pipeline: PipelineConfig) -> dg.MaterializeResult:
        return train_alert_model("alert_ranker", config, pipeline)

    @dg.asset(
        key=[network, "cluster_scorer"],
        group_name=group,
        deps=[dg.AssetKey([network, "cluster_features"]), *alert_deps],
        kinds={"lightgbm"},
        description="LightGBM classifier of P(any member SAR filed) "
        "per cluster, on features aggregated from its member alerts.",
    )
    def cluster_scorer(config: TrainModelsConfig, pipeline: PipelineConfig) -> dg.MaterializeResult:
        days = config.days()
        as_of = config.as_of_date(pipeline)
        features = read_days(pipeline, network, "cluster_features", days)
        clusters = read_days(pipeline, network, "raw_clusters", days)
        labels = cluster_labels(clusters, read_days(pipeline, network, "ground_truth", days), as_of)
        frame = labelled(features, labels, as_of, key="cluster_id")
        model = _fit(
            pipeline,
            network,
            lambda: train_binary(
                frame,
                list(CLUSTER_FEATURE_COLUMNS),
                ["cluster_type"],
                config.params(),
                "confidence_avg",
                {"cluster_type": len(CLUSTER_TYPES)},
            ),
        )
        registry = ModelRegistry(pipeline.storage(), network)
        entry = _register(
            registry,
            "cluster_scorer",
            model,
            config,
            as_of,
            {
                "categories": {"cluster_type": list(CLUSTER_TYPES)},
                "label": "any member alert SAR-filed",
            },
        )
        return _result(entry, registry)

    return [alert_scorer, alert_ranker, cluster_scorer]
