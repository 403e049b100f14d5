"""Alert and cluster features: one function for training and scoring, no label known on
or after the alert's day, no range statistics, robust to missing rows and columns."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from aml_pipeline.contract.conform import conform_table, read_parquet_bytes
from aml_pipeline.contract.schema import ALERTS, CLUSTERS, FEATURES
from aml_pipeline.features.alert_features import (
    CATEGORIES,
    FEATURE_COLUMNS,
    KEY_COLUMNS,
    OTHER,
    build_alert_features,
)
from aml_pipeline.features.cluster_features import CLUSTER_FEATURE_COLUMNS, build_cluster_features
from aml_pipeline.features.flow_features import KNOWN_SAR_FEATURES
from aml_pipeline.features.history import LABEL_HISTORY_FEATURES, build_alert_history
from aml_pipeline_tests.conftest import small_source

DAY = dt.date(2025, 3, 5)


@pytest.fixture(scope="module")
def tables() -> dict[str, pd.DataFrame]:
    files = small_source().fetch("ethereum", DAY, 7).files
    return {
        spec.name: conform_table(read_parquet_bytes(files[spec.file]), spec)
        for spec in (ALERTS, FEATURES, CLUSTERS)
    }


def test_one_row_per_alert_with_exactly_the_feature_columns(tables):
    out = build_alert_features(tables["alerts"], tables["features"], tables["clusters"])
    assert list(out.columns) == [*KEY_COLUMNS, *FEATURE_COLUMNS]
    assert len(out) == len(tables["alerts"]) and out["alert_id"].is_unique
    from_labels = {c for c in FEATURE_COLUMNS for w in ("sar", "label", "truth") if w in c}
    # only labels known before the day
    assert from_labels == {*LABEL_HISTORY_FEATURES, *KNOWN_SAR_FEATURES}
    again = build_alert_features(tables["alerts"], tables["features"], tables["clusters"])
    pd.testing.assert_frame_equal(out, again)


def test_missing_feature_rows_and_columns_are_missing_values(tables):
    alerts = tables["alerts"]
    first = alerts["address"].iloc[0]
    features = tables["features"][tables["features"]["address"] != first]
    features = features.drop(columns=["pagerank", "kcore"])
    out = build_alert_features(alerts, features, tables["clusters"])
    row = out[out["address"] == first].iloc[0]
    assert np.isnan(row["degree_total"]) and np.isnan(row["hours_since_first_activity"])
    assert out["pagerank"].isna().all() and out["kcore"].isna().all()
    assert out.loc[out["address"] != first, "degree_total"].notna().all()


def test_categories_use_fixed_vocabularies(tables):
    alerts = tables["alerts"].copy()
    alerts.loc[0, "typology_type"] = "BRAND_NEW_TYPOLOGY"
    out = build_alert_features(alerts, tables["features"], tables["clusters"])
    codes = out.set_index("alert_id")["typology_type"]
    assert codes[alerts.loc[0, "alert_id"]] == CATEGORIES["typology_type"].index(OTHER)
    fan_in = alerts.loc[alerts["typology_type"] == "FAN_IN", "alert_id"]
    assert (codes[fan_in] == CATEGORIES["typology_type"].index("FAN_IN")).all()


def test_a_days_features_do_not_depend_on_other_days(tables):
    """No statistic over the loaded range: the same day gives the same rows alone."""
    alerts, features, clusters = tables["alerts"], tables["features"], tables["clusters"]
    half = alerts.iloc[: len(alerts) // 2]
    full = build_alert_features(alerts, features, clusters).set_index("alert_id")
    part = build_alert_features(half, features, clusters).set_index("alert_id")
    alert_level = [c for c in FEATURE_COLUMNS if not c.startswith("cluster_")]
    pd.testing.assert_frame_equal(part[alert_level], full.loc[part.index, alert_level])


def test_history_counts_only_earlier_days_within_30():
    prior = pd.DataFrame(
        {
            "address": ["a", "a", "a", "a", "b"],
            "processing_date": [
                DAY - dt.timedelta(31),
                DAY - dt.timedelta(30),
                DAY - dt.timedelta(1),
                DAY,
                DAY - dt.timedelta(2),
            ],
            "typology_type": ["X", "FAN_IN", "CYCLE_DETECTION", "FAN_IN", "FAN_IN"],
        }
    )
    prior["alert_id"] = [f"p{i}" for i in range(len(prior))]
    history = build_alert_history(pd.Series(["a", "b", "c", "a"]), prior, DAY)
    assert list(history["address"]) == ["a", "b", "c"]  # one row per address of the day
    history = history.set_index("address")
    assert history.loc["a", "prior_alerts_30d"] == 2  # day-30 and day-1; not day-31, not today
    assert history.loc["a", "prior_typologies_30d"] == 2
    assert history.loc["b", "prior_alert_days_30d"] == 1
    alerts = pd.DataFrame(
        {
            "alert_id": ["x1", "x2"],
            "processing_date": [DAY, DAY],
            "address": ["a", "c"],
            "typology_type": ["FAN_IN", "FAN_IN"],
            "pattern_type": "",
            "severity": "low",
            "suspected_address_type": "unknown",
            "pattern_id": "",
            "alert_confidence_score": 0.5,
            "volume_usd": 1.0,
            "risk_indicators": [[], []],
        }
    )
    out = build_alert_features(
        alerts, pd.DataFrame({"address": []}), pd.DataFrame(), history.reset_index()
    ).set_index("alert_id")
    assert out.loc["x1", "prior_alerts_30d"] == 2 and out.loc["x2", "prior_alerts_30d"] == 0


def test_cluster_features_aggregate_members(tables):
    alert_features = build_alert_features(tables["alerts"], tables["features"], tables["clusters"])
    out = build_cluster_features(tables["clusters"], alert_features)
    assert list(out.columns)[2:] == list(CLUSTER_FEATURE_COLUMNS)
    assert len(out) == len(tables["clusters"])
    one = tables["clusters"].sort_values("cluster_id").iloc[0]
    members = alert_features[alert_features["alert_id"].isin(one["related_alert_ids"])]
    row = out.iloc[0]
    assert row["max_alert_confidence_score"] == pytest.approx(
        members["alert_confidence_score"].max()
    )
    assert row["total_alerts"] == len(one["related_alert_ids"])


def test_label_history_uses_only_labels_known_before_the_day():
    days_ago = [200, 100, 40, 20, 10, 5, 3, 0]
    prior = pd.DataFrame(
        {
            "alert_id": [f"a{n}" for n in days_ago],
            "address": "a",
            "processing_date": [DAY - dt.timedelta(n) for n in days_ago],
            "typology_type": "FAN_IN",
        }
    )
    known_after = {200: 1, 100: 5, 40: 5, 20: 30, 10: 10, 5: 4, 3: 3, 0: 0}  # days later
    labels = pd.DataFrame(
        {
            "alert_id": prior["alert_id"],
            "processing_date": prior["processing_date"],
            "is_sar_filed": [True, True, False, True, True, False, False, True],
            "label_date": [DAY - dt.timedelta(n) + dt.timedelta(known_after[n]) for n in days_ago],
        }
    )
    since = DAY - dt.timedelta(100)  # the network's data began 100 days ago
    addresses = pd.Series(["a"])
    row = build_alert_history(addresses, prior, DAY, labels, since).set_index("address").loc["a"]
    # a200 is older than the window; a20 becomes known 10 days from now, a10 and a0 today
    # (label_date == day is not before the day); known: a100 (SAR), a40, a5.
    assert row["known_labels_180d"] == 3
    assert row["known_sar_180d"] == 1
    assert row["known_sar_rate_180d"] == pytest.approx(1 / 3)
    assert row["days_since_known_sar"] == 100
    assert row["history_coverage_days"] == 100  # days since the data began
    # An address without recent alerts has a row too, with the day's coverage.
    old = build_alert_history(addresses, prior[prior["alert_id"] == "a100"], DAY, None, since)
    old = old.set_index("address")
    assert old.loc["a", "prior_alerts_30d"] == 0 and old.loc["a", "history_coverage_days"] == 100
    # Coverage stops at the look-back; without a known start there is none.
    long_ago = DAY - dt.timedelta(400)
    assert (
        build_alert_history(addresses, prior, DAY, None, long_ago)["history_coverage_days"][0]
        == 180
    )
    assert build_alert_history(addresses, prior, DAY)["history_coverage_days"][0] == 0
    # Labels that become known later never change an earlier day's row.
    later = labels.copy()
    later.loc[later["alert_id"] == "a20", "label_date"] = DAY + dt.timedelta(400)
    pd.testing.assert_frame_equal(
        build_alert_history(addresses, prior, DAY, labels, since),
        build_alert_history(addresses, prior, DAY, later, since),
    )
    # Without known labels the counts are 0 and the rate and days are missing.
    alerts = prior.tail(1).assign(
        alert_id="x",
        pattern_type="",
        severity="low",
        suspected_address_type="unknown",
        pattern_id="",
        alert_confidence_score=0.5,
        volume_usd=1.0,
        risk_indicators=[[]],
    )
    bare = build_alert_features(
        alerts,
        pd.DataFrame({"address": []}),
        pd.DataFrame(),
        build_alert_history(addresses, prior, DAY, None, since),
    ).iloc[0]
    assert bare["known_labels_180d"] == 0 and bare["known_sar_180d"] == 0
    assert np.isnan(bare["known_sar_rate_180d"]) and np.isnan(bare["days_since_known_sar"])
    assert bare["history_coverage_days"] == 100
    full = build_alert_features(
        alerts,
        pd.DataFrame({"address": []}),
        pd.DataFrame(),
        build_alert_history(addresses, prior, DAY, labels, since),
    ).iloc[0]
    assert full["known_sar_180d"] == 1 and full["days_since_known_sar"] == 100
