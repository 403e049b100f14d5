"""The results API: routes, validation and error bodies, partition pruning, a real server."""

from __future__ import annotations

import datetime as dt
import io
import json
import re
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import uvicorn
from fastapi import FastAPI
from fastapi.testclient import TestClient

from aml_pipeline.api import server
from aml_pipeline.api.app import SECURITY_HEADERS, create_app
from aml_pipeline.api.database import (
    ALERT_SCORES,
    InvalidParameter,
    ResultsDatabase,
    parse_date,
)
from aml_pipeline.api.server import MAX_HEAD_BYTES, server_config
from aml_pipeline.storage.objects import LocalStorage

NETWORK = "ethereum"
NETWORKS = ["ethereum", "bitcoin"]
DAYS = [dt.date(2025, 1, 8), dt.date(2025, 1, 9), dt.date(2025, 1, 10)]
LAST = DAYS[-1]
# (alert_id, score): a tie at 0.9 is broken by alert_id
SCORES = [("a-3", 0.2), ("a-1", 0.9), ("a-2", 0.9), ("a-4", 0.55), ("a-5", 0.05)]


def _explanation(version: str, feature: str) -> str:
    top = [
        {"feature": feature, "value": 1.5, "contribution": 0.7},
        {"feature": "degree", "value": None, "contribution": -0.1},
        {"feature": "typology_type", "value": "FAN_IN", "contribution": 0.05},
    ]
    return json.dumps({"model_version": version, "base_value": -1.0, "top_features": top})


def _parquet(columns: dict[str, pa.Array]) -> bytes:
    buf = io.BytesIO()
    pq.write_table(pa.table(columns), buf)
    return buf.getvalue()


def day_files(
    day: dt.date,
    scores: list[tuple[str, float]] = SCORES,
    context: dict[str, tuple[str, str]] | None = None,
) -> dict[str, bytes]:
    """A published day directory's files, as the pipeline writes them; ``context`` gives an
    alert's (address, typology), by default ``addr-{alert_id}`` and FAN_IN."""
    context = context or {}
    n = len(scores)
    ids = [a for a, _ in scores]
    values = [s for _, s in scores]

    def common(rows: int) -> dict[str, pa.Array]:
        return {
            "network": pa.array([NETWORK] * rows),
            "processing_date": pa.array([day] * rows, pa.date32()),
            "window_days": pa.array([7] * rows, pa.int32()),
        }

    ranked = sorted(scores, key=lambda r: (-r[1], r[0]))
    return {
        "alert_scores.parquet": _parquet(
            {
                "alert_id": pa.array(ids),
                "score": pa.array(values, pa.float64()),
                "model_version": pa.array(["1.0.0"] * n),
                "latency_ms": pa.array([12.5] * n, pa.float64()),
                # a-5 was outside the explanation coverage: no explanation
                "explain_json": pa.array(
                    [None if a == "a-5" else _explanation("1.0.0", f"f_{a}") for a in ids],
                    pa.string(),
                ),
                "address": pa.array([context.get(a, (f"addr-{a}",))[0] for a in ids]),
                "typology_type": pa.array([context.get(a, ("", "FAN_IN"))[1] for a in ids]),
                **common(n),
            }
        ),
        "alert_rankings.parquet": _parquet(
            {
                "alert_id": pa.array([a for a, _ in ranked]),
                "rank": pa.array(range(1, n + 1), pa.int32()),
                "ranker_score": pa.array([s for _, s in ranked], pa.float64()),
                "model_version": pa.array(["1.0.0"] * n),
                **common(n),
            }
        ),
        "cluster_scores.parquet": _parquet(
            {
                "cluster_id": pa.array(["c-1", "c-2"]),
                "score": pa.array([0.3, 0.8], pa.float64()),
                "model_version": pa.array(["1.0.0"] * 2),
                "explain_json": pa.array([_explanation("1.0.0", "size")] * 2),
                **common(2),
            }
        ),
        "processing_metadata.json": json.dumps({"status": "success", "alerts": n}).encode(),
    }


