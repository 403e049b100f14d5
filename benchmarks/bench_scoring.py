"""Scoring benchmarks (``make bench``).

1. One day of 100,000 alerts: features, scores, ranks, cluster scores and the published
   files, without explanations; then exact tree-SHAP explanation throughput on its own.
   The day is a simulated day's alerts (small profile) replicated under new ids.
2. A 30-day backfill of simulated days through Dagster (``aml-pipeline score``: chunked
   runs, in-process executor) next to a plain Python loop calling the same functions
   (fetch, validate, land and verify, the warehouse tables, features, scores, validators,
   processing metadata, publish) without Dagster. Each runs in its own process on a fresh
   data root with the same trained models; the difference is Dagster's orchestration and
   event log.

Both need champion models: the benchmark first lands and trains 2025-03-01..08 like the
tests do (labels as of 2025-05-01). The simulator profile is ``AML_SIM_PROFILE`` (default
``small``, whose days are cheap, so Dagster's share shows most; ``demo`` is what users run).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

from aml_pipeline.storage import layout

NETWORK = "ethereum"
BACKFILL = (dt.date(2025, 3, 9), dt.date(2025, 4, 7))
DAY_ALERTS = 100_000


def _env(root: Path) -> dict[str, str]:
    return {
        **os.environ,
        "DAGSTER_HOME": str(root),
        "AML_DATA_ROOT": str(root / "data"),
        "AML_SIM_PROFILE": os.environ.get("AML_SIM_PROFILE", "small"),
        "AML_LABELS_AS_OF": "2025-05-01",
    }


def _cli(root: Path, *args: str) -> float:
    began = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "aml_pipeline.cli", *args],
        env=_env(root),
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return time.perf_counter() - began


def _project(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    return root


def prepare(root: Path) -> None:
    """Land and train 2025-03-01..08 in ``root`` (champion models for the benchmarks)."""
    span = ["--network", NETWORK, "--start-date", "2025-03-01", "--end-date", "2025-03-08"]
    _cli(_project(root), "download", *span)
    _cli(root, "train", *span)


def _replicate(tables: dict[str, pd.DataFrame], copies: int) -> dict[str, pd.DataFrame]:
    """The day's alerts and clusters ``copies`` times under new ids (same addresses)."""
    alerts, clusters = tables["alerts"], tables["clusters"]
    out_alerts, out_clusters = [], []
    for k in range(copies):
        out_alerts.append(alerts.assign(alert_id=alerts["alert_id"] + f"-{k}"))
        out_clusters.append(
            clusters.assign(
                cluster_id=clusters["cluster_id"] + f"-{k}",
                related_alert_ids=clusters["related_alert_ids"].map(
                    lambda ids, k=k: [f"{a}-{k}" for a in ids]
                ),
            )
        )
    return {
        **tables,
        "alerts": pd.concat(out_alerts, ignore_index=True),
        "clusters": pd.concat(out_clusters, ignore_index=True),
    }


