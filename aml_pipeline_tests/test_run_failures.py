"""Operators hear about failed runs: the run-failure sensor and the command line record each
once (network, days, step, error), the UI shows it, the API lists it, a webhook is told."""

from __future__ import annotations

import datetime as dt
import http.server
import json
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
import pyarrow.parquet as pq
import pytest
from fastapi.testclient import TestClient

from aml_pipeline import cli
from aml_pipeline.api.app import create_app
from aml_pipeline.defs.dead_runs import HOST_TAG, PROCESS_TAG, reap_dead_runs
from aml_pipeline.defs.definitions import build_definitions
from aml_pipeline.defs.resources import PipelineConfig
from aml_pipeline.defs.run_failures import RUN_FAILURES, build_run_failure_sensor
from aml_pipeline.defs.tags import RANGE_END, RANGE_START
from aml_pipeline.failures import RunFailure, tell
from aml_pipeline_tests.conftest import NETWORK, add_started_run, settings_for

pytestmark = pytest.mark.integration  # runs Dagster jobs and sensors

DAY = "2025-01-12"


def _job(tmp_path: Path) -> dg.JobDefinition:
    """The daily job over a local source that has no batches."""
    settings = settings_for(tmp_path, batch_source="local", source_dir=str(tmp_path / "sot"))
    return build_definitions(settings).resolve_job_def(f"{NETWORK}_daily_job")


def _failed_run(
    tmp_path: Path, instance: dg.DagsterInstance, job: dg.JobDefinition | None = None
) -> dg.ExecuteInProcessResult:
    """A daily run whose batch is missing from its local source (definitions loaded before
    the instance's sensor context: Dagster 1.13 leaves a disposed instance behind)."""
    job = job or _job(tmp_path)
    result = job.execute_in_process(instance=instance, partition_key=DAY, raise_on_error=False)
    assert not result.success
    return result


def _recorded(data: Path) -> list[dict]:
    files = sorted((data / "monitoring" / "run_failures").glob("*.parquet"))
    return [row for f in files for row in pq.read_table(f).to_pylist()]


def _sense(tmp_path, instance, result, webhook: str = "") -> None:
    sensor = build_run_failure_sensor(webhook)
    context = dg.build_run_status_sensor_context(
        sensor_name=sensor.name,
        dagster_instance=instance,
        dagster_run=result.dagster_run,
        dagster_event=result.get_run_failure_event(),
        resources={"pipeline": PipelineConfig.from_settings(settings_for(tmp_path))},
    ).for_run_failure()
    sensor(context)


def _materializations(instance: dg.DagsterInstance) -> list[dg.EventLogRecord]:
    return list(
        instance.fetch_materializations(RUN_FAILURES.key, limit=100).records  # newest first
    )


def test_the_sensor_records_a_failed_run_once_and_shows_it_in_the_ui(tmp_path):
    with dg.instance_for_test() as instance:
        result = _failed_run(tmp_path, instance)
        _sense(tmp_path, instance, result)
        (row,) = _recorded(tmp_path / "data")
        assert row["run_id"] == result.run_id and row["job_name"] == f"{NETWORK}_daily_job"
        assert row["network"] == NETWORK
        assert row["first_day"] == row["last_day"] == dt.date.fromisoformat(DAY)
        assert row["step"] == f"{NETWORK}__landed_batch"
        assert row["error"].startswith("no batch at LocalStorage(") and DAY in row["error"]
        (event,) = _materializations(instance)
        metadata = event.asset_materialization.metadata
        assert metadata["step"].value == row["step"] and metadata["error"].value == row["error"]
        assert metadata["run"].value == result.run_id
        _sense(tmp_path, instance, result)  # a tick evaluated again: nothing twice
        assert len(_recorded(tmp_path / "data")) == 1 and len(_materializations(instance)) == 1


def test_the_sensor_and_its_asset_are_defined_and_on_by_default():
    """(test_daemon runs it under the daemon, on a launched run and a command's run.)"""
    defs = build_definitions(settings_for(Path("/unused")))
    sensor = defs.resolve_sensor_def("run_failure_sensor")
    assert isinstance(sensor, dg.RunStatusSensorDefinition)
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING
    assert defs.resolve_assets_def(RUN_FAILURES.key).is_external


def test_a_run_marked_failed_because_its_process_died_is_recorded_without_a_step(tmp_path):
    with dg.instance_for_test() as instance:
        tags = {RANGE_START: "2025-03-11", RANGE_END: "2025-03-12", "network": NETWORK}
        tags |= {HOST_TAG: f"{socket.gethostname()}/x", PROCESS_TAG: "1:1"}
        run_id = add_started_run(instance, tags)
        assert [r.run_id for r in reap_dead_runs(instance)] == [run_id]
        run = instance.get_run_by_id(run_id)
        (failure,) = instance.all_logs(run_id, of_type=dg.DagsterEventType.RUN_FAILURE)
        context = dg.build_run_status_sensor_context(
            sensor_name="run_failure_sensor",
            dagster_instance=instance,
            dagster_run=run,
            dagster_event=failure.dagster_event,
            resources={"pipeline": PipelineConfig.from_settings(settings_for(tmp_path))},
        ).for_run_failure()
        build_run_failure_sensor("")(context)
        (row,) = _recorded(tmp_path / "data")
        assert row["step"] == "" and row["error"].startswith("Run marked failed: host")
        assert (row["first_day"], row["last_day"]) == (dt.date(2025, 3, 11), dt.date(2025, 3, 12))