def _evaluation(root: Path, tier: str, day: dt.date, passed: bool | None) -> None:
    path = root / "warehouse" / NETWORK / f"{tier}_evaluation" / f"{day}.parquet"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(
        _parquet(
            {
                "network": pa.array([NETWORK]),
                "processing_date": pa.array([day], pa.date32()),
                "model_version": pa.array(["1.0.0"]),
                "passed": pa.array([passed], pa.bool_()),
                "score": pa.array([0.97 if passed else None], pa.float64()),
                "details_json": pa.array([json.dumps({"checks": {"determinism": True}})]),
            }
        )
    )


@pytest.fixture
def data_root(tmp_path: Path) -> Path:
    """Three published ethereum days, evaluations, a registry; bitcoin has nothing."""
    output = tmp_path / "output" / NETWORK
    for day in DAYS:
        (output / str(day)).mkdir(parents=True)
        for name, data in day_files(day).items():
            (output / str(day) / name).write_bytes(data)
    (output / ".2025-01-11.abc.staging").mkdir()  # an unfinished publish
    (output / ".2025-01-11.abc.staging" / "alert_scores.parquet").write_bytes(b"partial")
    (output / "2025-01-12").mkdir()  # no alert_scores.parquet: not available
    (output / "notes").mkdir()
    _evaluation(tmp_path, "tier1", LAST, True)
    _evaluation(tmp_path, "tier2", LAST, None)
    registry = {"versions": [{"version": "1.0.0"}], "champions": {"alert_scorer": "1.0.0"}}
    models = tmp_path / "trained_models" / NETWORK / "model_metadata.json"
    models.parent.mkdir(parents=True)
    models.write_text(json.dumps(registry))
    return tmp_path


@pytest.fixture
def client(data_root: Path) -> Iterator[TestClient]:
    with TestClient(
        create_app(data_root, NETWORKS, NETWORK), base_url="http://127.0.0.1"
    ) as test_client:
        yield test_client


def test_health_and_networks(client: TestClient) -> None:
    assert client.get("/health").json() == {"status": "ok"}
    assert client.get("/networks").json() == {
        "default_network": NETWORK,
        "networks": [
            {"name": NETWORK, "latest_date": str(LAST), "available_days": 3},
            {"name": "bitcoin", "latest_date": None, "available_days": 0},
        ],
    }


def test_dates(client: TestClient) -> None:
    body = client.get("/dates/available").json()
    assert body == {"network": NETWORK, "count": 3, "dates": [str(d) for d in reversed(DAYS)]}
    assert client.get("/dates/latest").json() == {"network": NETWORK, "processing_date": str(LAST)}
    assert client.get("/dates/available", params={"network": "bitcoin"}).json()["dates"] == []
    missing = client.get("/dates/latest", params={"network": "bitcoin"})
    assert missing.status_code == 404
    assert "bitcoin" in missing.json()["detail"]


def test_alert_scores_sorted_paged_and_filtered(client: TestClient) -> None:
    body = client.get(f"/scores/alerts/{LAST}").json()
    assert body["network"] == NETWORK and body["processing_date"] == str(LAST)
    assert (body["total"], body["limit"], body["offset"]) == (5, 100, 0)
    assert [r["alert_id"] for r in body["rows"]] == ["a-1", "a-2", "a-4", "a-3", "a-5"]
    assert body["rows"][0] == {
        "alert_id": "a-1",
        "score": 0.9,
        "model_version": "1.0.0",
        "latency_ms": 12.5,
    }
    page = client.get(f"/scores/alerts/{LAST}", params={"limit": 2, "offset": 1}).json()
    assert page["total"] == 5 and [r["alert_id"] for r in page["rows"]] == ["a-2", "a-4"]
    high = client.get(f"/scores/alerts/{LAST}", params={"min_score": 0.5}).json()
    assert high["total"] == 3 and len(high["rows"]) == 3
    beyond = client.get(f"/scores/alerts/{LAST}", params={"offset": 50}).json()
    assert beyond["total"] == 5 and beyond["rows"] == []
    assert client.get("/scores/alerts/latest").json() == body


