"""The read-only results HTTP API: ``create_app`` builds the FastAPI app and its routes.

Parameters are validated (network pattern and membership, strict ISO dates, bounded
paging) before any path is formed or query runs; errors answer 404/422 with a short
message and never expose paths, SQL or tracebacks.
"""

import datetime as dt
import hmac
import logging
import os
import re
from collections.abc import AsyncIterator, MutableMapping, Sequence
from contextlib import asynccontextmanager
from typing import Annotated, Any, Literal, TypeVar

from fastapi import Depends, FastAPI, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi_offline import FastAPIOffline
from pydantic import BaseModel, Field

from aml_pipeline.api.database import (
    ALERT_RANKINGS,
    ALERT_SCORES,
    CLUSTER_SCORES,
    LATEST,
    InvalidParameter,
    NotFound,
    ResultsDatabase,
    Unavailable,
)
from aml_pipeline.api.params import (
    NETWORK_PATTERN,
    NOT_FOUND,
    DateDep,
    ErrorMessage,
    Paging,
    PagingDep,
    invalid,
)
from aml_pipeline.api.range_routes import range_router
from aml_pipeline.api.ranges import RangeQueries
from aml_pipeline.settings import LOOPBACK_HOSTS

_LOG = logging.getLogger("uvicorn.error")

# -- response models --


class Health(BaseModel):
    """Liveness of the API process."""

    status: Literal["ok"] = "ok"


class NetworkInfo(BaseModel):
    """A configured network and its published days."""

    name: str = Field(description="Network name.", examples=["ethereum"])
    latest_date: dt.date | None = Field(description="Newest published day, if any.")
    available_days: int = Field(description="Number of published days.", ge=0)


class Networks(BaseModel):
    """The configured networks."""

    default_network: str = Field(description="Network used when none is given.")
    networks: list[NetworkInfo]


class AvailableDates(BaseModel):
    """A network's published days, newest first."""

    network: str
    count: int = Field(ge=0)
    dates: list[dt.date] = Field(description="Published days, newest first.")


class LatestDate(BaseModel):
    """A network's newest published day."""

    network: str
    processing_date: dt.date


class FeatureContribution(BaseModel):
    """One feature's contribution to a score."""

    feature: str = Field(description="Feature name.")
    value: float | str | None = Field(
        description="The feature's value: a number, a category name, or null if missing."
    )
    contribution: float = Field(description="Contribution to the raw score.")


class Explanation(BaseModel):
    """Why a model gave a score: the base value and the largest contributions."""

    model_version: str | None = None
    base_value: float | None = Field(default=None, description="Model output before features.")
    top_features: list[FeatureContribution] = Field(default_factory=list)


class AlertScore(BaseModel):
    """An alert's score."""

    alert_id: str
    score: float = Field(description="Score in [0, 1], higher is more suspicious.")
    model_version: str
    latency_ms: float | None = Field(description="Scoring latency of the alert's batch.")


class AlertRanking(BaseModel):
    """An alert's rank among the day's alerts."""

    alert_id: str
    rank: int = Field(ge=1, description="1 is the most suspicious alert of the day.")
    ranker_score: float = Field(description="The ranker's score: it orders, it is no probability.")
    model_version: str


class ClusterScore(BaseModel):
    """A cluster's score and its explanation."""

    cluster_id: str
    score: float
    model_version: str
    explanation: Explanation | None = Field(
        default=None, description="Null when the day's explanation coverage left it out."
    )


class PageInfo(BaseModel):
    """Which rows of a day a page holds."""

    network: str
    processing_date: dt.date
    total: int = Field(ge=0, description="Rows matching the filter, over all pages.")
    limit: int
    offset: int


PageT = TypeVar("PageT", bound=PageInfo)


class AlertScoresPage(PageInfo):
    """A page of alert scores, by score descending then alert_id."""

    rows: list[AlertScore]


class AlertRankingsPage(PageInfo):
    """A page of alert rankings, by rank."""

    rows: list[AlertRanking]


class ClusterScoresPage(PageInfo):
    """A page of cluster scores, by score descending then cluster_id."""

    rows: list[ClusterScore]


class AlertScoreDetail(AlertScore):
    """One alert's score with its rank and explanation."""

    network: str
    processing_date: dt.date
    rank: int | None = Field(description="The alert's rank that day, if ranked.")
    explanation: Explanation | None = Field(
        default=None, description="Null when the day's explanation coverage left it out."
    )


class TierEvaluation(BaseModel):
    """One validation tier's result for a day."""

    tier: Literal["tier1", "tier2", "tier3"]
    model_version: str | None
    passed: bool | None = Field(description="Null when the tier cannot decide yet.")
    score: float | None
    details: Any = Field(description="The tier's details as published.")


