"""Deterministic LightGBM training with a time-based validation split.

Rows are sorted by (processing_date, id) before anything else, every seed is fixed,
``deterministic=True`` and ``force_row_wise=True`` are set and the thread count is fixed,
so the same data gives a byte-identical model file.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import math
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import lightgbm as lgb
import numpy as np
import pandas as pd
import sklearn
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import average_precision_score, ndcg_score, roc_auc_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from aml_pipeline.models.bootstrap import bootstrap_aucs
from aml_pipeline.models.calibration import (
    PlattCalibration,
    best_f1,
    brier_score,
    expected_calibration_error,
    fit_platt,
)
from aml_pipeline.models.splits import (
    LABEL,
    LabelTiming,
    NotEnoughLabels,
    Split,
    split_by_maturity,
)

NDCG_AT = (10, 50, 100)
#: The logistic-regression baseline is fitted on at most this many training rows (an
#: evenly spaced, deterministic subset), which keeps it cheap on millions of alerts.
BASELINE_MAX_ROWS = 200_000


@dataclass(frozen=True)
class TrainParams:
    """Hyperparameters shared by the three models.

    The defaults are deliberately conservative (small trees, large leaves, column
    subsampling, L2): labels known at a training cut are few and biased toward quickly
    resolved cases, and on held-out later days these settings beat wider trees
    (``make quality``).
    """

    learning_rate: float = 0.03
    num_leaves: int = 7
    min_data_in_leaf: int = 200
    feature_fraction: float = 0.5
    lambda_l2: float = 10.0
    max_rounds: int = 1500
    early_stopping_rounds: int = 100
    valid_fraction: float = 0.2
    immature: Literal["weight", "exclude"] = "weight"
    seed: int = 42
    num_threads: int = 2

    def lgb_params(self, objective: str, **extra: Any) -> dict[str, Any]:
        return {
            "objective": objective,
            "learning_rate": self.learning_rate,
            "num_leaves": self.num_leaves,
            "min_data_in_leaf": self.min_data_in_leaf,
            "feature_fraction": self.feature_fraction,
            "lambda_l2": self.lambda_l2,
            "seed": self.seed,
            "bagging_seed": self.seed,
            "feature_fraction_seed": self.seed,
            "data_random_seed": self.seed,
            "deterministic": True,
            "force_row_wise": True,
            "num_threads": self.num_threads,
            "verbose": -1,
            **extra,
        }


@dataclass
class TrainedModel:
    """A booster and everything the registry records about it."""

    booster: lgb.Booster
    features: list[str]
    params: dict[str, Any]
    metrics: dict[str, float]
    data: dict[str, Any] = field(default_factory=dict)
    calibration: PlattCalibration | None = None


def library_versions() -> dict[str, str]:
    return {
        "lightgbm": lgb.__version__,
        "scikit-learn": sklearn.__version__,
        "pandas": pd.__version__,
        "numpy": np.__version__,
    }


def labelled(
    features: pd.DataFrame, labels: pd.DataFrame, as_of: dt.date, key: str = "alert_id"
) -> pd.DataFrame:
    """Rows whose label was known on ``as_of``, joined to their features and label date,
    in a stable order."""
    known = labels[labels["label_date"] <= as_of][[key, LABEL, "label_date"]]
    frame = features.merge(known, on=key, how="inner")
    frame[LABEL] = frame[LABEL].astype(bool).astype(int)
    return frame.sort_values(["processing_date", key], kind="stable").reset_index(drop=True)


def _check_classes(y: np.ndarray, part: str) -> None:
    if len(y) == 0 or y.min() == y.max():
        raise NotEnoughLabels(
            f"the {part} split has {len(y)} labelled rows and only one class "
            f"({int(y.sum())} positives); widen the range or move the as-of "
            "date later"
        )


def data_hash(frame: pd.DataFrame) -> str:
    """sha256 over the training frame's column names and per-row value hashes."""
    digest = hashlib.sha256("|".join(map(str, frame.columns)).encode())
    digest.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
    return digest.hexdigest()


def _summary(frame: pd.DataFrame, split: Split) -> dict[str, Any]:
    y = frame[LABEL].to_numpy()
    days = frame["processing_date"]
    train, valid = split.train, split.valid
    return {
        "rows": len(frame),
        "positives": int(y.sum()),
        "train_rows": int(train.sum()),
        "train_positives": int(y[train].sum()),
        "valid_rows": int(valid.sum()),
        "valid_positives": int(y[valid].sum()),
        "train_days": [str(days[train].min()), str(days[train].max())],
        "valid_days": [str(days[valid].min()), str(days[valid].max())],
        "validation": split.describe(frame),
        "data_sha256": data_hash(frame),
    }


