"""Shared fixtures: small generated batches, local sources and per-test definitions."""

from __future__ import annotations

import datetime as dt
import functools
import os
import shutil
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest
from dagster._core.storage.defs_state.base import _current_storage

from aml_pipeline import cli
from aml_pipeline.contract.conform import read_parquet_bytes
from aml_pipeline.contract.files import build_meta, parquet_bytes
from aml_pipeline.contract.schema import BATCH_TABLES, META_FILE
from aml_pipeline.defs.definitions import build_definitions
from aml_pipeline.settings import Settings
from aml_pipeline.simulator.profiles import SMALL
from aml_pipeline.sources.simulated import SimulatedSource

# The small profile's days take milliseconds: a process per fetched slice would cost more
# than it saves. The tests that compare the two ways set AML_FETCH_WORKERS themselves.
os.environ.setdefault("AML_FETCH_WORKERS", "1")

START = dt.date(2025, 1, 1)
DAY = dt.date(2025, 1, 10)
NETWORK = "ethereum"


@functools.cache
def small_source() -> SimulatedSource:
    """The simulator's small profile (a few hundred alerts a day), as of 2025-06-01."""
    return SimulatedSource(SMALL, start=START, seed=0, today=lambda: dt.date(2025, 6, 1))


def batch_tables(day: dt.date = DAY, network: str = NETWORK) -> dict[str, pd.DataFrame]:
    """The simulated batch of ``day`` as DataFrames keyed by table name."""
    files = small_source().fetch(network, day, 7).files
    return {t.name: read_parquet_bytes(files[t.file]) for t in BATCH_TABLES}


def batch_files(
    tables: Mapping[str, pd.DataFrame],
    day: dt.date = DAY,
    network: str = NETWORK,
    window_days: int = 7,
) -> dict[str, bytes]:
    """Serialize tables into batch files with a META.json that matches them."""
    specs = {t.name: t for t in BATCH_TABLES}
    files = {specs[name].file: parquet_bytes(df) for name, df in tables.items()}
    files[META_FILE] = build_meta(
        network,
        day.isoformat(),
        window_days,
        files,
        {k: len(v) for k, v in tables.items()},
        generated_at="2025-01-11T00:00:00Z",
    )
    return files


def write_upstream(
    root: Path,
    files: Mapping[str, bytes],
    day: dt.date = DAY,
    network: str = NETWORK,
    window_days: int = 7,
) -> Path:
    """Lay ``files`` out as upstream's ``snapshots/{network}/{date}/{window}/``."""
    folder = root / "snapshots" / network / day.isoformat() / str(window_days)
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (folder / name).write_bytes(data)
    return folder