class Evaluations(BaseModel):
    """The validation tiers evaluated for a day (tier3 appears once labels are known)."""

    network: str
    processing_date: dt.date
    tiers: list[TierEvaluation]


class RunFailure(BaseModel):
    """One failed run of the pipeline."""

    failed_at: dt.datetime = Field(description="When the run failed (UTC).")
    run_id: str = Field(description="The Dagster run id (the UI shows the run at /runs/{id}).")
    job_name: str
    network: str = Field(
        description="The run's network; comma-separated for a run over several, empty for none."
    )
    first_day: dt.date | None = Field(description="The first day the run covered, if daily.")
    last_day: dt.date | None = Field(description="The last day the run covered, if daily.")
    step: str = Field(description="The failed step; empty when the run failed outside a step.")
    error: str = Field(description="The first line of the error.")


class RunFailures(BaseModel):
    """Recorded run failures, newest first."""

    network: str | None = Field(description="The network filtered on, if any.")
    count: int = Field(ge=0)
    failures: list[RunFailure]


class Models(BaseModel):
    """A network's model registry."""

    network: str
    champions: dict[str, str] = Field(
        description="Champion version per model kind.", examples=[{"alert_scorer": "1.0.0"}]
    )
    registry: dict[str, Any] = Field(description="The registry's metadata as published.")


async def _unprocessable(request: Request, exc: Exception) -> JSONResponse:
    """422 with where and what was wrong; the rejected input is not echoed back."""
    if not isinstance(exc, RequestValidationError):  # registered for it alone
        raise exc
    errors = [{k: e[k] for k in ("type", "loc", "msg")} for e in exc.errors()]
    return JSONResponse({"detail": errors}, status_code=422)


async def _not_found(request: Request, exc: Exception) -> JSONResponse:
    return JSONResponse({"detail": str(exc)}, status_code=404)


async def _unavailable(request: Request, exc: Exception) -> JSONResponse:
    return JSONResponse({"detail": str(exc)}, status_code=503)


#: Sent with every response: no sniffing, no framing, no referrer, and only this origin's
#: scripts and styles (Swagger UI's page initializes itself inline).
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Content-Security-Policy": "default-src 'self'; script-src 'self' 'unsafe-inline'; "
    "style-src 'self' 'unsafe-inline'; img-src 'self' data:; frame-ancestors 'none'",
}


_SECURITY = [(k.lower().encode(), v.encode()) for k, v in SECURITY_HEADERS.items()]
_SECURITY_NAMES = frozenset(name for name, _ in _SECURITY)


#: A Host header: a name or a bracketed IPv6 address, and an optional port.
_HOST = re.compile(r"(?:\[(?P<ipv6>[0-9A-Fa-f:.]+)\]|(?P<name>[A-Za-z0-9._-]+))(?::[0-9]{1,5})?")


def host_name(header: str) -> str:
    """The name in a Host header without its port (``[::1]:8000`` is ``::1``); empty when
    the header is no host and optional port (``127.0.0.1:80@evil.example``)."""
    match = _HOST.fullmatch(header)
    return (match["ipv6"] or match["name"]) if match else ""


def host_allowed(header: str, allowed: Sequence[str]) -> bool:
    """Whether the Host ``header`` names one of ``allowed`` (``*`` any, ``*.example.com``
    a subdomain of it)."""
    if "*" in allowed:
        return True
    name = host_name(header).lower()
    return bool(name) and any(
        name == pattern.lower().strip("[]")
        or (pattern.startswith("*.") and name.endswith(pattern[1:].lower()))
        for pattern in allowed
    )


class _Secured:
    """The outermost layer: answers only requests whose Host is one of ``allowed_hosts``
    (400 otherwise, against DNS rebinding), sends ``SECURITY_HEADERS`` on every answer,
    and answers an error no route handled with a generic 500 (its traceback logged,
    never sent)."""

    def __init__(self, app: Any, allowed_hosts: Sequence[str]) -> None:
        self.app = app
        self.allowed_hosts = list(allowed_hosts)

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def secured(message: MutableMapping[str, Any]) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                headers = message.get("headers", [])
                kept = [(k, v) for k, v in headers if k.lower() not in _SECURITY_NAMES]
                message = {**message, "headers": kept + _SECURITY}
            await send(message)

        host = next((v for k, v in scope["headers"] if k == b"host"), b"").decode("latin-1")
        if not host_allowed(host, self.allowed_hosts):
            answer = JSONResponse({"detail": "invalid host header"}, status_code=400)
            await answer(scope, receive, secured)
            return
        try:
            await self.app(scope, receive, secured)
        except Exception:
            _LOG.exception("error answering %s %s", scope["method"], scope["path"])
            if started:
                raise
            answer = JSONResponse({"detail": "internal server error"}, status_code=500)
            await answer(scope, receive, secured)