@contextmanager
def _webhook() -> Iterator[tuple[str, list[dict]]]:
    received: list[dict] = []

    class Hook(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers["Content-Length"])
            received.append(json.loads(self.rfile.read(length)))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Hook)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/hook", received
    finally:
        server.shutdown()
        server.server_close()


def test_the_webhook_is_told_once_and_an_unreachable_one_loses_nothing(tmp_path):
    other = _job(tmp_path / "other")
    with dg.instance_for_test() as instance, _webhook() as (url, received):
        result = _failed_run(tmp_path, instance)
        _sense(tmp_path, instance, result, url)
        _sense(tmp_path, instance, result, url)
        (body,) = received
        assert body["run_id"] == result.run_id and body["step"] == f"{NETWORK}__landed_batch"
        assert body["text"].startswith(f"{NETWORK}_daily_job run {result.run_id} failed (")
        assert f"({NETWORK}, {DAY}, step {NETWORK}__landed_batch): " in body["text"]
    with dg.instance_for_test() as instance:
        closed = socket.socket()
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
        closed.close()  # nothing listens there
        result = _failed_run(tmp_path / "other", instance, other)
        _sense(tmp_path / "other", instance, result, f"http://127.0.0.1:{port}/hook")
        assert len(_recorded(tmp_path / "other" / "data")) == 1


def test_a_webhook_that_cannot_be_told_is_a_line_never_an_error():
    failure = RunFailure(
        dt.datetime(2025, 1, 12, tzinfo=dt.UTC), "r1", "job", NETWORK, None, None, "", "boom"
    )
    assert tell("", failure) is None
    for url in ("http://127.0.0.1:9/hook", "http://[x/hook"):  # refused; not even a URL
        problem = tell(url, failure)
        assert problem is not None and problem.startswith("the failure webhook was not reached")


def test_the_api_lists_failures_newest_first_by_network(tmp_path):
    job = _job(tmp_path)
    with dg.instance_for_test() as instance:
        first = _failed_run(tmp_path, instance, job)
        _sense(tmp_path, instance, first)
        second = _failed_run(tmp_path, instance, job)
        _sense(tmp_path, instance, second)
    client = TestClient(
        create_app(tmp_path / "data", [NETWORK, "bitcoin"], NETWORK), base_url="http://127.0.0.1"
    )
    answer = client.get("/runs/failures")
    assert answer.status_code == 200
    body = answer.json()
    assert body["count"] == 2
    assert [f["run_id"] for f in body["failures"]] == [second.run_id, first.run_id]
    assert body["failures"][0]["first_day"] == DAY
    assert client.get("/runs/failures", params={"network": "bitcoin"}).json()["count"] == 0
    assert client.get("/runs/failures", params={"limit": 1}).json()["count"] == 1
    assert client.get("/runs/failures", params={"network": "dogecoin"}).status_code == 422
    assert client.get("/runs/failures", params={"limit": 0}).status_code == 422
    empty = TestClient(
        create_app(tmp_path / "nothing", [NETWORK], NETWORK), base_url="http://127.0.0.1"
    )
    assert empty.get("/runs/failures").json() == {"network": None, "count": 0, "failures": []}


def test_a_failed_command_records_its_run_without_a_daemon(cli_home, monkeypatch):
    monkeypatch.setenv("AML_BATCH_SOURCE", "local")
    monkeypatch.setenv("AML_SOURCE_DIR", str(cli_home / "sot"))
    assert cli.main(["download", "--network", NETWORK, "--start-date", DAY, "--end-date", DAY])
    (row,) = _recorded(cli_home / "data")
    assert row["network"] == NETWORK and row["step"] == f"{NETWORK}__landed_batch"
    with dg.DagsterInstance.from_config(str(cli_home)) as instance:
        (event,) = _materializations(instance)
        assert event.run_id == "" and event.asset_materialization.metadata["error"].value


def test_a_record_that_cannot_be_written_does_not_hide_the_runs_failure(
    cli_home, monkeypatch, capsys
):
    from aml_pipeline.defs import run_failures

    def full(*args: object) -> bool:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(run_failures, "record", full)
    monkeypatch.setenv("AML_BATCH_SOURCE", "local")
    monkeypatch.setenv("AML_SOURCE_DIR", str(cli_home / "sot"))
    assert cli.main(["download", "--network", NETWORK, "--start-date", DAY, "--end-date", DAY])
    err = capsys.readouterr().err
    assert "was not recorded in monitoring/run_failures: [Errno 28]" in err
    assert "no batch at" in err  # the run's own failure, still said
