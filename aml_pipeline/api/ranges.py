"""Questions across days: alert and cluster scores over a date range, an address's history,
the evaluation trend.

A query reads exactly the files of the requested days: the range is validated, crossed
with the published-day listing, and the resulting file list is bound as a parameter of a
constant SQL statement — never a glob over the history, so its cost follows the range.
Each published alert score carries its alert's address and typology (days published before
that answer them as null); labels come from the warehouse's ``label_events`` (by the day
they became known), evaluations from its tier tables.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aml_pipeline.api.database import (
    ALERT_RANKINGS,
    ALERT_SCORES,
    CLUSTER_SCORES,
    MAX_LIMIT,
    MAX_OFFSET,
    TIERS,
    InvalidParameter,
    NotFound,
    ResultsDatabase,
)
from aml_pipeline.storage import layout

#: The longest range one request may span.
MAX_RANGE_DAYS = 366
#: The days a range covers when only its end (or nothing) is given.
DEFAULT_RANGE_DAYS = 30
#: Tier 3 metrics reported in the trend when the tier's details have them.
TREND_METRICS = ("auc_roc", "auc_pr", "brier", "ece")

_SCORES = "FROM read_parquet($scores, union_by_name = true) WHERE score >= $min_score"
#: The alert filters a range query can combine (constant SQL; values are parameters).
_ALERT_FILTERS = {
    (): "",
    ("typology",): " AND typology_type = $typology",
    ("address",): " AND address = $address",
    ("typology", "address"): " AND typology_type = $typology AND address = $address",
}
_ALERTS = {
    key: "SELECT processing_date, alert_id, address, typology_type AS typology, score, "
    f"model_version {_SCORES}{where} "
    "ORDER BY score DESC, processing_date DESC, alert_id LIMIT $limit OFFSET $offset"
    for key, where in _ALERT_FILTERS.items()
}
_ALERTS_COUNT = {
    key: f"SELECT count(*) AS total {_SCORES}{where}" for key, where in _ALERT_FILTERS.items()
}
_ADDRESS = (
    "SELECT s.processing_date, s.alert_id, s.typology_type AS typology, s.score, r.rank, "
    "s.model_version FROM read_parquet($scores, union_by_name = true) s "
    "LEFT JOIN read_parquet($rankings) r USING (alert_id, processing_date) "
    "WHERE s.address = $address ORDER BY s.processing_date DESC, s.alert_id"
)
_LABELS = (
    "SELECT alert_id, processing_date, is_sar_filed, label_date FROM read_parquet($labels) "
    "WHERE list_contains($ids, alert_id)"
)
_CLUSTERS_FROM = "FROM read_parquet($scores) WHERE score >= $min_score"
_CLUSTERS = (
    f"SELECT processing_date, cluster_id, score, model_version {_CLUSTERS_FROM} "
    "ORDER BY score DESC, processing_date DESC, cluster_id LIMIT $limit OFFSET $offset"
)
_CLUSTERS_COUNT = f"SELECT count(*) AS total {_CLUSTERS_FROM}"
_TREND = (
    "SELECT processing_date, model_version, passed, score, details_json "
    "FROM read_parquet($evaluations) "
    "WHERE ($model_version::VARCHAR IS NULL OR model_version = $model_version::VARCHAR) "
    "ORDER BY processing_date"
)


@dataclass(frozen=True)
class DayRange:
    """A validated range of days and the published days inside it, oldest first."""

    network: str
    start: dt.date
    end: dt.date
    days: list[dt.date]


@dataclass(frozen=True)
class RangePage:
    """One page of rows across a range and the number of rows matching the filter."""

    range: DayRange
    total: int
    rows: list[dict[str, Any]]


def _floor(min_score: float | None) -> float:
    """The score filter's bound (every score passes without one)."""
    return float("-inf") if min_score is None else min_score


def _bounded(limit: int, offset: int) -> None:
    if not (1 <= limit <= MAX_LIMIT and 0 <= offset <= MAX_OFFSET):
        raise ValueError("limit or offset out of range")