def test_rankings_and_clusters(client: TestClient) -> None:
    ranks = client.get("/rankings/alerts/latest").json()
    assert ranks["total"] == 5
    assert [(r["rank"], r["alert_id"]) for r in ranks["rows"]][:3] == [
        (1, "a-1"),
        (2, "a-2"),
        (3, "a-4"),
    ]
    clusters = client.get(f"/scores/clusters/{DAYS[0]}", params={"min_score": 0.5}).json()
    assert clusters["total"] == 1
    (row,) = clusters["rows"]
    assert row["cluster_id"] == "c-2" and row["explanation"]["top_features"][0]["feature"] == "size"


def test_one_alert_with_explanation(client: TestClient) -> None:
    body = client.get(f"/scores/alerts/{LAST}/a-4").json()
    assert body["alert_id"] == "a-4" and body["rank"] == 3 and body["score"] == 0.55
    assert body["explanation"] == {
        "model_version": "1.0.0",
        "base_value": -1.0,
        "top_features": [
            {"feature": "f_a-4", "value": 1.5, "contribution": 0.7},
            {"feature": "degree", "value": None, "contribution": -0.1},
            {"feature": "typology_type", "value": "FAN_IN", "contribution": 0.05},
        ],
    }
    missing = client.get(f"/scores/alerts/{LAST}/nope")
    assert missing.status_code == 404 and "nope" in missing.json()["detail"]
    injected = client.get(f"/scores/alerts/{LAST}/x' OR '1'='1")
    assert injected.status_code == 404


def test_evaluations_and_models(client: TestClient) -> None:
    body = client.get("/evaluations/latest").json()
    assert [t["tier"] for t in body["tiers"]] == ["tier1", "tier2"]
    assert body["tiers"][0] == {
        "tier": "tier1",
        "model_version": "1.0.0",
        "passed": True,
        "score": 0.97,
        "details": {"checks": {"determinism": True}},
    }
    assert body["tiers"][1]["passed"] is None
    assert client.get(f"/evaluations/{DAYS[0]}").json()["tiers"] == []
    assert client.get("/evaluations/2024-12-31").status_code == 404
    models = client.get("/models").json()
    assert models["champions"] == {"alert_scorer": "1.0.0"}
    assert models["registry"]["versions"] == [{"version": "1.0.0"}]
    assert client.get("/models", params={"network": "bitcoin"}).status_code == 404


ROUTES = ["/scores/alerts/{}", "/rankings/alerts/{}", "/scores/clusters/{}", "/evaluations/{}"]
BAD_DATES = [
    "2025-01-10' OR 1=1 --",
    "latest;DROP TABLE x",
    "2025-1-10",
    "20250110",
    "2025-02-30",
    "2025-W02-5",
    "\u0662\u0660\u0662\u0665-\u0660\u0661-\u0661\u0660",  # Arabic-Indic digits
    "'; SELECT * FROM read_csv('passwd') --",
]
BAD_NETWORKS = ["unknown", "Ethereum", "eth-1", "ethereum'--", "../../etc", "ethereum\n", ""]
BAD_PARAMS = [
    {"limit": 0},
    {"limit": 10_001},
    {"limit": -1},
    {"limit": "abc"},
    {"limit": "1; DROP"},
    {"offset": -1},
    {"offset": 10**30},
    {"min_score": 1.5},
    {"min_score": -0.1},
    {"min_score": "nan"},
    {"min_score": "0.5 OR 1=1"},
]


