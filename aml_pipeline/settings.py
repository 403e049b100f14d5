"""Pipeline settings, read from environment variables with documented defaults.

| variable              | default        | meaning                                         |
|-----------------------|----------------|-------------------------------------------------|
| AML_NETWORKS          | ethereum       | comma-separated networks, one asset group each  |
| AML_WINDOW_DAYS       | 7              | trailing window of the batches (7, 30, 90, 195) |
| AML_DATA_ROOT         | ./data         | root of input/, warehouse/, output/, ...        |
| AML_BATCH_SOURCE      | simulated      | ``simulated`` or ``local``                      |
| AML_SOURCE_DIR        | (empty)        | directory of the ``local`` source               |
| AML_SIM_PROFILE       | demo           | ``small``/``demo``/``large`` [,knob=value...]   |
| AML_SIM_SEED          | 0              | simulator seed                                  |
| AML_PARTITIONS_START  | 2025-01-01     | first day of the daily partitions               |
| AML_LABELS_AS_OF      | (today, UTC)   | labels known on this date are visible (tests)   |
| AML_EXPLAIN_COVERAGE  | -1             | alerts explained per day: -1 all, 0 none, N top |
| AML_SCHEDULE_HOUR     | 2              | UTC hour of the daily scoring schedule          |
| AML_SENSOR_LOOKBACK_DAYS | 7           | days the new-batch sensor looks back for gaps   |
"""

from __future__ import annotations

import datetime as dt
import os
import re
from dataclasses import dataclass

NETWORK_PATTERN = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
SOURCES = ("simulated", "local")


def _env(name: str, default: str) -> str:
    value = os.environ.get(name, "").strip()
    return value or default


def _int(name: str, default: str) -> int:
    try:
        return int(_env(name, default))
    except ValueError:
        raise ValueError(f"{name} must be an integer, got {_env(name, default)!r}") from None


def _bounded_int(name: str, default: str, low: int, high: int) -> int:
    value = _int(name, default)
    if not low <= value <= high:
        raise ValueError(f"{name} must be between {low} and {high}, got {value}")
    return value


def parse_networks(text: str) -> list[str]:
    """Split and check a comma-separated network list (lowercase identifiers)."""
    networks = [n.strip() for n in text.split(",") if n.strip()]
    for network in networks:
        if not NETWORK_PATTERN.match(network):
            raise ValueError(f"invalid network name {network!r}: use lowercase [a-z0-9_]")
    if not networks or len(set(networks)) != len(networks):
        raise ValueError(f"networks must be a non-empty list without repeats: {text!r}")
    return networks


@dataclass(frozen=True)
class Settings:
    """The environment's settings, resolved once per process."""

    networks: list[str]
    window_days: int
    data_root: str
    batch_source: str
    source_dir: str
    sim_profile: str
    sim_seed: int
    partitions_start: str
    labels_as_of: str
    explain_coverage: int = -1
    schedule_hour: int = 2
    sensor_lookback_days: int = 7

    @classmethod
    def from_env(cls) -> Settings:
        source = _env("AML_BATCH_SOURCE", "simulated")
        if source not in SOURCES:
            raise ValueError(f"AML_BATCH_SOURCE must be one of {SOURCES}, got {source!r}")
        start = _env("AML_PARTITIONS_START", "2025-01-01")
        dt.date.fromisoformat(start)
        return cls(
            networks=parse_networks(_env("AML_NETWORKS", "ethereum")),
            window_days=_int("AML_WINDOW_DAYS", "7"),
            data_root=_env("AML_DATA_ROOT", "./data"),
            batch_source=source,
            source_dir=_env("AML_SOURCE_DIR", ""),
            sim_profile=_env("AML_SIM_PROFILE", "demo"),
            sim_seed=_int("AML_SIM_SEED", "0"),
            partitions_start=start,
            labels_as_of=_env("AML_LABELS_AS_OF", ""),
            explain_coverage=_int("AML_EXPLAIN_COVERAGE", "-1"),
            schedule_hour=_bounded_int("AML_SCHEDULE_HOUR", "2", 0, 23),
            sensor_lookback_days=_bounded_int("AML_SENSOR_LOOKBACK_DAYS", "7", 1, 366),
        )