def validation_intervals(
    frame: pd.DataFrame, rows: np.ndarray, y: np.ndarray, score: np.ndarray
) -> dict[str, Any] | None:
    """95 % bootstrap intervals of the AUCs of ``score`` on ``rows`` (labels ``y``),
    resampling whole addresses when the frame has them (alerts on one address are not
    independent), else single rows: how far the recorded figures can be trusted."""
    groups = frame.loc[rows, "address"].to_numpy() if "address" in frame else None
    found = bootstrap_aucs(y, score, groups=groups)
    if found is None:
        return None
    return {**found, "blocks": "addresses" if groups is not None else "rows"}


def calibration_metrics(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    """Brier score and expected calibration error of probabilities ``p``."""
    return {"brier": brier_score(y, p), "ece": expected_calibration_error(y, p)}


def _binary_metrics(y: np.ndarray, score: np.ndarray) -> dict[str, float]:
    return {
        "auc_roc": float(roc_auc_score(y, score)),
        "auc_pr": float(average_precision_score(y, score)),
    }


def logistic_baseline(
    x_train: pd.DataFrame,
    y_train: np.ndarray,
    x_valid: pd.DataFrame,
    categorical: list[str],
    vocab_sizes: dict[str, int],
) -> np.ndarray:
    """A class-balanced logistic regression on the same features (one-hot categoricals)."""

    def design(x: pd.DataFrame) -> np.ndarray:
        numeric = x.drop(columns=categorical).to_numpy(dtype="float64")
        onehot = [np.eye(vocab_sizes[c])[x[c].to_numpy(dtype=int)] for c in categorical]
        return np.hstack([numeric, *onehot])

    model = make_pipeline(
        SimpleImputer(strategy="median", keep_empty_features=True),
        StandardScaler(),
        LogisticRegression(class_weight="balanced", max_iter=2000),
    )
    step = max(1, math.ceil(len(x_train) / BASELINE_MAX_ROWS))
    model.fit(design(x_train.iloc[::step]), y_train[::step])
    return model.predict_proba(design(x_valid))[:, 1]


def train_binary(
    frame: pd.DataFrame,
    features: list[str],
    categorical: list[str],
    params: TrainParams,
    baseline_column: str,
    vocab_sizes: dict[str, int],
    monotone: dict[str, int] | None = None,
    timing: LabelTiming | None = None,
) -> TrainedModel:
    """A binary classifier of ``LABEL``; class imbalance via ``scale_pos_weight``;
    ``monotone`` maps features to a required direction (+1 / -1); ``timing`` says which
    days' labels are mature (``split_by_maturity``). Early stopping uses the validation
    days' early-stopping slice and the calibration map their calibration slice; the
    recorded AUCs and best F1 are of the calibration slice, the Brier score, ECE and mean
    score against the SAR rate of the early-stopping slice (which the map never saw)."""
    split = split_by_maturity(frame, params.valid_fraction, timing, params.immature)
    train, stop, cal = split.train, split.stop, split.calibrate
    y = frame[LABEL].to_numpy()
    for part, mask in (("training", train), ("early-stopping", stop), ("calibration", cal)):
        _check_classes(y[mask], part)
    x = frame[features]
    pos = float(split.weight[train][y[train] == 1].sum())
    lgb_params = params.lgb_params(
        "binary",
        metric="auc",
        scale_pos_weight=(float(split.weight[train].sum()) - pos) / pos,
        **_monotone_params(features, monotone),
    )
    dtrain = lgb.Dataset(
        x[train], y[train], weight=split.weight[train], categorical_feature=categorical
    )
    dstop = lgb.Dataset(x[stop], y[stop], reference=dtrain)
    booster = lgb.train(
        lgb_params,
        dtrain,
        num_boost_round=params.max_rounds,
        valid_sets=[dstop],
        callbacks=[lgb.early_stopping(params.early_stopping_rounds, verbose=False)],
    )

    def raw_score(mask: np.ndarray) -> np.ndarray:
        return np.asarray(
            booster.predict(x[mask], num_iteration=booster.best_iteration, raw_score=True)
        )

    raw_cal, raw_stop = raw_score(cal), raw_score(stop)
    calibration = fit_platt(raw_cal, y[cal])
    score = calibration.apply(raw_cal)
    unseen = calibration.apply(raw_stop)
    valid_f1, f1_threshold = best_f1(y[cal], score)
    metrics = {
        **_binary_metrics(y[cal], score),
        # the threshold an analyst would alert on, chosen on the calibration days
        "valid_f1": valid_f1,
        "f1_threshold": f1_threshold,
        **calibration_metrics(y[stop], unseen),
        "mean_score": float(unseen.mean()),
        "sar_rate": float(y[stop].mean()),
        **{
            f"{k}_uncalibrated": v
            for k, v in calibration_metrics(y[stop], 1.0 / (1.0 + np.exp(-raw_stop))).items()
        },
        "best_iteration": booster.best_iteration,
    }
    baselines = {
        f"{baseline_column}_only": _binary_metrics(y[cal], x.loc[cal, baseline_column]),
        "logistic_regression": _binary_metrics(
            y[cal], logistic_baseline(x[train], y[train], x[cal], categorical, vocab_sizes)
        ),
    }
    return TrainedModel(
        booster,
        features,
        lgb_params,
        metrics,
        {
            **_summary(frame, split),
            "baselines": baselines,
            "validation_intervals": validation_intervals(frame, cal, y[cal], score),
        },
        calibration,
    )


def _monotone_params(features: list[str], monotone: dict[str, int] | None) -> dict[str, Any]:
    if not monotone:
        return {}
    return {"monotone_constraints": [monotone.get(f, 0) for f in features]}


def relevance(frame: pd.DataFrame) -> np.ndarray:
    """Graded relevance: 0 no SAR, 1 SAR, 2 SAR at or above the day's median SAR volume."""
    sar = frame[LABEL].to_numpy() == 1
    volume = frame["log_volume_usd"].to_numpy()
    median = frame.loc[sar].groupby("processing_date")["log_volume_usd"].median()
    day_median = frame["processing_date"].map(median).to_numpy(dtype="float64")
    return np.where(sar, np.where(volume >= day_median, 2, 1), 0).astype(int)


def _ndcg(labels: np.ndarray, scores: np.ndarray, groups: np.ndarray, k: int) -> float:
    values = []
    start = 0
    for size in groups:
        rel, sc = labels[start : start + size], scores[start : start + size]
        start += size
        if size > 1 and rel.max() > 0:
            values.append(ndcg_score(rel[None, :], sc[None, :], k=k))
    return float(np.mean(values)) if values else float("nan")


def train_ranker(
    frame: pd.DataFrame,
    features: list[str],
    categorical: list[str],
    params: TrainParams,
    monotone: dict[str, int] | None = None,
    timing: LabelTiming | None = None,
) -> TrainedModel:
    """LambdaRank with one query group per day (frames are one network each); ``monotone``
    and ``timing`` as for ``train_binary``: early stopping on the early-stopping slice,
    the recorded NDCG and AUC on the calibration slice."""
    split = split_by_maturity(frame, params.valid_fraction, timing, params.immature)
    train, stop, cal = split.train, split.stop, split.calibrate
    rel = relevance(frame)
    for part, mask in (("training", train), ("early-stopping", stop), ("calibration", cal)):
        _check_classes((rel[mask] > 0).astype(int), part)
    x = frame[features]
    groups = {
        part: frame.loc[mask].groupby("processing_date", sort=True).size().to_numpy()
        for part, mask in (("train", train), ("stop", stop), ("cal", cal))
    }
    lgb_params = params.lgb_params(
        "lambdarank",
        metric="ndcg",
        eval_at=list(NDCG_AT),
        label_gain=[0, 1, 3],
        **_monotone_params(features, monotone),
    )
    dtrain = lgb.Dataset(
        x[train],
        rel[train],
        weight=split.weight[train],
        group=groups["train"],
        categorical_feature=categorical,
    )
    dstop = lgb.Dataset(x[stop], rel[stop], group=groups["stop"], reference=dtrain)
    booster = lgb.train(
        lgb_params,
        dtrain,
        num_boost_round=params.max_rounds,
        valid_sets=[dstop],
        callbacks=[
            lgb.early_stopping(params.early_stopping_rounds, verbose=False, first_metric_only=True)
        ],
    )
    score = np.asarray(booster.predict(x[cal], num_iteration=booster.best_iteration))
    metrics: dict[str, float] = {
        f"ndcg@{k}": _ndcg(rel[cal], score, groups["cal"], k) for k in NDCG_AT
    }
    metrics["auc_roc"] = float(roc_auc_score(rel[cal] > 0, score))
    metrics["best_iteration"] = booster.best_iteration
    conf = x.loc[cal, "alert_confidence_score"].to_numpy()
    baselines = {
        "alert_confidence_score_only": {
            f"ndcg@{k}": _ndcg(rel[cal], conf, groups["cal"], k) for k in NDCG_AT
        }
    }
    return TrainedModel(
        booster,
        features,
        lgb_params,
        metrics,
        {
            **_summary(frame, split),
            "baselines": baselines,
            "validation_intervals": validation_intervals(frame, cal, rel[cal] > 0, score),
            "relevance": "0 no SAR, 1 SAR, 2 SAR at/above the day's median",
        },
    )


def params_dict(params: TrainParams) -> dict[str, Any]:
    return asdict(params)
