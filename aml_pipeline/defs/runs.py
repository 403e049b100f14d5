"""Planning and launching the command line's runs: which days a command needs runs for,
how they are cut into ranged runs (at most MAX_DAYS_PER_RUN days each) and which may run
side by side, the pipeline resource's run config, and running them in process on the
persistent instance (``defs.instance``), a failed run recorded as the run-failure sensor
records it. What a run did is read by ``defs.run_results``; the CLI only parses and
prints."""

from __future__ import annotations

import atexit
import datetime as dt
import multiprocessing
import os
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import dagster as dg
from dagster._core.definitions.repository_definition import SINGLETON_REPOSITORY_NAME
from dagster._core.storage.tags import REPOSITORY_LABEL_TAG

from aml_pipeline.dates import date_range, split_evenly
from aml_pipeline.defs.dead_runs import process_tags
from aml_pipeline.defs.instance import project_instance
from aml_pipeline.defs.partitions import MAX_DAYS_PER_RUN, last_partition
from aml_pipeline.defs.resources import NetworkConfig, PipelineConfig
from aml_pipeline.defs.run_failures import report_failed_run
from aml_pipeline.defs.run_results import RunOutcome, fetched_without_labels, materialized_metadata
from aml_pipeline.defs.tags import CODE_LOCATION, RANGE_END, RANGE_START
from aml_pipeline.settings import Settings
from aml_pipeline.storage.tables import TableStore


def command_line_tags() -> dict[str, str]:
    """The tags of a run the command line executes in this process: its repository label
    (so the UI lists it under its job) and where it runs (``dead_runs``)."""
    return {REPOSITORY_LABEL_TAG: f"{SINGLETON_REPOSITORY_NAME}@{CODE_LOCATION}", **process_tags()}


def day_chunks(
    start: dt.date, end: dt.date, size: int = MAX_DAYS_PER_RUN
) -> Iterator[tuple[dt.date, dt.date]]:
    """``[start, end]`` cut into consecutive ranges of at most ``size`` days."""
    while start <= end:
        last = min(end, start + dt.timedelta(size - 1))
        yield start, last
        start = last + dt.timedelta(1)


