"""Read-only DuckDB query layer over the pipeline's published Parquet results.

The seed's hybrid approach: the Parquet files stay the source of truth and DuckDB queries
them in place, nothing is imported or copied. Unlike the seed's views over a glob of every
day, a query for one day resolves that day's file from the validated network and date and
reads only it, so its cost does not grow with history, and a newly published day is
visible at once (dates are listed from the directories on every call, nothing is cached).

The data root is a local directory or an ``s3://`` URL: files are reached through the
storage layer, whose ``read_path`` is the file itself on a local disk and a copy cached per
object version on an object store (a published day's version never changes, so a day is
downloaded once). Every SQL statement is a constant; values and file paths are bound
parameters. The DuckDB connection is sandboxed to the storage's ``scan_dir`` (no other
file, no extension loading, configuration locked) and each call runs on its own cursor, so
request threads never share one.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb

from aml_pipeline.models.registry import RegistryUnreadable, parse_registry
from aml_pipeline.storage import layout
from aml_pipeline.storage.objects import storage_at

NETWORK_RE = re.compile(r"[a-z0-9_]+")
DATE_RE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
LATEST = "latest"
MAX_LIMIT = 10_000
MAX_OFFSET = 1_000_000_000
TIERS = ("tier1", "tier2", "tier3")

ALERT_SCORES = "alert_scores.parquet"
ALERT_RANKINGS = "alert_rankings.parquet"
CLUSTER_SCORES = "cluster_scores.parquet"
MODEL_METADATA = "model_metadata.json"

_MIN_SCORE = "($min_score::DOUBLE IS NULL OR score >= $min_score::DOUBLE)"
_MIN_RANKER_SCORE = "($min_score::DOUBLE IS NULL OR ranker_score >= $min_score::DOUBLE)"
_PAGES = {
    ALERT_SCORES: (
        "SELECT alert_id, score, model_version, latency_ms FROM read_parquet($path) "
        f"WHERE {_MIN_SCORE} ORDER BY score DESC, alert_id LIMIT $limit OFFSET $offset"
    ),
    ALERT_RANKINGS: (
        "SELECT alert_id, rank, ranker_score, model_version FROM read_parquet($path) "
        f"WHERE {_MIN_RANKER_SCORE} ORDER BY rank, alert_id LIMIT $limit OFFSET $offset"
    ),
    CLUSTER_SCORES: (
        "SELECT cluster_id, score, model_version, explain_json FROM read_parquet($path) "
        f"WHERE {_MIN_SCORE} ORDER BY score DESC, cluster_id LIMIT $limit OFFSET $offset"
    ),
}
_COUNTS = {
    name: "SELECT count(*) AS total FROM read_parquet($path) WHERE "
    + (_MIN_RANKER_SCORE if name == ALERT_RANKINGS else _MIN_SCORE)
    for name in (ALERT_SCORES, ALERT_RANKINGS, CLUSTER_SCORES)
}
_ALERT = (
    "SELECT alert_id, score, model_version, latency_ms, explain_json, "
    "(SELECT min(rank) FROM read_parquet($rankings) WHERE alert_id = $alert_id) AS rank "
    "FROM read_parquet($scores) WHERE alert_id = $alert_id LIMIT 1"
)
_RUN_FAILURES = (
    "SELECT failed_at, run_id, job_name, network, first_day, last_day, step, error "
    "FROM read_parquet($paths) WHERE $network::VARCHAR IS NULL "
    "OR list_contains(string_split(network, ','), $network::VARCHAR) "
    "ORDER BY failed_at DESC, run_id DESC LIMIT $limit"
)
_EVALUATION = (
    "SELECT model_version, passed, score, details_json FROM read_parquet($path) "
    "WHERE processing_date = $day"
)


def _explanation(text: str | None) -> dict[str, Any] | None:
    """A published explain_json (null when explanations did not cover the row)."""
    return None if text is None else json.loads(text)


class InvalidParameter(ValueError):
    """A malformed or unconfigured network or date (the API answers 422)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


class NotFound(LookupError):
    """No published data for the request (the API answers 404)."""


class Unavailable(RuntimeError):
    """Stored data the request needs is unreadable (the API answers 503)."""


@dataclass(frozen=True)
class Page:
    """One page of a day's rows and the number of rows matching the filter."""

    total: int
    rows: list[dict[str, Any]]


