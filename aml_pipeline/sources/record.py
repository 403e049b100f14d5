"""A network's batch source and first day as one recorded fact.

When a network is first landed, its source (simulated with a profile and seed, or a local
directory) and that first day are written to ``{network}/NETWORK.json`` in the landing
storage. Every later fetch of batches or labels for that network uses the recorded source,
whatever the environment or the launchpad says, so labels always come from where the
alerts came from; and the first day is where the network's data begins (a look-back never
expects a day before it).
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import asdict, dataclass

from aml_pipeline.storage import layout
from aml_pipeline.storage.objects import Storage


class SourceMismatch(ValueError):
    """A command asked for a different source than the one the network was landed from."""


@dataclass(frozen=True)
class SourceSpec:
    """Where a network's batches come from: ``simulated`` (profile, seed) or ``local`` (dir)."""

    kind: str
    source_dir: str = ""
    sim_profile: str = ""
    sim_seed: int = 0

    def __post_init__(self) -> None:
        if self.kind not in ("simulated", "local"):
            raise ValueError(f"unknown batch source {self.kind!r}")
        if self.kind == "local" and not self.source_dir:
            raise ValueError(
                "the local source needs a directory (source_dir in networks/{network}.yaml, "
                "AML_SOURCE_DIR or --source DIR)"
            )

    def identity(self) -> tuple:
        """What makes two specs the same source (unused fields of the kind ignored)."""
        if self.kind == "local":
            return (self.kind, self.source_dir)
        return (self.kind, self.sim_profile, self.sim_seed)

    def describe(self) -> str:
        if self.kind == "local":
            return f"the local directory {self.source_dir}"
        return f"the simulator (profile {self.sim_profile!r}, seed {self.sim_seed})"


def record_key(network: str) -> str:
    """The record's key in the landing storage."""
    return layout.network_record(network)


@dataclass(frozen=True)
class NetworkRecord:
    """What ``NETWORK.json`` holds: the source and the first landed day."""

    source: SourceSpec
    since: dt.date


def read_record(storage: Storage, network: str) -> NetworkRecord | None:
    """The network's record, or None before its first landing."""
    key = record_key(network)
    if not storage.exists(key):
        return None
    data = json.loads(storage.read_bytes(key))
    return NetworkRecord(SourceSpec(**data["source"]), dt.date.fromisoformat(data["since"]))


def record_landing(
    storage: Storage, network: str, source: SourceSpec, first_day: dt.date
) -> NetworkRecord:
    """Record a landing of days from ``first_day``: the network's first landing writes its
    source, an earlier day moves ``since`` back (under a lock: landings may run at once)."""
    with storage.locked(record_key(network)):
        record = read_record(storage, network)
        if record is None or first_day < record.since:
            record = NetworkRecord(record.source if record else source, first_day)
            _write_record(storage, network, record)
    return record


def _write_record(storage: Storage, network: str, record: NetworkRecord) -> None:
    body = {
        "network": network,
        "source": asdict(record.source),
        "since": record.since.isoformat(),
        "recorded_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }
    storage.write_bytes(record_key(network), (json.dumps(body, indent=2) + "\n").encode())


def check_requested(storage: Storage, network: str, requested: SourceSpec, where: str) -> None:
    """Refuse an explicitly requested source that disagrees with the recorded one."""
    record = read_record(storage, network)
    recorded = record.source if record is not None else None
    if recorded is not None and recorded.identity() != requested.identity():
        raise SourceMismatch(
            f"{network} was first landed from {recorded.describe()} (recorded in "
            f"{where}/{record_key(network)}); this command asks for {requested.describe()}. "
            "A network has one source: drop --source, use another network name, or delete "
            "that file to start the network over."
        )
