"""A/B test of two model files on simulated test days (``aml_pipeline.evaluation.ab_test``)."""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest

from aml_pipeline.evaluation.ab_test import (
    IncompleteLabelHistory,
    build_test_features,
    compare_loaded,
    load_model_file,
    read_ground_truth,
    read_test_days,
    run_ab_test,
)
from aml_pipeline.evaluation.report import MARKDOWN_NAME, PR_PNG, RELIABILITY_PNG, ROC_PNG
from aml_pipeline.features.alert_features import (
    CATEGORIES,
    FEATURE_COLUMNS,
    FEATURE_SCHEMA_VERSION,
)
from aml_pipeline.models.registry import (
    REGISTRY_FILE,
    LoadedModel,
    ModelIntegrityError,
    ModelSchemaError,
)
from aml_pipeline_tests.conftest import NETWORK, small_source

pytestmark = pytest.mark.integration  # trains models and compares them in a fresh process

DAYS = [dt.date(2025, 3, d) for d in range(1, 7)]
TRAIN_DAYS, TEST_DAYS = DAYS[:4], DAYS[4:]
AS_OF = dt.date(2025, 6, 1)
PARAMS = {
    "objective": "binary",
    "learning_rate": 0.1,
    "num_leaves": 7,
    "min_data_in_leaf": 20,
    "seed": 0,
    "deterministic": True,
    "force_row_wise": True,
    "num_threads": 1,
    "verbose": -1,
}


@dataclass(frozen=True)
class Setup:
    test_data: Path
    ground_truth: Path
    model_a: Path
    model_b: Path


def _train(frame: pd.DataFrame, features: list[str], labels: np.ndarray) -> lgb.Booster:
    categorical = [c for c in features if c in CATEGORIES]
    data = lgb.Dataset(frame[features], labels, categorical_feature=categorical)
    return lgb.train(PARAMS, data, num_boost_round=40)


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Setup:
    """Six simulated days, their labels, a decent model A and a label-shuffled model B."""
    root = tmp_path_factory.mktemp("ab")
    test_data = root / "test_data"
    labels = []
    for day in DAYS:
        folder = test_data / day.isoformat()
        folder.mkdir(parents=True)
        for name, data in small_source().fetch(NETWORK, day, 7).files.items():
            (folder / name).write_bytes(data)
        labels.append(small_source().labels(NETWORK, day, 7))  # every label, at T+tau
    ground_truth = root / "ground_truth.parquet"
    pd.concat(labels, ignore_index=True).to_parquet(ground_truth)

    features, _ = build_test_features(
        test_data, read_test_days(test_data, DAYS[0], DAYS[3]), pd.concat(labels)
    )
    frame = pd.concat(features.values(), ignore_index=True).merge(
        pd.concat(labels)[["alert_id", "is_sar_filed"]], on="alert_id"
    )
    y = frame["is_sar_filed"].to_numpy(dtype=int)
    models = root / "models"
    models.mkdir()
    model_a, model_b = models / "alert_scorer_v1.0.0.txt", models / "alert_scorer_v1.1.0.txt"
    _train(frame, list(FEATURE_COLUMNS), y).save_model(model_a)
    shuffled = np.random.default_rng(0).permutation(y)
    _train(frame, list(FEATURE_COLUMNS), shuffled).save_model(model_b)
    return Setup(test_data, ground_truth, model_a, model_b)


