"""Request parameters shared by the API's routes: validated paging, dates and ranges, and
the 422 raised for a parameter the query layer refuses."""

import datetime as dt
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Path, Query
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, Field

from aml_pipeline.api.database import LATEST, MAX_LIMIT, MAX_OFFSET, InvalidParameter, parse_date

_DAY = r"[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])"
DAY_PATTERN = rf"^{_DAY}$"
DATE_PATTERN = rf"^(latest|{_DAY})$"
NETWORK_PATTERN = r"^[a-z0-9_]+$"
EXAMPLE_DATE = "2025-01-10"


class ErrorMessage(BaseModel):
    """An error response."""

    detail: str = Field(description="What went wrong.", examples=["no published results"])


@dataclass(frozen=True)
class Paging:
    """Validated paging and filter parameters."""

    limit: int
    offset: int
    min_score: float | None


def paging_params(
    limit: Annotated[
        int, Query(ge=1, le=MAX_LIMIT, description="Rows per page.", examples=[100])
    ] = 100,
    offset: Annotated[
        int, Query(ge=0, le=MAX_OFFSET, description="Rows to skip.", examples=[0])
    ] = 0,
    min_score: Annotated[
        float | None,
        Query(
            ge=0,
            le=1,
            allow_inf_nan=False,
            description="Only rows with score >= min_score (ranker_score on /rankings).",
            examples=[0.5],
        ),
    ] = None,
) -> Paging:
    return Paging(limit, offset, min_score)


NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"model": ErrorMessage}}


def invalid(exc: InvalidParameter) -> RequestValidationError:
    """A 422 shaped like FastAPI's own validation errors."""
    where = "path" if exc.field in ("date", "address") else "query"
    return RequestValidationError(
        [{"type": "value_error", "loc": (where, exc.field), "msg": str(exc)}]
    )


def date_param(
    date: Annotated[
        str,
        Path(
            max_length=10,
            pattern=DATE_PATTERN,
            description="Processing date (YYYY-MM-DD) or `latest` for the newest day.",
            examples=[EXAMPLE_DATE, LATEST],
            openapi_examples={
                "day": {"summary": "A processing date", "value": EXAMPLE_DATE},
                "latest": {"summary": "The newest published day", "value": LATEST},
            },
        ),
    ],
) -> str:
    """The date as given, once it is `latest` or a valid calendar date (else 422)."""
    if date != LATEST:
        try:
            parse_date(date)
        except InvalidParameter as exc:
            raise invalid(exc) from None
    return date


PagingDep = Annotated[Paging, Depends(paging_params)]
DateDep = Annotated[str, Depends(date_param)]


@dataclass(frozen=True)
class DayRangeParams:
    """A requested range's ends as given (None: the query layer's default)."""

    start: dt.date | None
    end: dt.date | None


def _day_query(which: str, default: str) -> Any:
    return Query(
        max_length=10,
        pattern=DAY_PATTERN,
        description=f"{which} day of the range (YYYY-MM-DD, inclusive); default: {default}.",
        examples=[EXAMPLE_DATE],
    )


def range_params(
    start_date: Annotated[
        str | None, _day_query("First", "30 days up to end_date (an address: its last 366 days)")
    ] = None,
    end_date: Annotated[str | None, _day_query("Last", "the newest published day")] = None,
) -> DayRangeParams:
    """The range's ends, once each is a valid calendar date (else 422)."""
    try:
        return DayRangeParams(
            parse_date(start_date, "start_date") if start_date else None,
            parse_date(end_date, "end_date") if end_date else None,
        )
    except InvalidParameter as exc:
        raise invalid(exc) from None


RangeDep = Annotated[DayRangeParams, Depends(range_params)]
