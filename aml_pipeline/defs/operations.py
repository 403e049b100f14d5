"""Run orchestration for the command line: the persistent Dagster instance, the pipeline
resource's run config, ranged runs of a network's daily assets, and what a run did or why
it failed. The CLI parses and prints; everything it runs goes through here."""

from __future__ import annotations

import atexit
import contextlib
import datetime as dt
import multiprocessing
import os
import re
import sys
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import dagster as dg
from sqlalchemy.exc import SQLAlchemyError

from aml_pipeline.defs.dead_runs import reap_dead_runs
from aml_pipeline.defs.resources import NetworkConfig, PipelineConfig
from aml_pipeline.defs.run_failures import report_failed_run, user_message
from aml_pipeline.defs.runs import (
    RANGE_END,
    RANGE_START,
    RunOutcome,
    balanced_chunks,
    command_line_tags,
    run_chunk,
    run_range,
)
from aml_pipeline.settings import Settings

#: What a ranged run returns to the command line.
RunResult = RunOutcome


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


def pipeline_config(settings: Settings, network: str, overrides: dict[str, str]) -> PipelineConfig:
    """The pipeline resource for ``settings`` with ``overrides`` applied: a key of
    ``NetworkConfig`` (e.g. ``batch_source``) to ``network``'s entry, others to the top."""
    config = PipelineConfig.from_settings(settings).model_dump()
    for key, value in overrides.items():
        if key in NetworkConfig.model_fields:
            config["networks"][network][key] = value
        else:
            config[key] = value
    return PipelineConfig(**config)


def run_config(settings: Settings, network: str, overrides: dict[str, str]) -> dict[str, Any]:
    """Run config that sets the pipeline resource to the settings plus ``overrides`` (see
    ``pipeline_config``)."""
    config = pipeline_config(settings, network, overrides).model_dump()
    return {
        "resources": {"pipeline": {"config": config}},
        "loggers": {"console": {"config": {"log_level": "WARNING"}}},
    }


def _definitions(settings: Settings) -> dg.Definitions:
    """Definitions for the environment as it is now (tests change it between calls)."""
    from aml_pipeline.defs.definitions import build_definitions

    return build_definitions(settings)


def independent_runs(names: tuple[str, ...]) -> bool:
    """Whether the runs of a ranged materialization of the daily assets ``names`` read
    nothing another of its runs writes, so they may run at once: landing batches (each day
    its own); label events alone (a day's arrivals come from the source, not from other
    days' stored events); features, scoring and evaluations, whose look-back reads only
    ingestion tables, which such a selection does not write. A selection that mixes
    ingestion with what reads it goes one run after the other."""
    from aml_pipeline.defs.network import INGESTION_ASSETS, LANDING_ASSETS

    chosen = set(names)
    return (
        chosen <= set(LANDING_ASSETS)
        or chosen == {"label_events"}
        or not chosen & set(INGESTION_ASSETS)
    )


def materialize(
    settings: Settings,
    network: str,
    days: list[dt.date],
    names: tuple[str, ...],
    overrides: dict[str, str] | None = None,
    on_chunk: Callable[[dt.date, dt.date, RunResult], None] | None = None,
) -> RunResult | None:
    """Materialize the network's daily assets ``names`` over the consecutive ``days`` in
    runs of at most MAX_DAYS_PER_RUN days; the first failed run's outcome, else None.

    Independent runs (``independent_runs``) execute ``settings.parallel_runs`` at a time on
    the same instance (``_run_shared``), in ranges balanced over the processes (each run
    then fetches its batches in its own process only). ``on_chunk``
    sees the successful runs in date order, up to the first failed one; after a failure,
    runs not yet started are cancelled.
    """
    from aml_pipeline.defs.network import asset_keys, daily_job_name, run_tags

    overrides = overrides or {}
    workers = settings.parallel_runs if independent_runs(names) else 1
    chunks = balanced_chunks(days[0], days[-1], workers) if workers > 1 else []
    with project_instance() as instance:
        if len(chunks) < 2:
            failed = run_range(
                _definitions(settings).resolve_job_def(daily_job_name(network)),
                instance,
                days[0],
                days[-1],
                run_config(settings, network, overrides),
                asset_keys([network], names),
                on_chunk=on_chunk,
                tags=run_tags(network, names),
            )
        else:
            overrides = {"fetch_workers": "1", **overrides}
            failed = _run_shared(
                instance, settings, network, chunks, names, overrides, workers, on_chunk
            )
        if failed is not None:
            _report_failure(instance, settings, failed.run_id)
        return failed


