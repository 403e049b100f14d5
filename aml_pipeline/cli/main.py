"""The ``aml-pipeline`` command line: its commands and arguments, and the entry point."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from aml_pipeline.cli import demo, landing, query, scoring, training, validation
from aml_pipeline.cli.arguments import iso_date, positive
from aml_pipeline.settings import Settings, SettingsError
from aml_pipeline.storage.objects import StorageUnavailable, check_data_root

DESCRIPTION = (
    "Land, train on, score, validate and query the daily AML batches of each network. "
    "Every command materializes assets through Dagster in the persistent instance under "
    "DAGSTER_HOME, so the UI shows what it did."
)


def _days(command: argparse.ArgumentParser) -> None:
    """The required ``--start-date`` and ``--end-date`` of a command over a date range."""
    command.add_argument("--start-date", required=True, type=iso_date)
    command.add_argument("--end-date", required=True, type=iso_date)


def _network_and_days(command: argparse.ArgumentParser) -> None:
    """The required ``--network`` and date range of a command over one network's days."""
    command.add_argument("--network", required=True)
    _days(command)


def build_parser() -> argparse.ArgumentParser:
    """The command line's parser: one sub-command per task."""
    parser = argparse.ArgumentParser(prog="aml-pipeline", description=DESCRIPTION)
    commands = parser.add_subparsers(dest="command", required=True)

    dl = commands.add_parser("download", help="land verified daily batches from a source")
    _network_and_days(dl)
    dl.add_argument(
        "--source",
        default=None,
        help="'simulated' or a directory in the seed/upstream layout (default: AML_BATCH_SOURCE)",
    )
    dl.add_argument(
        "--output-dir", default=None, help="landing directory (default: {AML_DATA_ROOT}/input)"
    )
    dl.set_defaults(func=landing.download)

    tr = commands.add_parser("train", help="train the alert scorer, ranker and cluster scorer")
    _network_and_days(tr)
    tr.add_argument(
        "--as-of",
        type=iso_date,
        default=None,
        help="only labels known on this date count (default: AML_LABELS_AS_OF or today)",
    )
    tr.add_argument(
        "--data-dir", default=None, help="landed batches (default: {AML_DATA_ROOT}/input)"
    )
    tr.add_argument("--output", default=None, help="also copy the alert scorer model here")
    tr.set_defaults(func=training.train)

    im = commands.add_parser(
        "import-transfers", help="build SOT batches from your own transfers (CSV or Parquet)"
    )
    im.add_argument("--transfers", required=True, help="CSV or Parquet transfers file")
    im.add_argument(
        "--labels",
        default=None,
        help="CSV or Parquet of illicit addresses (optional event date column)",
    )
    _network_and_days(im)
    im.add_argument("--output-dir", required=True)
    im.add_argument("--window-days", type=int, default=7)
    im.add_argument("--label-delay-days", type=int, default=30)
    im.set_defaults(func=landing.import_transfers)

    sc = commands.add_parser(
        "score", help="score, rank, explain and publish a date range (a backfill)"
    )
    _network_and_days(sc)
    sc.add_argument(
        "--no-ingest",
        action="store_true",
        help="use the batches already landed instead of fetching them again",
    )
    sc.set_defaults(func=scoring.score)

    va = commands.add_parser(
        "validate", help="A/B test two models with the validators' tiers 1-3 (a report)"
    )
    va.add_argument("--model-a", required=True, help="baseline model file (LightGBM .txt)")
    va.add_argument("--model-b", required=True, help="challenger model file")
    va.add_argument(
        "--test-data", required=True, help="directory of {date}/ batches, e.g. data/input/NET"
    )
    _days(va)
    va.add_argument("--ground-truth", required=True, help="Parquet/CSV with alert_id, is_sar_filed")
    va.add_argument("--output", required=True, help="comparison JSON; the report goes beside it")
    va.add_argument("--resamples", type=int, default=1000, help="paired bootstrap resamples")
    va.add_argument(
        "--budget",
        type=positive,
        default=None,
        help="alerts the analysts work a day (default: the --network's alert_budget, else "
        "AML_ALERT_BUDGET, 100)",
    )
    va.add_argument(
        "--network",
        default=None,
        help="take the daily alert budget and the label maturity from its settings",
    )
    va.add_argument(
        "--label-maturity-days",
        type=int,
        default=None,
        help="days after which a test day's labels are complete enough to judge by (default: "
        "the --network's label_maturity_days, else estimated from the ground truth)",
    )
    va.add_argument("--seed", type=int, default=0)
    va.set_defaults(func=validation.validate)

    pr = commands.add_parser("promote", help="make a model version the champion")
    pr.add_argument("--network", required=True)
    pr.add_argument(
        "--kind", required=True, choices=["alert_scorer", "alert_ranker", "cluster_scorer"]
    )
    pr.add_argument("--version", required=True, help="e.g. 1.1.0")
    pr.add_argument("--reason", default="", help="recorded with the promotion")
    pr.add_argument(
        "--override",
        default="",
        help="promote even if a gate fails; this reason is recorded in the registry",
    )
    pr.set_defaults(func=training.promote)

    se = commands.add_parser("serve", help="serve published results over HTTP (read-only)")
    se.add_argument("--host", default="127.0.0.1")
    se.add_argument("--port", type=int, default=8000)
    se.set_defaults(func=query.serve)

    sq = commands.add_parser(
        "sql", help="query every published and warehouse table with DuckDB SQL (read-only)"
    )
    sq.add_argument("--query", help="SQL to run (default: an interactive prompt)")
    sq.add_argument("--output", type=Path, help="write the result to a .csv or .parquet file")
    sq.add_argument(
        "--timeout",
        type=float,
        default=300.0,
        help="seconds after which a statement is stopped (Ctrl-C stops it too)",
    )
    sq.add_argument(
        "--catalog",
        type=Path,
        help="write a .duckdb file of the views for the DuckDB CLI or any DuckDB client",
    )
    sq.set_defaults(func=query.sql)

    dm = commands.add_parser("demo", help="run the pipeline on the last days of the source")
    dm.add_argument("--days", type=int, default=42, help="days to ingest, score and publish")
    dm.add_argument("--train-days", type=int, default=21, help="the oldest of them, to train on")
    dm.add_argument(
        "--end-date", type=iso_date, default=None, help="last day (default: yesterday, UTC)"
    )
    dm.set_defaults(func=demo.demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``aml-pipeline`` console script."""
    args = build_parser().parse_args(argv)
    try:
        check_data_root(Settings.from_env().data_root)
        return args.func(args)
    except (SettingsError, StorageUnavailable) as exc:
        print(f"settings: {exc}", file=sys.stderr)
        return 2