def test_ab_test_prefers_the_better_model(setup: Setup, tmp_path: Path) -> None:
    output = tmp_path / "report" / "comparison.json"
    result = run_ab_test(
        setup.model_a,
        setup.model_b,
        setup.test_data,
        TEST_DAYS[0],
        TEST_DAYS[-1],
        setup.ground_truth,
        output,
        n_resamples=200,
        budget=7,
    )
    names = result["models"]
    assert names == {"a": "A (v1.0.0)", "b": "B (v1.1.0)"}
    assert result["winner"] == names["a"]
    assert result["significant"]
    assert result["bootstrap"]["auc_roc_diff"]["ci_high"] < 0
    assert result["days"] == [day.isoformat() for day in TEST_DAYS]
    for day in result["days"]:
        for name in names.values():
            run = result["per_day"][day]["models"][name]
            assert run["tier1"]["passed"], run["tier1"]["failed_checks"]
            assert run["tier1"]["checks"]["determinism"]["status"] == "passed"
            assert run["tier3"]["score"] is not None
            assert run["tier3"]["metrics"]["alert_budget"] == 7
    auc_a = result["aggregate"][names["a"]]["tier3"]["pooled"]["metrics"]["auc_roc"]
    assert auc_a > 0.7

    inputs = result["inputs"]
    assert inputs["model_a"]["sha256"] == hashlib.sha256(setup.model_a.read_bytes()).hexdigest()
    assert "assumed to be this code's" in inputs["model_a"]["unchecked"]  # a bare file
    assert (inputs["model_a"]["version"], inputs["model_b"]["version"]) == ("1.0.0", "1.1.0")
    assert (inputs["start_date"], inputs["end_date"]) == ("2025-03-05", "2025-03-06")
    assert json.loads(output.read_text()) == result
    assert result["bootstrap"]["blocks"] == "addresses"
    assert result["bootstrap"]["n_blocks"] < result["bootstrap"]["n_alerts"]
    assert result["calibration"][names["a"]]["reliability"]
    for name in (MARKDOWN_NAME, ROC_PNG, PR_PNG, RELIABILITY_PNG):
        assert (output.parent / name).stat().st_size > 0


def test_missing_day_is_named(setup: Setup) -> None:
    with pytest.raises(FileNotFoundError, match="2025-03-07, 2025-03-08"):
        read_test_days(setup.test_data, DAYS[-1], dt.date(2025, 3, 8))


def test_network_folder_layout(setup: Setup, tmp_path: Path) -> None:
    (tmp_path / NETWORK).symlink_to(setup.test_data, target_is_directory=True)
    days = read_test_days(tmp_path, TEST_DAYS[0], TEST_DAYS[0])
    batch = days[TEST_DAYS[0]]
    assert len(batch.alerts) > 0 and not batch.clusters.empty
    assert batch.pattern_traps


def test_model_with_foreign_features_is_refused(setup: Setup, tmp_path: Path) -> None:
    x = pd.DataFrame({"not_a_feature": np.arange(100.0), "log_volume_usd": np.ones(100)})
    path = tmp_path / "alert_scorer_v2.0.0.txt"
    _train(x, list(x.columns), np.arange(100) % 2).save_model(path)
    with pytest.raises(ModelSchemaError, match=r"v2\.0\.0 .*lacks 1: \['not_a_feature'\]"):
        run_ab_test(
            setup.model_a,
            path,
            setup.test_data,
            TEST_DAYS[0],
            TEST_DAYS[0],
            setup.ground_truth,
            tmp_path / "out.json",
        )
    assert not (tmp_path / "out.json").exists()


def test_load_model_file_metadata(setup: Setup, tmp_path: Path) -> None:
    model = tmp_path / "candidate.txt"
    model.write_bytes(setup.model_a.read_bytes())
    assert load_model_file(model).version == "candidate"
    entry = {"file": model.name, "version": "1.4.0", "kind": "alert_scorer"}
    entry["features"] = list(FEATURE_COLUMNS)
    entry["sha256"] = hashlib.sha256(model.read_bytes()).hexdigest()
    (tmp_path / REGISTRY_FILE).write_text(json.dumps({"versions": [entry]}))
    loaded = load_model_file(model)
    assert (loaded.version, loaded.entry["kind"]) == ("1.4.0", "alert_scorer")
    model.write_bytes(setup.model_b.read_bytes())  # swapped after it was registered
    with pytest.raises(ModelIntegrityError, match=r"candidate\.txt: sha256 .* changed or swapped"):
        load_model_file(model)

    broken = tmp_path / "broken.txt"
    broken.write_text("not a model")
    with pytest.raises(ValueError, match=r"broken\.txt"):
        load_model_file(broken)
    with pytest.raises(FileNotFoundError, match=r"absent\.txt"):
        load_model_file(tmp_path / "absent.txt")