def balanced_chunks(start: dt.date, end: dt.date, workers: int) -> list[tuple[dt.date, dt.date]]:
    """``[start, end]`` in ranges of at most MAX_DAYS_PER_RUN days, as many as the 14-day
    cut needs rounded up to a multiple of ``workers``, of near-equal length: each worker
    then gets the same number of days (42 days on 2 workers: 4 runs of 10-11 days, not
    14 + 14 then 14 alone)."""
    days = date_range(start, end)
    needed = -(-len(days) // MAX_DAYS_PER_RUN)
    parts = -(-needed // workers) * workers
    return [(part[0], part[-1]) for part in split_evenly(days, parts)]


def run_chunk(
    job: dg.JobDefinition,
    instance: dg.DagsterInstance,
    first: dt.date,
    last: dt.date,
    run_config: dict | None = None,
    asset_selection: Sequence[dg.AssetKey] | None = None,
    tags: Mapping[str, str] | None = None,
) -> RunOutcome:
    """Materialize ``job`` over ``first..last`` in one run, in this process (its tags say
    which, so a killed run is noticed: ``dead_runs``; and ``tags``); failures are
    returned, not raised."""
    result = job.execute_in_process(
        instance=instance,
        run_config=run_config,
        asset_selection=asset_selection,
        tags={
            **(tags or {}),
            RANGE_START: first.isoformat(),
            RANGE_END: last.isoformat(),
            **command_line_tags(),
        },
        raise_on_error=False,
    )
    return RunOutcome.of(result)


def run_range(
    job: dg.JobDefinition,
    instance: dg.DagsterInstance,
    start: dt.date,
    end: dt.date,
    run_config: dict | None = None,
    asset_selection: Sequence[dg.AssetKey] | None = None,
    on_chunk: Callable[[dt.date, dt.date, RunOutcome], None] | None = None,
    tags: Mapping[str, str] | None = None,
) -> RunOutcome | None:
    """Materialize ``job`` over the range, one run per chunk, one after the other; the
    first failed run's outcome, or None when every chunk succeeded. ``on_chunk`` sees each
    successful chunk's outcome (progress)."""
    for first, last in day_chunks(start, end):
        outcome = run_chunk(job, instance, first, last, run_config, asset_selection, tags)
        if not outcome.success:
            return outcome
        if on_chunk is not None:
            on_chunk(first, last, outcome)
    return None


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


def _daily_run(
    settings: Settings, network: str, names: tuple[str, ...], overrides: dict[str, str]
) -> tuple[dg.JobDefinition, dict[str, Any], list[dg.AssetKey], dict[str, str]]:
    """What a ranged run of the network's daily assets ``names`` needs: the network's daily
    job, the run config, the asset selection and the run's tags."""
    from aml_pipeline.defs.network import asset_keys, daily_job_name, run_tags

    job = _definitions(settings).resolve_job_def(daily_job_name(network))
    config = run_config(settings, network, overrides)
    return job, config, asset_keys([network], names), run_tags(network, names)


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
    on_chunk: Callable[[dt.date, dt.date, RunOutcome], None] | None = None,
) -> RunOutcome | None:
    """Materialize the network's daily assets ``names`` over the consecutive ``days`` in
    runs of at most MAX_DAYS_PER_RUN days; the first failed run's outcome, else None.

    Independent runs (``independent_runs``) execute ``settings.parallel_runs`` at a time on
    the same instance (``_run_shared``), in ranges balanced over the processes (each run
    then fetches its batches in its own process only). ``on_chunk``
    sees the successful runs in date order, up to the first failed one; after a failure,
    runs not yet started are cancelled.
    """
    overrides = overrides or {}
    workers = settings.parallel_runs if independent_runs(names) else 1
    chunks = balanced_chunks(days[0], days[-1], workers) if workers > 1 else []
    with project_instance() as instance:
        if len(chunks) < 2:
            job, config, keys, tags = _daily_run(settings, network, names, overrides)
            failed = run_range(
                job, instance, days[0], days[-1], config, keys, on_chunk=on_chunk, tags=tags
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
    on_chunk: Callable[[dt.date, dt.date, RunOutcome], None] | None,
) -> RunOutcome | None:
    """``materialize``'s independent runs: this process runs every ``workers``-th chunk
    itself (so nothing waits for a worker to start), ``workers - 1`` kept processes the
    others; outcomes are reported in date order, and every failed run is recorded."""
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

    job, config, keys, tags = _daily_run(settings, network, names, overrides)
    for i in range(0, len(chunks), workers):
        if failed is not None:
            break
        outcomes[i] = run_chunk(job, instance, *chunks[i], config, keys, tags)
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
    os.environ.clear()
    os.environ.update(environment)
    with project_instance() as instance:
        job, config, keys, tags = _daily_run(settings, network, names, overrides)
        return run_chunk(job, instance, first, last, config, keys, tags).run_id


def run_job(
    settings: Settings,
    job_name: str,
    config: dict[str, Any],
    assets: tuple[str, tuple[str, ...]] | None = None,
    tags: Mapping[str, str] | None = None,
) -> dg.ExecuteInProcessResult:
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


class RunFailed(Exception):
    """A run of a command's plan failed: what it was for, and the run."""

    def __init__(self, purpose: str, run: RunOutcome | dg.ExecuteInProcessResult) -> None:
        super().__init__(f"{purpose} failed (run {run.run_id})")
        self.purpose, self.run = purpose, run


class NotLanded(ValueError):
    """Days a command needs are not landed (none: the network never was)."""

    def __init__(self, network: str, days: list[dt.date]) -> None:
        shown = ", ".join(map(str, days[:5]))
        super().__init__(
            f"{len(days)} day(s) of the training range are not landed, e.g. {shown}"
            if days
            else f"{network} has never been landed"
        )
        self.days = days


def land(
    settings: Settings,
    network: str,
    days: list[dt.date],
    overrides: dict[str, str],
    on_chunk: Callable[[dt.date, dt.date, RunOutcome], None] | None = None,
) -> None:
    """Land the network's batches of ``days`` (``on_chunk`` sees each landed run), then
    their label arrivals: once every batch is landed, as a day's labels are of earlier
    days' alerts and a network's first landed day is where its labels begin. Raises
    ``RunFailed`` (purpose ``landing`` or ``label events``)."""
    from aml_pipeline.defs.network import LANDING_ASSETS

    for purpose, names, progress in (
        ("landing", LANDING_ASSETS, on_chunk),
        ("label events", ("label_events",), None),
    ):
        failed = materialize(settings, network, days, names, overrides, progress)
        if failed is not None:
            raise RunFailed(purpose, failed)


def missing_runs(
    tables: TableStore,
    network: str,
    names: tuple[str, ...],
    days: list[dt.date],
    stale: Sequence[dt.date] = (),
) -> list[list[dt.date]]:
    """The consecutive runs of ``days`` on which any of the assets ``names`` is not stored
    or that are ``stale``."""
    stored = [set(tables.stored_days((network, name))) for name in names]
    missing = [d for d in days if d in stale or not all(d in s for s in stored)]
    runs: list[list[dt.date]] = []
    for day in missing:
        if runs and day - runs[-1][-1] == dt.timedelta(1):
            runs[-1].append(day)
        else:
            runs.append([day])
    return runs


def prepare_training(
    settings: Settings, network: str, days: list[dt.date], overrides: dict[str, str]
) -> dt.date:
    """Fetch the label days up to what is known of ``days``' labels and compute the
    features of the days that lack them (each a pure function of earlier days, so stored
    ones are reused); the last label day fetched. A label day fetched while the source had
    no labels file is fetched again, and the features after it (their label history read
    it) are computed again. Raises ``NotLanded`` or ``RunFailed``."""
    from aml_pipeline.defs.network import FEATURE_ASSETS

    pipeline = pipeline_config(settings, network, overrides)
    if pipeline.record(network) is None:
        raise NotLanded(network, [])
    tables = TableStore(pipeline.data_root)
    unlanded = [d for run in missing_runs(tables, network, ("raw_alerts",), days) for d in run]
    if unlanded:
        raise NotLanded(network, unlanded)
    # labels that arrive after the range's label horizon cannot change its training
    known_by = min(
        pipeline.as_of(), last_partition(), pipeline.labels_complete_by(network, days[-1])
    )
    label_days = date_range(days[0], known_by) if known_by >= days[0] else []
    empty = fetched_without_labels(network, label_days)
    for names, wanted, stale in (
        (("label_events",), label_days, empty),
        (FEATURE_ASSETS, days, [d for d in days if empty and d > empty[0]]),
    ):
        for run in missing_runs(tables, network, names, wanted, stale):
            failed = materialize(settings, network, run, names, overrides)
            if failed is not None:
                raise RunFailed(f"preparing {', '.join(names)} for {run[0]}..{run[-1]}", failed)
    return known_by


def train_models(
    settings: Settings,
    network: str,
    days: list[dt.date],
    as_of: dt.date | None,
    overrides: dict[str, str],
) -> dict[str, dict[str, Any]]:
    """Train the network's models on ``days`` (``prepare_training`` done) through the
    training job, then re-elect their champions; each model's materialization metadata
    and whether it is now the champion. Raises ``RunFailed``."""
    from aml_pipeline.defs.network import CHAMPION_ASSETS, MODEL_ASSETS

    config = {
        "start_date": days[0].isoformat(),
        "end_date": days[-1].isoformat(),
        "as_of": as_of.isoformat() if as_of else "",
    }
    ops = {f"{network}__{kind}": {"config": config} for kind in MODEL_ASSETS}
    result = run_job(
        settings,
        "training_job",
        {**run_config(settings, network, overrides), "ops": ops},
        (network, (*MODEL_ASSETS, *CHAMPION_ASSETS)),
    )
    if not result.success:
        raise RunFailed("training", result)
    metadata = materialized_metadata(result)
    return {
        kind: {
            **metadata[kind],
            "champion": metadata[f"{kind}_champion"]["champion"] == metadata[kind]["version"],
        }
        for kind in MODEL_ASSETS
    }