def _report_failure(instance: dg.DagsterInstance, settings: Settings, run_id: str) -> None:
    """Record a failed run of the command line as the run-failure sensor does (which then
    finds it recorded), so the record is whole without a daemon."""
    try:
        _, _, problem = report_failed_run(
            instance, run_id, settings.data_root, settings.failure_webhook
        )
    except Exception as exc:  # the run's own failure is what the user needs to see
        problem = f"run {run_id} was not recorded in monitoring/run_failures: {exc}"
    if problem:
        print(f"aml-pipeline: {problem}", file=sys.stderr)


def _run_shared(
    instance: dg.DagsterInstance,
    settings: Settings,
    network: str,
    chunks: list[tuple[dt.date, dt.date]],
    names: tuple[str, ...],
    overrides: dict[str, str],
    workers: int,
    on_chunk: Callable[[dt.date, dt.date, RunResult], None] | None,
) -> RunResult | None:
    """``materialize``'s independent runs: this process runs every ``workers``-th chunk
    itself (so nothing waits for a worker to start), ``workers - 1`` kept processes the
    others; outcomes are reported in date order, and every failed run is recorded."""
    from aml_pipeline.defs.network import asset_keys, daily_job_name, run_tags

    environment, pool = dict(os.environ), _run_pool(workers - 1)
    futures = {
        i: pool.submit(
            _materialize_chunk, environment, settings, network, *chunks[i], names, overrides
        )
        for i in range(len(chunks))
        if i % workers
    }
    outcomes: dict[int, RunOutcome] = {}
    reported, failed = 0, None

    def report(wait: bool) -> None:
        nonlocal reported, failed
        while reported < len(chunks) and failed is None:
            if reported not in outcomes:
                future = futures.get(reported)
                if future is None or not (wait or future.done()):
                    return
                outcomes[reported] = RunOutcome.load(instance, future.result())
            outcome = outcomes[reported]
            if not outcome.success:
                failed = outcome
                for pending in futures.values():
                    pending.cancel()
            elif on_chunk is not None:
                on_chunk(*chunks[reported], outcome)
            reported += 1

    job = _definitions(settings).resolve_job_def(daily_job_name(network))
    config, keys = run_config(settings, network, overrides), asset_keys([network], names)
    for i in range(0, len(chunks), workers):
        if failed is not None:
            break
        outcomes[i] = run_chunk(job, instance, *chunks[i], config, keys, run_tags(network, names))
        report(wait=False)
    report(wait=True)
    # runs that failed alongside the first one (the caller records that one) are recorded
    for i, future in futures.items():
        if i not in outcomes and not future.cancelled() and future.exception() is None:
            outcomes[i] = RunOutcome.load(instance, future.result())
    for outcome in outcomes.values():
        if not outcome.success and outcome is not failed:
            _report_failure(instance, settings, outcome.run_id)
    return failed


_POOLS: dict[int, ProcessPoolExecutor] = {}


def _run_pool(workers: int) -> ProcessPoolExecutor:
    """The process's pool of ``workers`` spawned run processes, started on first use and
    kept for the next ranged command of the same process (a spawn costs seconds: Dagster
    and the definitions are imported once per worker, not once per command)."""
    if workers not in _POOLS:
        _POOLS[workers] = ProcessPoolExecutor(
            workers, mp_context=multiprocessing.get_context("spawn")
        )
        atexit.register(_POOLS[workers].shutdown, cancel_futures=True)
    return _POOLS[workers]


