"""No column gives the label away: a model on the features is good, not perfect, and
clearly better than the detector confidence alone. The columns are the batch's own and the
money-flow features computed from it, with the labels known before each day."""

from __future__ import annotations

import datetime as dt

import lightgbm as lgb
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from aml_pipeline.features.flow_features import build_flow_features
from aml_pipeline_tests.conftest import small_source

pytestmark = pytest.mark.integration  # simulates and trains on months of data

FIRST = dt.date(2025, 4, 1)
DAYS = 12
HISTORY = 14  # days before FIRST whose alerts and labels the flow features may read
NOT_FEATURES = {
    "window_days",
    "processing_date",
    "alert_id",
    "address",
    "description",
    "evidence_json",
    "risk_indicators",
    "pattern_id",
    "hourly_activity",
    "daily_activity",
    "community_id",
    "is_sar_filed",
    "label_date",
}
CATEGORICAL = [
    "typology_type",
    "pattern_type",
    "severity",
    "suspected_address_type",
    "suspected_address_subtype",
    "dominant_asset_in",
    "dominant_asset_out",
]


@pytest.fixture(scope="module")
def alerts() -> pd.DataFrame:
    source = small_source()
    frames, prior, labels = [], [], []
    for i in range(-HISTORY, DAYS):
        day = FIRST + dt.timedelta(i)
        tables = source.build("ethereum", day, 7).tables
        truth = source.labels("ethereum", day, 7)
        if i >= 0:
            flows = build_flow_features(
                tables["alerts"]["address"],
                tables["money_flows"],
                pd.concat(prior, ignore_index=True),
                pd.concat(labels, ignore_index=True),
                day,
            ).drop(columns="processing_date")
            features = tables["features"].drop(columns=["window_days", "processing_date"])
            frames.append(
                tables["alerts"]
                .merge(features, on="address", how="left")
                .merge(flows, on="address", how="left")
                .merge(truth[["alert_id", "is_sar_filed"]], on="alert_id")
            )
        prior.append(tables["alerts"][["alert_id", "address", "processing_date"]])
        labels.append(truth)
    return pd.concat(frames, ignore_index=True)


def _matrix(df: pd.DataFrame) -> pd.DataFrame:
    x = df[[c for c in df.columns if c not in NOT_FEATURES]].copy()
    for c in x.columns:
        x[c] = (
            x[c].astype("category")
            if c in CATEGORICAL
            else pd.to_numeric(x[c], errors="coerce").astype(float)
        )
    return x


def test_features_beat_confidence_but_are_far_from_perfect(alerts):
    x, y = _matrix(alerts), alerts["is_sar_filed"].astype(int)
    train = alerts["processing_date"] < FIRST + dt.timedelta(8)
    params = {
        "objective": "binary",
        "verbose": -1,
        "seed": 1,
        "num_threads": 2,
        "deterministic": True,
        "learning_rate": 0.05,
        "min_data_in_leaf": 40,
    }
    model = lgb.train(params, lgb.Dataset(x[train], y[train]), 200)
    gbm = roc_auc_score(y[~train], model.predict(x[~train]))
    confidence = roc_auc_score(y[~train], x.loc[~train, "alert_confidence_score"])
    print(f"GBM AUC {gbm:.3f}, confidence-only AUC {confidence:.3f}")
    assert 0.7 < gbm < 0.97
    assert confidence < gbm - 0.08


def test_no_single_column_separates_the_classes(alerts):
    x, y = _matrix(alerts), alerts["is_sar_filed"].astype(int)
    for column in x.columns:
        if column in CATEGORICAL or x[column].nunique() < 2:
            continue
        auc = roc_auc_score(y, x[column].fillna(x[column].min() - 1))
        print(f"{column}: AUC {auc:.3f}")
        assert max(auc, 1 - auc) < 0.92, column


def test_trading_with_reported_addresses_is_suspect_but_not_proof(alerts):
    """Crime groups reuse their mules and funders, so an address that exchanges a good
    share of its USD with addresses reported before the day is more often a launderer;
    ordinary traders with the same addresses keep it from being proof."""
    y = alerts["is_sar_filed"].astype(bool)
    near = alerts["usd_share_with_known_sar"].fillna(0) > 0.1
    print(f"SAR rate {y.mean():.3f}, beside reported addresses {y[near].mean():.3f}")
    assert y[near].mean() > 2 * y.mean()
    assert (near & ~y).sum() > 0
