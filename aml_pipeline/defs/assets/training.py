"""Model assets of one network: alert_scorer, alert_ranker and cluster_scorer.

Each trains on a configured date range of the daily feature assets, with labels only as
known on the configured as-of date, and registers a versioned LightGBM file plus its
metadata in ``trained_models/{network}/``.
"""

import datetime as dt
import sys
from collections.abc import Callable
from typing import Any, Literal

import dagster as dg
import pandas as pd
from pydantic import Field

from aml_pipeline.dates import configured_range
from aml_pipeline.defs.assets import labels as labels_module
from aml_pipeline.defs.assets.labels import (
    last_label_day,
    network_label_maturity,
    read_known_labels,
)
from aml_pipeline.defs.metadata import json_or_null
from aml_pipeline.defs.resources import PipelineConfig
from aml_pipeline.defs.warehouse import Warehouse
from aml_pipeline.evaluation.maturity import LabelMaturity
from aml_pipeline.features.alert_features import (
    CATEGORIES,
    FEATURE_COLUMNS,
    FEATURE_SCHEMA_VERSION,
    MONOTONE,
)
from aml_pipeline.features.cluster_features import CLUSTER_FEATURE_COLUMNS, CLUSTER_TYPES
from aml_pipeline.models import calibration as calibration_module
from aml_pipeline.models import training as training_module
from aml_pipeline.models.registry import ModelRegistry
from aml_pipeline.models.splits import LabelTiming
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
from aml_pipeline.provenance import module_version
from aml_pipeline.storage.tables import MissingPartitions


