"""Training: labels only as known, time split, deterministic files, registry, schema."""

from __future__ import annotations

import datetime as dt
import hashlib
import multiprocessing
from concurrent.futures import ProcessPoolExecutor

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from aml_pipeline.contract.conform import conform_table, read_parquet_bytes
from aml_pipeline.contract.schema import ALERTS, CLUSTERS, FEATURES
from aml_pipeline.defs.assets.training import cluster_labels
from aml_pipeline.features.alert_features import (
    CATEGORIES,
    FEATURE_COLUMNS,
    MONOTONE,
    build_alert_features,
)
from aml_pipeline.features.history import build_alert_history
from aml_pipeline.models.registry import (
    ModelIntegrityError,
    ModelRegistry,
    ModelSchemaError,
    check_schema,
)
from aml_pipeline.models.training import (
    LABEL,
    NotEnoughLabels,
    TrainParams,
    labelled,
    train_binary,
    train_ranker,
)
from aml_pipeline.storage.objects import LocalStorage
from aml_pipeline_tests.conftest import small_source

pytestmark = pytest.mark.integration  # trains LightGBM models

FIRST, DAYS = dt.date(2025, 4, 1), 14
AS_OF = dt.date(2025, 6, 1)
VOCAB = {c: len(v) for c, v in CATEGORIES.items()}
FAST = TrainParams(max_rounds=60, early_stopping_rounds=20)


@pytest.fixture(scope="module")
def data() -> tuple[pd.DataFrame, pd.DataFrame]:
    source, frames, labels, past = small_source(), [], [], []
    for i in range(DAYS):
        day = FIRST + dt.timedelta(i)
        files = source.fetch("ethereum", day, 7).files
        t = {
            s.name: conform_table(read_parquet_bytes(files[s.file]), s)
            for s in (ALERTS, FEATURES, CLUSTERS)
        }
        history = build_alert_history(
            t["alerts"]["address"],
            pd.concat(past) if past else pd.DataFrame(),
            day,
            pd.concat(labels) if labels else None,  # only those known before the day count
            FIRST,
        )
        frames.append(build_alert_features(t["alerts"], t["features"], t["clusters"], history))
        labels.append(source.labels("ethereum", day, 7))
        past.append(t["alerts"])
    return pd.concat(frames, ignore_index=True), pd.concat(labels, ignore_index=True)


def test_only_labels_known_on_the_as_of_date_are_used(data):
    features, labels = data
    early = labelled(features, labels, FIRST + dt.timedelta(DAYS))
    late = labelled(features, labels, AS_OF)
    assert 0 < len(early) < len(late)
    known = labels.set_index("alert_id")["label_date"]
    assert (early["alert_id"].map(known) <= FIRST + dt.timedelta(DAYS)).all()
    assert list(late["processing_date"]) == sorted(late["processing_date"])


def test_scorer_beats_both_baselines_and_files_are_byte_identical(data):
    """With the production parameters (FAST stops after 60 rounds, before the trees have
    caught up with the regression; with fewer than 11 training days the regression wins)."""
    frame = labelled(*data, AS_OF)
    one, two = (
        train_binary(
            frame,
            list(FEATURE_COLUMNS),
            list(CATEGORIES),
            TrainParams(),
            "alert_confidence_score",
            VOCAB,
        )
        for _ in range(2)
    )
    assert one.booster.model_to_string() == two.booster.model_to_string()
    assert one.data["data_sha256"] == two.data["data_sha256"]
    base = one.data["baselines"]
    assert one.metrics["auc_roc"] > base["alert_confidence_score_only"]["auc_roc"] + 0.05
    assert one.metrics["auc_roc"] > base["logistic_regression"]["auc_roc"]
    assert one.params["deterministic"] and one.params["num_threads"] == 2
    assert one.params["scale_pos_weight"] > 1  # imbalance handled on purpose


