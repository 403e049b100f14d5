"""Held-out model quality against two baselines (``make quality``).

For each data set the pipeline lands a date range, computes features, and trains the
three models on the days up to a cut with only the labels known at the cut. The alert
scorer is then evaluated on the days after the cut (all their labels, as eventually
known) next to the detector confidence alone and a logistic regression trained on the
same rows and features. Data sets: the simulator's demo profile, and AMLSim 10K imported
with ``import-transfers`` when ``../shared/extdata/amlsim_10k`` is present.

The scorer-minus-regression differences come with a 95 % interval from a bootstrap that
resamples addresses, not alerts: alerts on one address are far from independent.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import tempfile
import time
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, roc_auc_score

from aml_pipeline.definitions import MODEL_ASSETS, build_definitions
from aml_pipeline.features.alert_features import CATEGORIES, FEATURE_COLUMNS
from aml_pipeline.io_manager import read_parquet
from aml_pipeline.models.registry import ModelRegistry
from aml_pipeline.models.training import LABEL, labelled, logistic_baseline
from aml_pipeline.runs import run_range
from aml_pipeline.settings import Settings
from aml_pipeline.storage import LocalStorage
from aml_pipeline.transfers_import import import_transfers, read_labels, read_transfers

AMLSIM = Path(__file__).resolve().parents[1].parent / "shared" / "extdata" / "amlsim_10k"


def _read(root: Path, network: str, table: str, days: list[dt.date]):
    return read_parquet([str(root / "warehouse" / network / table / f"{d}.parquet") for d in days])


def address_bootstrap(
    y: np.ndarray,
    scores: np.ndarray,
    baseline: np.ndarray,
    addresses: np.ndarray,
    n_resamples: int = 500,
    seed: int = 0,
) -> dict[str, list[float]]:
    """95 % percentile intervals of AUC-ROC and AUC-PR of ``scores`` minus ``baseline``,
    resampling whole addresses with replacement (resamples of one class are skipped)."""
    codes, uniques = pd.factorize(addresses)
    members = [np.flatnonzero(codes == c) for c in range(len(uniques))]
    rng = np.random.default_rng(seed)
    diffs = []
    for _ in range(n_resamples):
        rows = np.concatenate([members[c] for c in rng.integers(0, len(members), len(members))])
        if y[rows].min() == y[rows].max():
            continue
        diffs.append(
            [
                metric(y[rows], scores[rows]) - metric(y[rows], baseline[rows])
                for metric in (roc_auc_score, average_precision_score)
            ]
        )
    low, high = np.percentile(np.array(diffs), [2.5, 97.5], axis=0)
    return {
        "auc_roc_diff_ci95": [round(float(low[0]), 4), round(float(high[0]), 4)],
        "auc_pr_diff_ci95": [round(float(low[1]), 4), round(float(high[1]), 4)],
    }


def evaluate(name: str, settings: Settings, start: dt.date, cut: dt.date, end: dt.date) -> dict:
    network, root = settings.networks[0], Path(settings.data_root)
    defs = build_definitions(settings)
    began = time.perf_counter()
    with dg.instance_for_test() as instance:
        for job in ("ingestion_job", "features_job"):
            assert run_range(defs.resolve_job_def(job), instance, start, end) is None, job
        config = {"start_date": str(start), "end_date": str(cut), "as_of": str(cut)}
        ops = {f"{network}__{kind}": {"config": config} for kind in MODEL_ASSETS}
        assert (
            defs.resolve_job_def("training_job")
            .execute_in_process(instance=instance, run_config={"ops": ops})
            .success
        )
    days = lambda a, b: [a + dt.timedelta(i) for i in range((b - a).days + 1)]  # noqa: E731
    train_days, test_days = days(start, cut), days(cut + dt.timedelta(1), end)
    late = dt.date(2100, 1, 1)
    train = labelled(
        _read(root, network, "alert_features", train_days),
        _read(root, network, "ground_truth", train_days),
        cut,
    )
    test = labelled(
        _read(root, network, "alert_features", test_days),
        _read(root, network, "ground_truth", test_days),
        late,
    )
    registry = ModelRegistry(LocalStorage(root), network)
    model = registry.load("alert_scorer", registry.entries("alert_scorer")[-1]["version"])
    y = test[LABEL].to_numpy()
    scores = {
        "alert_scorer": model.booster.predict(test[model.features]),
        "confidence_only": test["alert_confidence_score"].to_numpy(),
        "logistic_regression": logistic_baseline(
            train[list(FEATURE_COLUMNS)],
            train[LABEL].to_numpy(),
            test[list(FEATURE_COLUMNS)],
            list(CATEGORIES),
            {c: len(v) for c, v in CATEGORIES.items()},
        ),
    }
    return {
        "data": name,
        "train_days": [str(start), str(cut)],
        "test_days": [str(test_days[0]), str(end)],
        "train_rows": len(train),
        "train_positives": int(train[LABEL].sum()),
        "test_rows": len(test),
        "test_positives": int(y.sum()),
        **{f"{k}_auc_roc": round(float(roc_auc_score(y, s)), 4) for k, s in scores.items()},
        **{
            f"{k}_auc_pr": round(float(average_precision_score(y, s)), 4) for k, s in scores.items()
        },
        "alert_scorer_minus_logistic_regression": address_bootstrap(
            y, scores["alert_scorer"], scores["logistic_regression"], test["address"].to_numpy()
        ),
        "seconds": round(time.perf_counter() - began, 1),
    }


def _settings(root: Path, network: str, **extra: str) -> Settings:
    values = {
        "networks": [network],
        "window_days": 7,
        "data_root": str(root),
        "batch_source": "simulated",
        "source_dir": "",
        "sim_profile": "demo",
        "sim_seed": 0,
        "partitions_start": "2016-12-01",
        "labels_as_of": "2100-01-01",
    }
    return Settings(**{**values, **extra})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--workdir",
        default=None,
        help="keep the landed data, features and models here (default: a "
        "temporary directory, removed at the end)",
    )
    args = parser.parse_args()
    with contextlib.ExitStack() as stack:
        root = Path(args.workdir or stack.enter_context(tempfile.TemporaryDirectory()))
        sim = _settings(root / "sim", "ethereum")
        report = evaluate(
            "simulator demo profile",
            sim,
            dt.date(2025, 3, 1),
            dt.date(2025, 4, 9),
            dt.date(2025, 4, 24),
        )
        print(json.dumps(report), flush=True)
        if AMLSIM.is_dir():
            transfers, _ = read_transfers(AMLSIM / "transactions.csv.gz")
            labels = read_labels(AMLSIM / "sar_accounts.csv")
            source = root / "amlsim_sot"
            import_transfers(
                transfers, labels, "amlsim", dt.date(2017, 1, 1), dt.date(2018, 12, 21), source
            )
            settings = _settings(
                root / "amlsim", "amlsim", batch_source="local", source_dir=str(source)
            )
            report = evaluate(
                "AMLSim 10K",
                settings,
                dt.date(2017, 1, 1),
                dt.date(2018, 4, 30),
                dt.date(2018, 12, 21),
            )
            print(json.dumps(report), flush=True)


if __name__ == "__main__":
    main()
