"""The transfers import as an op job (its output is a source directory, not an asset)."""

import datetime as dt
from pathlib import Path
from typing import Any

import dagster as dg

from aml_pipeline.batch_builder.transfers_import import (
    import_transfers,
    read_labels,
    read_transfers,
)


class ImportTransfersConfig(dg.Config):
    """Where the transfers are, which days to build, and where the batches go."""

    transfers: str
    labels: str = ""
    network: str
    start_date: str
    end_date: str
    output_dir: str
    window_days: int = 7
    label_delay_days: int = 30


@dg.op(description="Build upstream-layout SOT batches from a transfers file.")
def import_transfers_op(
    context: dg.OpExecutionContext, config: ImportTransfersConfig
) -> dg.Output[dict]:
    transfers, ignored = read_transfers(Path(config.transfers))
    context.log.info(f"{len(transfers)} transfers read; ignored columns: {ignored}")
    labels = read_labels(Path(config.labels)) if config.labels else None

    def progress(day: dt.date, alerts: int) -> None:
        context.log.info(f"{config.network} {day}: {alerts} alerts")

    result = import_transfers(
        transfers,
        labels,
        config.network,
        dt.date.fromisoformat(config.start_date),
        dt.date.fromisoformat(config.end_date),
        Path(config.output_dir),
        config.window_days,
        config.label_delay_days,
        progress,
    )
    summary: dict[str, Any] = {
        "days": result.days,
        "alerts": result.alerts,
        "positives": result.positives,
        "transfers": len(transfers),
        "ignored_columns": ignored,
    }
    return dg.Output(
        summary,
        metadata={
            k: dg.MetadataValue.json(v) if isinstance(v, list) else v for k, v in summary.items()
        },
    )


@dg.job(description="Turn a transfers file into daily SOT batches (aml-pipeline import-transfers).")
def import_transfers_job() -> None:
    import_transfers_op()