def test_the_alert_models_keep_the_known_label_directions(data):
    frame = labelled(*data, AS_OF)
    features = list(FEATURE_COLUMNS)
    model = train_binary(
        frame, features, list(CATEGORIES), FAST, "alert_confidence_score", VOCAB, MONOTONE
    )
    constraints = dict(zip(features, model.params["monotone_constraints"], strict=True))
    assert {f: c for f, c in constraints.items() if c} == MONOTONE
    rows = frame[features].head(200)
    for column, direction in MONOTONE.items():
        low, high = rows.assign(**{column: 0.0}), rows.assign(**{column: 150.0})
        gap = model.booster.predict(high) - model.booster.predict(low)
        assert (direction * gap >= -1e-12).all(), column
    ranker = train_ranker(frame, features, list(CATEGORIES), FAST, MONOTONE)
    assert ranker.params["monotone_constraints"] == model.params["monotone_constraints"]


def test_ranker_groups_by_day_and_beats_confidence(data):
    frame = labelled(*data, AS_OF)
    model = train_ranker(frame, list(FEATURE_COLUMNS), list(CATEGORIES), FAST)
    baseline = model.data["baselines"]["alert_confidence_score_only"]
    assert model.metrics["ndcg@10"] > baseline["ndcg@10"]
    assert model.params["objective"] == "lambdarank"


def test_too_few_labels_is_a_clear_error(data):
    frame = labelled(*data, FIRST + dt.timedelta(8))
    with pytest.raises(NotEnoughLabels, match=r"split has \d+ labelled rows and only one class"):
        train_binary(
            frame, list(FEATURE_COLUMNS), list(CATEGORIES), FAST, "alert_confidence_score", VOCAB
        )


def test_cluster_labels_need_every_member_or_one_sar():
    clusters = pd.DataFrame(
        {
            "cluster_id": ["all-no", "one-yes", "unknown"],
            "related_alert_ids": [["a", "b"], ["c", "d"], ["e", "f"]],
        }
    )
    labels = pd.DataFrame(
        {
            "alert_id": ["a", "b", "c", "e", "f"],
            LABEL: [False, False, True, False, False],
            "label_date": [dt.date(2025, 1, 1)] * 4 + [dt.date(2025, 9, 1)],
        }
    )
    labels.loc[1, "label_date"] = dt.date(2025, 1, 9)
    out = cluster_labels(clusters, labels, dt.date(2025, 2, 1)).set_index("cluster_id")
    assert out[LABEL].to_dict() == {"all-no": False, "one-yes": True}
    # SAR when its first SAR member was; not SAR when its last member's label arrived
    assert out["label_date"].to_dict() == {
        "all-no": dt.date(2025, 1, 9),
        "one-yes": dt.date(2025, 1, 1),
    }


def _register(registry: ModelRegistry, model) -> dict:
    entry = {"features": model.features, "feature_schema_version": 1, "metrics": model.metrics}
    return registry.register("alert_scorer", model.booster, entry, model.calibration)


def test_registry_versions_champion_and_schema_check(data, tmp_path):
    frame = labelled(*data, AS_OF)
    model = train_binary(
        frame, list(FEATURE_COLUMNS), list(CATEGORIES), FAST, "alert_confidence_score", VOCAB
    )
    registry = ModelRegistry(LocalStorage(tmp_path), "ethereum")
    for _ in range(2):
        _register(registry, model)
    assert [e["version"] for e in registry.entries("alert_scorer")] == ["1.0.0", "1.1.0"]
    assert registry.champions() == {"alert_scorer": "1.0.0"}
    folder = tmp_path / "trained_models" / "ethereum"
    files = sorted(p.name for p in folder.iterdir() if not p.name.startswith("."))  # not locks
    assert files == [
        "alert_scorer_v1.0.0.calibration.json",
        "alert_scorer_v1.0.0.txt",
        "alert_scorer_v1.1.0.calibration.json",
        "alert_scorer_v1.1.0.txt",
        "model_metadata.json",
    ]
    entry = registry.entry("alert_scorer", "1.0.0")
    assert entry["sha256"] == hashlib.sha256((folder / entry["file"]).read_bytes()).hexdigest()
    loaded = registry.load("alert_scorer")
    scores = loaded.predict(frame[loaded.features].head(5))
    assert np.all((scores >= 0) & (scores <= 1))
    check_schema(loaded, list(frame.columns))
    with pytest.raises(ModelSchemaError, match=r"alert_scorer v1.0.0 .* lacks 1: \['kcore'\]"):
        check_schema(loaded, [c for c in frame.columns if c != "kcore"])


