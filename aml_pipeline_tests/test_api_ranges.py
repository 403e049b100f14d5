"""The API across days: range scores, an address's history, cluster ranges, the evaluation
trend — each reading exactly the files of the requested days."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pytest
from fastapi.testclient import TestClient

from aml_pipeline.api.app import create_app
from aml_pipeline.api.database import ResultsDatabase
from aml_pipeline.api.ranges import MAX_RANGE_DAYS
from aml_pipeline.storage import layout
from aml_pipeline.storage.objects import LocalStorage
from aml_pipeline_tests.test_api import NETWORK, NETWORKS, _parquet, day_files

FIRST = dt.date(2025, 1, 1)
DAYS = [FIRST + dt.timedelta(i) for i in range(40)]
LAST = DAYS[-1]
SKIPPED = dt.date(2025, 1, 20)  # not published: a gap inside the history
ADDRESS = "0xabc"
LABEL_DELAY = 10


def _alerts(day: dt.date) -> list[tuple[str, float, str, str]]:
    """(alert_id, score, address, typology) of the day's four alerts; alert 0 is always
    on ADDRESS, and scores rise with the day so the newest days rank first."""
    base = (day - FIRST).days / 100
    return [
        (f"{day}-0", round(0.5 + base, 4), ADDRESS, "PEEL_CHAIN"),
        (f"{day}-1", round(0.1 + base, 4), f"0x{day.day:02d}1", "FAN_IN"),
        (f"{day}-2", round(0.2 + base, 4), f"0x{day.day:02d}2", "PEEL_CHAIN"),
        (f"{day}-3", round(0.05, 4), f"0x{day.day:02d}3", "FAN_IN"),
    ]


def _write(root: Path, table: str, day: dt.date, columns: dict[str, pa.Array]) -> None:
    path = root / layout.table_partition((NETWORK, table), day)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(_parquet(columns))


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_history(tmp_path_factory.mktemp("history"))


def write_history(root: Path) -> Path:
    """40 days (one not published) with raw alerts, label events and tier evaluations."""
    storage = LocalStorage(root)
    for day in DAYS:
        alerts = _alerts(day)
        if day != SKIPPED:
            context = {a: (address, typology) for a, _, address, typology in alerts}
            files = day_files(day, [(a, s) for a, s, _, _ in alerts], context)
            storage.publish_dir(layout.output_day(NETWORK, day), files)
        _write(
            root,
            "raw_alerts",
            day,
            {
                "alert_id": pa.array([a for a, *_ in alerts]),
                "processing_date": pa.array([day] * 4, pa.date32()),
                "address": pa.array([ad for _, _, ad, _ in alerts]),
                "typology_type": pa.array([t for *_, t in alerts]),
            },
        )
        labelled = day - dt.timedelta(LABEL_DELAY)  # alert 0 of that day is confirmed today
        if labelled >= FIRST:
            _write(
                root,
                "label_events",
                day,
                {
                    "alert_id": pa.array([f"{labelled}-0"]),
                    "processing_date": pa.array([labelled], pa.date32()),
                    "is_sar_filed": pa.array([True]),
                    "label_date": pa.array([day], pa.date32()),
                },
            )
        metrics = {"auc_roc": 0.8, "auc_pr": 0.4, "brier": None, "ece": None}
        for tier, details in (("tier1", {}), ("tier3", {"metrics": metrics})):
            _write(
                root,
                f"{tier}_evaluation",
                day,
                {
                    "network": pa.array([NETWORK]),
                    "processing_date": pa.array([day], pa.date32()),
                    "model_version": pa.array(["1.0.0" if day < dt.date(2025, 1, 25) else "2.0.0"]),
                    "passed": pa.array([True]),
                    "score": pa.array([0.9]),
                    "details_json": pa.array([json.dumps(details)]),
                },
            )
    return root


@pytest.fixture
def client(history: Path) -> Iterator[TestClient]:
    with TestClient(
        create_app(history, NETWORKS, NETWORK), base_url="http://127.0.0.1"
    ) as test_client:
        yield test_client


def test_alert_scores_over_a_range_top_n_and_filters(client: TestClient) -> None:
    body = client.get("/scores/alerts?start_date=2025-01-10&end_date=2025-01-14&limit=3").json()
    assert (body["start_date"], body["end_date"], body["days"], body["total"]) == (
        "2025-01-10",
        "2025-01-14",
        5,
        20,
    )
    assert [r["alert_id"] for r in body["rows"]] == ["2025-01-14-0", "2025-01-13-0", "2025-01-12-0"]
    assert body["rows"][0] | {"score": None} == {
        "processing_date": "2025-01-14",
        "alert_id": "2025-01-14-0",
        "address": ADDRESS,
        "typology": "PEEL_CHAIN",
        "score": None,
        "model_version": "1.0.0",
    }
    fan_in = client.get("/scores/alerts?start_date=2025-01-10&end_date=2025-01-14&typology=FAN_IN")
    assert fan_in.json()["total"] == 10
    assert {r["typology"] for r in fan_in.json()["rows"]} == {"FAN_IN"}
    one = client.get(f"/scores/alerts?start_date=2025-01-10&end_date=2025-01-14&address={ADDRESS}")
    assert one.json()["rows"][0]["processing_date"] == "2025-01-14"
    assert one.json()["total"] == 5
    high = client.get("/scores/alerts?start_date=2025-01-10&end_date=2025-01-14&min_score=0.3")
    assert high.json()["total"] == 9 and all(r["score"] >= 0.3 for r in high.json()["rows"])
    past = client.get("/scores/alerts?start_date=2025-01-10&end_date=2025-01-14&offset=50").json()
    assert past["total"] == 20 and past["rows"] == []


def test_the_default_range_is_the_30_days_up_to_the_newest(client: TestClient) -> None:
    body = client.get("/scores/alerts?limit=1").json()
    assert (body["start_date"], body["end_date"]) == ("2025-01-11", str(LAST))
    assert body["days"] == 29 and body["total"] == 29 * 4  # 2025-01-20 is not published


def test_a_range_query_reads_only_the_files_of_its_days(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    read: list[list[str]] = []
    real = ResultsDatabase.rows

    def spy(self, sql, params, *files):
        read.append([str(v) for p in params.values() if isinstance(p, list) for v in p])
        return real(self, sql, params, *files)

    monkeypatch.setattr(ResultsDatabase, "rows", spy)
    assert client.get("/scores/alerts?start_date=2025-01-19&end_date=2025-01-21").status_code == 200
    files = {f for query in read for f in query}
    assert {Path(f).name for f in files} == {"alert_scores.parquet"}
    # the two published days' versions, nothing of the unpublished day or any other day
    assert {Path(f).parent.parent.name for f in files} == {
        ".2025-01-19.versions",
        ".2025-01-21.versions",
    }


def test_an_address_history_covers_every_published_day_with_known_labels(
    client: TestClient,
) -> None:
    body = client.get(f"/addresses/{ADDRESS}/alerts").json()
    assert (body["start_date"], body["end_date"]) == (str(FIRST), str(LAST))
    assert body["count"] == 39
    newest, *_, oldest = body["alerts"]
    assert newest["processing_date"] == str(LAST) and oldest["processing_date"] == str(FIRST)
    assert newest["rank"] == 1 and newest["typology"] == "PEEL_CHAIN"
    # labels of the last LABEL_DELAY days are not known yet
    assert newest["is_sar_filed"] is None and newest["label_date"] is None
    assert oldest["is_sar_filed"] is True
    assert oldest["label_date"] == str(FIRST + dt.timedelta(LABEL_DELAY))
    ranged = client.get(f"/addresses/{ADDRESS}/alerts?start_date=2025-01-05&end_date=2025-01-06")
    assert [a["alert_id"] for a in ranged.json()["alerts"]] == ["2025-01-06-0", "2025-01-05-0"]
    assert ranged.json()["alerts"][0]["label_date"] == "2025-01-16"
    unknown = client.get("/addresses/0xnobody/alerts")
    assert unknown.status_code == 404 and "0xnobody" not in unknown.text


def test_cluster_scores_over_a_range(client: TestClient) -> None:
    body = client.get("/scores/clusters?start_date=2025-01-01&end_date=2025-01-03&limit=2").json()
    assert body["total"] == 6 and [r["score"] for r in body["rows"]] == [0.8, 0.8]
    assert [r["processing_date"] for r in body["rows"]] == ["2025-01-03", "2025-01-02"]


def test_the_evaluation_trend_per_day_and_model_version(client: TestClient) -> None:
    body = client.get("/evaluations?start_date=2025-01-23&end_date=2025-01-26").json()
    points = body["points"]
    assert [(p["processing_date"], p["tier"]) for p in points][:2] == [
        ("2025-01-23", "tier1"),
        ("2025-01-23", "tier3"),
    ]
    tier3 = [p for p in points if p["tier"] == "tier3"]
    assert {p["auc_roc"] for p in tier3} == {0.8} and {p["brier"] for p in tier3} == {None}
    v2 = client.get("/evaluations?start_date=2025-01-23&end_date=2025-01-26&model_version=2.0.0")
    assert {p["processing_date"] for p in v2.json()["points"]} == {"2025-01-25", "2025-01-26"}


@pytest.mark.parametrize(
    ("url", "field"),
    [
        ("/scores/alerts?start_date=2025-01-10&end_date=2025-01-01", "start_date"),
        (f"/scores/alerts?start_date=2023-01-01&end_date={LAST}", "start_date"),
        ("/scores/alerts?start_date=2025-02-30", "start_date"),
        ("/scores/alerts?end_date=latest", "end_date"),
        ("/scores/alerts?typology=PEEL%27--", "typology"),
        ("/addresses/0x%20or%201=1/alerts", "address"),
        ("/scores/clusters?network=solana", "network"),
        ("/evaluations?model_version=1%3B2", "model_version"),
    ],
)
def test_bad_range_parameters_are_422_before_any_query(
    client: TestClient, monkeypatch: pytest.MonkeyPatch, url: str, field: str
) -> None:
    monkeypatch.setattr(ResultsDatabase, "rows", lambda *a: pytest.fail("a query ran"))
    response = client.get(url)
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"][-1] == field


@pytest.mark.parametrize(
    ("url", "status"),
    [
        ("/scores/alerts?end_date=0001-01-01", 200),
        ("/scores/clusters?end_date=0001-01-01", 200),
        ("/evaluations?end_date=0001-01-29", 200),
        ("/addresses/abc/alerts?end_date=0001-12-31", 404),  # no alerts there: the usual 404
    ],
)
def test_a_range_ending_near_the_first_representable_day_is_answered_not_an_error(
    client: TestClient, url: str, status: int
) -> None:
    response = client.get(url)
    assert response.status_code == status, response.text
    if status == 200:
        assert response.json()["start_date"] == "0001-01-01"
    else:
        assert "0001-12-31..0001-12-31" in response.json()["detail"]


def test_a_range_without_published_days_is_empty(client: TestClient) -> None:
    body = client.get("/scores/alerts?start_date=2024-06-01&end_date=2024-06-30").json()
    assert (body["days"], body["total"], body["rows"]) == (0, 0, [])


def test_an_address_history_longer_than_a_range_shows_its_newest_year(history: Path) -> None:
    # a day published two years before the others
    old = FIRST - dt.timedelta(2 * 365)
    LocalStorage(history).publish_dir(layout.output_day(NETWORK, old), day_files(old))
    try:
        with TestClient(
            create_app(history, NETWORKS, NETWORK), base_url="http://127.0.0.1"
        ) as client:
            body = client.get(f"/addresses/{ADDRESS}/alerts").json()
        assert body["start_date"] == str(LAST - dt.timedelta(MAX_RANGE_DAYS - 1))
        assert body["count"] == 39
    finally:
        LocalStorage(history).delete(layout.output_day(NETWORK, old))
