"""aml-pipeline train: refreshes features through Dagster, trains, registers, reproduces."""

from __future__ import annotations

import datetime as dt
import json

import dagster as dg
import pandas as pd
import pytest

from aml_pipeline import cli
from aml_pipeline_tests.conftest import NETWORK, small_source, write_upstream

RANGE = ["--start-date", "2025-03-01", "--end-date", "2025-03-08"]


def test_train_registers_three_models_and_retraining_is_byte_identical(
    cli_home, capsys, monkeypatch
):
    # every label has arrived 30 days after its alert: nothing after 2025-04-07 is fetched
    monkeypatch.setenv("AML_LABEL_HORIZON_DAYS", "30")
    assert cli.main(["download", "--network", "ethereum", *RANGE]) == 0
    capsys.readouterr()
    args = [
        "train",
        "--network",
        "ethereum",
        *RANGE,
        "--as-of",
        "2025-04-20",
        "--output",
        str(cli_home / "seed" / "alert_scorer.txt"),
    ]
    assert cli.main(args) == 0
    out = capsys.readouterr().out
    assert "alert_scorer v3.0.0: auc_roc" in out and "[champion]" in out
    assert "baseline logistic_regression" in out and "ndcg@10" in out
    assert cli.main(args) == 0
    folder = cli_home / "data" / "trained_models" / "ethereum"
    for kind in ("alert_scorer", "alert_ranker", "cluster_scorer"):
        first = (folder / f"{kind}_v3.0.0.txt").read_bytes()
        assert first == (folder / f"{kind}_v3.1.0.txt").read_bytes(), kind
    assert (cli_home / "seed" / "alert_scorer.txt").read_bytes() == (
        folder / "alert_scorer_v3.1.0.txt"
    ).read_bytes()

    registry = json.loads((folder / "model_metadata.json").read_text())
    assert registry["champions"] == {
        k: "3.0.0" for k in ("alert_scorer", "alert_ranker", "cluster_scorer")
    }
    entry = next(e for e in registry["versions"] if e["kind"] == "alert_scorer")
    for field in (
        "features",
        "categories",
        "params",
        "training_range",
        "as_of",
        "data_sha256",
        "rows",
        "positives",
        "metrics",
        "library_versions",
        "created_at",
        "baselines",
        "feature_schema_version",
    ):
        assert field in entry, field
    assert entry["as_of"] == "2025-04-20" and entry["labels_through"] == "2025-04-07"
    # a month after the validation days most closures are still to come: said so
    checked = entry["validation_labels"]
    assert not checked["mature"] and 0.2 < checked["labelled_share"] < 0.8
    assert "not yet mature" in out and "these figures are optimistic" in out
    assert entry["training_range"] == ["2025-03-01", "2025-03-08"]
    assert entry["valid_days"] == ["2025-03-07", "2025-03-08"]

    with dg.DagsterInstance.get() as instance:
        key = dg.AssetKey(["ethereum", "alert_features"])
        assert len(instance.get_materialized_partitions(key)) == 8
        labels = instance.get_materialized_partitions(dg.AssetKey(["ethereum", "label_events"]))
        assert max(labels) == "2025-04-07"
        assert instance.get_latest_materialization_event(dg.AssetKey(["ethereum", "alert_scorer"]))


def test_training_without_features_for_the_range_fails_clearly(cli_home):
    with pytest.raises(SystemExit, match=r"ethereum has never been landed: aml-pipeline download"):
        cli.main(
            [
                "train",
                "--network",
                "ethereum",
                "--start-date",
                "2025-02-20",
                "--end-date",
                "2025-02-21",
            ]
        )


def test_training_on_days_not_landed_names_them(cli_home):
    span = ["--start-date", "2025-02-20", "--end-date", "2025-02-20"]
    assert cli.main(["download", "--network", "ethereum", *span]) == 0
    with pytest.raises(SystemExit, match=r"2025-02-21: land them first \(aml-pipeline download"):
        cli.main(["train", "--network", "ethereum", "--start-date", "2025-02-20",
                  "--end-date", "2025-02-21"])  # fmt: skip


def test_label_days_fetched_before_the_labels_file_existed_are_fetched_again(cli_home, capsys):
    """A SOT directory whose labels file arrives after its batches were landed: the first
    training finds no labels, the next one fetches the empty label days again."""
    source, start = small_source(), dt.date(2025, 3, 1)
    days = [start + dt.timedelta(i) for i in range(8)]
    sot = cli_home / "sot"
    for day in days:
        write_upstream(sot, source.fetch(NETWORK, day, 7).files, day)
    assert cli.main(["download", "--network", NETWORK, *RANGE, "--source", str(sot)]) == 0
    train = ["train", "--network", NETWORK, *RANGE, "--as-of", "2025-04-20"]
    with pytest.raises(SystemExit, match="no labels for ethereum"):
        cli.main(train)
    labels = pd.concat([source.labels(NETWORK, day, 7) for day in days], ignore_index=True)
    folder = sot / "ground-truth" / NETWORK
    folder.mkdir(parents=True)
    labels.to_parquet(folder / "ground_truth.parquet")
    capsys.readouterr()
    assert cli.main(train) == 0
    assert "alert_scorer v3.0.0: auc_roc" in capsys.readouterr().out