class _HeadAsGet:
    """Answers HEAD on every GET route as HTTP says: the GET's status and headers (its
    Content-Length included), without the body."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["method"] != "HEAD":
            await self.app(scope, receive, send)
            return

        async def without_body(message: dict) -> None:
            if message["type"] == "http.response.body":
                message = {**message, "body": b""}
            await send(message)

        await self.app({**scope, "method": "GET"}, receive, without_body)


#: Paths open without the bearer token: liveness and the documentation of the API.
OPEN_PATHS = ("/health", "/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json")
OPEN_PREFIXES = ("/static-offline-docs/",)


def _require_token(app: FastAPI, token: str) -> None:
    """Refuse every request but ``OPEN_PATHS`` without ``Authorization: Bearer {token}``."""
    expected = token.encode()

    def authorized(header: str) -> bool:
        scheme, _, given = header.partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(given.encode(), expected)

    @app.middleware("http")
    async def bearer_token(request: Request, call_next: Any) -> Any:
        path = request.url.path
        open_path = path in OPEN_PATHS or path.startswith(OPEN_PREFIXES)
        if open_path or authorized(request.headers.get("authorization", "")):
            return await call_next(request)
        return JSONResponse(
            {"detail": "a bearer token is required (Authorization: Bearer ...)"},
            status_code=401,
            headers={"WWW-Authenticate": "Bearer"},
        )


def _hardened(app: FastAPI, allowed_hosts: Sequence[str], token: str) -> None:
    """Answer only requests for ``allowed_hosts`` (a DNS-rebinding page cannot read the
    results through an analyst's browser), with the bearer ``token`` when one is set, and
    send ``SECURITY_HEADERS``."""
    if token:
        _require_token(app, token)
    app.add_middleware(_HeadAsGet)
    # added last, so it runs first: a refused Host never reaches the routes
    app.add_middleware(_Secured, allowed_hosts=allowed_hosts)


def create_app(
    data_root: str | os.PathLike[str],
    networks: list[str],
    default_network: str,
    allowed_hosts: Sequence[str] = LOOPBACK_HOSTS,
    token: str = "",
) -> FastAPI:
    """The results API over ``data_root`` for ``networks`` (``default_network`` if none
    given), answering requests for ``allowed_hosts`` only; its Swagger UI and ReDoc pages
    are served with their assets from the app itself (``fastapi-offline``), so they work
    on a machine without internet."""
    db = ResultsDatabase(data_root, networks)
    if default_network not in db.networks:
        raise ValueError(f"default network {default_network!r} is not in {networks}")

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        db.close()

    app = FastAPIOffline(
        title="AML pipeline results API",
        version="1.0.0",
        summary="Read-only access to published alert scores, rankings and evaluations.",
        description=(
            "Serves the pipeline's published daily results per network. `{date}` is a "
            "processing date (YYYY-MM-DD) or `latest`; `network` defaults to the configured "
            "default network."
        ),
        lifespan=lifespan,
    )
    app.state.db = db
    _hardened(app, allowed_hosts, token)
    app.add_exception_handler(RequestValidationError, _unprocessable)
    app.add_exception_handler(NotFound, _not_found)
    app.add_exception_handler(Unavailable, _unavailable)

    def network_param(
        network: Annotated[
            str,
            Query(
                max_length=64,
                pattern=NETWORK_PATTERN,
                description="Network to query; one of the configured networks.",
                examples=[default_network],
                json_schema_extra={"enum": list(db.networks)},
            ),
        ] = default_network,
    ) -> str:
        try:
            return db.check_network(network)
        except InvalidParameter as exc:
            raise invalid(exc) from None

    NetworkDep = Annotated[str, Depends(network_param)]

    def day_page(
        model: type[PageT], table: str, network: str, requested: str, paging: Paging
    ) -> PageT:
        """``model`` holding one page of ``table`` on the requested day."""
        day = db.resolve_day(network, requested)
        page = db.page(table, network, day, paging.limit, paging.offset, paging.min_score)
        return model.model_validate(
            {
                "network": network,
                "processing_date": day,
                "total": page.total,
                "limit": paging.limit,
                "offset": paging.offset,
                "rows": page.rows,
            }
        )

    @app.get("/health", tags=["service"], summary="Liveness check")
    def health() -> Health:
        """The process is up."""
        return Health()

    @app.get("/networks", tags=["service"], summary="Configured networks")
    def list_networks() -> Networks:
        """The configured networks with their newest day and number of published days."""
        infos = []
        for name in db.networks:
            dates = db.available_dates(name)
            infos.append(
                NetworkInfo(
                    name=name, latest_date=dates[0] if dates else None, available_days=len(dates)
                )
            )
        return Networks(default_network=default_network, networks=infos)

    @app.get("/dates/available", tags=["dates"], summary="Published days, newest first")
    def available_dates(network: NetworkDep) -> AvailableDates:
        """The days whose results are published, newest first."""
        dates = db.available_dates(network)
        return AvailableDates(network=network, count=len(dates), dates=dates)

    @app.get("/dates/latest", tags=["dates"], summary="Newest published day", responses=NOT_FOUND)
    def latest_date(network: NetworkDep) -> LatestDate:
        """The newest published day; 404 if the network has none."""
        return LatestDate(network=network, processing_date=db.resolve_day(network, LATEST))

    @app.get("/scores/alerts/{date}", tags=["scores"], summary="Alert scores", responses=NOT_FOUND)
    def alert_scores(network: NetworkDep, requested: DateDep, paging: PagingDep) -> AlertScoresPage:
        """A page of the day's alert scores, by score descending then alert_id."""
        return day_page(AlertScoresPage, ALERT_SCORES, network, requested, paging)

    @app.get(
        "/scores/alerts/{date}/{alert_id}",
        tags=["scores"],
        summary="One alert's score and explanation",
        responses=NOT_FOUND,
    )
    def alert_score(
        network: NetworkDep,
        requested: DateDep,
        alert_id: Annotated[
            str,
            Path(min_length=1, max_length=256, description="The alert's id.", examples=["a-1"]),
        ],
    ) -> AlertScoreDetail:
        """One alert's score, rank and explanation; 404 if the day or alert is unknown."""
        day = db.resolve_day(network, requested)
        row = db.alert_score(network, day, alert_id)
        return AlertScoreDetail(network=network, processing_date=day, **row)

    @app.get(
        "/rankings/alerts/{date}", tags=["scores"], summary="Alert rankings", responses=NOT_FOUND
    )
    def alert_rankings(
        network: NetworkDep, requested: DateDep, paging: PagingDep
    ) -> AlertRankingsPage:
        """A page of the day's alert rankings, by rank."""
        return day_page(AlertRankingsPage, ALERT_RANKINGS, network, requested, paging)

    @app.get(
        "/scores/clusters/{date}", tags=["scores"], summary="Cluster scores", responses=NOT_FOUND
    )
    def cluster_scores(
        network: NetworkDep, requested: DateDep, paging: PagingDep
    ) -> ClusterScoresPage:
        """A page of the day's cluster scores with explanations, by score descending."""
        return day_page(ClusterScoresPage, CLUSTER_SCORES, network, requested, paging)

    @app.get(
        "/evaluations/{date}",
        tags=["evaluations"],
        summary="Validation tiers evaluated for a day",
        responses=NOT_FOUND,
    )
    def evaluations(network: NetworkDep, requested: DateDep) -> Evaluations:
        """The validation tiers evaluated for the day so far (possibly none)."""
        day = db.resolve_day(network, requested)
        tiers = db.evaluations(network, day)
        return Evaluations.model_validate(
            {"network": network, "processing_date": day, "tiers": tiers}
        )

    @app.get(
        "/models",
        tags=["models"],
        summary="Model registry and champions",
        responses={**NOT_FOUND, 503: {"model": ErrorMessage}},
    )
    def models(network: NetworkDep) -> Models:
        """The network's model registry and its champion versions."""
        registry = db.model_registry(network)
        return Models(network=network, champions=registry.get("champions") or {}, registry=registry)

    @app.get("/runs/failures", tags=["service"], summary="Failed runs, newest first")
    def run_failures(
        network: Annotated[
            str | None,
            Query(
                max_length=64,
                pattern=NETWORK_PATTERN,
                description="Only this network's failures; all when absent.",
                json_schema_extra={"enum": list(db.networks)},
            ),
        ] = None,
        limit: Annotated[int, Query(ge=1, le=1000, description="Failures returned.")] = 100,
    ) -> RunFailures:
        """The pipeline's failed runs as the run-failure sensor and the command line
        recorded them: network, days, failed step and the error's first line."""
        try:
            rows = db.run_failures(network, limit)
        except InvalidParameter as exc:
            raise invalid(exc) from None
        return RunFailures.model_validate(
            {"network": network, "count": len(rows), "failures": rows}
        )

    app.include_router(range_router(RangeQueries(db), NetworkDep))
    return app