def test_a_label_file_without_the_history_production_had_is_refused(setup, tmp_path):
    labels = pd.read_parquet(setup.ground_truth)
    days = read_test_days(setup.test_data, TEST_DAYS[0], TEST_DAYS[-1])
    test_only = labels[labels["processing_date"].isin(TEST_DAYS)]
    with pytest.raises(IncompleteLabelHistory, match=r"2025-03-01\.\.2025-03-04"):
        build_test_features(setup.test_data, days, test_only)
    with pytest.raises(IncompleteLabelHistory, match="no label_date"):
        build_test_features(setup.test_data, days, labels[["alert_id", "is_sar_filed"]])
    partial = labels[labels["processing_date"] != DAYS[1]]
    _, warnings = build_test_features(setup.test_data, days, partial)
    assert warnings == [
        "no label in the ground truth for the alerts of 1 look-back day(s): 2025-03-02"
    ]


def test_ground_truth_is_a_file_or_a_folder_of_daily_label_events(tmp_path: Path) -> None:
    days = pd.to_datetime(["2025-03-01", "2025-03-02"]).date
    labels = pd.DataFrame({"alert_id": ["a", "b"], "processing_date": days})
    labels["is_sar_filed"] = [True, False]
    labels["label_date"] = days + dt.timedelta(7)
    folder = tmp_path / "label_events"
    folder.mkdir()
    for (day,), part in labels.groupby(["label_date"]):
        part.to_parquet(folder / f"{day}.parquet")
    labels.head(0).to_parquet(folder / "2025-03-20.parquet")  # a day without arrivals
    pd.testing.assert_frame_equal(read_ground_truth(folder), labels)
    labels.to_csv(tmp_path / "labels.csv", index=False)
    assert read_ground_truth(tmp_path / "labels.csv")["alert_id"].tolist() == ["a", "b"]
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match=r"holds no \.parquet"):
        read_ground_truth(tmp_path / "empty")


def test_a_registered_model_of_another_vocabulary_is_refused(setup: Setup, tmp_path: Path) -> None:
    model = tmp_path / "alert_scorer_v3.9.0.txt"
    model.write_bytes(setup.model_a.read_bytes())
    typologies = list(CATEGORIES["typology_type"])
    entry = {
        "file": model.name,
        "version": "3.9.0",
        "kind": "alert_scorer",
        "features": list(FEATURE_COLUMNS),
        "sha256": hashlib.sha256(model.read_bytes()).hexdigest(),
        "feature_schema_version": FEATURE_SCHEMA_VERSION,
        "categories": {
            **{k: list(v) for k, v in CATEGORIES.items()},
            "typology_type": [*typologies[:2], "inserted", *typologies[2:]],
        },
    }
    (tmp_path / REGISTRY_FILE).write_text(json.dumps({"versions": [entry]}))
    with pytest.raises(ModelSchemaError, match=f"typology_type differs .* at code 2: the model "
                       f"has 'inserted', the code {typologies[2]!r}"):  # fmt: skip
        run_ab_test(
            setup.model_a,
            model,
            setup.test_data,
            TEST_DAYS[0],
            TEST_DAYS[-1],
            setup.ground_truth,
            tmp_path / "out.json",
            n_resamples=10,
        )


def _swapped_in_a_child(path: Path, other: Path, parent: int) -> LoadedModel:
    """``path``'s model in process ``parent``; ``other``'s in any other process."""
    return load_model_file(path if os.getpid() == parent else other)


def test_determinism_is_checked_in_a_fresh_process_from_the_stored_file(setup, tmp_path):
    labels = pd.read_parquet(setup.ground_truth)
    days = read_test_days(setup.test_data, TEST_DAYS[0], TEST_DAYS[-1])
    features, _ = build_test_features(setup.test_data, days, labels)
    result = compare_loaded(
        {
            "A": functools.partial(load_model_file, setup.model_a),
            # B's file is another model by the time the fresh process reads it
            "B": functools.partial(_swapped_in_a_child, setup.model_b, setup.model_a, os.getpid()),
        },
        features,
        {day: batch.alerts for day, batch in days.items()},
        labels,
        {day: batch.pattern_traps for day, batch in days.items()},
        tmp_path / "comparison.json",
        {"warnings": []},
        n_resamples=10,
    )
    for day in result["days"]:
        runs = result["per_day"][day]["models"]
        assert runs["A (v1.0.0)"]["tier1"]["checks"]["determinism"]["status"] == "passed"
        determinism = runs["B (v1.1.0)"]["tier1"]["checks"]["determinism"]
        assert determinism["status"] == "failed" and determinism["details"]["n_mismatched"] > 0
