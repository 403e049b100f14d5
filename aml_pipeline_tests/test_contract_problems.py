"""What a landing refuses beyond the schema, tested on the plain functions: a conformed
table's keys, days and window, and label events' dates."""

from __future__ import annotations

import datetime as dt

import duckdb
import pandas as pd
import pytest

from aml_pipeline.contract.conform import conform_table
from aml_pipeline.contract.problems import contract_problems, label_event_problems
from aml_pipeline.contract.schema import BATCH_TABLES, GROUND_TRUTH
from aml_pipeline_tests.conftest import DAY, batch_tables

ALERTS = next(spec for spec in BATCH_TABLES if spec.name == "alerts")


def _problems(
    frame: pd.DataFrame, days: tuple[dt.date, ...] = (DAY,), window: int = 7
) -> list[str]:
    with duckdb.connect() as con:
        con.register("frame", conform_table(frame, ALERTS))
        return contract_problems(con, ALERTS, list(days), window)


@pytest.fixture
def alerts() -> pd.DataFrame:
    return batch_tables()["alerts"].copy()


def test_a_conformed_day_has_no_problem(alerts):
    assert _problems(alerts) == []


def test_each_contract_problem_is_named(alerts):
    duplicated = pd.concat([alerts, alerts.head(1)], ignore_index=True)
    assert _problems(duplicated) == ["duplicate keys ('alert_id',) within a day"]
    missing = alerts.copy()
    missing.loc[0, "alert_id"] = None
    assert _problems(missing) == ["null values in key ('alert_id',)"]
    assert _problems(alerts, days=(DAY + dt.timedelta(1),)) == [
        f"rows outside the run's days: ['{DAY}']"
    ]
    assert _problems(alerts, window=30) == ["window_days differs from 30"]


def _events(*rows: tuple[str, str, str]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=["alert_id", "processing_date", "label_date"])
    frame["is_sar_filed"] = True
    return conform_table(frame[GROUND_TRUTH.column_names], GROUND_TRUTH)


def test_label_events_are_dated_on_the_run_after_their_alert_and_once_each():
    day = dt.date(2025, 3, 10)
    assert label_event_problems(_events(("a", "2025-03-01", "2025-03-10")), [day]) == []
    problems = label_event_problems(
        _events(
            ("a", "2025-03-01", "2025-03-10"),
            ("a", "2025-03-02", "2025-03-10"),
            ("b", "2025-03-12", "2025-03-10"),
            ("c", "2025-03-01", "2025-03-11"),
        ),
        [day],
    )
    assert problems == [
        "labels dated outside the run's days: ['2025-03-11']",
        "1 label(s) dated before their alert",
        "1 alert(s) labelled twice",
    ]
    missing = _events(("a", "2025-03-01", "2025-03-10"))
    missing.loc[0, "alert_id"] = None
    assert label_event_problems(missing, [day]) == ["null alert_id, label_date or processing_date"]