def parse_date(text: str, field: str = "date") -> dt.date:
    """Parse a strict ``YYYY-MM-DD`` calendar date, else raise ``InvalidParameter``."""
    if not DATE_RE.fullmatch(text):
        raise InvalidParameter(
            field, f"{field} must be YYYY-MM-DD" + (" or 'latest'" if field == "date" else "")
        )
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise InvalidParameter(field, f"{field} is not a valid calendar date") from None


def _day_file_name(name: str) -> bool:
    """Whether ``name`` is a day's Parquet file (``YYYY-MM-DD.parquet``)."""
    return name.endswith(".parquet") and _day_dir_name(name.removesuffix(".parquet")) is not None


def _day_dir_name(name: str) -> dt.date | None:
    """The date a directory named ``YYYY-MM-DD`` stands for (staging dirs and others: None)."""
    try:
        return parse_date(name)
    except InvalidParameter:
        return None


class ResultsDatabase:
    """Queries over ``{data_root}/output``, ``warehouse`` evaluations and ``trained_models``."""

    def __init__(self, data_root: str | os.PathLike[str], networks: Sequence[str]) -> None:
        root = str(data_root)
        self.data_root = root if root.startswith("s3://") else str(Path(root).resolve())
        self.storage = storage_at(self.data_root)
        for network in networks:
            if not NETWORK_RE.fullmatch(network):
                raise ValueError(f"invalid network name {network!r}")
        self.networks = tuple(networks)
        self._conn: duckdb.DuckDBPyConnection | None = None
        self._lock = threading.Lock()

    def close(self) -> None:
        """Close the DuckDB connection (the next query opens a new one)."""
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    # -- validation: every path below is formed only from values that passed these --

    def check_network(self, network: str) -> str:
        """Return ``network`` if it is well formed and configured, else raise."""
        if not NETWORK_RE.fullmatch(network):
            raise InvalidParameter("network", "network must match ^[a-z0-9_]+$")
        if network not in self.networks:
            raise InvalidParameter("network", f"network must be one of {list(self.networks)}")
        return network

    def resolve_day(self, network: str, text: str) -> dt.date:
        """The available day ``text`` names (``latest`` or ``YYYY-MM-DD``), else raise."""
        network = self.check_network(network)
        if text == LATEST:
            day = self.latest_date(network)
            if day is None:
                raise NotFound(f"no published results for network {network!r}")
            return day
        day = parse_date(text)
        if not self.has_day(network, day):
            raise NotFound(f"no published results for network {network!r} on {day}")
        return day

    # -- listing: directory listings, cheap and never cached --

    def day_dir(self, network: str, day: dt.date) -> str:
        """The key of the day's published version now: a re-publication swaps in a new
        version (``publish_dir``), so a request resolves it once and reads all its files
        from that one version."""
        return self.storage.resolve_dir(layout.output_day(self.check_network(network), day))

    def has_day(self, network: str, day: dt.date) -> bool:
        """Whether the day is published (its directory holds ``alert_scores.parquet``)."""
        return self.storage.exists(f"{self.day_dir(network, day)}/{ALERT_SCORES}")

    def local_file(self, key: str) -> Path | None:
        """A local file with ``key``'s content for DuckDB to scan, None if there is none."""
        try:
            return self.storage.read_path(key)
        except FileNotFoundError:
            return None

    def listed_days(self, network: str) -> list[dt.date]:
        """The day folders listed for the network, newest first (not checked published)."""
        names = self.storage.list_dir(layout.output_network(self.check_network(network)))
        return sorted(filter(None, map(_day_dir_name, names)), reverse=True)

    def available_dates(self, network: str) -> list[dt.date]:
        """The network's published days, newest first."""
        return [d for d in self.listed_days(network) if self.has_day(network, d)]

    def latest_date(self, network: str) -> dt.date | None:
        """The network's newest published day, if any."""
        return next((d for d in self.listed_days(network) if self.has_day(network, d)), None)

    # -- queries --

    @contextmanager
    def _cursor(self) -> Iterator[duckdb.DuckDBPyConnection]:
        with self._lock:
            if self._conn is None:
                self._conn = self._connect()
            cursor = self._conn.cursor()
        try:
            yield cursor
        finally:
            cursor.close()

    def _connect(self) -> duckdb.DuckDBPyConnection:
        conn = duckdb.connect(":memory:")
        scan_dir = f"{self.storage.scan_dir.resolve()}{os.sep}"
        conn.execute("SET allowed_directories = $dirs", {"dirs": [scan_dir]})
        conn.execute("SET enable_external_access = false")
        conn.execute("SET autoload_known_extensions = false")
        conn.execute("SET lock_configuration = true")
        return conn

    def rows(self, sql: str, params: dict[str, Any], *files: Path) -> list[dict[str, Any]]:
        """Run one parameterized query; a file that vanished meanwhile means not found."""
        with self._cursor() as cursor:
            try:
                cursor.execute(sql, params)
            except duckdb.IOException:
                if all(f.is_file() for f in files):
                    raise
                raise NotFound("the requested results are no longer published") from None
            columns = [c[0] for c in cursor.description]
            return [dict(zip(columns, row, strict=True)) for row in cursor.fetchall()]

    def _day_file(self, network: str, day: dt.date, name: str) -> Path:
        """The published day's file ``name``, its version resolved once."""
        version = self.day_dir(network, day)
        path = self.local_file(f"{version}/{name}")
        if path is not None:
            return path
        if not self.storage.exists(f"{version}/{ALERT_SCORES}"):
            raise NotFound(f"no published results for network {network!r} on {day}")
        raise NotFound(f"no {name.removesuffix('.parquet')} for network {network!r} on {day}")

    def page(
        self,
        name: str,
        network: str,
        day: dt.date,
        limit: int = 100,
        offset: int = 0,
        min_score: float | None = None,
    ) -> Page:
        """A page of one published table of the day (``ALERT_SCORES``: by score descending
        then alert_id; ``ALERT_RANKINGS``: by rank; ``CLUSTER_SCORES``: by score
        descending, explanations parsed)."""
        if not (1 <= limit <= MAX_LIMIT and 0 <= offset <= MAX_OFFSET):
            raise ValueError("limit or offset out of range")
        path = self._day_file(network, day, name)
        params: dict[str, Any] = {"path": str(path), "min_score": min_score}
        total = self.rows(_COUNTS[name], params, path)[0]["total"]
        rows = self.rows(_PAGES[name], {**params, "limit": limit, "offset": offset}, path)
        for row in rows:
            if "explain_json" in row:
                row["explanation"] = _explanation(row.pop("explain_json"))
        return Page(total=total, rows=rows)

    def alert_score(self, network: str, day: dt.date, alert_id: str) -> dict[str, Any]:
        """One alert's score, rank and parsed explanation, else raise ``NotFound``."""
        scores = self._day_file(network, day, ALERT_SCORES)
        rankings = self._day_file(network, day, ALERT_RANKINGS)
        params = {"scores": str(scores), "rankings": str(rankings), "alert_id": alert_id}
        rows = self.rows(_ALERT, params, scores, rankings)
        if not rows:
            raise NotFound(f"alert {alert_id!r} not found for network {network!r} on {day}")
        row = rows[0]
        row["explanation"] = _explanation(row.pop("explain_json"))
        return row

    def evaluations(self, network: str, day: dt.date) -> list[dict[str, Any]]:
        """The day's tier evaluations present in the warehouse (possibly none)."""
        if not self.has_day(network, day):
            raise NotFound(f"no published results for network {network!r} on {day}")
        found = []
        for tier in TIERS:
            table = (self.check_network(network), f"{tier}_evaluation")
            path = self.local_file(layout.table_partition(table, day))
            if path is not None:
                for row in self.rows(_EVALUATION, {"path": str(path), "day": day}, path):
                    details = row.pop("details_json")
                    found.append({"tier": tier, **row, "details": json.loads(details or "null")})
        return found

    def model_registry(self, network: str) -> dict[str, Any]:
        """The network's model registry (``model_metadata.json``) as published."""
        key = f"{layout.models_folder(self.check_network(network))}/{MODEL_METADATA}"
        try:
            return parse_registry(self.storage.read_bytes(key), MODEL_METADATA)
        except FileNotFoundError:
            raise NotFound(f"no model registry for network {network!r}") from None
        except RegistryUnreadable:
            raise Unavailable(
                f"the model registry of network {network!r} is unreadable; its operator "
                "must restore it"
            ) from None

    def run_failures(self, network: str | None, limit: int) -> list[dict[str, Any]]:
        """The newest ``limit`` recorded run failures, newest first (``network``'s only if
        given: a run over several networks counts for each)."""
        if network is not None:
            self.check_network(network)
        folder = layout.run_failures_folder()
        names = [n for n in self.storage.list_dir(folder) if _day_file_name(n)]
        found = self.storage.each(lambda name: self.local_file(f"{folder}/{name}"), names)
        files = [p for p in found if p is not None]
        if not files:
            return []
        params = {"paths": [str(p) for p in files], "network": network, "limit": limit}
        return self.rows(_RUN_FAILURES, params, *files)