class TrainModelsConfig(dg.Config):
    """Which days to learn from, which labels count, and the hyperparameters."""

    start_date: str = Field(
        default="",
        description="First processing date of the training range; empty = the first day "
        "whose features are stored.",
    )
    end_date: str = Field(
        default="",
        description="Last processing date of the training range; empty = the last day "
        "whose features are stored, at most the as-of date.",
    )
    as_of: str = Field(
        default="",
        description="Only labels known on this date count; "
        "empty = the pipeline's labels_as_of (today by default).",
    )
    valid_fraction: float = Field(
        default=TrainParams.valid_fraction,
        description="Share of the days validated on: the latest mature days (their labels "
        "complete), alternately for early stopping and for calibration.",
    )
    immature: Literal["weight", "exclude"] = Field(
        default=TrainParams.immature,
        description="Days whose labels are not mature yet: 'weight' trains on their known "
        "labels weighted by 1 / P(label of that class arrived by then), 'exclude' leaves "
        "them out.",
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

    def days(self, stored: list[dt.date], as_of: dt.date) -> list[dt.date]:
        """The training range: as configured, an empty end taken from the ``stored``
        feature days (up to ``as_of``)."""
        known = [d for d in stored if d <= as_of]
        try:
            days = configured_range(self.start_date, self.end_date, known)
        except ValueError as exc:
            raise dg.Failure(description=f"training range: {exc}") from exc
        if days is None:
            raise dg.Failure(
                description=f"no training range: start_date {self.start_date or '(empty)'}, "
                f"end_date {self.end_date or '(empty)'}, and {len(known)} day(s) with stored "
                f"features up to {as_of}; run the daily job (or aml-pipeline train) first"
            )
        return days


class TrainingInputs:
    """The warehouse tables of a training range, read through the configured IO manager,
    and the labels of its alerts that had arrived by the as-of date."""

    def __init__(
        self,
        warehouse: Warehouse,
        pipeline: PipelineConfig,
        network: str,
        config: TrainModelsConfig,
    ) -> None:
        self.warehouse = warehouse
        self.as_of = config.as_of_date(pipeline)
        stored = warehouse.stored_days(dg.AssetKey([network, "alert_features"]))
        self.network, self.days = network, config.days(stored, self.as_of)
        self.since = pipeline.data_since(network)
        #: The last label day read: the as-of date, or the last label day fetched so far,
        #: at most the day every label of the range has arrived by.
        complete = pipeline.labels_complete_by(network, self.days[-1])
        self.labels_through = last_label_day(
            warehouse, network, self.days, min(self.as_of, complete)
        )

    def table(self, name: str) -> pd.DataFrame:
        """One table over the training range; every day must be materialized."""
        try:
            return self.warehouse.read_days(dg.AssetKey([self.network, name]), self.days)
        except MissingPartitions as exc:
            raise dg.Failure(
                description=f"training range {self.days[0]}..{self.days[-1]}: {exc} "
                "(aml-pipeline train materializes the range first)"
            ) from exc

    def labels(self) -> pd.DataFrame:
        """Labels of the range's alerts that arrived by ``labels_through``."""
        try:
            return read_known_labels(
                self.warehouse, self.network, self.days, self.labels_through, self.since
            )
        except MissingPartitions as exc:
            raise dg.Failure(description=f"labels known by {self.as_of}: {exc}") from exc

    def maturity(self, pipeline: PipelineConfig) -> LabelMaturity:
        """The network's label maturity with the label days known through
        ``labels_through``."""
        return network_label_maturity(pipeline, self.warehouse, self.network, self.labels_through)


def _register(
    registry: ModelRegistry,
    kind: str,
    model: TrainedModel,
    config: TrainModelsConfig,
    inputs: TrainingInputs,
    extra: dict[str, Any],
) -> dict[str, Any]:
    entry = {
        "feature_schema_version": FEATURE_SCHEMA_VERSION,
        "features": model.features,
        **extra,
        "params": model.params,
        "hyperparameters": params_dict(config.params()),
        "training_range": [inputs.days[0].isoformat(), inputs.days[-1].isoformat()],
        "as_of": inputs.as_of.isoformat(),
        "labels_through": inputs.labels_through.isoformat(),
        "metrics": model.metrics,
        **model.data,
        "library_versions": library_versions(),
        "created_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }
    # the champion changes only through its gated champion asset
    return registry.register(kind, model.booster, entry, model.calibration, promote_if_first=False)


def labelled_shares(alerts: pd.DataFrame, frame: pd.DataFrame) -> dict[dt.date, tuple[int, int]]:
    """Per day of ``alerts``: (alerts, of them labelled in the labelled ``frame``)."""
    alerts_per_day = alerts["processing_date"].value_counts()
    labelled_per_day = frame["processing_date"].value_counts()
    return {
        day: (int(n), int(labelled_per_day.get(day, 0)))
        for day, n in sorted(alerts_per_day.items())
        if n
    }


def label_timing(
    alerts: pd.DataFrame, frame: pd.DataFrame, maturity: LabelMaturity, through: dt.date
) -> LabelTiming:
    """Which days of ``alerts`` have mature labels, given the labelled ``frame`` and the
    label days known through ``through``."""
    mature = frozenset(
        day
        for day, (n, known) in labelled_shares(alerts, frame).items()
        if maturity.mature(day, through, known / n)
    )
    return LabelTiming(mature, through)


def validation_labels(
    alerts: pd.DataFrame,
    frame: pd.DataFrame,
    model: TrainedModel,
    maturity: LabelMaturity,
    through: dt.date,
) -> dict[str, Any]:
    """What the validation figures rest on: the share of the validation days' ``alerts``
    whose label was known (the labelled ``frame``'s rows), and whether every validation
    day's labels were mature; young days' known labels over-represent SARs, which makes
    the figures optimistic."""
    split = model.data["validation"]
    days = {dt.date.fromisoformat(d) for d in split["early_stopping_days"]}
    days |= {dt.date.fromisoformat(d) for d in split["calibration_days"]}
    shares = {d: v for d, v in labelled_shares(alerts, frame).items() if d in days}
    counted = sum(n for n, _ in shares.values())
    return {
        "labelled_share": round(sum(k for _, k in shares.values()) / max(counted, 1), 4),
        "mature": all(maturity.mature(d, through, k / n) for d, (n, k) in shares.items()),
        "label_maturity": maturity.to_dict(),
    }


def _result(entry: dict[str, Any], registry: ModelRegistry) -> dg.MaterializeResult:
    metrics = {k: float(v) for k, v in entry["metrics"].items()}
    return dg.MaterializeResult(
        metadata={
            "version": entry["version"],
            "file": f"{registry.folder}/{entry['file']}",
            "sha256": entry["sha256"],
            **metrics,
            "rows": entry["rows"],
            "positives": entry["positives"],
            "baselines": dg.MetadataValue.json(entry.get("baselines", {})),
            "calibration": json_or_null(entry.get("calibration")),
            "data_sha256": entry["data_sha256"],
            "labels_through": entry["labels_through"],
            "validation_labels": json_or_null(entry.get("validation_labels")),
            "validation": json_or_null(entry.get("validation")),
            "validation_intervals": json_or_null(entry.get("validation_intervals")),
        },
        data_version=dg.DataVersion(f"{entry['version']}:{entry['sha256'][:16]}"),
    )


def cluster_labels(
    clusters: pd.DataFrame, alert_labels: pd.DataFrame, as_of: dt.date
) -> pd.DataFrame:
    """A cluster is SAR when any member's known label is (labelled on the first such
    member's label date); not SAR only when every member's label is known and none is
    (labelled when the last one arrived); otherwise it is not labelled yet."""
    known = alert_labels[alert_labels["label_date"] <= as_of].set_index("alert_id")
    members = clusters[["cluster_id", "related_alert_ids"]].explode("related_alert_ids")
    ids = members["related_alert_ids"]
    members["sar"] = ids.map(known[LABEL]).astype("boolean")
    members["day"] = pd.to_datetime(ids.map(known["label_date"]))
    members["sar_day"] = members["day"].where(members["sar"].fillna(False).astype(bool))
    grouped = members.groupby("cluster_id", sort=True)
    any_sar = grouped["sar"].agg(lambda s: bool(s.fillna(False).any()))
    all_known = grouped["sar"].agg(lambda s: bool(s.notna().all()))
    day = grouped["sar_day"].min().where(any_sar, grouped["day"].max())
    out = pd.DataFrame(
        {"cluster_id": any_sar.index, LABEL: any_sar.to_numpy(), "label_date": day.dt.date}
    )
    return out[(any_sar | all_known).to_numpy()].reset_index(drop=True)


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
    alert_deps = [dg.AssetKey([network, "alert_features"]), dg.AssetKey([network, "label_events"])]
    vocab = {c: len(v) for c, v in CATEGORIES.items()}
    common: dict[str, Any] = {
        "group_name": group,
        "kinds": {"lightgbm"},
        "code_version": module_version(
            sys.modules[__name__], labels_module, training_module, calibration_module
        ),
    }

    def train_alert_model(
        kind: str,
        warehouse: Warehouse,
        config: TrainModelsConfig,
        pipeline: PipelineConfig,
    ) -> dg.MaterializeResult:
        inputs = TrainingInputs(warehouse, pipeline, network, config)
        alerts = inputs.table("alert_features")
        frame = labelled(alerts, inputs.labels(), inputs.as_of)
        through = inputs.labels_through
        maturity = inputs.maturity(pipeline)
        timing = label_timing(alerts, frame, maturity, through)
        features, categorical = list(FEATURE_COLUMNS), list(CATEGORIES)
        if kind == "alert_scorer":
            model = _fit(
                pipeline,
                network,
                lambda: train_binary(
                    frame,
                    features,
                    categorical,
                    config.params(),
                    "alert_confidence_score",
                    vocab,
                    MONOTONE,
                    timing,
                ),
            )
        else:
            model = _fit(
                pipeline,
                network,
                lambda: train_ranker(
                    frame, features, categorical, config.params(), MONOTONE, timing
                ),
            )
        registry = ModelRegistry(pipeline.storage(), network)
        categories = {k: list(v) for k, v in CATEGORIES.items()}
        checked = validation_labels(alerts, frame, model, maturity, through)
        extra = {"categories": categories, "validation_labels": checked}
        entry = _register(registry, kind, model, config, inputs, extra)
        return _result(entry, registry)

    @dg.asset(
        key=[network, "alert_scorer"],
        deps=alert_deps,
        description="LightGBM binary classifier of P(SAR filed) per alert, calibrated on the "
        "calibration days (Platt), with confidence-only and logistic-regression baselines. "
        "Its data version is the trained version's; scoring uses the champion asset's.",
        **common,
    )
    def alert_scorer(
        config: TrainModelsConfig, pipeline: PipelineConfig, warehouse: Warehouse
    ) -> dg.MaterializeResult:
        return train_alert_model("alert_scorer", warehouse, config, pipeline)

    @dg.asset(
        key=[network, "alert_ranker"],
        deps=alert_deps,
        description="LightGBM lambdarank model ordering each day's alerts (one query group "
        "per day), graded relevance from the labels; its score is a ranking score, not a "
        "probability.",
        **common,
    )
    def alert_ranker(
        config: TrainModelsConfig, pipeline: PipelineConfig, warehouse: Warehouse
    ) -> dg.MaterializeResult:
        return train_alert_model("alert_ranker", warehouse, config, pipeline)

    @dg.asset(
        key=[network, "cluster_scorer"],
        deps=[dg.AssetKey([network, "cluster_features"]), *alert_deps],
        description="LightGBM classifier of P(any member SAR filed) per cluster, calibrated "
        "on the validation days, on features aggregated from its member alerts.",
        **common,
    )
    def cluster_scorer(
        config: TrainModelsConfig, pipeline: PipelineConfig, warehouse: Warehouse
    ) -> dg.MaterializeResult:
        inputs = TrainingInputs(warehouse, pipeline, network, config)
        clusters = inputs.table("raw_clusters")
        alert_labels = inputs.labels()
        labels = cluster_labels(clusters, alert_labels, inputs.as_of)
        frame = labelled(inputs.table("cluster_features"), labels, inputs.as_of, key="cluster_id")
        alerts = inputs.table("alert_features")
        maturity = inputs.maturity(pipeline)
        timing = label_timing(
            alerts, labelled(alerts, alert_labels, inputs.as_of), maturity, inputs.labels_through
        )
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
                timing=timing,
            ),
        )
        registry = ModelRegistry(pipeline.storage(), network)
        entry = _register(
            registry,
            "cluster_scorer",
            model,
            config,
            inputs,
            {
                "categories": {"cluster_type": list(CLUSTER_TYPES)},
                "label": "any member alert SAR-filed",
            },
        )
        return _result(entry, registry)

    return [alert_scorer, alert_ranker, cluster_scorer]
