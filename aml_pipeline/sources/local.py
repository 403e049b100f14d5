"""Batches read from a local directory in the seed or the upstream layout.

* seed layout: ``{root}/{date}/alerts.parquet, features.parquet, clusters.parquet,
  [money_flows.parquet], [pattern_traps.json], [metadata.json]`` and
  ``{root}/ground_truth.parquet`` (one directory per network).
* upstream layout: ``{root}/snapshots/{network}/{date}/{window_days}/`` with META.json,
  the Parquet files and [pattern_traps.json], and
  ``{root}/ground-truth/{network}/ground_truth.parquet``.

Upstream's undated ``address-labels/`` snapshot is deliberately not used as ground truth:
it has no history, so using it for past dates would leak the future.
"""

from __future__ import annotations

import datetime as dt

import pandas as pd

from aml_pipeline.contract.conform import read_parquet_bytes
from aml_pipeline.contract.schema import (
    BATCH_TABLES,
    GROUND_TRUTH,
    META_FILE,
    PATTERN_TRAPS_FILE,
    SEED_META_FILE,
)
from aml_pipeline.sources.base import BatchNotAvailable, BatchSource, FetchedBatch, labels_of_day
from aml_pipeline.storage.objects import Storage

_BATCH_FILES = (*(t.file for t in BATCH_TABLES), PATTERN_TRAPS_FILE, META_FILE, SEED_META_FILE)


def _parse_date(name: str) -> dt.date | None:
    try:
        return dt.date.fromisoformat(name)
    except ValueError:
        return None


class LocalDirectorySource(BatchSource):
    """Reads batches through a ``Storage`` rooted at the source directory."""

    name = "local"

    def __init__(self, storage: Storage) -> None:
        self.storage = storage

    @property
    def upstream_layout(self) -> bool:
        return self.storage.exists("snapshots")

    def _batch_dir(self, network: str, processing_date: dt.date, window_days: int) -> str:
        if self.upstream_layout:
            return f"snapshots/{network}/{processing_date.isoformat()}/{window_days}"
        return processing_date.isoformat()

    def available_dates(self, network: str, window_days: int) -> list[dt.date]:
        top = f"snapshots/{network}" if self.upstream_layout else ""
        names = self.storage.list_dir(top)
        dates = [d for d in map(_parse_date, names) if d is not None]
        return sorted(
            d for d in dates if self.storage.exists(self._batch_dir(network, d, window_days))
        )

    def fetch(self, network: str, processing_date: dt.date, window_days: int) -> FetchedBatch:
        folder = self._batch_dir(network, processing_date, window_days)
        names = self.storage.list_dir(folder)
        if not names:
            raise BatchNotAvailable(f"no batch at {self.storage!r}/{folder}")
        files, unreadable = {}, {}
        for name in (n for n in names if n in _BATCH_FILES):
            try:
                files[name] = self.storage.read_bytes(f"{folder}/{name}")
            except IsADirectoryError:
                unreadable[name] = "is a directory, not a file"
            except OSError as exc:
                unreadable[name] = f"cannot be read: {exc.strerror or exc}"
        upstream = self.upstream_layout
        return FetchedBatch(
            network=network,
            processing_date=processing_date,
            window_days=window_days,
            files=files,
            origin=f"{self.storage!r}/{folder}",
            meta_file=META_FILE if upstream else SEED_META_FILE,
            meta_required=upstream,
            unreadable=unreadable,
        )

    def labels_key(self, network: str) -> str:
        """Where the layout keeps the network's labels."""
        if self.upstream_layout:
            return f"ground-truth/{network}/{GROUND_TRUTH.file}"
        return GROUND_TRUTH.file

    def labels_problem(self, network: str) -> str | None:
        key = self.labels_key(network)
        if self.storage.exists(key):
            return None
        layout = "upstream" if self.upstream_layout else "seed"
        hint = ""
        if self.upstream_layout and self.storage.exists(GROUND_TRUTH.file):
            hint = f" ({GROUND_TRUTH.file} at the root is not read in the upstream layout)"
        return (
            f"no labels for {network}: looked for {self.storage!r}/{key} (the {layout} "
            f"layout's labels file) and found none{hint}"
        )

    def fetch_label_events(
        self, network: str, label_date: dt.date, window_days: int
    ) -> pd.DataFrame:
        key = self.labels_key(network)
        if not self.storage.exists(key):
            return labels_of_day(pd.DataFrame(columns=GROUND_TRUTH.column_names), label_date)
        return labels_of_day(read_parquet_bytes(self.storage.read_bytes(key)), label_date)
