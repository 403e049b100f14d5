"""The interface every batch source implements."""

from __future__ import annotations

import abc
import datetime as dt
from dataclasses import dataclass, field

import pandas as pd

from aml_pipeline.contract.conform import conform_table
from aml_pipeline.contract.schema import GROUND_TRUTH, META_FILE


class BatchNotAvailable(LookupError):
    """The source has no batch for that network, date and window (yet)."""


@dataclass(frozen=True)
class FetchedBatch:
    """A batch as a source delivered it: file name -> bytes, not yet validated."""

    network: str
    processing_date: dt.date
    window_days: int
    files: dict[str, bytes]
    origin: str
    meta_file: str = META_FILE
    meta_required: bool = True
    #: Batch files present but not readable as files, with the reason (e.g. a directory).
    unreadable: dict[str, str] = field(default_factory=dict)


class BatchSource(abc.ABC):
    """A place daily batches and their ground-truth labels can be fetched from."""

    name: str = "abstract"

    @abc.abstractmethod
    def available_dates(self, network: str, window_days: int) -> list[dt.date]:
        """Dates whose batch can be fetched now, ascending."""

    @abc.abstractmethod
    def fetch(self, network: str, processing_date: dt.date, window_days: int) -> FetchedBatch:
        """The batch's files; raises ``BatchNotAvailable`` when there is none."""

    @abc.abstractmethod
    def fetch_label_events(
        self, network: str, label_date: dt.date, window_days: int
    ) -> pd.DataFrame:
        """The labels that became known on ``label_date`` (``label_date`` equal to it), for
        alerts of any earlier day; raises ``BatchNotAvailable`` while that day is not over.

        Columns as ``contract.schema.GROUND_TRUTH``; an empty frame when none arrived.
        """

    def labels_problem(self, network: str) -> str | None:
        """Why the source can serve no labels for ``network`` at all (None when it can)."""
        return None


def labels_of_day(labels: pd.DataFrame, label_date: dt.date) -> pd.DataFrame:
    """Rows of ``labels`` that became known on ``label_date``, conformed and sorted."""
    labels = conform_table(labels, GROUND_TRUTH)
    keep = labels["label_date"] == label_date
    return labels[keep].sort_values("alert_id", kind="stable").reset_index(drop=True)
