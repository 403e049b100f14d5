"""Daily transfers of one simulated network, and the truth about who laundered."""

from __future__ import annotations

import datetime as dt
import functools
import zlib

import numpy as np
import pandas as pd

from aml_pipeline.domain import DAY_MS, HOUR_MS
from aml_pipeline.simulator.episodes import (
    EMITTERS,
    LAUNDERING,
    LOOKALIKES,
    MAX_DURATION,
    Episode,
    cover_traffic,
    crime_groups,
    funding,
    mix_assets,
    plan_episode,
    typology_weights,
)
from aml_pipeline.simulator.population import (
    AMOUNTS,
    ASSET_WEIGHTS,
    ASSETS,
    KIND_NAMES,
    MIXING,
    Population,
    hour_profile,
)
from aml_pipeline.simulator.profiles import SimulationProfile

EPOCH = dt.date(2024, 1, 1)
TRANSFER_COLUMNS = ["timestamp_ms", "from_address", "to_address", "amount_usd", "asset"]
_HOUR_PROFILES = np.stack([hour_profile(peak, 4.0) for peak in (14.0, 20.0, 3.0)])


def day_index(day: dt.date) -> int:
    return (day - EPOCH).days


class TransferSimulator:
    """Deterministic transfers per day for one network: same seed, same transfers."""

    def __init__(
        self, network: str, profile: SimulationProfile, seed: int = 0, window_days: int = 7
    ) -> None:
        self.network, self.profile, self.seed = network, profile, seed
        self._net = zlib.crc32(network.encode())
        self.population = Population.generate(
            network, profile.addresses, seed * 7919 + self._net % 7919
        )
        self.groups = crime_groups(self.population, profile.campaigns_per_day, self._rng(5))
        # a daily run needs the window's days and the episodes that reach into them
        self.transfers = functools.lru_cache(maxsize=window_days + 2)(self._transfers)
        self.episodes_starting = functools.lru_cache(maxsize=window_days + MAX_DURATION + 2)(
            self._episodes_starting
        )

    def _rng(self, *parts: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, self._net, *parts])

    def _episodes_starting(self, day: int) -> tuple[Episode, ...]:
        """The laundering campaigns and look-alikes that start on day index ``day``."""
        rng = self._rng(1, day)
        episodes = []
        for family, rate, names in (
            (0, self.profile.campaigns_per_day, LAUNDERING),
            (1, self.profile.lookalikes_per_day, LOOKALIKES),
        ):
            weights = typology_weights(names, day, self.seed + family)
            for i in range(int(rng.poisson(rate))):
                typology = str(rng.choice(names, p=weights))
                episodes.append(
                    plan_episode(
                        self.population,
                        self.groups,
                        (day, family, i),
                        typology,
                        day,
                        self._rng(2, day, family, i),
                    )
                )
        return tuple(episodes)

    def episodes_active(self, first: int, last: int) -> list[Episode]:
        """Episodes with at least one day in ``[first, last]`` (day indexes)."""
        return [
            ep
            for start in range(first - MAX_DURATION, last + 1)
            for ep in self.episodes_starting(start)
            if any(ep.active_on(d) for d in range(first, last + 1))
        ]

    def _ordinary(self, day: int, day_ms: int) -> pd.DataFrame:
        pop, rng = self.population, self._rng(3, day)
        weekday = (EPOCH + dt.timedelta(day)).weekday()
        season = 1.0 + 0.15 * np.sin(2 * np.pi * day / 365.0)
        n = int(
            rng.poisson(self.profile.transfers_per_day * season * (0.8 if weekday >= 5 else 1.05))
        )
        active = pop.active(day)
        senders = np.flatnonzero(active)
        p = pop.weight[senders] / pop.weight[senders].sum()
        src = rng.choice(senders, n, p=p)
        dst = np.empty(n, dtype=np.int64)
        src_kind = pop.kind[src]
        for k, name in enumerate(KIND_NAMES):
            rows = np.flatnonzero(src_kind == k)
            if not len(rows):
                continue
            if name == "exchange_deposit":  # deposit addresses sweep to their own exchange
                dst[rows] = pop.exchange_of[src[rows]]
                continue
            targets = MIXING[name]
            kinds = np.array([KIND_NAMES.index(t) for t in targets])
            chosen = rng.choice(
                kinds, len(rows), p=np.array(list(targets.values())) / sum(targets.values())
            )
            for kind in np.unique(chosen):
                pool = np.flatnonzero((pop.kind == kind) & active)
                sel = rows[chosen == kind]
                w = pop.weight[pool]
                dst[sel] = rng.choice(pool, len(sel), p=w / w.sum())
        keep = src != dst
        src, dst, src_kind = src[keep], dst[keep], src_kind[keep]
        medians = np.array([AMOUNTS[k][0] for k in KIND_NAMES])[src_kind]
        sigmas = np.array([AMOUNTS[k][1] for k in KIND_NAMES])[src_kind]
        amount = np.round(rng.lognormal(np.log(medians), sigmas), 2)
        region = pop.region[src]
        hour = np.empty(len(src), np.int64)
        for r, profile in enumerate(_HOUR_PROFILES):
            rows = np.flatnonzero(region == r)
            hour[rows] = rng.choice(24, len(rows), p=profile)
        ts = day_ms + hour * HOUR_MS + rng.integers(0, HOUR_MS, len(src))
        return pd.DataFrame(
            {
                "timestamp_ms": ts.astype("int64"),
                "from_address": pop.address[src],
                "to_address": pop.address[dst],
                "amount_usd": amount,
                "asset": rng.choice(ASSETS, len(src), p=ASSET_WEIGHTS),
            }
        )

    def _transfers(self, day: dt.date) -> pd.DataFrame:
        """Every transfer of ``day`` (UTC), sorted by time; columns ``TRANSFER_COLUMNS``."""
        d = day_index(day)
        day_ms = int(dt.datetime.combine(day, dt.time(), dt.UTC).timestamp() * 1000)
        rows = []
        for ep in self.episodes_active(d, d):
            rng = self._rng(4, *ep.key, d)
            rows.extend(mix_assets(EMITTERS[ep.typology](ep, d, rng, day_ms), rng))
            rows.extend(funding(ep, self.population, d, rng, day_ms))
            rows.extend(cover_traffic(ep, self.population, rng, day_ms))
        episodes = pd.DataFrame(rows, columns=TRANSFER_COLUMNS)
        # episodes are timed to end within the day; the clip is only a safety net
        episodes["timestamp_ms"] = episodes["timestamp_ms"].clip(day_ms, day_ms + DAY_MS - 1)
        episodes["amount_usd"] = episodes["amount_usd"].round(2)
        out = pd.concat([self._ordinary(d, day_ms), episodes], ignore_index=True)
        out = out[out["from_address"] != out["to_address"]]
        out = out.sort_values(["timestamp_ms", "from_address", "to_address"], kind="stable")
        return out.reset_index(drop=True)

    def window(self, day: dt.date, window_days: int) -> pd.DataFrame:
        """Transfers of the ``window_days`` days ending on ``day``."""
        days = [day - dt.timedelta(i) for i in range(window_days - 1, -1, -1)]
        return pd.concat([self.transfers(d) for d in days], ignore_index=True)

    def illicit_actors(self, first: dt.date, last: dt.date) -> dict[str, Episode]:
        """Address -> laundering campaign, for campaigns active between the two dates."""
        actors: dict[str, Episode] = {}
        for ep in self.episodes_active(day_index(first), day_index(last)):
            if ep.illicit:
                for address in ep.members:
                    if address not in actors or (ep.caught and not actors[address].caught):
                        actors[address] = ep  # a caught campaign decides the label
        return actors

    def address_tags(self) -> dict[str, str]:
        """Public tags of known services (exchange, defi, mixer, ...)."""
        return self.population.tags()
