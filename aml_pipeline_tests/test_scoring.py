"""Scoring functions: scores, explanations that add up, coverage, deterministic ranks."""

from __future__ import annotations

import json

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest

from aml_pipeline.features.alert_features import FEATURE_SCHEMA_VERSION
from aml_pipeline.models.registry import LoadedModel, ModelSchemaError
from aml_pipeline.models.scoring import explain_mask, rank_frame, score_frame

CATEGORIES = {"kind": ["a", "b", "__other__"]}


def _model(objective: str = "binary") -> tuple[LoadedModel, pd.DataFrame]:
    rng = np.random.default_rng(0)
    n = 600
    x = pd.DataFrame(
        {
            "alert_id": [f"a{i:04d}" for i in range(n)],
            "f1": rng.normal(size=n),
            "f2": rng.normal(size=n),
            "kind": rng.integers(0, 3, size=n),
        }
    )
    x.loc[::7, "f2"] = np.nan
    y = ((x["f1"] + (x["kind"] == 1) + rng.normal(scale=0.5, size=n)) > 0.5).astype(int)
    features = ["f1", "f2", "kind"]
    params = {"objective": objective, "verbose": -1, "deterministic": True, "num_threads": 1}
    if objective == "lambdarank":
        data = lgb.Dataset(x[features], y, group=[n], categorical_feature=["kind"])
    else:
        data = lgb.Dataset(x[features], y, categorical_feature=["kind"])
    booster = lgb.train(params, data, num_boost_round=20)
    entry = {
        "version": "1.0.0",
        "features": features,
        "kind": "alert_scorer",
        "feature_schema_version": FEATURE_SCHEMA_VERSION,
        "categories": CATEGORIES,
    }
    return LoadedModel(booster, entry, "0" * 64), x


def test_scores_explanations_and_latency():
    model, x = _model()
    out = score_frame(model, x, "alert_id", CATEGORIES, explain_coverage=-1)
    assert list(out.columns) == ["alert_id", "score", "model_version", "latency_ms", "explain_json"]
    assert out["alert_id"].tolist() == x["alert_id"].tolist()
    np.testing.assert_allclose(out["score"], model.booster.predict(x[model.features]))
    assert out["score"].between(0, 1).all() and (out["model_version"] == "1.0.0").all()
    assert (out["latency_ms"] > 0).all()

    raw = model.booster.predict(x[model.features], raw_score=True)
    for i in (0, 7, 100):
        explanation = json.loads(out["explain_json"][i])
        assert explanation["model_version"] == "1.0.0"
        top = explanation["top_features"]
        # three features, all shown: base + contributions is the raw (log-odds) score
        assert len(top) == 3
        total = explanation["base_value"] + sum(t["contribution"] for t in top)
        assert total == pytest.approx(raw[i], abs=1e-4)
        assert [abs(t["contribution"]) for t in top] == sorted(
            (abs(t["contribution"]) for t in top), reverse=True
        )
        shown = {t["feature"]: t["value"] for t in top}
        assert shown["kind"] in CATEGORIES["kind"]
        assert (shown["f2"] is None) == (i % 7 == 0)


def test_explanations_are_the_compact_json_of_their_values():
    model, x = _model()
    out = score_frame(model, x, "alert_id", CATEGORIES, explain_coverage=-1)
    for text in out["explain_json"]:
        assert text == json.dumps(json.loads(text), separators=(",", ":"))
        assert list(json.loads(text)) == ["model_version", "base_value", "top_features"]


def test_explain_coverage_explains_only_the_highest_scores():
    model, x = _model()
    out = score_frame(model, x, "alert_id", CATEGORIES, explain_coverage=10)
    explained = out["explain_json"].notna()
    assert explained.sum() == 10
    assert out.loc[explained, "score"].min() >= out.loc[~explained, "score"].max()
    assert score_frame(model, x, "alert_id", CATEGORIES, 0)["explain_json"].isna().all()
    assert explain_mask(np.array([0.2, 0.9, 0.9, 0.1]), 2).tolist() == [False, True, True, False]


def test_empty_day_and_missing_features():
    model, x = _model()
    empty = score_frame(model, x.iloc[:0], "alert_id", CATEGORIES, -1)
    assert empty.empty and list(empty.columns)[:2] == ["alert_id", "score"]
    assert rank_frame(model, x.iloc[:0], CATEGORIES).empty
    with pytest.raises(ModelSchemaError, match="lacks 1: \\['f2'\\]"):
        score_frame(model, x.drop(columns="f2"), "alert_id", CATEGORIES, -1)


def test_ranks_are_dense_and_ties_break_by_alert_id():
    model, x = _model("lambdarank")
    x = pd.concat([x.iloc[:50], x.iloc[:50].assign(alert_id=lambda d: "b" + d["alert_id"])])
    ranks = rank_frame(model, x.sample(frac=1, random_state=1), CATEGORIES)
    assert ranks["rank"].tolist() == list(range(1, 101))
    assert ranks["ranker_score"].is_monotonic_decreasing
    for _, tied in ranks.groupby("ranker_score"):
        assert tied["alert_id"].tolist() == sorted(tied["alert_id"])
    assert rank_frame(model, x, CATEGORIES)["alert_id"].tolist() == ranks["alert_id"].tolist()


def test_a_model_of_another_schema_or_vocabulary_is_refused_naming_the_difference():
    model, x = _model()
    inserted = {"kind": ["a", "new", "b", "__other__"]}
    with pytest.raises(ModelSchemaError, match=r"kind differs .* at code 1: the model has 'b'"):
        score_frame(model, x, "alert_id", inserted, -1)
    with pytest.raises(ModelSchemaError, match="at code 3: the model has nothing, the code 'z'"):
        rank_frame(model, x, {"kind": [*CATEGORIES["kind"], "z"]})
    old = LoadedModel(model.booster, {**model.entry, "feature_schema_version": 2}, model.sha256)
    with pytest.raises(ModelSchemaError, match="trained on feature schema 2; this code computes"):
        score_frame(old, x, "alert_id", CATEGORIES, -1)
    bare = {k: v for k, v in model.entry.items() if k != "categories"}
    with pytest.raises(ModelSchemaError, match="records no vocabulary of kind"):
        score_frame(LoadedModel(model.booster, bare, model.sha256), x, "alert_id", CATEGORIES, -1)