def test_a_swapped_or_tampered_model_file_is_refused(data, tmp_path):
    frame = labelled(*data, AS_OF)
    model = train_binary(
        frame, list(FEATURE_COLUMNS), list(CATEGORIES), FAST, "alert_confidence_score", VOCAB
    )
    registry = ModelRegistry(LocalStorage(tmp_path), "ethereum")
    first, second = _register(registry, model), _register(registry, model)
    folder = tmp_path / "trained_models" / "ethereum"
    other = train_binary(
        frame,
        list(FEATURE_COLUMNS),
        list(CATEGORIES),
        TrainParams(max_rounds=5, early_stopping_rounds=5),
        "alert_confidence_score",
        VOCAB,
    )
    (folder / first["file"]).write_text(other.booster.model_to_string())
    with pytest.raises(ModelIntegrityError, match=r"alert_scorer_v1\.0\.0\.txt: sha256"):
        registry.load("alert_scorer", "1.0.0")
    calibration = folder / second["calibration"]["file"]
    calibration.write_text(calibration.read_text().replace('"slope": ', '"slope": 2'))
    with pytest.raises(ModelIntegrityError, match=r"v1\.1\.0\.calibration\.json: sha256"):
        registry.load("alert_scorer", "1.1.0")


def _train_and_register(root: str, frame: pd.DataFrame) -> str:
    model = train_binary(
        frame, list(FEATURE_COLUMNS), list(CATEGORIES), FAST, "alert_confidence_score", VOCAB
    )
    return _register(ModelRegistry(LocalStorage(root), "ethereum"), model)["version"]


def test_two_concurrent_trainings_get_two_distinct_consistent_versions(data, tmp_path):
    frame = labelled(*data, AS_OF)
    # spawned, not forked: a fork after LightGBM's OpenMP threads ran can deadlock
    with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn")) as pool:
        versions = list(pool.map(_train_and_register, [str(tmp_path)] * 2, [frame] * 2))
    assert sorted(versions) == ["1.0.0", "1.1.0"]
    registry = ModelRegistry(LocalStorage(tmp_path), "ethereum")
    assert sorted(e["version"] for e in registry.entries("alert_scorer")) == ["1.0.0", "1.1.0"]
    for version in versions:  # each entry matches its own file
        assert registry.load("alert_scorer", version).version == version


def test_calibration_keeps_the_ranking_and_is_judged_on_rows_the_map_never_saw(data):
    frame = labelled(*data, AS_OF)
    model = train_binary(
        frame, list(FEATURE_COLUMNS), list(CATEGORIES), FAST, "alert_confidence_score", VOCAB
    )
    split = model.data["validation"]
    assert split["split"] == "latest days (no mature days)"
    assert not set(split["calibration_days"]) & set(split["early_stopping_days"])
    cal = frame["processing_date"].astype(str).isin(split["calibration_days"]).to_numpy()
    x, y = frame.loc[cal, model.features], frame.loc[cal, LABEL].to_numpy()
    raw = model.booster.predict(x, num_iteration=model.booster.best_iteration)
    calibrated = model.calibration.apply(model.booster.predict(x, raw_score=True))
    assert roc_auc_score(y, calibrated) == pytest.approx(roc_auc_score(y, raw), abs=1e-12)
    assert model.metrics["auc_roc"] == pytest.approx(roc_auc_score(y, raw), abs=1e-12)
    assert average_precision_score(y, calibrated) == pytest.approx(
        average_precision_score(y, raw), abs=1e-12
    )
    assert raw.mean() > 2 * y.mean()  # scale_pos_weight inflates the raw probability
    assert model.metrics["brier"] < model.metrics["brier_uncalibrated"]
