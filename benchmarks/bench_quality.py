"""Held-out model quality on the live path (``make quality``).

For each data set the held-out days are replayed the way a deployment runs them
(``benchmarks/live_replay.py``): land and train up to a cut with the labels known at the
cut, then one daily ``score`` run per later day with the label cut-off advancing with the
day, so every test alert is scored on the features production computed that day. The
published scores are then evaluated against the labels as eventually known, next to the
detector confidence alone and a logistic regression trained on the same rows and
features and applied to the same live features.

Intervals are 95 % paired-bootstrap intervals over addresses (``models.bootstrap``, the
A/B comparison's too): alerts on one address are not independent. The champion's
registry figures (measured at training on its calibration days, with their own interval)
are set beside the held-out ones: they agree when the two intervals overlap.
With ``--before CHECKOUT`` (e.g. ``git worktree add /tmp/before 87d3540``) the same
replay also runs on that version of the code and its scorer figures are reported beside
the current ones. Data sets: the simulator's demo profile, and AMLSim 10K when
``../shared/extdata/amlsim_10k`` is present.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, roc_auc_score

from aml_pipeline.dates import date_range
from aml_pipeline.defs.resources import PipelineConfig
from aml_pipeline.evaluation.budget import (
    DEFAULT_DAILY_BUDGET,
    RECALL_METRIC,
    daily_top_k,
    precision_at_recall,
    top_k,
)
from aml_pipeline.evaluation.report import plot_reliability
from aml_pipeline.features.alert_features import CATEGORIES, FEATURE_COLUMNS
from aml_pipeline.models.bootstrap import bootstrap_aucs, paired_bootstrap
from aml_pipeline.models.calibration import brier_score, expected_calibration_error, reliability
from aml_pipeline.models.registry import ModelRegistry
from aml_pipeline.models.training import LABEL, labelled, logistic_baseline
from aml_pipeline.settings import Settings
from aml_pipeline.sources.simulated import SimulatedSource
from aml_pipeline.storage import layout
from aml_pipeline.storage.objects import LocalStorage
from aml_pipeline.storage.tables import read_parquet

HERE = Path(__file__).resolve().parent
AMLSIM = HERE.parents[1] / "shared" / "extdata" / "amlsim_10k"
LABEL_HORIZON_DAYS = 120  # labels of the test days arrive within this many days
RESAMPLES = 1000
PARTITIONS_START = "2016-12-01"  # before both data sets


@dataclass(frozen=True)
class DataSet:
    """A replay: the network, its training range up to ``cut`` and the held-out days."""

    name: str
    network: str
    start: dt.date
    cut: dt.date
    end: dt.date
    import_args: tuple[str, ...] = ()

    def replay_args(self, root: Path) -> list[str]:
        return [
            *("--root", str(root), "--network", self.network),
            *("--start", str(self.start), "--cut", str(self.cut), "--end", str(self.end)),
            *("--partitions-start", PARTITIONS_START),
            *self.import_args,
        ]

    @property
    def test_days(self) -> list[dt.date]:
        return date_range(self.cut + dt.timedelta(1), self.end)


def launch(data: DataSet, root: Path, checkout: Path) -> subprocess.Popen:
    """Start the live replay of ``data`` with the code of ``checkout``."""
    env = {**os.environ, "PYTHONPATH": str(checkout)}
    log = (root.parent / f"{root.name}.log").open("w")
    return subprocess.Popen(
        [sys.executable, str(HERE / "live_replay.py"), *data.replay_args(root)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=log,
        text=True,
    )


def finish(process: subprocess.Popen, root: Path) -> dict:
    out, _ = process.communicate()
    if process.returncode != 0:
        raise SystemExit(f"live replay into {root} failed; see {root.parent / root.name}.log")
    return json.loads(out.strip().splitlines()[-1])


def _warehouse(root: Path, network: str, table: str, days: list[dt.date]) -> pd.DataFrame:
    files = [root / "data" / layout.table_partition((network, table), d) for d in days]
    return read_parquet([str(f) for f in files if f.exists()])


def _published(root: Path, network: str, days: list[dt.date]) -> pd.DataFrame:
    files = [root / "data" / layout.output_day(network, d) / "alert_scores.parquet" for d in days]
    missing = [str(f) for f in files if not f.exists()]
    if missing:
        raise SystemExit(f"the replay did not publish {missing[:3]}")
    return read_parquet([str(f) for f in files])[["alert_id", "score"]]


def eventual_labels(root: Path, data: DataSet) -> pd.DataFrame:
    """Every label of the test days as eventually known, from the network's recorded
    source: the simulator's labels of each day (known yet or not), or the label events
    of a local source arriving within LABEL_HORIZON_DAYS of the last test day."""
    settings = Settings.from_env().model_copy(
        update={
            "data_root": str(root / "data"),
            "networks": [data.network],
            "partitions_start": dt.date.fromisoformat(PARTITIONS_START),
        }
    )
    source, window = PipelineConfig.from_settings(settings).source(data.network), 7
    arrivals = date_range(data.cut + dt.timedelta(1), data.end + dt.timedelta(LABEL_HORIZON_DAYS))
    if isinstance(source, SimulatedSource):  # its label events would simulate later days
        return pd.concat([source.labels(data.network, d, window) for d in data.test_days])
    events = pd.concat(
        [source.fetch_label_events(data.network, day, window) for day in arrivals],
        ignore_index=True,
    )
    return events[events["processing_date"].astype(str).isin({str(d) for d in data.test_days})]


def _auc(y: np.ndarray, scores: np.ndarray, days: np.ndarray) -> dict[str, float]:
    """AUCs over the test alerts, and the figures at the daily budget."""
    budget = daily_top_k(y, scores, days, DEFAULT_DAILY_BUDGET)
    return {
        "auc_roc": round(float(roc_auc_score(y, scores)), 4),
        "auc_pr": round(float(average_precision_score(y, scores)), 4),
        **{k: round(v, 4) for k, v in budget.items() if k != "days"},
        RECALL_METRIC: round(precision_at_recall(y, scores), 4),
    }


def _budget_diff(y: np.ndarray, baseline: np.ndarray, scores: np.ndarray, days: np.ndarray):
    """Precision at the daily budget, scores minus baseline: the mean of the per-day
    differences and a 95 % bootstrap interval over the days."""
    frame = pd.DataFrame({"y": y, "a": baseline, "b": scores, "d": days})
    k = DEFAULT_DAILY_BUDGET
    diffs = np.array([
        top_k(g["y"], g["b"], k)["precision"] - top_k(g["y"], g["a"], k)["precision"]
        for _, g in frame.groupby("d")
    ])  # fmt: skip
    draws = np.random.default_rng(0).integers(0, len(diffs), (RESAMPLES, len(diffs)))
    means = diffs[draws].mean(axis=1)
    return [round(float(v), 4) for v in (diffs.mean(), *np.quantile(means, [0.025, 0.975]))]


def _diff(
    y: np.ndarray, baseline: np.ndarray, scores: np.ndarray, groups: np.ndarray, days: np.ndarray
) -> dict:
    """Scores minus baseline: estimate and 95 % interval per metric (AUCs bootstrapped over
    addresses, precision at the budget over days)."""
    result = paired_bootstrap(y, baseline, scores, groups=groups, n_resamples=RESAMPLES)
    return {
        metric: [round(result[metric][k], 4) for k in ("estimate", "ci_low", "ci_high")]
        for metric in ("auc_roc_diff", "auc_pr_diff")
    } | {
        f"precision_at_{DEFAULT_DAILY_BUDGET}_diff": _budget_diff(y, baseline, scores, days),
        "n_addresses": result["n_blocks"],
    }


def calibration(y: np.ndarray, scores: np.ndarray) -> dict:
    """How well published scores read as probabilities on days the model never saw: Brier
    score, expected calibration error, the mean score against the eventual SAR rate, and
    the reliability table."""
    return {
        "brier": round(brier_score(y, scores), 4),
        "ece": round(expected_calibration_error(y, scores), 4),
        "mean_score": round(float(scores.mean()), 4),
        "eventual_sar_rate": round(float(y.mean()), 4),
        "mean_score_over_sar_rate": round(float(scores.mean() / y.mean()), 3),
        "reliability": reliability(y, scores),
    }


def self_report(root: Path, network: str) -> dict:
    """What the champion alert scorer's registry entry says of it: its validation figures
    with their intervals, and the days and labels they rest on."""
    registry = ModelRegistry(LocalStorage(root / "data"), network)
    entry = registry.entry("alert_scorer", registry.champions()["alert_scorer"])
    metrics = entry["metrics"]
    wanted = ("auc_roc", "auc_pr", "brier", "ece", "mean_score", "sar_rate")
    split = entry.get("validation") or {}
    return {
        "version": entry["version"],
        "valid_days": entry.get("valid_days"),
        "split": split.get("split"),
        "calibration_days": len(split.get("calibration_days", [])),
        "labels_through": entry.get("labels_through"),
        "validation_labels": entry.get("validation_labels"),
        **{k: round(metrics[k], 4) for k in wanted if k in metrics},
        "intervals": entry.get("validation_intervals"),
    }


def agreement(held_out: dict, registry: dict) -> dict:
    """Per AUC: the held-out figure and the registry's, each with its 95 % interval, and
    whether they agree (the two intervals overlap)."""
    out = {}
    for metric in ("auc_roc", "auc_pr"):
        ours, theirs = held_out[metric], (registry.get("intervals") or {}).get(metric)
        out[metric] = {
            "held_out": [round(v, 4) for v in ours],
            "registry": [round(v, 4) for v in theirs] if theirs else None,
            "agree": bool(theirs and theirs[1] <= ours[2] and ours[1] <= theirs[2]),
        }
    return out


def evaluate(data: DataSet, root: Path, before: Path | None, plots: Path | None = None) -> dict:
    """Figures of the scorer, the regression and the confidence on the replayed days; the
    scorer's calibration there beside its registry's self-report, and with ``plots`` its
    reliability diagram written there."""
    network, train_days = data.network, date_range(data.start, data.cut)
    train = labelled(
        _warehouse(root, network, "alert_features", train_days),
        _warehouse(root, network, "label_events", train_days),
        data.cut,
    )
    truth = eventual_labels(root, data)
    features = _warehouse(root, network, "alert_features", data.test_days)
    test = labelled(features, truth, data.end + dt.timedelta(LABEL_HORIZON_DAYS))
    test = test.merge(_published(root, network, data.test_days), on="alert_id", validate="1:1")
    y, groups = test[LABEL].to_numpy(), test["address"].to_numpy()
    days = test["processing_date"].astype(str).to_numpy()
    scores = {
        "alert_scorer": test["score"].to_numpy(),
        "logistic_regression": logistic_baseline(
            train[list(FEATURE_COLUMNS)],
            train[LABEL].to_numpy(),
            test[list(FEATURE_COLUMNS)],
            list(CATEGORIES),
            {c: len(v) for c, v in CATEGORIES.items()},
        ),
        "confidence_only": test["alert_confidence_score"].to_numpy(),
    }
    report = {
        "data": data.name,
        "train_days": [str(data.start), str(data.cut)],
        "test_days": [str(data.test_days[0]), str(data.end)],
        "train_rows": len(train),
        "train_positives": int(train[LABEL].sum()),
        "test_rows": len(test),
        "test_positives": int(y.sum()),
        **{name: _auc(y, s, days) for name, s in scores.items()},
        "alert_scorer_minus_logistic_regression": _diff(
            y, scores["logistic_regression"], scores["alert_scorer"], groups, days
        ),
        "alert_scorer_minus_confidence_only": _diff(
            y, scores["confidence_only"], scores["alert_scorer"], groups, days
        ),
        "alert_scorer_calibration": calibration(y, scores["alert_scorer"]),
        "registry_self_report": self_report(root, network),
    }
    held_out = bootstrap_aucs(y, scores["alert_scorer"], groups=groups, n_resamples=RESAMPLES)
    report["registry_agrees"] = agreement(held_out, report["registry_self_report"])
    if plots is not None:
        plots.mkdir(parents=True, exist_ok=True)
        path = plots / f"{network}_reliability.png"
        table = {"alert scorer, held-out days": report["alert_scorer_calibration"]}
        plot_reliability(path, table, f"{data.name}: held-out days, eventual labels")
        report["reliability_png"] = str(path)
    if before is not None:
        old = test[["alert_id"]].merge(
            _published(before, network, data.test_days), on="alert_id", how="left"
        )
        if old["score"].isna().any():
            raise SystemExit("the two replays scored different alerts; compare like with like")
        report["before"] = {
            "alert_scorer": _auc(y, old["score"].to_numpy(), days),
            "after_minus_before": _diff(
                y, old["score"].to_numpy(), scores["alert_scorer"], groups, days
            ),
        }
    return report


def data_sets() -> list[DataSet]:
    day = dt.date.fromisoformat
    sets = [DataSet("simulator demo profile", "ethereum", day("2025-01-01"),
                    day("2025-04-09"), day("2025-04-24"))]  # fmt: skip
    if AMLSIM.is_dir():
        sets.append(
            DataSet(
                "AMLSim 10K",
                "amlsim",
                dt.date(2017, 1, 1),
                dt.date(2018, 4, 30),
                dt.date(2018, 12, 21),
                import_args=(
                    *("--transfers", str(AMLSIM / "transactions.csv.gz")),
                    *("--labels", str(AMLSIM / "sar_accounts.csv")),
                ),
            )
        )
    return sets


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workdir", default=None, help="keep the replays here (default: a "
                        "temporary directory, removed at the end)")  # fmt: skip
    parser.add_argument("--before", default=None, help="also replay this checkout's code")
    parser.add_argument("--only", default=None, help="only the data set whose name has this")
    parser.add_argument("--plots", default="quality_plots", help="where the reliability "
                        "diagrams go (one PNG per data set)")  # fmt: skip
    args = parser.parse_args()
    with contextlib.ExitStack() as stack:
        work = Path(args.workdir or stack.enter_context(tempfile.TemporaryDirectory()))
        work.mkdir(parents=True, exist_ok=True)
        for data in data_sets():
            if args.only and args.only.lower() not in data.name.lower():
                continue
            roots = {"after": work / f"{data.network}_after"}
            if args.before:
                roots["before"] = work / f"{data.network}_before"
            checkouts = {"after": HERE.parent, "before": Path(args.before or HERE.parent)}
            running = {k: launch(data, r, checkouts[k]) for k, r in roots.items()}
            replays = {k: finish(p, roots[k]) for k, p in running.items()}
            report = evaluate(data, roots["after"], roots.get("before"), Path(args.plots))
            report["replay_s"] = {k: r["steps_s"] for k, r in replays.items()}
            print(json.dumps(report), flush=True)


if __name__ == "__main__":
    main()