@pytest.fixture
def no_queries(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> TestClient:
    """A client whose database fails the test if any query runs."""

    def forbidden() -> None:
        raise AssertionError("a query ran")

    monkeypatch.setattr(client.app.state.db, "_cursor", forbidden)
    return client


def _assert_clean(text: str, data_root: Path) -> None:
    for leak in (str(data_root), "Traceback", "SELECT", "read_parquet", "duckdb"):
        assert leak not in text


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize("date", BAD_DATES)
def test_malformed_dates_are_rejected_before_any_query(
    no_queries: TestClient, data_root: Path, route: str, date: str
) -> None:
    response = no_queries.get(route.format(date))
    assert response.status_code == 422, response.text
    _assert_clean(response.text, data_root)


@pytest.mark.parametrize("network", BAD_NETWORKS)
@pytest.mark.parametrize("route", [*ROUTES, "/dates/available", "/dates/latest", "/models"])
def test_malformed_or_unknown_networks_are_rejected(
    no_queries: TestClient, data_root: Path, route: str, network: str
) -> None:
    response = no_queries.get(route.format("latest"), params={"network": network})
    assert response.status_code == 422, response.text
    _assert_clean(response.text, data_root)


@pytest.mark.parametrize("route", ROUTES[:3])
@pytest.mark.parametrize("params", BAD_PARAMS)
def test_bad_paging_parameters_are_rejected(
    no_queries: TestClient, data_root: Path, route: str, params: dict
) -> None:
    response = no_queries.get(route.format(LAST), params=params)
    assert response.status_code == 422, response.text
    _assert_clean(response.text, data_root)


@pytest.mark.parametrize(
    "url",
    [
        "/scores/alerts/..%2F..%2Fetc",
        "/scores/alerts/..%2F..%2Fetc%2Fpasswd/x",
        "/scores/alerts/%2E%2E",
        "/evaluations/..%2F2025-01-10",
        "/scores/alerts/latest?network=..%2F..%2Fetc",
        "/dates/available?network=ethereum%2F..%2Fbitcoin",
    ],
)
def test_path_traversal_is_rejected(no_queries: TestClient, data_root: Path, url: str) -> None:
    response = no_queries.get(url)
    assert response.status_code in (404, 422), response.text
    _assert_clean(response.text, data_root)


def test_unknown_date_and_alert_are_404(client: TestClient, data_root: Path) -> None:
    for url in (
        "/scores/alerts/2025-01-07",
        "/scores/alerts/2025-01-12",
        "/rankings/alerts/2030-01-01",
    ):
        response = client.get(url)
        assert response.status_code == 404
        assert response.json()["detail"].startswith("no published results")
        _assert_clean(response.text, data_root)
    assert client.get("/scores/alerts/latest", params={"network": "bitcoin"}).status_code == 404
    # a malformed parameter wins over an unknown day
    assert client.get("/scores/alerts/2025-01-07", params={"limit": 0}).status_code == 422


def test_internal_errors_are_generic(data_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    app = create_app(data_root, NETWORKS, NETWORK)

    def broken(*args: object) -> None:
        raise RuntimeError(f"secret {data_root} SELECT * FROM read_parquet")

    monkeypatch.setattr(app.state.db, "page", broken)
    with TestClient(app, base_url="http://127.0.0.1", raise_server_exceptions=False) as client:
        response = client.get("/scores/alerts/latest")
    assert response.status_code == 500
    assert response.json() == {"detail": "internal server error"}


def test_a_day_query_reads_only_that_days_files(client: TestClient, data_root: Path) -> None:
    output = data_root / "output" / NETWORK
    for day in DAYS[:-1]:
        for name in ("alert_scores.parquet", "alert_rankings.parquet", "cluster_scores.parquet"):
            (output / str(day) / name).write_bytes(b"not parquet")
    for url in (
        "/scores/alerts/latest",
        f"/rankings/alerts/{LAST}",
        f"/scores/clusters/{LAST}",
        f"/scores/alerts/{LAST}/a-1",
        "/dates/available",
    ):
        assert client.get(url).status_code == 200, url
    with TestClient(client.app, base_url="http://127.0.0.1", raise_server_exceptions=False) as raw:
        corrupt = raw.get(f"/scores/alerts/{DAYS[0]}")
    assert corrupt.status_code == 500 and corrupt.json() == {"detail": "internal server error"}


def test_newly_published_days_are_visible_without_restart(
    client: TestClient, data_root: Path
) -> None:
    assert client.get("/dates/latest").json()["processing_date"] == str(LAST)
    new_day = dt.date(2025, 1, 11)
    LocalStorage(data_root).publish_dir(
        f"output/{NETWORK}/{new_day}", day_files(new_day, [("b-1", 0.4)])
    )
    assert client.get("/dates/latest").json()["processing_date"] == str(new_day)
    assert client.get("/dates/available").json()["count"] == 4
    rows = client.get("/scores/alerts/latest").json()["rows"]
    assert [r["alert_id"] for r in rows] == ["b-1"]
    LocalStorage(data_root).publish_dir(
        f"output/{NETWORK}/{new_day}", day_files(new_day, [("b-2", 0.6)])
    )  # a re-run replaces the day: the new content is served, not a cached copy
    assert client.get(f"/scores/alerts/{new_day}/b-2").json()["score"] == 0.6


def test_openapi_documents_routes_parameters_and_models(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    assert set(spec["paths"]) == {
        "/health",
        "/networks",
        "/dates/available",
        "/dates/latest",
        "/scores/alerts/{date}",
        "/scores/alerts/{date}/{alert_id}",
        "/rankings/alerts/{date}",
        "/scores/clusters/{date}",
        "/evaluations/{date}",
        "/models",
        "/scores/alerts",
        "/scores/clusters",
        "/addresses/{address}/alerts",
        "/evaluations",
        "/runs/failures",
    }
    params = {p["name"]: p for p in spec["paths"]["/scores/alerts/{date}"]["get"]["parameters"]}
    assert set(params) == {"date", "network", "limit", "offset", "min_score"}
    assert all(p["description"] and p["schema"]["examples"] for p in params.values())
    assert params["date"]["examples"]["latest"]["value"] == "latest"
    assert params["network"]["schema"]["enum"] == NETWORKS
    assert params["limit"]["schema"]["maximum"] == 10_000
    responses = spec["paths"]["/scores/alerts/{date}"]["get"]["responses"]
    assert {"200", "404", "422"} <= set(responses)
    assert "AlertScoresPage" in spec["components"]["schemas"]


def test_database_validation_and_sandbox(data_root: Path) -> None:
    db = ResultsDatabase(data_root, NETWORKS)
    for text in ("20250110", "2025-1-10", "latest", "2025-01-10\n", "2025-13-01"):
        with pytest.raises(InvalidParameter):
            parse_date(text)
    with pytest.raises(InvalidParameter):
        db.check_network("ethereum\n")
    with pytest.raises(InvalidParameter):
        db.resolve_day("ethereum", "../2025-01-10")
    with pytest.raises(duckdb.PermissionException):  # DuckDB reads nothing outside data_root
        db.rows("SELECT * FROM read_csv($path)", {"path": "/etc/passwd"})
    with pytest.raises(duckdb.InvalidInputException):  # nor can a query lift the sandbox
        db.rows("SET enable_external_access = true", {})
    assert db.page(ALERT_SCORES, NETWORK, LAST, limit=1).rows[0]["alert_id"] == "a-1"
    db.close()
    assert db.latest_date(NETWORK) == LAST and db.page(ALERT_SCORES, NETWORK, LAST).total == 5


@contextmanager
def running_server(app: FastAPI) -> Iterator[str]:
    """Run ``app`` with uvicorn on a free loopback port in a thread; yield its base URL."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(server_config(app))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not server.started:
            assert thread.is_alive() and time.monotonic() < deadline, "server did not start"
            time.sleep(0.01)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()
    assert not thread.is_alive()


_LOOPBACK = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never via a proxy


def _get(url: str) -> tuple[int, dict]:
    try:
        with _LOOPBACK.open(url, timeout=10) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as error:
        return error.code, json.load(error)


def test_real_uvicorn_server_on_loopback(data_root: Path) -> None:
    app = create_app(data_root, NETWORKS, NETWORK)
    with running_server(app) as base_url:
        assert _get(f"{base_url}/health") == (200, {"status": "ok"})
        urls = [f"{base_url}/scores/alerts/{d}" for d in DAYS] * 10
        urls += [f"{base_url}/scores/alerts/latest/a-2"] * 10
        with ThreadPoolExecutor(8) as pool:
            responses = list(pool.map(_get, urls))
        assert all(status == 200 for status, _ in responses)
        assert {body["rows"][0]["alert_id"] for _, body in responses[:30]} == {"a-1"}
        assert responses[-1][1]["rank"] == 2
        status, body = _get(f"{base_url}/scores/alerts/latest;DROP")
        assert status == 422 and "DROP" not in json.dumps(body)


def test_requests_during_a_republication_get_the_old_day_or_the_new(data_root: Path) -> None:
    """Clients hammer a day over HTTP while it is re-published in a loop: every answer is a
    200 from one whole version (its total and rows agree), never a 404 or a 500."""
    storage, key = LocalStorage(data_root), f"output/{NETWORK}/{LAST}"
    versions = {n: [(f"v{n}-{i}", 0.5) for i in range(n)] for n in range(1, 6)}
    storage.publish_dir(key, day_files(LAST))  # as the pipeline publishes (a versioned day)
    stop, answers = threading.Event(), []

    def hammer(base_url: str) -> None:
        while not stop.is_set():
            answers.append(_get(f"{base_url}/scores/alerts/{LAST}?limit=100"))

    with running_server(create_app(data_root, NETWORKS, NETWORK)) as base_url:
        clients = [threading.Thread(target=hammer, args=(base_url,)) for _ in range(4)]
        for thread in clients:
            thread.start()
        for round_ in range(60):
            n = round_ % 5 + 1
            storage.publish_dir(key, day_files(LAST, versions[n]))
            time.sleep(0.005)
        stop.set()
        for thread in clients:
            thread.join()
    assert len(answers) > 50
    for status, body in answers:
        assert status == 200, body
        ids = [row["alert_id"] for row in body["rows"]]
        if ids[0].startswith("v"):  # a re-published version: n rows, all of version n
            assert {i.split("-")[0] for i in ids} == {f"v{body['total']}"} == {f"v{len(ids)}"}, body


def test_serve_command_passes_the_configured_networks(monkeypatch, tmp_path):
    from aml_pipeline import cli
    from aml_pipeline.api import server

    calls = []
    monkeypatch.setattr(server, "serve", lambda *args: calls.append(args))
    monkeypatch.setenv("AML_NETWORKS", "ethereum,bitcoin")
    monkeypatch.setenv("AML_DATA_ROOT", str(tmp_path))
    assert cli.main(["serve", "--port", "8123"]) == 0
    assert calls == [("127.0.0.1", 8123, str(tmp_path), "ethereum", ["ethereum", "bitcoin"])]


def test_explanations_carry_category_names_and_may_be_absent(client: TestClient) -> None:
    explained = client.get(f"/scores/alerts/{LAST}/a-1").json()["explanation"]
    assert {"feature": "typology_type", "value": "FAN_IN", "contribution": 0.05} in explained[
        "top_features"
    ]
    assert client.get(f"/scores/alerts/{LAST}/a-5").json()["explanation"] is None
    page = client.get(f"/scores/alerts/{LAST}", params={"limit": 10}).json()
    assert {row["alert_id"] for row in page["rows"]} >= {"a-5"}
    clusters = client.get(f"/scores/clusters/{LAST}").json()["rows"]
    assert clusters[0]["explanation"]["top_features"][2]["value"] == "FAN_IN"


def test_another_host_name_is_refused_against_dns_rebinding(client: TestClient) -> None:
    latest = "/scores/alerts/latest?limit=1"
    assert client.get(latest).status_code == 200
    refused = client.get(latest, headers={"Host": "attacker.example"})
    assert refused.status_code == 400 and "a-1" not in refused.text
    assert client.get(latest, headers={"Host": "localhost:8000"}).status_code == 200
    assert client.get(latest, headers={"Host": "127.0.0.1:80@evil.example"}).status_code == 400
    deployed = create_app(client.app.state.db.data_root, NETWORKS, NETWORK, ["aml.internal"])
    with TestClient(deployed, base_url="http://aml.internal") as named:
        assert named.get(latest).status_code == 200
        assert named.get(latest, headers={"Host": "127.0.0.1"}).status_code == 400
    ipv6 = create_app(client.app.state.db.data_root, NETWORKS, NETWORK, ["::1", "*.corp.example"])
    with TestClient(ipv6, base_url="http://[::1]:8000") as loopback6:
        assert loopback6.get(latest).status_code == 200
        assert loopback6.get(latest, headers={"Host": "aml.corp.example"}).status_code == 200
        for host in ("corp.example", "[::2]:8000", "", "evil.example:80@[::1]", "::1:80@x"):
            assert loopback6.get(latest, headers={"Host": host}).status_code == 400, host


def test_every_answer_carries_the_security_headers(
    client: TestClient, data_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Refusals and internal errors included, each header once."""
    app = create_app(data_root, NETWORKS, NETWORK)
    monkeypatch.setattr(app.state.db, "page", lambda *args: 1 / 0)
    with TestClient(app, base_url="http://127.0.0.1", raise_server_exceptions=False) as broken:
        answers = {
            "a 500": broken.get("/scores/alerts/latest"),
            "a refused host": client.get("/health", headers={"Host": "attacker.example"}),
            "a 422": client.get("/scores/alerts/latest", params={"limit": 0}),
        }
    answers |= {
        url: client.get(url)
        for url in ("/health", "/scores/alerts/latest", "/scores/alerts/2000-01-01", "/docs")
    }
    assert answers["a 500"].json() == {"detail": "internal server error"}
    for what, response in answers.items():
        for name, value in SECURITY_HEADERS.items():
            assert response.headers.get_list(name) == [value], (what, name)


def test_the_documentation_pages_load_nothing_from_the_internet(client: TestClient) -> None:
    for page in ("/docs", "/redoc"):
        html = client.get(page).text
        assert "http://" not in html and "https://" not in html, page
        scripts = re.findall(r'src="([^"]+\.js)"', html)
        assert scripts, page
        for script in scripts:
            asset = client.get(script)
            assert asset.status_code == 200 and len(asset.content) > 100_000, script


def test_head_answers_every_get_route_without_a_body(client: TestClient) -> None:
    for url in ("/health", "/scores/alerts/latest?limit=2", "/docs", "/scores/alerts/2000-01-01"):
        got, head = client.get(url), client.head(url)
        assert head.status_code == got.status_code, url
        assert head.content == b"" and got.content, url
        assert head.headers["content-length"] == got.headers["content-length"], url
    assert client.post("/health").status_code == 405


def test_with_a_token_every_route_but_health_and_the_docs_needs_it(data_root: Path) -> None:
    app = create_app(data_root, NETWORKS, NETWORK, token="s3cret")
    with TestClient(app, base_url="http://127.0.0.1") as client:
        latest = "/scores/alerts/latest"
        refused = client.get(latest)
        assert refused.status_code == 401 and refused.headers["WWW-Authenticate"] == "Bearer"
        assert "a-1" not in refused.text and refused.headers["X-Frame-Options"] == "DENY"
        wrong = client.get(latest, headers={"Authorization": "Bearer guess"})
        assert wrong.status_code == 401
        good = client.get(latest, headers={"Authorization": "Bearer s3cret"})
        assert good.status_code == 200
        lower = client.get(latest, headers={"Authorization": "bearer s3cret"})
        assert lower.status_code == 200  # the scheme is case-insensitive (RFC 7235)
        assert client.get("/healthz").status_code == 401  # only the open paths themselves
        for open_path in ("/health", "/docs", "/openapi.json"):
            assert client.get(open_path).status_code == 200, open_path


def test_serving_beyond_this_machine_needs_a_token(monkeypatch, data_root: Path) -> None:
    from aml_pipeline.api import server

    monkeypatch.delenv("AML_API_TOKEN", raising=False)
    with pytest.raises(SystemExit, match="without a bearer token: set AML_API_TOKEN"):
        server.serve("0.0.0.0", 8000, data_root, NETWORK, NETWORKS)
    assert server.is_loopback("127.0.0.1") and server.is_loopback("::1")
    assert server.is_loopback("localhost") and not server.is_loopback("10.0.0.5")


def _raw(base_url: str, request: bytes) -> bytes:
    host, port = base_url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as conn:
        conn.sendall(request)
        return conn.recv(4096)


def test_the_server_refuses_an_oversized_request_head(data_root: Path) -> None:
    with running_server(create_app(data_root, NETWORKS, NETWORK)) as base_url:
        small = b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
        assert _raw(base_url, small).startswith(b"HTTP/1.1 200")
        big = b"X-Big: " + b"a" * (2 * MAX_HEAD_BYTES) + b"\r\n"
        oversized = small.replace(b"Connection", big + b"Connection")
        answer = _raw(base_url, oversized)
        assert answer.startswith(b"HTTP/1.1 400") and b"server:" not in answer.lower()


def test_a_half_sent_request_is_closed_after_the_head_deadline(
    data_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Also after an answered request on the same connection, and a byte now and then
    does not hold it open; a slow answer is not cut."""
    monkeypatch.setattr(server, "REQUEST_HEAD_S", 0.5)
    with running_server(create_app(data_root, NETWORKS, NETWORK)) as base_url:
        port = int(base_url.rsplit(":", 1)[1])
        request = b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            start = time.monotonic()
            sock.sendall(request)  # never finished, a byte every 0.2 s
            for _ in range(20):
                try:
                    sock.sendall(b"X")
                except OSError:
                    break
                time.sleep(0.2)
            sock.settimeout(5)
            assert sock.recv(100) == b""  # closed by the server
            assert time.monotonic() - start < 2.5
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(request + b"\r\n")
            answer = b""
            while b"\r\n\r\n" not in answer:
                answer += sock.recv(4096)
            head, body = answer.split(b"\r\n\r\n", 1)
            length = int(re.search(rb"content-length: (\d+)", head.lower()).group(1))
            while len(body) < length:
                body += sock.recv(4096)
            assert head.startswith(b"HTTP/1.1 200")
            time.sleep(0.3)
            sock.sendall(request)  # the next request on the connection, half-sent
            start = time.monotonic()
            assert sock.recv(100) == b"" and time.monotonic() - start < 2


def test_a_truncated_registry_is_named_by_the_pipeline_and_a_503_by_the_api(
    data_root: Path, client: TestClient
) -> None:
    from aml_pipeline.models.registry import ModelRegistry, RegistryUnreadable

    path = data_root / "trained_models" / NETWORK / "model_metadata.json"
    path.write_bytes(path.read_bytes()[:20])
    with pytest.raises(RegistryUnreadable, match=r"model_metadata\.json is not readable JSON"):
        ModelRegistry(LocalStorage(data_root), NETWORK).champions()
    answer = client.get("/models")
    assert answer.status_code == 503 and "unreadable" in answer.json()["detail"]
    assert str(data_root) not in answer.text
    path.write_text('["not", "a", "registry"]')
    assert client.get("/models").status_code == 503
