"""The run planning of ``defs.runs`` on its own: which days a command needs runs for and
how a range is cut into runs."""

from __future__ import annotations

import datetime as dt

import pandas as pd

from aml_pipeline.defs.runs import NotLanded, day_chunks, missing_runs
from aml_pipeline.storage.tables import TableStore

START = dt.date(2025, 1, 1)


def _days(*offsets: int) -> list[dt.date]:
    return [START + dt.timedelta(o) for o in offsets]


def test_missing_runs_are_the_consecutive_days_any_asset_lacks_or_that_are_stale(tmp_path):
    tables = TableStore(str(tmp_path))
    for name, stored in (("a", _days(0, 1, 2, 4, 5, 6)), ("b", _days(0, 1, 2, 3, 4, 5, 6))):
        for day in stored:
            tables.write(("net", name), day.isoformat(), pd.DataFrame({"x": [1]}))
    wanted = _days(*range(9))
    assert missing_runs(tables, "net", ("a", "b"), wanted) == [_days(3), _days(7, 8)]
    assert missing_runs(tables, "net", ("b",), wanted, stale=_days(5, 6)) == [_days(5, 6, 7, 8)]
    assert missing_runs(tables, "net", ("a",), _days(0, 1)) == []


def test_a_range_is_cut_into_runs_of_at_most_the_given_days():
    chunks = list(day_chunks(START, START + dt.timedelta(29), 14))
    assert [(b - a).days + 1 for a, b in chunks] == [14, 14, 2]
    assert chunks[0][0] == START and chunks[-1][1] == START + dt.timedelta(29)


def test_not_landed_names_the_days_or_says_the_network_never_was():
    assert str(NotLanded("ethereum", [])) == "ethereum has never been landed"
    text = str(NotLanded("ethereum", _days(0, 1)))
    assert text.startswith("2 day(s) of the training range are not landed, e.g. 2025-01-01")
