"""The API's routes across days: alert and cluster scores over a range, an address's
history and the evaluation trend (``ranges.RangeQueries`` runs them)."""

import datetime as dt
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel, Field

from aml_pipeline.api.database import InvalidParameter, NotFound
from aml_pipeline.api.params import NOT_FOUND, PagingDep, RangeDep, invalid
from aml_pipeline.api.ranges import DayRange, RangePage, RangeQueries

ADDRESS_PATTERN = r"^[A-Za-z0-9_.:-]+$"
TYPOLOGY_PATTERN = r"^[A-Za-z0-9_-]+$"


class RangeInfo(BaseModel):
    """Which days a range answer covers."""

    network: str
    start_date: dt.date
    end_date: dt.date
    days: int = Field(ge=0, description="Published days inside the range.")


class RangePageInfo(RangeInfo):
    """Which rows of a range a page holds."""

    total: int = Field(ge=0, description="Rows matching the filter, over all pages.")
    limit: int
    offset: int


class RangeAlertScore(BaseModel):
    """An alert's score on its day, with the address and typology it was raised for."""

    processing_date: dt.date
    alert_id: str
    address: str
    typology: str
    score: float = Field(description="Score in [0, 1], higher is more suspicious.")
    model_version: str


class AlertScoresRange(RangePageInfo):
    """Alert scores across a range, by score descending (then newest day, alert_id)."""

    rows: list[RangeAlertScore]


class RangeClusterScore(BaseModel):
    """A cluster's score on its day."""

    processing_date: dt.date
    cluster_id: str
    score: float
    model_version: str


class ClusterScoresRange(RangePageInfo):
    """Cluster scores across a range, by score descending."""

    rows: list[RangeClusterScore]


class AddressAlert(BaseModel):
    """One alert on the address."""

    processing_date: dt.date
    alert_id: str
    typology: str
    score: float
    rank: int | None = Field(description="The alert's rank that day, if ranked.")
    model_version: str
    is_sar_filed: bool | None = Field(description="Its label once known, else null.")
    label_date: dt.date | None = Field(description="The day the label became known.")


class AddressHistory(RangeInfo):
    """Every alert on an address across the range, newest first."""

    address: str
    count: int = Field(ge=0)
    alerts: list[AddressAlert]


class TrendPoint(BaseModel):
    """One tier's result for one day."""

    processing_date: dt.date
    tier: str
    model_version: str | None
    passed: bool | None
    score: float | None
    auc_roc: float | None = Field(description="Tier 3 only.")
    auc_pr: float | None = Field(description="Tier 3 only.")
    brier: float | None = Field(description="Tier 3, calibrated scores only.")
    ece: float | None = Field(description="Tier 3, calibrated scores only.")


class EvaluationTrend(RangeInfo):
    """Tier 1-3 results per day over a range, oldest first."""

    model_version: str | None = Field(description="The version filter, if any.")
    points: list[TrendPoint]


def _info(span: DayRange) -> dict[str, Any]:
    return {
        "network": span.network,
        "start_date": span.start,
        "end_date": span.end,
        "days": len(span.days),
    }


def _page_info(page: RangePage, limit: int, offset: int) -> dict[str, Any]:
    return {**_info(page.range), "total": page.total, "limit": limit, "offset": offset}


def range_router(ranges: RangeQueries, network_dep: Any) -> APIRouter:
    """The range routes over ``ranges``; ``network_dep`` is the app's validated network."""
    router = APIRouter(tags=["ranges"])

    def span(network: str, requested: RangeDep, whole_history: bool = False) -> DayRange:
        try:
            return ranges.day_range(network, requested.start, requested.end, whole_history)
        except InvalidParameter as exc:
            raise invalid(exc) from None

    @router.get("/scores/alerts", summary="Alert scores over a date range", responses=NOT_FOUND)
    def alert_scores_range(
        network: network_dep,
        requested: RangeDep,
        paging: PagingDep,
        typology: Annotated[
            str | None,
            Query(max_length=64, pattern=TYPOLOGY_PATTERN, description="Only this typology."),
        ] = None,
        address: Annotated[
            str | None,
            Query(max_length=128, pattern=ADDRESS_PATTERN, description="Only this address."),
        ] = None,
    ) -> AlertScoresRange:
        """The range's alert scores, highest first: the top N with ``limit=N``. Reads only
        the range's files."""
        page = ranges.alert_scores(
            span(network, requested),
            paging.limit,
            paging.offset,
            paging.min_score,
            typology,
            address,
        )
        return AlertScoresRange.model_validate(
            {**_page_info(page, paging.limit, paging.offset), "rows": page.rows}
        )

    @router.get("/scores/clusters", summary="Cluster scores over a date range", responses=NOT_FOUND)
    def cluster_scores_range(
        network: network_dep, requested: RangeDep, paging: PagingDep
    ) -> ClusterScoresRange:
        """The range's cluster scores, highest first."""
        page = ranges.cluster_scores(
            span(network, requested), paging.limit, paging.offset, paging.min_score
        )
        return ClusterScoresRange.model_validate(
            {**_page_info(page, paging.limit, paging.offset), "rows": page.rows}
        )

    @router.get(
        "/addresses/{address}/alerts", summary="An address's alert history", responses=NOT_FOUND
    )
    def address_history(
        network: network_dep,
        requested: RangeDep,
        address: Annotated[
            str,
            Path(max_length=128, pattern=ADDRESS_PATTERN, description="The address."),
        ],
    ) -> AddressHistory:
        """Every alert on the address over the range (default: every published day), newest
        first, with score, rank, typology, model version and its label once known; 404 if
        the address has none there."""
        found = span(network, requested, whole_history=True)
        alerts = ranges.address_history(found, address)
        if not alerts:
            raise NotFound(
                f"no alerts on this address for network {network!r} in {found.start}..{found.end}"
            )
        return AddressHistory.model_validate(
            {**_info(found), "address": address, "count": len(alerts), "alerts": alerts}
        )

    @router.get("/evaluations", summary="Evaluation trend over a date range")
    def evaluation_trend(
        network: network_dep,
        requested: RangeDep,
        model_version: Annotated[
            str | None,
            Query(max_length=32, pattern=r"^[0-9A-Za-z.+-]+$", description="Only this version."),
        ] = None,
    ) -> EvaluationTrend:
        """Tier 1-3 results per day over the range: score, passed, and tier 3's AUC-ROC,
        AUC-PR, Brier and ECE where present; filter by model version."""
        found = span(network, requested)
        points = ranges.evaluation_trend(found, model_version)
        return EvaluationTrend.model_validate(
            {**_info(found), "model_version": model_version, "points": points}
        )

    return router
