"""Scale knobs of the simulator and its profiles: ``demo`` and ``large`` (documented in
docs/simulator.md) and ``small`` (tests)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any


@dataclass(frozen=True)
class SimulationProfile:
    """How big a simulated network is.

    ``addresses`` is the whole population (churn means not all are active on a day);
    ``transfers_per_day`` is the mean number of ordinary transfers; ``campaigns_per_day``
    the mean number of laundering campaigns that start each day and
    ``lookalikes_per_day`` the benign look-alike episodes (payroll, airdrops, ...).
    """

    name: str
    addresses: int
    transfers_per_day: int
    campaigns_per_day: float
    lookalikes_per_day: float


#: A few thousand alerts a day; one day builds in a few seconds.
DEMO = SimulationProfile(
    "demo",
    addresses=40_000,
    transfers_per_day=25_000,
    campaigns_per_day=4.0,
    lookalikes_per_day=16.0,
)
#: About 50,000 addresses active in a 7-day window and 250,000 transfers on a weekday
#: (the base rate is scaled by weekday and season; weekends are quieter).
LARGE = SimulationProfile(
    "large",
    addresses=60_000,
    transfers_per_day=210_000,
    campaigns_per_day=40.0,
    lookalikes_per_day=60.0,
)
#: A small network for tests.
SMALL = SimulationProfile(
    "small", addresses=6_000, transfers_per_day=4_000, campaigns_per_day=1.0, lookalikes_per_day=4.0
)

PROFILES = {p.name: p for p in (DEMO, LARGE, SMALL)}


def parse_profile(text: str) -> SimulationProfile:
    """A named profile with optional knob overrides: ``"demo"``, ``"demo,addresses=80000,
    campaigns_per_day=8"``."""
    name, *changes = [part.strip() for part in text.split(",") if part.strip()] or [""]
    if name not in PROFILES:
        raise ValueError(f"unknown simulator profile {name!r}: one of {sorted(PROFILES)}")
    knobs: dict[str, Any] = {}
    for change in changes:
        key, _, value = change.partition("=")
        if key in ("addresses", "transfers_per_day"):
            knobs[key] = int(value)
        elif key in ("campaigns_per_day", "lookalikes_per_day"):
            knobs[key] = float(value)
        else:
            raise ValueError(f"unknown simulator knob {key!r} in {text!r}")
        if knobs[key] < (100 if key == "addresses" else 0):
            raise ValueError(f"simulator knob {key} is out of range in {text!r}")
    return replace(PROFILES[name], name=text.replace(" ", ""), **knobs) if knobs else PROFILES[name]