def settings_for(tmp_path: Path, **overrides: object) -> Settings:
    """Settings rooted in ``tmp_path`` (small simulated source unless overridden)."""
    values: dict[str, object] = {
        "networks": [NETWORK],
        "window_days": 7,
        "data_root": str(tmp_path / "data"),
        "networks_dir": str(tmp_path / "networks"),
        "batch_source": "simulated",
        "sim_profile": "small",
        "sim_seed": 0,
        "source_dir": "",
        "partitions_start": START.isoformat(),
        "labels_as_of": "2025-03-01",
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


def add_started_run(instance: dg.DagsterInstance, tags: dict[str, str]) -> str:
    """A STARTED run of the network's daily job with ``tags`` on ``instance``; its id."""
    run_id = str(uuid.uuid4())
    instance.add_run(
        dg.DagsterRun(
            job_name=f"{NETWORK}_daily_job",
            run_id=run_id,
            status=dg.DagsterRunStatus.STARTED,
            tags=tags,
        )
    )
    return run_id


@pytest.fixture(autouse=True)
def _forget_disposed_instances():
    """Dagster 1.13's ``DagsterInstance.__exit__`` leaves the instance's definitions-state
    storage in a context variable; a later test that loads definitions would then reach a
    disposed instance. Clear it after every test (the variable is Dagster-internal)."""
    yield
    _current_storage.set(None)


@pytest.fixture
def make_defs(tmp_path: Path) -> Callable[..., dg.Definitions]:
    """Build Definitions for settings rooted in the test's temp dir."""

    def make(**overrides: object) -> dg.Definitions:
        return build_definitions(settings_for(tmp_path, **overrides))

    return make


@pytest.fixture
def cli_home(tmp_path, monkeypatch):
    """A project dir for CLI runs: its own DAGSTER_HOME, data root and small simulator."""
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    monkeypatch.setenv("AML_DATA_ROOT", str(tmp_path / "data"))
    monkeypatch.setenv("AML_SIM_PROFILE", "small")
    monkeypatch.setenv("AML_LABELS_AS_OF", "2025-05-01")
    (tmp_path / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    return tmp_path


HOME_TRAIN = ["--start-date", "2025-03-01", "--end-date", "2025-03-08"]


def _project_env(root: Path) -> dict[str, str]:
    """The environment that makes ``root`` the project of the CLI and of Dagster."""
    return {
        "DAGSTER_HOME": str(root),
        "AML_DATA_ROOT": str(root / "data"),
        "AML_SIM_PROFILE": "small",
        "AML_LABELS_AS_OF": "2025-05-01",
    }


@pytest.fixture(scope="session")
def _home_project(tmp_path_factory) -> Path:
    """A project with 2025-03-01..08 landed, champions trained on them and 2025-03-01..10
    published, built once; its environment is set only while it is built."""
    root = tmp_path_factory.mktemp("daily")
    (root / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    with pytest.MonkeyPatch.context() as mp:
        for name, value in _project_env(root).items():
            mp.setenv(name, value)
        assert cli.main(["download", "--network", "ethereum", *HOME_TRAIN]) == 0
        assert cli.main(["train", "--network", "ethereum", *HOME_TRAIN]) == 0
        assert cli.main(["score", "--network", "ethereum", "--start-date", "2025-03-01",
                         "--end-date", "2025-03-10"]) == 0  # fmt: skip
    return root


@pytest.fixture
def home(_home_project: Path, monkeypatch) -> Path:
    """The shared project (the daily job's and the daemon's tests read it; change a
    ``scratch`` copy), its environment set for this test only."""
    for name, value in _project_env(_home_project).items():
        monkeypatch.setenv(name, value)
    return _home_project


@pytest.fixture
def scratch(home: Path, tmp_path: Path) -> Path:
    """A copy of ``home`` (data and Dagster instance) for a test that changes it, so that
    no test depends on which ran before it."""
    copy = tmp_path / "home"
    shutil.copytree(home, copy)
    return copy


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory):
    """A real S3 server (SeaweedFS on 127.0.0.1) for the tests marked ``s3``."""
    from aml_pipeline_tests.seaweed import seaweedfs

    folder = tmp_path_factory.mktemp("seaweedfs")
    with seaweedfs(folder / "data", folder / "weed.log") as server:
        yield server


@pytest.fixture
def s3_root(s3_server, monkeypatch) -> str:
    """``s3://{a new bucket}/record`` on the test server, its AWS settings in the env."""
    from aml_pipeline.storage.s3 import client

    for name, value in s3_server.env().items():
        monkeypatch.setenv(name, value)
    bucket = f"t{uuid.uuid4().hex[:16]}"
    client().create_bucket(Bucket=bucket)
    return f"s3://{bucket}/record"


#: Fixtures that make a test an integration test: each builds a project, a Dagster
#: instance, definitions over a data root, or a server.
INTEGRATION_FIXTURES = frozenset({"home", "scratch", "cli_home", "make_defs", "s3_server"})


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test ``unit`` or ``integration`` (``make test-fast`` runs the unit tests):
    a test marked ``integration`` (or ``s3`` or ``readme``) itself or by its module, or using
    one of ``INTEGRATION_FIXTURES``, is an integration test."""
    for item in items:
        if any(item.get_closest_marker(name) for name in ("integration", "s3", "readme")):
            item.add_marker(pytest.mark.integration)
            continue
        uses = set(getattr(item, "fixturenames", ()))
        item.add_marker(
            pytest.mark.integration if uses & INTEGRATION_FIXTURES else pytest.mark.unit
        )
