"""The deployment files in deploy/: the Helm values against the official chart's schema, the
instance, the compose file and the images agree on the settings, and the run workers' health
check tells a dead worker from a live one."""

from __future__ import annotations

import copy
import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urldefrag

import dagster as dg
import pytest
import yaml
from dagster._core.instance.config import dagster_instance_config
from dagster._core.launcher import WorkerStatus
from dagster._core.test_utils import create_run_for_test, instance_for_test
from dagster._grpc.types import ExecuteRunArgs
from dagster._serdes import deserialize_value
from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from aml_pipeline.defs import run_workers

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"
CHART = DEPLOY / "helm" / "chart"


def _external_refs(node: object, found: set[str]) -> set[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str) and not value.startswith("#"):
                found.add(value)
            _external_refs(value, found)
    elif isinstance(node, list):
        for value in node:
            _external_refs(value, found)
    return found


def _offline_validator(schema: dict) -> Draft202012Validator:
    """The chart's schema with its Kubernetes definitions (URLs Helm fetches at install)
    answered by permissive stubs: Dagster's own structure is checked, Kubernetes objects not."""
    stubs: dict[str, dict] = {}
    for ref in _external_refs(schema, set()):
        url, pointer = urldefrag(ref)
        node = stubs.setdefault(url, {})
        for part in filter(None, pointer.split("/")):
            node = node.setdefault(part.replace("~1", "/").replace("~0", "~"), {})

    def retrieve(uri: str) -> Resource:
        if uri not in stubs:
            raise LookupError(f"no network: {uri}")
        return Resource.from_contents(stubs[uri], default_specification=DRAFT202012)

    return Draft202012Validator(schema, registry=Registry(retrieve=retrieve))