def bench_day(root: Path) -> dict:
    """Score one 100,000-alert day end to end; then explanation throughput."""
    from aml_pipeline.contract.files import parquet_bytes
    from aml_pipeline.contract.schema import BATCH_TABLES
    from aml_pipeline.features.alert_features import (
        CATEGORIES,
        build_alert_features,
    )
    from aml_pipeline.features.cluster_features import CLUSTER_TYPES, build_cluster_features
    from aml_pipeline.features.flow_features import build_flow_features
    from aml_pipeline.features.history import build_alert_history
    from aml_pipeline.models.registry import ModelRegistry
    from aml_pipeline.models.scoring import rank_frame, score_frame
    from aml_pipeline.sources.landing import read_landed_table
    from aml_pipeline.storage.objects import LocalStorage

    storage = LocalStorage(root / "data")
    landed = LocalStorage(root / "data" / layout.INPUT)
    day = dt.date(2025, 3, 8)
    tables = {t.name: read_landed_table(landed, NETWORK, day, t) for t in BATCH_TABLES}
    prior = pd.concat(
        read_landed_table(landed, NETWORK, day - dt.timedelta(i), BATCH_TABLES[0])
        for i in range(1, 8)
    )
    tables = _replicate(tables, -(-DAY_ALERTS // len(tables["alerts"])))
    tables["alerts"] = tables["alerts"].iloc[:DAY_ALERTS]
    registry = ModelRegistry(storage, NETWORK)
    models = {k: registry.load(k) for k in ("alert_scorer", "alert_ranker", "cluster_scorer")}

    began = time.perf_counter()
    history = build_alert_history(tables["alerts"]["address"], prior, day)
    flows = build_flow_features(
        tables["alerts"]["address"], tables["money_flows"], prior, None, day
    )
    features = build_alert_features(
        tables["alerts"], tables["features"], tables["clusters"], history, flows
    )
    featured = time.perf_counter()
    clusters = build_cluster_features(tables["clusters"], features)
    scores = score_frame(models["alert_scorer"], features, "alert_id", CATEGORIES, 0)
    ranks = rank_frame(models["alert_ranker"], features, CATEGORIES)
    cluster_scores = score_frame(
        models["cluster_scorer"], clusters, "cluster_id", {"cluster_type": CLUSTER_TYPES}, 0
    )
    scored = time.perf_counter()
    storage.publish_dir(
        "bench_output/day",
        {
            "alert_scores.parquet": parquet_bytes(scores),
            "alert_rankings.parquet": parquet_bytes(ranks),
            "cluster_scores.parquet": parquet_bytes(cluster_scores),
        },
    )
    written = time.perf_counter()

    sample = features.iloc[:20_000]
    explain_began = time.perf_counter()
    explained = score_frame(models["alert_scorer"], sample, "alert_id", CATEGORIES, -1)
    explain_s = time.perf_counter() - explain_began
    assert explained["explain_json"].notna().all()
    return {
        "alerts": len(features),
        "clusters": len(clusters),
        "alert_scorer_trees": models["alert_scorer"].booster.num_trees(),
        "features_s": round(featured - began, 2),
        "score_rank_clusters_s": round(scored - featured, 2),
        "write_s": round(written - scored, 2),
        "total_without_explanations_s": round(written - began, 2),
        "explained_alerts_per_s": round(len(sample) / explain_s),
        "mean_latency_ms_without_explanations": round(float(scores["latency_ms"].mean()), 4),
        "mean_latency_ms_with_explanations": round(float(explained["latency_ms"].mean()), 4),
    }


def _labels_of(day: dt.date, *events: pd.DataFrame) -> pd.DataFrame:
    """The labels of ``day``'s alerts among the label events known so far."""
    known = pd.concat(events, ignore_index=True)
    return known[known["processing_date"] == day]


def plain_loop(root: Path, start: dt.date, end: dt.date) -> None:
    """The daily job's work for each day without Dagster: the functions its assets call,
    writing the same warehouse tables (through the IO manager's writer) and outputs."""
    from aml_pipeline.contract.conform import conform_table
    from aml_pipeline.contract.files import parquet_bytes, sha256_hex
    from aml_pipeline.contract.schema import BATCH_TABLES, GROUND_TRUTH
    from aml_pipeline.dates import date_range
    from aml_pipeline.defs.assets.scoring import with_alert_context
    from aml_pipeline.defs.resources import PipelineConfig
    from aml_pipeline.evaluation import (
        Tier1Validator,
        Tier2Validator,
        Tier3Validator,
        to_jsonable,
    )
    from aml_pipeline.features.alert_features import (
        CATEGORIES,
        build_alert_features,
    )
    from aml_pipeline.features.cluster_features import CLUSTER_TYPES, build_cluster_features
    from aml_pipeline.features.flow_features import build_flow_features
    from aml_pipeline.features.history import (
        HISTORY_ALERT_COLUMNS,
        LABEL_HISTORY_DAYS,
        build_alert_history,
    )
    from aml_pipeline.models.registry import ModelRegistry
    from aml_pipeline.models.scoring import rank_frame, score_frame
    from aml_pipeline.settings import Settings
    from aml_pipeline.sources.landing import (
        fetch_and_validate,
        land,
        read_landed_meta,
        read_landed_table,
        read_landed_traps,
        verify_landed,
    )
    from aml_pipeline.storage.tables import TableStore, write_parquet

    os.environ.update(_env(root))
    pipeline = PipelineConfig.from_settings(Settings.from_env())
    source, storage, landed = pipeline.source(NETWORK), pipeline.storage(), pipeline.input_storage()
    window, store = pipeline.window_days(NETWORK), TableStore(pipeline.data_root)
    registry = ModelRegistry(storage, NETWORK)
    models = {k: registry.load(k) for k in ("alert_scorer", "alert_ranker", "cluster_scorer")}
    day = start
    while day <= end:

        def keep(name: str, frame: pd.DataFrame, day: dt.date = day) -> pd.DataFrame:
            write_parquet(storage, layout.table_partition((NETWORK, name), day), frame)
            return frame

        checked = fetch_and_validate(source, NETWORK, [day], window)[0]
        land(landed, checked)
        assert not verify_landed(landed, NETWORK, day)
        tables = {
            t.name: keep(f"raw_{t.name}", read_landed_table(landed, NETWORK, day, t))
            for t in BATCH_TABLES
        }
        arrived = conform_table(source.fetch_label_events(NETWORK, day, window), GROUND_TRUTH)
        keep("label_events", arrived)
        # the look-back as alert_history reads it: the 180 stored days before, from `start`
        look_back = date_range(day - dt.timedelta(LABEL_HISTORY_DAYS), day)[:-1]
        prior = store.read_days((NETWORK, "raw_alerts"), look_back, HISTORY_ALERT_COLUMNS, start)
        events = store.read_days((NETWORK, "label_events"), look_back, None, start)
        history = keep(
            "alert_history",
            build_alert_history(tables["alerts"]["address"], prior, day, events, start),
        )
        flows = keep(
            "flow_features",
            build_flow_features(
                tables["alerts"]["address"], tables["money_flows"], prior, events, day
            ),
        )
        features = keep(
            "alert_features",
            build_alert_features(
                tables["alerts"], tables["features"], tables["clusters"], history, flows
            ),
        )
        clusters = keep("cluster_features", build_cluster_features(tables["clusters"], features))
        scored = score_frame(models["alert_scorer"], features, "alert_id", CATEGORIES, -1)
        scores = keep("alert_scores", with_alert_context(scored, tables["alerts"]))
        ranks = keep("alert_rankings", rank_frame(models["alert_ranker"], features, CATEGORIES))
        cluster_scores = keep(
            "cluster_scores",
            score_frame(
                models["cluster_scorer"],
                clusters,
                "cluster_id",
                {"cluster_type": CLUSTER_TYPES},
                -1,
            ),
        )
        rescored = score_frame(models["alert_scorer"], features, "alert_id", CATEGORIES, 0)
        results = {
            "tier1": Tier1Validator().validate(scores, tables["alerts"], rescored),
            "tier2": Tier2Validator().validate(scores, read_landed_traps(landed, NETWORK, day)),
            "tier3": Tier3Validator().validate(scores, _labels_of(day, events, arrived)),
        }
        for tier, result in results.items():
            keep(f"{tier}_evaluation", pd.DataFrame([{"details": json.dumps(to_jsonable(result))}]))
        files = {
            "alert_scores.parquet": parquet_bytes(scores),
            "alert_rankings.parquet": parquet_bytes(ranks),
            "cluster_scores.parquet": parquet_bytes(cluster_scores),
        }
        meta = {
            "inputs": read_landed_meta(landed, NETWORK, day),
            "models": {k: m.sha256 for k, m in models.items()},
            "outputs": {name: sha256_hex(data) for name, data in files.items()},
        }
        files["processing_metadata.json"] = json.dumps(meta).encode()
        storage.publish_dir(layout.output_day(NETWORK, day), files)
        day += dt.timedelta(1)


def bench_backfill(trained: Path, work: Path) -> dict:
    """30 days through Dagster vs the plain loop, each in a fresh process and data root."""
    span = [str(d) for d in BACKFILL]
    results = {}
    for mode in ("plain", "dagster"):
        root = _project(work / mode)
        models = layout.models_folder(NETWORK)
        shutil.copytree(trained / "data" / models, root / "data" / models)
        if mode == "dagster":
            seconds = _cli(root, "score", "--network", NETWORK, "--start-date", span[0],
                           "--end-date", span[1])  # fmt: skip
        else:
            began = time.perf_counter()
            subprocess.run(
                [sys.executable, "-m", "benchmarks.bench_scoring", "--plain", str(root), *span],
                env=_env(root),
                check=True,
            )
            seconds = time.perf_counter() - began
        days = (root / "data" / layout.output_network(NETWORK)).iterdir()
        published = len([d for d in days if not d.name.startswith(".")])  # not the versions
        results[mode] = {"seconds": round(seconds, 1), "days_published": published}
    results["ratio"] = round(results["dagster"]["seconds"] / results["plain"]["seconds"], 3)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workdir", default=None, help="keep the data here")
    parser.add_argument(
        "--plain", nargs=3, metavar=("ROOT", "START", "END"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.plain:
        root, start, end = args.plain
        plain_loop(Path(root), dt.date.fromisoformat(start), dt.date.fromisoformat(end))
        return
    with contextlib.ExitStack() as stack:
        work = Path(args.workdir or stack.enter_context(tempfile.TemporaryDirectory()))
        trained = work / "trained"
        prepare(trained)
        print(json.dumps({"day_100k_alerts": bench_day(trained)}), flush=True)
        print(json.dumps({"backfill_30_days": bench_backfill(trained, work)}), flush=True)


if __name__ == "__main__":
    main()