def _materialize_chunk(
    environment: dict[str, str],
    settings: Settings,
    network: str,
    first: dt.date,
    last: dt.date,
    names: tuple[str, ...],
    overrides: dict[str, str],
) -> str:
    """One run of ``materialize`` in a worker process, under the caller's environment
    (DAGSTER_HOME, AML_*: a kept worker may serve another command); its run id."""
    from aml_pipeline.defs.network import asset_keys, daily_job_name, run_tags

    os.environ.clear()
    os.environ.update(environment)
    with project_instance() as instance:
        job = _definitions(settings).resolve_job_def(daily_job_name(network))
        config = run_config(settings, network, overrides)
        keys, tags = asset_keys([network], names), run_tags(network, names)
        return run_chunk(job, instance, first, last, config, keys, tags).run_id


def run_job(
    settings: Settings,
    job_name: str,
    config: dict[str, Any],
    assets: tuple[str, tuple[str, ...]] | None = None,
    tags: Mapping[str, str] | None = None,
) -> RunResult:
    """Run the job ``job_name`` in process with ``config`` (only the network's ``assets``
    names, given as ``(network, names)``, if set, tagged with their network and stage;
    and ``tags``); failures are returned, not raised."""
    from aml_pipeline.defs.network import asset_keys, run_tags

    job = _definitions(settings).resolve_job_def(job_name)
    with project_instance() as instance:
        result = job.execute_in_process(
            instance=instance,
            raise_on_error=False,
            run_config=config,
            tags={**(run_tags(*assets) if assets else {}), **(tags or {}), **command_line_tags()},
            asset_selection=asset_keys([assets[0]], assets[1]) if assets else None,
        )
        if not result.success:
            _report_failure(instance, settings, result.run_id)
        return result


def run_span(result: RunResult) -> str:
    """The days a ranged run covered: ``D`` or ``D1..D2``."""
    first, last = result.dagster_run.tags[RANGE_START], result.dagster_run.tags[RANGE_END]
    return first if first == last else f"{first}..{last}"


def failure_text(result: RunResult) -> str:
    """Why a failed run's first failed step failed: its ``dg.Failure`` description, else the
    root cause."""
    failure = next((e for e in result.all_events if e.is_step_failure), None)
    if failure is None:
        return "run failed"
    return user_message(failure.step_failure_data.error)


def landed_counts(result: RunResult, network: str) -> dict[str, str]:
    """Per landed day of the run, its tables' row counts as one line."""
    return {
        event.partition: ", ".join(f"{n} {k}" for k, n in mat.metadata["row_counts"].value.items())
        for event in result.get_asset_materialization_events()
        if (mat := event.materialization).asset_key == dg.AssetKey([network, "landed_batch"])
    }


def materialized_metadata(result: RunResult) -> dict[str, dict[str, Any]]:
    """Each materialized asset's metadata values, by the asset's name."""
    return {
        e.asset_key.path[-1]: {k: v.value for k, v in e.materialization.metadata.items()}
        for e in result.get_asset_materialization_events()
    }


def fetched_without_labels(network: str, days: list[dt.date]) -> list[dt.date]:
    """The label days among ``days`` whose latest fetch found no labels file (the
    ``labels_file`` its materialization recorded): stored empty, to be fetched again."""
    key, wanted = dg.AssetKey([network, "label_events"]), [d.isoformat() for d in days]
    latest: dict[str, str] = {}
    with project_instance() as instance:
        cursor = None
        while wanted:
            result = instance.fetch_materializations(  # newest first
                dg.AssetRecordsFilter(asset_key=key, asset_partitions=wanted),
                limit=1000,
                cursor=cursor,
            )
            for record in result.records:
                found = record.asset_materialization.metadata.get("labels_file")
                latest.setdefault(record.partition_key, found.value if found else "found")
            if not result.has_more:
                break
            cursor = result.cursor
    return [dt.date.fromisoformat(p) for p, found in sorted(latest.items()) if found != "found"]
