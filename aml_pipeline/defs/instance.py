"""The persistent Dagster instance the command line runs in: found from DAGSTER_HOME or
the project root, its dead runs marked failed on opening, and a storage it cannot reach
said in one line naming the settings to check."""

from __future__ import annotations

import contextlib
import os
import re
import sys
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
from sqlalchemy.exc import SQLAlchemyError

from aml_pipeline.defs.dead_runs import reap_dead_runs
from aml_pipeline.settings import Settings


def _project_home() -> Path | None:
    """The nearest directory at or above the working directory holding dagster.yaml."""
    for folder in (Path.cwd(), *Path.cwd().parents):
        if (folder / "dagster.yaml").is_file():
            return folder
    return None


@contextlib.contextmanager
def project_instance() -> Iterator[dg.DagsterInstance]:
    """The persistent Dagster instance (DAGSTER_HOME, else the project root), disposed on
    exit. Not entered with ``with``: Dagster 1.13's ``DagsterInstance.__exit__`` leaves its
    definitions-state storage set in a context variable, which breaks later definition
    loads in the same process once the instance is gone."""
    if not os.environ.get("DAGSTER_HOME"):
        home = _project_home()
        if home is None:
            raise SystemExit(
                "DAGSTER_HOME is not set and no dagster.yaml was found above "
                "the working directory; run from the project root"
            )
        os.environ["DAGSTER_HOME"] = str(home)
    current = _open_instance(Path(os.environ["DAGSTER_HOME"]))
    try:
        yield current
    finally:
        current.dispose()


def _open_instance(home: Path) -> dg.DagsterInstance:
    """The instance of ``home``, its dead runs marked failed (each said on standard
    error); a storage it cannot reach (Postgres down, wrong credentials) is one line naming
    the cause and the settings to check, before any run starts."""
    Settings.from_env()  # a bad setting is named as such, not as an instance problem
    current = None
    try:
        current = dg.DagsterInstance.get()
        dead = reap_dead_runs(current)
    except _storage_errors() as exc:
        if current is not None:
            current.dispose()
        raise SystemExit(instance_problem(home, exc)) from None
    for run in dead:
        print(
            f"aml-pipeline: run {run.run_id} ({run.job_name}) marked failed: {run.reason}",
            file=sys.stderr,
        )
    return current


def _storage_errors() -> tuple[type[Exception], ...]:
    """What opening an instance raises when its storage cannot be reached or read: Dagster's
    own errors, the database driver's (through SQLAlchemy), the file system's, and
    dagster-postgres' give-up after its connection retries (when it is installed)."""
    errors: list[type[Exception]] = [dg.DagsterError, SQLAlchemyError, OSError]
    with contextlib.suppress(ImportError):
        from dagster_postgres.utils import DagsterPostgresException

        errors.append(DagsterPostgresException)
    return tuple(errors)


def instance_problem(home: Path, exc: BaseException) -> str:
    """One line: why the instance under ``home`` could not be opened, and which of its
    settings (the environment variables its dagster.yaml reads) to check."""
    root: BaseException = exc
    while root.__cause__ is not None or root.__context__ is not None:
        root = root.__cause__ or root.__context__  # type: ignore[assignment]
    cause = " ".join(str(root).split()) or type(root).__name__
    config = home / "dagster.yaml"
    text = config.read_text() if config.is_file() else ""
    names = sorted(set(re.findall(r"env:\s*([A-Za-z_][A-Za-z0-9_]*)", text)))
    check = f"; check {', '.join(names)}" if names else ""
    return f"cannot open the Dagster instance of {config}: {cause}{check}"
