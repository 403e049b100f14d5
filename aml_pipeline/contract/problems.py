"""What is wrong with a conformed batch table or with label events, beyond its schema: the
checks a landing runs before it writes and the stored tables' asset checks run again."""

import datetime as dt

import duckdb
import pandas as pd

from aml_pipeline.contract.schema import TableSpec
from aml_pipeline.storage.tables import one_row, quote_ident


def contract_problems(
    con: duckdb.DuckDBPyConnection, spec: TableSpec, days: list[dt.date], window_days: int
) -> list[str]:
    """What is wrong with the conformed table of the given days that is the view ``frame``
    on ``con`` (empty when nothing): one DuckDB scan, nothing copied into pandas."""
    keys = [quote_ident(k) for k in ("processing_date", *spec.key)]
    key_nulls = " OR ".join(f"{k} IS NULL" for k in keys[1:])
    windowed = "window_days" in spec.by_name
    window = "window_days IS NOT NULL AND window_days <> ?" if windowed else "false"
    nulls, windows = one_row(
        con,
        f"SELECT count(*) FILTER (WHERE {key_nulls}), count(*) FILTER (WHERE {window}) FROM frame",
        [window_days] if windowed else [],
    )
    (duplicates,) = one_row(
        con,
        f"SELECT count(*) FROM (SELECT 1 FROM frame GROUP BY {', '.join(keys)} "
        "HAVING count(*) > 1)",
    )
    outside = [
        row[0]
        for row in con.execute(
            "SELECT DISTINCT processing_date FROM frame WHERE processing_date IS NULL "
            "OR NOT list_contains(?::DATE[], processing_date) ORDER BY 1 NULLS FIRST",
            [days],
        ).fetchall()
    ]
    problems = []
    if nulls:
        problems.append(f"null values in key {spec.key}")
    if duplicates:
        problems.append(f"duplicate keys {spec.key} within a day")
    if outside:
        problems.append(f"rows outside the run's days: {[str(d) for d in outside[:3]]}")
    if windows:
        problems.append(f"window_days differs from {window_days}")
    return problems


def label_event_problems(events: pd.DataFrame, days: list[dt.date]) -> list[str]:
    """What is wrong with label events stored for ``days`` (empty when nothing): each
    label dated on one of the days, after its alert, and an alert labelled once."""
    problems = []
    if events[["alert_id", "label_date", "processing_date"]].isna().any(axis=None):
        problems.append("null alert_id, label_date or processing_date")
    outside = sorted(set(events["label_date"].dropna()) - set(days))
    if outside:
        problems.append(f"labels dated outside the run's days: {[str(d) for d in outside[:3]]}")
    early = events["label_date"] < events["processing_date"]
    if early.any():
        problems.append(f"{int(early.sum())} label(s) dated before their alert")
    duplicated = events["alert_id"].duplicated()
    if duplicated.any():
        problems.append(f"{int(duplicated.sum())} alert(s) labelled twice")
    return problems
