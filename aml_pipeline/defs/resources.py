"""Dagster resources: the pipeline's settings and its batch source."""

from __future__ import annotations

import datetime as dt
import functools
from pathlib import Path

import dagster as dg
from pydantic import Field

from aml_pipeline.settings import Settings
from aml_pipeline.simulator.profiles import parse_profile
from aml_pipeline.sources.base import BatchSource
from aml_pipeline.sources.local import LocalDirectorySource
from aml_pipeline.sources.record import NetworkRecord, SourceSpec, read_record
from aml_pipeline.sources.simulated import SimulatedSource
from aml_pipeline.storage.objects import LocalStorage


@functools.lru_cache(maxsize=4)
def _simulated_source(
    profile: str, start: str, seed: int, cache_root: str, labels_since: str
) -> SimulatedSource:
    """One simulated source per setting in a process, so its build cache is shared; its
    labels are kept under ``cache_root/{profile}-seed{seed}/``."""
    return SimulatedSource(
        parse_profile(profile),
        dt.date.fromisoformat(start),
        seed,
        label_cache=LocalStorage(f"{cache_root}/{profile}-seed{seed}"),
        labels_since=dt.date.fromisoformat(labels_since),
    )


class PipelineConfig(dg.ConfigurableResource):
    """Where the pipeline keeps its data and where daily batches come from.

    Built from ``Settings`` (the ``AML_*`` environment variables, whose defaults live only
    in ``settings.py``); the launchpad shows and overrides these values.
    """

    window_days: int = Field(description="Trailing window of the batches (AML_WINDOW_DAYS).")
    data_root: str = Field(
        description="Root of input/, warehouse/ (the IO manager's too), output/, "
        "trained_models/ (AML_DATA_ROOT)."
    )
    input_dir: str = Field(default="", description="Where batches land; empty = data_root/input.")
    batch_source: str = Field(description="'simulated' or 'local' (AML_BATCH_SOURCE).")
    source_dir: str = Field(description="Directory of the local source (AML_SOURCE_DIR).")
    sim_profile: str = Field(
        description="Simulator profile and optional knobs, e.g. 'demo,addresses=80000' "
        "(AML_SIM_PROFILE).",
    )
    sim_seed: int = Field(description="Simulator seed (AML_SIM_SEED).")
    partitions_start: str = Field(description="First daily partition (AML_PARTITIONS_START).")
    labels_as_of: str = Field(
        description="Labels known on this ISO date are visible; empty = today UTC "
        "(AML_LABELS_AS_OF)."
    )
    explain_coverage: int = Field(
        description="Alerts explained (tree SHAP) per day: -1 all, 0 none, N the N highest "
        "scored (AML_EXPLAIN_COVERAGE).",
    )

    @classmethod
    def from_settings(cls, settings: Settings) -> PipelineConfig:
        return cls(
            window_days=settings.window_days,
            data_root=settings.data_root,
            batch_source=settings.batch_source,
            source_dir=settings.source_dir,
            sim_profile=settings.sim_profile,
            sim_seed=settings.sim_seed,
            partitions_start=settings.partitions_start,
            labels_as_of=settings.labels_as_of,
            explain_coverage=settings.explain_coverage,
        )

    def storage(self) -> LocalStorage:
        """The storage layer over ``data_root``."""
        return LocalStorage(self.data_root)

    def input_storage(self) -> LocalStorage:
        """The storage layer over the landing area ``{network}/{date}/``."""
        return LocalStorage(self.input_dir or f"{self.data_root}/input")

    def as_of(self) -> dt.date:
        """The date up to which labels count as known."""
        if self.labels_as_of:
            return dt.date.fromisoformat(self.labels_as_of)
        return dt.datetime.now(dt.UTC).date()

    def configured_source(self) -> SourceSpec:
        """The source this configuration names (used for a network's first landing)."""
        if self.batch_source == "local":
            folder = str(Path(self.source_dir).resolve()) if self.source_dir else ""
            return SourceSpec("local", source_dir=folder)
        return SourceSpec(self.batch_source, sim_profile=self.sim_profile, sim_seed=self.sim_seed)

    def record(self, network: str) -> NetworkRecord | None:
        """The network's record (source, first landed day), None before its first landing."""
        return read_record(self.input_storage(), network)

    def data_since(self, network: str) -> dt.date:
        """The network's first landed day: where its data, and any look-back, begins."""
        record = self.record(network)
        if record is None:
            raise ValueError(f"{network} has never been landed: land its first day first")
        return record.since

    def source_spec(self, network: str) -> SourceSpec:
        """The network's source: the one recorded at its first landing, else the configured."""
        record = self.record(network)
        return record.source if record is not None else self.configured_source()

    def source(self, network: str) -> BatchSource:
        """The batch source of ``network`` (see ``source_spec``); a simulated one serves the
        labels of alerts from the network's first landed day on."""
        record = self.record(network)
        spec = record.source if record is not None else self.configured_source()
        if spec.kind == "simulated":
            since = record.since.isoformat() if record is not None else self.partitions_start
            return _simulated_source(
                spec.sim_profile,
                self.partitions_start,
                spec.sim_seed,
                f"{self.data_root}/simulated_sot",
                since,
            )
        return LocalDirectorySource(LocalStorage(spec.source_dir))
