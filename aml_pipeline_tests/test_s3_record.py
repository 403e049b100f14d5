"""The whole pipeline with its record on a real S3 server (``make s3-check``): the same
days run on the local disk and on SeaweedFS publish identical scores, rankings and
cluster scores (all but ``latency_ms``, the time each scoring took)."""

from __future__ import annotations

import io
import time

import pandas as pd
import pytest

from aml_pipeline import cli
from aml_pipeline.storage import s3
from aml_pipeline.storage.objects import storage_at

pytestmark = pytest.mark.s3

DEMO = ["demo", "--days", "6", "--train-days", "4", "--end-date", "2025-03-10"]
DAYS = [f"2025-03-{d:02d}" for d in range(5, 11)]
PUBLISHED = ("alert_scores.parquet", "alert_rankings.parquet", "cluster_scores.parquet")


def _published(root: str) -> dict[str, pd.DataFrame]:
    storage = storage_at(root)
    found = {}
    for day in DAYS:
        version = storage.resolve_dir(f"output/ethereum/{day}")
        for name in PUBLISHED:
            frame = pd.read_parquet(io.BytesIO(storage.read_bytes(f"{version}/{name}")))
            found[f"{day}/{name}"] = frame.drop(columns=["latency_ms"], errors="ignore")
    return found


def test_the_demo_on_s3_publishes_what_it_publishes_on_a_local_disk(
    cli_home, s3_root, monkeypatch, capsys
):
    assert cli.main(DEMO) == 0, capsys.readouterr().err
    local = _published(str(cli_home / "data"))
    monkeypatch.setenv("AML_DATA_ROOT", s3_root)
    monkeypatch.setenv("DAGSTER_HOME", str(cli_home / "second"))
    (cli_home / "second").mkdir()
    (cli_home / "second" / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    assert cli.main(DEMO) == 0, capsys.readouterr().err
    remote = _published(s3_root)
    assert set(remote) == set(local)
    for name, frame in local.items():
        assert len(frame) > 0, name
        pd.testing.assert_frame_equal(remote[name], frame, check_exact=True, obj=name)
    bucket, prefix = s3.split_url(s3_root)
    listed = s3.client().list_objects_v2(Bucket=bucket, Prefix=f"{prefix}/output/ethereum/")
    assert listed["KeyCount"] > 0  # on the server, not on a local disk
    assert not (cli_home / "second" / "data").exists()
    # the API answers from S3 what it answers from the local disk
    remote, local_answers = _answers(s3_root), _answers(str(cli_home / "data"))
    for route, answer in local_answers.items():
        assert remote[route] == answer, _difference(remote[route], answer, route)
    # ... and so does the SQL console
    assert _console(s3_root) == _console(str(cli_home / "data"))


CONSOLE = (
    "SELECT processing_date, count(*), round(sum(score), 9) FROM alert_scores "
    "GROUP BY 1 ORDER BY 1",
    "SELECT count(*) FROM raw_alerts WHERE processing_date = DATE '2025-03-10'",
    "SELECT count(*), sum(is_sar_filed::INT) FROM labels",
)


def _console(root: str) -> list[list[tuple]]:
    from aml_pipeline.api.console import open_console

    with open_console(root, ["ethereum"]) as (conn, counts):
        assert counts["alert_scores"] == len(DAYS)
        return [conn.execute(sql).fetchall() for sql in CONSOLE]


ROUTES = (
    "/dates/available",
    "/scores/alerts/latest?limit=50",
    "/rankings/alerts/2025-03-07?limit=50",
    "/scores/clusters/latest?limit=50",
    "/evaluations/latest",
    "/scores/alerts?start_date=2025-03-05&end_date=2025-03-10&limit=100",
    "/evaluations?start_date=2025-03-05&end_date=2025-03-10",
)


def _without_latency(value):
    """``value`` without what measures time (the latency columns and tier 1's check)."""
    if isinstance(value, dict):
        return {k: _without_latency(v) for k, v in value.items() if "latency" not in k}
    if isinstance(value, list):
        return [_without_latency(v) for v in value]
    return value


def _difference(a, b, where: str) -> str:
    """Where two JSON values first differ."""
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b)):
            if a.get(key) != b.get(key):
                return _difference(a.get(key), b.get(key), f"{where}.{key}")
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            if x != y:
                return _difference(x, y, f"{where}[{i}]")
    return f"{where}: {a!r} != {b!r}"


def _answers(root: str) -> dict[str, object]:
    from fastapi.testclient import TestClient

    from aml_pipeline.api.app import create_app

    app = create_app(root, ["ethereum"], "ethereum")
    with TestClient(app, base_url="http://127.0.0.1") as client:
        answers = {}
        for route in ROUTES:
            response = client.get(route)
            assert response.status_code == 200, (route, response.text)
            answers[route] = _without_latency(response.json())
    return answers


@pytest.mark.parametrize(
    ("change", "says"),
    [
        ({"AWS_ENDPOINT_URL": "http://127.0.0.1:1"}, "cannot reach the S3 endpoint"),
        ({"AWS_SECRET_ACCESS_KEY": "wrong"}, "the S3 credentials are refused"),
        ({"bucket": "no-such-bucket"}, "no bucket 'no-such-bucket'"),
        ({"reader": True}, "the credentials cannot write to the bucket"),
    ],
)
def test_a_data_root_that_cannot_be_used_is_one_line_before_any_run(
    cli_home, s3_root, s3_server, monkeypatch, capsys, change, says
):
    root = s3_root
    if "bucket" in change:
        root = f"s3://{change.pop('bucket')}/record"
    if change.pop("reader", False):
        change = s3_server.env(reader=True)
    monkeypatch.setenv("AML_DATA_ROOT", root)
    for name, value in change.items():
        monkeypatch.setenv(name, value)
    began = time.monotonic()
    day = ["--start-date", "2025-03-10", "--end-date", "2025-03-10"]
    code = cli.main(["download", "--network", "ethereum", *day])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith(f"settings: AML_DATA_ROOT={root}: {says}"), err
    assert len(err.splitlines()) == 1 and time.monotonic() - began < 30
    assert not list((cli_home / "storage").glob("*"))  # no run was started


def test_a_run_from_the_ui_is_refused_before_its_first_step_with_that_line(tmp_path, s3_root):
    from aml_pipeline.defs.definitions import build_definitions
    from aml_pipeline_tests.conftest import settings_for

    root = s3_root.replace("s3://", "s3://missing-").split("/record")[0] + "/record"
    defs = build_definitions(settings_for(tmp_path, data_root=root))
    result = defs.resolve_job_def("ingestion_job").execute_in_process(
        partition_key="2025-01-10", raise_on_error=False
    )
    assert not result.success
    assert not result.get_step_success_events()
    text = "\n".join(str(e.event_specific_data) for e in result.all_events)
    assert f"AML_DATA_ROOT={root}: no bucket" in text, text
