"""The record of failed runs: one row per run (network, days, step, the error's first
line), kept as Parquet under ``monitoring/run_failures/{date}.parquet`` by the day the run
failed, which the API serves; and the optional webhook told of each.

Plain functions with no Dagster import: the run-failure sensor and the command line both
``record`` (a run once however often it is reported), then ``tell`` the webhook.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import urllib.request
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.parquet as pq

from aml_pipeline.storage import layout
from aml_pipeline.storage.objects import Storage

#: Characters of an error kept (its first line only).
ERROR_CHARS = 300
WEBHOOK_TIMEOUT_S = 5

SCHEMA = pa.schema(
    [
        ("failed_at", pa.timestamp("us", tz="UTC")),
        ("run_id", pa.string()),
        ("job_name", pa.string()),
        ("network", pa.string()),
        ("first_day", pa.date32()),
        ("last_day", pa.date32()),
        ("step", pa.string()),
        ("error", pa.string()),
    ]
)


@dataclass(frozen=True)
class RunFailure:
    """One failed run: ``network`` is comma-separated for a run over several networks and
    empty when it touched none; ``step`` is empty when the run failed outside a step (its
    process died, its configuration was refused)."""

    failed_at: dt.datetime
    run_id: str
    job_name: str
    network: str
    first_day: dt.date | None
    last_day: dt.date | None
    step: str
    error: str

    def days(self) -> str:
        """``D``, ``D1..D2`` or empty."""
        if self.first_day is None or self.last_day is None:
            return ""
        if self.first_day == self.last_day:
            return self.first_day.isoformat()
        return f"{self.first_day}..{self.last_day}"

    def summary(self) -> str:
        """One line for a chat message or a log."""
        parts = [p for p in (self.network, self.days(), self.step and f"step {self.step}") if p]
        where = f" ({', '.join(parts)})" if parts else ""
        return f"{self.job_name} run {self.run_id} failed{where}: {self.error}"


def first_line(text: str) -> str:
    """The first non-empty line of ``text``, cut to ERROR_CHARS."""
    line = next((part.strip() for part in text.splitlines() if part.strip()), "")
    return line if len(line) <= ERROR_CHARS else line[: ERROR_CHARS - 3] + "..."


def _rows(storage: Storage, key: str) -> list[dict]:
    if not storage.exists(key):
        return []
    return pq.read_table(storage.read_path(key)).to_pylist()


def record(storage: Storage, failure: RunFailure) -> bool:
    """Add ``failure`` to its day's file unless its run is there; whether it was added."""
    key = layout.run_failures_day(failure.failed_at.date())
    with storage.locked(key):
        rows = _rows(storage, key)
        if any(row["run_id"] == failure.run_id for row in rows):
            return False
        rows.append(dataclasses.asdict(failure))
        rows.sort(key=lambda row: (row["failed_at"], row["run_id"]))
        with storage.writing(key) as tmp:
            pq.write_table(pa.Table.from_pylist(rows, SCHEMA), tmp)
    return True


def notify(webhook: str, failure: RunFailure) -> None:
    """POST ``failure`` as JSON to ``webhook`` (a ``text`` line, as chat webhooks expect,
    and the fields)."""
    body = {"text": failure.summary(), **dataclasses.asdict(failure)}
    request = urllib.request.Request(
        webhook,
        data=json.dumps(body, default=str).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=WEBHOOK_TIMEOUT_S) as answer:
        answer.read()


def tell(webhook: str, failure: RunFailure) -> str | None:
    """``notify`` ``webhook`` if set; why it could not be told (never raised: the endpoint
    is the operator's, whatever it answers), else None."""
    if not webhook:
        return None
    try:
        notify(webhook, failure)
    except Exception as exc:  # a webhook must never fail the caller
        return f"the failure webhook was not reached: {type(exc).__name__}: {exc}"
    return None