def _coalesce(defaults: dict, overrides: dict) -> dict:
    """Helm's merge of a values file over the chart's defaults (maps merge, the rest replace)."""
    merged = copy.deepcopy(defaults)
    for key, value in overrides.items():
        if value is None:
            merged.pop(key, None)
        elif isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _coalesce(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def _resolved(node: dict, schema: dict) -> dict:
    """``node`` with its local ``$ref`` (``#/$defs/...``) followed."""
    while node.get("$ref", "").startswith("#/"):
        node = schema["$defs"][node["$ref"].rsplit("/", 1)[-1]]
    return node


def _unknown_keys(values: object, node: dict, schema: dict, default: object, path: str = ""):
    """Keys set in ``values`` that neither the schema nor the chart's default values name
    there (the chart's schema allows unknown keys in several places, so a typo would pass)."""
    node = _resolved(node, schema)
    if isinstance(values, list):
        items = node.get("items", {})
        return [bad for value in values for bad in _unknown_keys(value, items, schema, None, path)]
    if not isinstance(values, dict):
        return []
    branches = [node, *node.get("anyOf", []), *node.get("oneOf", []), *node.get("allOf", [])]
    known: dict[str, dict] = {}
    for branch in branches:
        known.update(_resolved(branch, schema).get("properties", {}))
    defaults = default if isinstance(default, dict) else {}
    if not known and not defaults:  # a free-form map (env, resources, labels ...)
        return []
    found = []
    for key, value in values.items():
        if key not in known and key not in defaults:
            found.append(f"{path}/{key}")
        else:
            child = f"{path}/{key}"
            found.extend(_unknown_keys(value, known.get(key, {}), schema, defaults.get(key), child))
    return found


def _helm_problems(values: dict) -> list[str]:
    schema = json.loads((CHART / "values.schema.json").read_text())
    defaults = yaml.safe_load((CHART / "values.yaml").read_text())
    defaults.setdefault("ui", {})  # the stored defaults predate the schema's `ui` block
    merged = _coalesce(defaults, values)
    errors = [e.message for e in _offline_validator(schema).iter_errors(merged)]
    unknown = _unknown_keys(values, schema, schema, defaults)
    return errors + [f"unknown key {key}" for key in unknown]


def _helm_values() -> dict:
    return yaml.safe_load((DEPLOY / "helm" / "values.yaml").read_text())


def test_the_helm_values_fit_the_official_charts_schema():
    assert _helm_problems(_helm_values()) == []


@pytest.mark.parametrize(
    ("path", "typo"),
    [
        ((), "runLaunchr"),  # the top level accepts unknown keys: only the key check sees it
        (("runLauncher", "config", "k8sRunLauncher"), "jobNamespce"),
        (("dagsterDaemon", "runMonitoring"), "pollIntervalSecond"),
        (("dagsterDaemon", "runCoordinator", "config", "queuedRunCoordinator"), "maxConcurentRuns"),
    ],
)
def test_a_misspelt_helm_value_is_refused(path, typo):
    values = _helm_values()
    node = values
    for key in path:
        node = node[key]
    node[typo] = next(iter(node.values())) if node else 1
    problems = _helm_problems(values)
    assert problems and any(typo in problem for problem in problems), problems


def _env_names(text: str) -> set[str]:
    return set(re.findall(r"env: (\w+)", text))


def test_compose_and_helm_give_every_service_the_settings_the_instance_reads():
    instance = (DEPLOY / "dagster.yaml").read_text()
    needed = _env_names(instance) - {"DAGSTER_LOGS_BUCKET"}  # the chart sets the log bucket
    compose = yaml.safe_load((DEPLOY / "docker-compose.yaml").read_text())
    for name in ("code", "webserver", "daemon", "worker"):
        environment = compose["services"][name]["environment"]
        assert _env_names(instance) <= set(environment), name
        assert environment["AML_DATA_ROOT"].startswith("s3://")
    values = _helm_values()
    helm_env = {e["name"] for e in values["dagsterDaemon"]["env"]}
    assert {"AML_DATA_ROOT", "AML_NETWORKS"} <= helm_env
    assert values["postgresql"]["enabled"] is False and needed >= {"DAGSTER_PG_HOST"}
    run_env = {
        v.split("=")[0] for v in values["runLauncher"]["config"]["k8sRunLauncher"]["envVars"]
    }
    assert run_env == helm_env


def test_the_deployment_instance_is_valid_dagster_configuration(tmp_path):
    (tmp_path / "dagster.yaml").write_text((DEPLOY / "dagster.yaml").read_text())
    config, _ = dagster_instance_config(str(tmp_path))
    launcher = config["run_launcher"]
    assert (launcher["module"], launcher["class"]) == (
        run_workers.__name__,
        run_workers.CeleryWorkerRunLauncher.__name__,
    )
    assert config["run_monitoring"]["enabled"] is True


class _Result:
    def __init__(self, state: str, worker: str | None) -> None:
        self.state, self.worker = state, worker


@pytest.mark.parametrize(
    ("state", "answers", "status"),
    [
        ("STARTED", [{"worker-a@host": {"ok": "pong"}}], WorkerStatus.RUNNING),
        ("STARTED", [], WorkerStatus.FAILED),  # its worker died with the run
        ("STARTED", [{"worker-b@host": {"ok": "pong"}}], WorkerStatus.FAILED),
        ("SUCCESS", [], WorkerStatus.SUCCESS),
        ("FAILURE", [{"worker-a@host": {"ok": "pong"}}], WorkerStatus.FAILED),
    ],
)
def test_the_run_workers_health_check_tells_a_dead_worker(monkeypatch, state, answers, status):
    launcher = run_workers.CeleryWorkerRunLauncher(
        broker="redis://127.0.0.1:1/0", backend="redis://127.0.0.1:1/0"
    )
    pinged = []
    monkeypatch.setattr(launcher.celery, "AsyncResult", lambda _: _Result(state, "worker-a@host"))

    def ping(destination: list[str], timeout: float) -> list[dict]:
        pinged.append(destination)
        return answers

    monkeypatch.setattr(launcher.celery.control, "ping", ping)
    with instance_for_test() as instance:
        run = create_run_for_test(instance, tags={"dagster-celery/task_id": "task-1"})
        health = launcher.check_run_worker_health(run)
    assert health.status == status
    assert pinged == ([["worker-a@host"]] if state == "STARTED" else [])
    if status == WorkerStatus.FAILED and state == "STARTED":
        assert "worker-a@host does not answer" in health.msg


def test_a_run_worker_needs_its_broker_settings(monkeypatch):
    monkeypatch.delenv(run_workers.BROKER_URL, raising=False)
    with pytest.raises(RuntimeError, match="DAGSTER_CELERY_BROKER_URL"):
        run_workers.celery_app_args()


@dg.op
def noop() -> None:
    pass


@dg.job
def noop_job() -> None:
    noop()


def test_a_run_whose_process_fails_fails_its_task(monkeypatch):
    commands = []

    def run(command: list[str]) -> int:
        commands.append(command)
        return 3 if len(commands) == 1 else 0

    monkeypatch.setattr(run_workers, "run_forwarding_sigterm", run)
    origin = dg.reconstructable(noop_job).get_python_origin()
    args = ExecuteRunArgs(job_origin=origin, run_id="run-1", instance_ref=None)
    with pytest.raises(RuntimeError, match="run-1: its process exited with code 3"):
        run_workers.execute_in_process("execute_run", args)
    assert run_workers.execute_in_process("execute_run", args) == 0
    assert commands[0][:5] == [sys.executable, "-m", "dagster", "api", "execute_run"]
    assert deserialize_value(commands[0][5], ExecuteRunArgs).run_id == "run-1"


def test_terminating_a_runs_task_terminates_the_run_process(tmp_path):
    """Celery's revoke(terminate=True) sends SIGTERM to the pool process: the run's own
    process must get it (Dagster's run process then stops the run as canceled)."""
    ready = tmp_path / "ready"
    run = (
        "import signal, sys, time; signal.signal(signal.SIGTERM, lambda *_: sys.exit(7)); "
        f"open({str(ready)!r}, 'w').close(); time.sleep(60)"
    )
    task = (
        "import sys; from aml_pipeline.defs.run_workers import run_forwarding_sigterm; "
        f"sys.exit(run_forwarding_sigterm([sys.executable, '-c', {run!r}]))"
    )
    worker = subprocess.Popen([sys.executable, "-c", task])
    deadline = time.monotonic() + 60
    while not ready.exists():
        assert worker.poll() is None and time.monotonic() < deadline
        time.sleep(0.1)
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=20) == 7
