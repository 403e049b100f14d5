"""Every path convention under the data root, in one place.

Keys are relative to the data root (``AML_DATA_ROOT``) and use ``/``; the storage layer
(``storage.objects``) turns them into files. Nothing else spells out a folder name.

    input/{network}/NETWORK.json                 the network's recorded source
    input/{network}/{date}/                      a landed batch, as the SOT sent it
    warehouse/{network}/{table}/{date}.parquet   one partition of a daily table
    output/{network}/{date}/                     a published day
    trained_models/{network}/                    model files and model_metadata.json
    validation_results/{network}/                per-model evaluations, days/, A/B reports
    monitoring/run_failures/{date}.parquet       the runs that failed that day
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

INPUT = "input"
WAREHOUSE = "warehouse"
OUTPUT = "output"
MODELS = "trained_models"
VALIDATION = "validation_results"
MONITORING = "monitoring"


def _day(day: dt.date | str) -> str:
    return day.isoformat() if isinstance(day, dt.date) else dt.date.fromisoformat(day).isoformat()


def landed_day(network: str, day: dt.date) -> str:
    """A landed batch's folder, relative to the input root (``input/``)."""
    return f"{network}/{_day(day)}"


def network_record(network: str) -> str:
    """The network's source record, relative to the input root."""
    return f"{network}/NETWORK.json"


def table_folder(table: Sequence[str]) -> str:
    """The folder of a warehouse table, ``table`` being its asset key path
    (``[network, name]``)."""
    return "/".join([WAREHOUSE, *table])


def table_partition(table: Sequence[str], day: dt.date | str | None) -> str:
    """One partition's Parquet file (``data.parquet`` for an unpartitioned table)."""
    return f"{table_folder(table)}/{'data' if day is None else _day(day)}.parquet"


def output_network(network: str) -> str:
    """The folder holding a network's published days."""
    return f"{OUTPUT}/{network}"


def output_day(network: str, day: dt.date | str) -> str:
    """A published day's folder."""
    return f"{output_network(network)}/{_day(day)}"


def models_folder(network: str) -> str:
    """The network's model files and registry."""
    return f"{MODELS}/{network}"


def validation_folder(network: str) -> str:
    """The network's evaluation results."""
    return f"{VALIDATION}/{network}"


def day_evaluations(network: str) -> str:
    """The folder of the network's per-day evaluation records."""
    return f"{validation_folder(network)}/days"


def day_evaluation(network: str, day: dt.date | str) -> str:
    """A day's three tiers and total."""
    return f"{day_evaluations(network)}/{_day(day)}.json"


def model_evaluation(network: str, version: str) -> str:
    """Every evaluated day of one model version, with a summary."""
    return f"{validation_folder(network)}/model_v{version}_evaluation.json"


def comparison_folder(network: str, version_a: str, version_b: str) -> str:
    """An A/B comparison of two registered versions."""
    return f"{validation_folder(network)}/v{version_a}_vs_v{version_b}"


def run_failures_folder() -> str:
    """The folder of the failed-run record, one Parquet file per day runs failed."""
    return f"{MONITORING}/run_failures"


def run_failures_day(day: dt.date) -> str:
    """The failed-run record of the runs that failed on ``day``."""
    return f"{run_failures_folder()}/{_day(day)}.parquet"


def is_day(name: str) -> bool:
    """Whether a file or folder name (without suffix) is a ``YYYY-MM-DD`` day."""
    try:
        dt.date.fromisoformat(name)
    except ValueError:
        return False
    return len(name) == 10


def partition_day(name: str) -> dt.date | None:
    """The day of a daily partition's file name (``2025-01-01.parquet``), else None."""
    stem = name.removesuffix(".parquet")
    return dt.date.fromisoformat(stem) if name.endswith(".parquet") and is_day(stem) else None