class RangeQueries:
    """Range, address and trend queries over a ``ResultsDatabase``'s data root."""

    def __init__(self, db: ResultsDatabase) -> None:
        self.db = db

    # -- which files --

    def day_range(
        self, network: str, start: dt.date | None, end: dt.date | None, whole_history: bool = False
    ) -> DayRange:
        """The published days of ``start``..``end``. Without ``end``: up to the newest
        published day; without ``start``: DEFAULT_RANGE_DAYS days up to ``end``, or with
        ``whole_history`` every published day of the MAX_RANGE_DAYS up to it. At most
        MAX_RANGE_DAYS days."""
        network = self.db.check_network(network)
        listed = self.db.listed_days(network)  # newest first, not yet checked
        if end is None:
            end = self.db.latest_date(network) or dt.date.today()
        if start is None:
            span = MAX_RANGE_DAYS if whole_history else DEFAULT_RANGE_DAYS
            # not before the first representable day (an end near 0001-01-01 would overflow)
            start = dt.date.fromordinal(max(1, end.toordinal() - (span - 1)))
            if whole_history and listed:  # from the oldest published day, if before end
                start = max(start, min(listed[-1], end))
        if start > end:
            raise InvalidParameter("start_date", "start_date must not be after end_date")
        if (end - start).days >= MAX_RANGE_DAYS:
            raise InvalidParameter("start_date", f"a range spans at most {MAX_RANGE_DAYS} days")
        inside = [d for d in reversed(listed) if start <= d <= end]
        published = self.db.storage.each(lambda d: self.db.has_day(network, d), inside)
        days = [d for d, there in zip(inside, published, strict=True) if there]
        return DayRange(network, start, end, days)

    def _published(self, span: DayRange, name: str) -> list[Path]:
        """The range's published files ``name``, each day's version resolved once."""
        found = self.db.storage.each(
            lambda day: self.db.local_file(f"{self.db.day_dir(span.network, day)}/{name}"),
            span.days,
        )
        if None in found:
            raise NotFound("the requested results are no longer published")
        return [p for p in found if p is not None]

    def _warehouse(self, span: DayRange, table: str, days: list[dt.date]) -> list[Path]:
        """The network's warehouse partitions of ``table`` for ``days`` that exist."""
        keys = [layout.table_partition((span.network, table), d) for d in days]
        return [p for p in self.db.storage.each(self.db.local_file, keys) if p is not None]

    # -- queries --

    def _page(
        self, span: DayRange, sql: str, count: str, params: dict[str, Any], files: list[Path]
    ) -> RangePage:
        """A page of ``sql``'s rows and ``count``'s total (the filter without paging)."""
        filters = {k: v for k, v in params.items() if k not in ("limit", "offset")}
        total = self.db.rows(count, filters, *files)[0]["total"]
        return RangePage(span, total, self.db.rows(sql, params, *files) if total else [])

    def alert_scores(
        self,
        span: DayRange,
        limit: int = 100,
        offset: int = 0,
        min_score: float | None = None,
        typology: str | None = None,
        address: str | None = None,
    ) -> RangePage:
        """Alert scores across the range, highest first (top-N with ``limit``), filtered
        by score, typology and address."""
        _bounded(limit, offset)
        if not span.days:
            return RangePage(span, 0, [])
        scores = self._published(span, ALERT_SCORES)
        given = {"typology": typology, "address": address}
        key = tuple(name for name, value in given.items() if value is not None)
        params: dict[str, Any] = {
            "scores": [str(p) for p in scores],
            "min_score": _floor(min_score),
            "limit": limit,
            "offset": offset,
            **{name: given[name] for name in key},
        }
        return self._page(span, _ALERTS[key], _ALERTS_COUNT[key], params, scores)

    def address_history(self, span: DayRange, address: str) -> list[dict[str, Any]]:
        """Every alert on ``address`` in the range, newest first, with its score, rank,
        typology, model version and — once known — its label and the day it became known."""
        if not span.days:
            return []
        scores = self._published(span, ALERT_SCORES)
        rankings = self._published(span, ALERT_RANKINGS)
        rows = self.db.rows(
            _ADDRESS,
            {
                "scores": [str(p) for p in scores],
                "rankings": [str(p) for p in rankings],
                "address": address,
            },
            *scores,
            *rankings,
        )
        labels = self._labels(span, [r["alert_id"] for r in rows]) if rows else {}
        for row in rows:
            label = labels.get((row["alert_id"], row["processing_date"]))
            row["is_sar_filed"], row["label_date"] = label or (None, None)
        return rows

    def _labels(self, span: DayRange, ids: list[str]) -> dict[tuple, tuple]:
        """The known labels of ``ids``: label events from the range's first day on."""
        names = self.db.storage.list_dir(layout.table_folder((span.network, "label_events")))
        days = sorted(
            d for d in (layout.partition_day(n) for n in names) if d is not None and d >= span.start
        )
        files = self._warehouse(span, "label_events", days)
        if not files:
            return {}
        found = self.db.rows(_LABELS, {"labels": [str(p) for p in files], "ids": ids}, *files)
        return {
            (r["alert_id"], r["processing_date"]): (r["is_sar_filed"], r["label_date"])
            for r in found
        }

    def cluster_scores(
        self, span: DayRange, limit: int = 100, offset: int = 0, min_score: float | None = None
    ) -> RangePage:
        """Cluster scores across the range, highest first."""
        _bounded(limit, offset)
        if not span.days:
            return RangePage(span, 0, [])
        scores = self._published(span, CLUSTER_SCORES)
        params = {
            "scores": [str(p) for p in scores],
            "min_score": _floor(min_score),
            "limit": limit,
            "offset": offset,
        }
        return self._page(span, _CLUSTERS, _CLUSTERS_COUNT, params, scores)

    def evaluation_trend(
        self, span: DayRange, model_version: str | None = None
    ) -> list[dict[str, Any]]:
        """Per published day and tier: model version, passed, score and the tier 3 metrics
        (AUC-ROC, AUC-PR, Brier, ECE) where present, oldest first."""
        trend = []
        for tier in TIERS:
            files = self._warehouse(span, f"{tier}_evaluation", span.days)
            if not files:
                continue
            params = {"evaluations": [str(p) for p in files], "model_version": model_version}
            for row in self.db.rows(_TREND, params, *files):
                details = json.loads(row.pop("details_json") or "null") or {}
                metrics = details.get("metrics") or {}
                trend.append({"tier": tier, **row, **{m: metrics.get(m) for m in TREND_METRICS}})
        return sorted(trend, key=lambda r: (r["processing_date"], r["tier"]))
