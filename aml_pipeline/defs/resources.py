"""Dagster resources: the pipeline's settings and its batch source."""

from __future__ import annotations

import datetime as dt
import functools
from pathlib import Path

import dagster as dg
from pydantic import Field

from aml_pipeline.settings import NetworkSettings, Settings
from aml_pipeline.simulator.profiles import parse_profile
from aml_pipeline.sources.base import BatchSource
from aml_pipeline.sources.local import LocalDirectorySource
from aml_pipeline.sources.record import NetworkRecord, SourceSpec, read_record
from aml_pipeline.sources.simulated import SimulatedSource
from aml_pipeline.storage.objects import Storage, check_data_root, storage_at


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
        label_cache=storage_at(f"{cache_root}/{profile}-seed{seed}"),
        labels_since=dt.date.fromisoformat(labels_since),
    )


def _about(name: str) -> str:
    """The setting's description, as ``settings.py`` writes it, and its variable."""
    return f"{Settings.model_fields[name].description} (AML_{name.upper()})."


class NetworkConfig(dg.Config):
    """One network's batch settings (its ``networks/{network}.yaml`` over the environment)."""

    window_days: int = Field(description=_about("window_days"))
    batch_source: str = Field(description=_about("batch_source"))
    source_dir: str = Field(description=_about("source_dir"))
    sim_profile: str = Field(description=_about("sim_profile"))
    sim_seed: int = Field(description=_about("sim_seed"))
    alert_budget: int = Field(description=_about("alert_budget"))
    label_horizon_days: int = Field(description=_about("label_horizon_days"))
    label_maturity_days: int = Field(description=_about("label_maturity_days"))

    @classmethod
    def from_settings(cls, network: NetworkSettings) -> NetworkConfig:
        return cls(**{name: getattr(network, name) for name in cls.model_fields})


class PipelineConfig(dg.ConfigurableResource):
    """Where the pipeline keeps its data and where each network's batches come from.

    Built from ``Settings`` (the ``AML_*`` environment variables and the network files,
    whose defaults live only in ``settings.py``); the launchpad shows and overrides these
    values.
    """

    data_root: str = Field(description=_about("data_root"))
    input_dir: str = Field(default="", description="Where batches land; empty = data_root/input.")
    networks: dict[str, NetworkConfig] = Field(
        description="Each network's batch settings, by network."
    )
    partitions_start: str = Field(description=_about("partitions_start"))
    labels_as_of: str = Field(description=_about("labels_as_of"))
    explain_coverage: int = Field(description=_about("explain_coverage"))
    fetch_workers: int = Field(description=_about("fetch_workers"))
    min_free_mb: int = Field(description=_about("min_free_mb"))

    @classmethod
    def from_settings(cls, settings: Settings) -> PipelineConfig:
        return cls(
            data_root=settings.data_root,
            networks={
                network.name: NetworkConfig.from_settings(network)
                for network in settings.network_settings()
            },
            partitions_start=settings.partitions_start.isoformat(),
            labels_as_of=settings.as_of(),
            explain_coverage=settings.explain_coverage,
            fetch_workers=settings.fetch_workers,
            min_free_mb=settings.min_free_mb,
        )

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        """Refuse a run, before any step, whose data root cannot be listed and written
        (one line naming the setting: an unreachable S3 endpoint, refused credentials, a
        missing bucket, no write permission)."""
        for root in filter(None, (self.data_root, self.input_dir)):
            check_data_root(root)

    def network(self, network: str) -> NetworkConfig:
        """``network``'s batch settings."""
        if network not in self.networks:
            raise ValueError(f"network {network!r} is not configured: {sorted(self.networks)}")
        return self.networks[network]

    def window_days(self, network: str) -> int:
        """The trailing window of ``network``'s batches."""
        return self.network(network).window_days

    def alert_budget(self, network: str) -> int:
        """The alerts ``network``'s analysts work a day."""
        return self.network(network).alert_budget

    def labels_complete_by(self, network: str, last_day: dt.date) -> dt.date:
        """The day by which every label of ``network``'s alerts up to ``last_day`` has
        arrived (its ``label_horizon_days`` later)."""
        return last_day + dt.timedelta(self.network(network).label_horizon_days)

    def storage(self) -> Storage:
        """The storage layer over ``data_root``."""
        return storage_at(self.data_root)

    def input_storage(self) -> Storage:
        """The storage layer over the landing area ``{network}/{date}/``."""
        return storage_at(self.input_dir or f"{self.data_root}/input")

    def as_of(self) -> dt.date:
        """The date up to which labels count as known."""
        if self.labels_as_of:
            return dt.date.fromisoformat(self.labels_as_of)
        return dt.datetime.now(dt.UTC).date()

    def configured_source(self, network: str) -> SourceSpec:
        """The source the configuration names for ``network`` (used at its first landing)."""
        config = self.network(network)
        if config.batch_source == "local":
            folder = str(Path(config.source_dir).resolve()) if config.source_dir else ""
            return SourceSpec("local", source_dir=folder)
        return SourceSpec(
            config.batch_source, sim_profile=config.sim_profile, sim_seed=config.sim_seed
        )

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
        return record.source if record is not None else self.configured_source(network)

    def source(self, network: str) -> BatchSource:
        """The batch source of ``network`` (see ``source_spec``); a simulated one serves the
        labels of alerts from the network's first landed day on."""
        record = self.record(network)
        spec = record.source if record is not None else self.configured_source(network)
        if spec.kind == "simulated":
            since = record.since.isoformat() if record is not None else self.partitions_start
            return _simulated_source(
                spec.sim_profile,
                self.partitions_start,
                spec.sim_seed,
                f"{self.data_root}/simulated_sot",
                since,
            )
        return LocalDirectorySource(storage_at(spec.source_dir))
