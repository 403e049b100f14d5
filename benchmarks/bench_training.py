"""Training benchmark (``make bench``): 1,000,000 alerts x the alert feature columns.

The rows are real simulated alert features (small profile) resampled with jitter to one
million and spread over 100 days, so the time split, categoricals and missing values
look like production (resampled duplicates make validation scores meaningless here, so
none are reported). The pipeline's ``train_binary`` (split, early stopping, baselines,
data hash) is timed next to a bare ``lightgbm.train`` with the same parameters and number
of rounds on the same matrix; each runs in its own process for an honest peak RSS.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import resource
import subprocess
import sys
import time

import numpy as np
import pandas as pd

ROWS = 1_000_000
DAYS = 100


def _matrix() -> pd.DataFrame:
    from aml_pipeline.contract.conform import conform_table, read_parquet_bytes
    from aml_pipeline.contract.schema import ALERTS, CLUSTERS, FEATURES
    from aml_pipeline.features.alert_features import (
        CATEGORIES,
        FEATURE_COLUMNS,
        build_alert_features,
    )
    from aml_pipeline.simulator.profiles import SMALL
    from aml_pipeline.sources.simulated import SimulatedSource

    source = SimulatedSource(SMALL, dt.date(2025, 1, 1), today=lambda: dt.date(2025, 9, 1))
    frames = []
    for i in range(6):
        day = dt.date(2025, 3, 1) + dt.timedelta(i)
        files = source.fetch("ethereum", day, 7).files
        t = {
            s.name: conform_table(read_parquet_bytes(files[s.file]), s)
            for s in (ALERTS, FEATURES, CLUSTERS)
        }
        f = build_alert_features(t["alerts"], t["features"], t["clusters"])
        frames.append(f.merge(source.labels("ethereum", day, 7)[["alert_id", "is_sar_filed"]]))
    seed = pd.concat(frames, ignore_index=True)
    rng = np.random.default_rng(0)
    rows = seed.iloc[rng.integers(0, len(seed), ROWS)].reset_index(drop=True)
    for column in FEATURE_COLUMNS:  # in place, one column at a time, to keep memory low
        if column not in CATEGORIES:
            rows[column] *= rng.normal(1.0, 0.05, ROWS)
    rows["processing_date"] = [
        dt.date(2025, 1, 1) + dt.timedelta(int(d)) for d in np.sort(rng.integers(0, DAYS, ROWS))
    ]
    rows["alert_id"] = [f"a{i:07d}" for i in range(ROWS)]
    rows["is_sar_filed"] = rows["is_sar_filed"].astype(int)
    return rows


def run(mode: str) -> dict:
    import lightgbm as lgb

    from aml_pipeline.features.alert_features import (
        CATEGORIES,
        FEATURE_COLUMNS,
        MONOTONE,
    )
    from aml_pipeline.models.splits import split_by_maturity
    from aml_pipeline.models.training import TrainParams, train_binary

    frame = _matrix()
    params = TrainParams(max_rounds=300, early_stopping_rounds=300)
    vocab = {c: len(v) for c, v in CATEGORIES.items()}
    start = time.perf_counter()
    if mode == "pipeline":
        model = train_binary(
            frame,
            list(FEATURE_COLUMNS),
            list(CATEGORIES),
            params,
            "alert_confidence_score",
            vocab,
            MONOTONE,
        )
        rounds = model.booster.num_trees()
    else:
        train = split_by_maturity(frame, params.valid_fraction).train
        y = frame["is_sar_filed"].to_numpy()
        pos = y[train].sum()
        lgb_params = params.lgb_params(
            "binary",
            scale_pos_weight=(train.sum() - pos) / pos,
            monotone_constraints=[MONOTONE.get(f, 0) for f in FEATURE_COLUMNS],
        )
        booster = lgb.train(
            lgb_params,
            lgb.Dataset(
                frame.loc[train, list(FEATURE_COLUMNS)],
                y[train],
                categorical_feature=list(CATEGORIES),
            ),
            num_boost_round=params.max_rounds,
        )
        rounds = booster.num_trees()
    return {
        "mode": mode,
        "rows": len(frame),
        "features": len(FEATURE_COLUMNS),
        "seconds": round(time.perf_counter() - start, 1),
        "trees": rounds,
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mode", choices=["pipeline", "bare"])
    args = parser.parse_args()
    if args.mode:
        print(json.dumps(run(args.mode)))
        return
    for mode in ("bare", "pipeline"):
        proc = subprocess.run(
            [sys.executable, "-m", "benchmarks.bench_training", "--mode", mode],
            capture_output=True,
            text=True,
            check=True,
        )
        print(f"training {proc.stdout.strip()}", flush=True)


if __name__ == "__main__":
    main()
