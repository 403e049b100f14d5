"""Laundering campaigns and their benign look-alikes, as multi-day transfer episodes.

Every episode is planned from a seed on the day it starts, so the transfers of any day can
be regenerated without replaying history. Laundering episodes mark their actors illicit;
look-alikes produce the same shapes (fan-in, fan-out, round trips, bursts, amounts just
below thresholds, pass-through) from ordinary, honest activity.

The money-flow graph carries what laundering leaves between addresses: collection fan-in,
layering chains (some returning to their origin), peel chains, cycles, scatter-gather
through mules; and the innocent versions: exchange deposit fan-in, payroll fan-out, market
makers trading both ways with their counterparties. Campaigns are run by a few crime
groups (``CrimeGroup``) that reuse their mules and cash-out addresses from one campaign to
the next, and most campaigns start with the proceeds leaving one of the group's funders
(the wallets where a scam or a hack collected them), as real groups do: an address paid by
a funder or working beside a mule of an earlier, reported campaign is more suspect. The
mules' and funders' everyday counterparties are the innocent side of that association.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from aml_pipeline.domain import HOUR_MS, NEAR_THRESHOLD_SHARE
from aml_pipeline.domain import REPORTING_THRESHOLD_USD as THRESHOLD_USD
from aml_pipeline.simulator.population import ASSET_WEIGHTS, ASSETS, Population, address_id

MAX_DURATION = 21  # days
#: Crime groups per expected campaign a day, and what each keeps between its campaigns.
GROUPS_PER_DAILY_CAMPAIGN = 2.0
GROUP_MULES = 24
GROUP_EXITS = 6
GROUP_FUNDERS = 2
#: The chance that a recruited (aged) mule of a campaign comes from its group's pool, and
#: that a campaign starts with proceeds from one of the group's funders.
MULE_REUSE = 0.6
FUNDED = 0.6


@dataclass(frozen=True)
class CrimeGroup:
    """A laundering organisation's infrastructure, reused across its campaigns."""

    mules: tuple[str, ...]  # recruited aged retail wallets
    exits: tuple[str, ...]  # exchange deposit addresses it cashes out through
    funders: tuple[str, ...]  # its own wallets holding the proceeds to launder


def crime_groups(
    pop: Population, campaigns_per_day: float, rng: np.random.Generator
) -> tuple[CrimeGroup, ...]:
    """The network's crime groups: about two per expected campaign a day, at least two."""
    n = max(2, round(GROUPS_PER_DAILY_CAMPAIGN * campaigns_per_day))
    retail, deposits = pop.of_kind("retail"), pop.of_kind("exchange_deposit")
    return tuple(
        CrimeGroup(
            mules=tuple(str(a) for a in pop.address[rng.choice(retail, GROUP_MULES, False)]),
            exits=tuple(str(a) for a in pop.address[rng.choice(deposits, GROUP_EXITS, False)]),
            funders=tuple(address_id(pop.network, "g", g, i) for i in range(GROUP_FUNDERS)),
        )
        for g in range(n)
    )


@dataclass
class Episode:
    """One campaign (illicit) or look-alike (benign) spanning ``duration`` days."""

    key: tuple[int, ...]
    typology: str
    illicit: bool
    start: int  # day index
    duration: int
    actors: list[str]
    counterparties: list[str]
    scale: float
    caught: bool = False
    label_delay: int = 0
    asset: str = "ETH"
    group: int | None = None  # index of the crime group running a campaign
    funder: str | None = None  # the group's wallet whose proceeds start the campaign
    extra: dict = field(default_factory=dict)

    def active_on(self, day: int) -> bool:
        return self.start <= day < self.start + self.duration

    @property
    def members(self) -> list[str]:
        """Everyone acting in the episode: its actors and its funder."""
        return [*self.actors, self.funder] if self.funder else self.actors


Rows = list[tuple[int, str, str, float, str]]
Emitter = Callable[[Episode, int, np.random.Generator, int], Rows]


_NIGHT_HOURS = np.r_[np.full(7, 0.08), np.full(17, 0.44 / 17)]


def _times(
    rng: np.random.Generator, day_ms: int, n: int, night: bool = False, latest_hour: int = 24
) -> np.ndarray:
    """``n`` times on the day; ``night`` favours 00-07 UTC (bots, other time zones)."""
    weights = _NIGHT_HOURS[:latest_hour] if night else np.ones(latest_hour)
    hours = rng.choice(latest_hour, n, p=weights / weights.sum())
    return day_ms + hours * HOUR_MS + rng.integers(0, HOUR_MS, n)


def _chain(ep: Episode, day: int, rng: np.random.Generator, day_ms: int, peel: bool) -> Rows:
    """Peel chain / layering path: funds hop along ``actors``, a few hops a day; a
    round-trip path ends where it began."""
    path = ep.actors + ep.actors[:1] if ep.extra.get("round_trip") else ep.actors
    hops_per_day = max(1, len(path) // ep.duration + 1)
    first = (day - ep.start) * hops_per_day
    rows: Rows = []
    amount = ep.scale * (0.93**first)
    t = _times(rng, day_ms, 1, night=ep.extra["night"], latest_hour=8)[0]
    for h in range(first, min(first + hops_per_day, len(path) - 1)):
        src, dst = path[h], path[h + 1]
        if peel:
            cut = amount * rng.uniform(0.03, 0.12)
            rows.append(
                (
                    int(t + rng.integers(60_000, 900_000)),
                    src,
                    ep.counterparties[h % len(ep.counterparties)],
                    cut,
                    ep.asset,
                )
            )
            amount -= cut
        else:
            amount *= rng.uniform(0.97, 0.995)
        rows.append((int(t), src, dst, amount, ep.asset))
        t += int(rng.integers(10 * 60_000, 2 * HOUR_MS))  # hops stay within the day
    return rows


def _fan_in(ep: Episode, day: int, rng: np.random.Generator, day_ms: int) -> Rows:
    collector, smurfs = ep.actors[0], ep.actors[1:]
    today = [s for s in smurfs if rng.random() < 0.7]
    cap = THRESHOLD_USD if ep.extra.get("below_threshold") else ep.scale * 2
    amounts = np.minimum(
        rng.lognormal(np.log(ep.scale / 4), 0.5, len(today)),
        cap * rng.uniform(0.86, 0.995, len(today)),
    )
    times = _times(rng, day_ms, len(today), night=ep.extra["night"])
    rows = [
        (int(t), s, collector, float(a), ep.asset)
        for t, s, a in zip(times, today, amounts, strict=True)
    ]
    if ep.counterparties and rows:
        total = float(amounts.sum())
        rows.append(
            (int(times.max() + HOUR_MS), collector, ep.counterparties[0], total * 0.97, ep.asset)
        )
    return rows


def _fan_out(ep: Episode, day: int, rng: np.random.Generator, day_ms: int) -> Rows:
    source, receivers = ep.actors[0], ep.actors[1:] + ep.counterparties
    if ep.extra.get("payday") is not None and (day - ep.start) % 7 != ep.extra["payday"]:
        return []
    same = ep.extra.get("same_amount", False)
    amounts = (
        np.full(len(receivers), ep.scale) * rng.uniform(0.98, 1.02, len(receivers))
        if same
        else rng.lognormal(np.log(ep.scale), 0.6, len(receivers))
    )
    t0 = _times(rng, day_ms, 1, night=ep.extra["night"], latest_hour=15)[0]
    rows = [
        (int(t0 + rng.integers(0, HOUR_MS)), source, r, float(a), ep.asset)
        for r, a in zip(receivers, amounts, strict=True)
    ]
    if ep.illicit:  # mules cash out to exchanges the next hours
        exits = ep.extra["exits"]
        for r, a in zip(ep.actors[1:], amounts, strict=False):
            rows.append(
                (
                    int(t0 + rng.integers(HOUR_MS, 8 * HOUR_MS)),
                    r,
                    exits[int(rng.integers(len(exits)))],
                    float(a) * 0.99,
                    ep.asset,
                )
            )
    return rows


def _cycle(ep: Episode, day: int, rng: np.random.Generator, day_ms: int) -> Rows:
    rows: Rows = []
    for _ in range(int(rng.integers(1, 3))):
        amount = ep.scale * rng.uniform(0.7, 1.3)
        t = _times(rng, day_ms, 1, night=ep.extra["night"], latest_hour=12)[0]
        for i, src in enumerate(ep.actors):
            dst = ep.actors[(i + 1) % len(ep.actors)]
            rows.append((int(t), src, dst, amount, ep.asset))
            amount *= rng.uniform(0.96, 0.999)
            t += int(rng.integers(5 * 60_000, HOUR_MS))
    return rows


def _market_making(ep: Episode, day: int, rng: np.random.Generator, day_ms: int) -> Rows:
    """A market maker (``actors[0]``) sells to and buys from its counterparties: on most
    days each trades both ways with it, for about the same USD."""
    maker, rows = ep.actors[0], []
    for other in ep.actors[1:]:
        if rng.random() < 0.35:
            continue
        amount = ep.scale * rng.lognormal(0.0, 0.5)
        sell, buy = _times(rng, day_ms, 2)
        rows.append((int(sell), maker, other, amount, ep.asset))
        rows.append((int(buy), other, maker, amount * rng.uniform(0.97, 1.03), ep.asset))
    return rows


def _structuring(ep: Episode, day: int, rng: np.random.Generator, day_ms: int) -> Rows:
    n = int(rng.integers(3, 9))
    amounts = THRESHOLD_USD * rng.uniform(NEAR_THRESHOLD_SHARE, 0.995, n)
    receivers = rng.choice(ep.counterparties, n)
    times = _times(rng, day_ms, n)
    return [
        (int(t), ep.actors[0], r, float(a), ep.asset)
        for t, r, a in zip(times, receivers, amounts, strict=True)
    ]


def _mixer(ep: Episode, day: int, rng: np.random.Generator, day_ms: int) -> Rows:
    mixer, source, outs = ep.counterparties[0], ep.actors[0], ep.actors[1:]
    denomination = ep.extra["denomination"]
    rows: Rows = []
    deposits = int(rng.integers(1, 4))
    for t in _times(rng, day_ms, deposits):
        rows.append((int(t), source, mixer, denomination, ep.asset))
    if day > ep.start:
        for out in rng.choice(outs, min(len(outs), deposits), replace=False):
            rows.append(
                (int(_times(rng, day_ms, 1)[0]), mixer, str(out), denomination * 0.997, ep.asset)
            )
    return rows


def _pass_through(ep: Episode, day: int, rng: np.random.Generator, day_ms: int) -> Rows:
    rows: Rows = []
    middle, src, dst = ep.actors[0], ep.counterparties[0], ep.counterparties[-1]
    if ep.illicit:
        src = ep.actors[1]
    for t in _times(rng, day_ms, int(rng.integers(1, 4))):
        amount = ep.scale * rng.uniform(0.5, 1.5)
        rows.append((int(t), src, middle, amount, ep.asset))
        rows.append(
            (
                int(t + rng.integers(60_000, 40 * 60_000)),
                middle,
                dst,
                amount * rng.uniform(0.985, 0.999),
                ep.asset,
            )
        )
    return rows


def _burst(ep: Episode, day: int, rng: np.random.Generator, day_ms: int) -> Rows:
    if day != ep.start + ep.duration - 1:
        return []
    n = int(rng.integers(12, 40))
    t0 = _times(rng, day_ms, 1)[0]
    sender = ep.actors[0]
    receivers = rng.choice(ep.actors[1:] + ep.counterparties, n)
    inbound = ep.extra.get("inbound", False)
    amounts = rng.lognormal(np.log(ep.scale), 0.4, n)
    rows: Rows = []
    for r, a in zip(receivers, amounts, strict=True):
        src, dst = (str(r), sender) if inbound else (sender, str(r))
        rows.append((int(t0 + rng.integers(0, HOUR_MS)), src, dst, float(a), ep.asset))
    return rows


def _dormant(ep: Episode, day: int, rng: np.random.Generator, day_ms: int) -> Rows:
    if day < ep.start + ep.duration - 2:
        return []
    n = int(rng.integers(3, 8))
    times = _times(rng, day_ms, n, night=ep.extra["night"])
    amounts = rng.lognormal(np.log(ep.scale), 0.5, n)
    receivers = rng.choice(ep.actors[1:] + ep.counterparties, n)
    return [
        (int(t), ep.actors[0], str(r), float(a), ep.asset)
        for t, r, a in zip(times, receivers, amounts, strict=True)
    ]


EMITTERS: dict[str, Emitter] = {
    "peel_chain": lambda ep, d, r, ms: _chain(ep, d, r, ms, peel=True),
    "layering_path": lambda ep, d, r, ms: _chain(ep, d, r, ms, peel=False),
    "fan_in_smurfing": _fan_in,
    "fan_out_distribution": _fan_out,
    "cycle": _cycle,
    "structuring": _structuring,
    "mixer_in_out": _mixer,
    "rapid_pass_through": _pass_through,
    "dormant_reactivation": _dormant,
    "burst": _burst,
    # benign look-alikes
    "exchange_deposit_fan_in": _fan_in,
    "payroll_fan_out": _fan_out,
    "market_maker_round_trip": _market_making,
    "airdrop": _fan_out,
    "invoice_payments": _fan_in,
    "bridge_relay": _pass_through,
    "nft_mint_burst": _burst,
    "privacy_mixer_user": _mixer,
    "savings_reactivation": _dormant,
    "savings_circle": _cycle,
    "wallet_migration": lambda ep, d, r, ms: _chain(ep, d, r, ms, peel=False),
    "spending_chain": lambda ep, d, r, ms: _chain(ep, d, r, ms, peel=True),
}
LAUNDERING = (
    "peel_chain",
    "layering_path",
    "fan_in_smurfing",
    "fan_out_distribution",
    "cycle",
    "structuring",
    "mixer_in_out",
    "rapid_pass_through",
    "dormant_reactivation",
    "burst",
)
LOOKALIKES = (
    "exchange_deposit_fan_in",
    "payroll_fan_out",
    "market_maker_round_trip",
    "airdrop",
    "invoice_payments",
    "bridge_relay",
    "nft_mint_burst",
    "privacy_mixer_user",
    "savings_reactivation",
    "savings_circle",
    "wallet_migration",
    "spending_chain",
)


def funding(ep: Episode, pop: Population, day: int, rng: np.random.Generator, day_ms: int) -> Rows:
    """A funded campaign's proceeds: victims keep paying the group's funder while it runs,
    and on its first day the funder pays its first actor, early in the day."""
    if ep.funder is None:
        return []
    victims = pop.address[rng.choice(pop.of_kind("retail"), int(rng.integers(1, 5)))]
    amounts = rng.lognormal(np.log(ep.scale / 5), 0.8, len(victims))
    rows: Rows = [
        (int(t), str(v), ep.funder, float(a), ep.asset)
        for t, v, a in zip(_times(rng, day_ms, len(victims)), victims, amounts, strict=True)
    ]
    if day == ep.start:
        t = _times(rng, day_ms, 1, night=ep.extra["night"], latest_hour=6)[0]
        rows.append((int(t), ep.funder, ep.actors[0], ep.scale * rng.uniform(1.0, 1.5), ep.asset))
    return rows


def cover_traffic(ep: Episode, pop: Population, rng: np.random.Generator, day_ms: int) -> Rows:
    """Ordinary transfers of an episode's actors besides the episode itself (mules and
    fresh wallets also shop, swap and use exchanges, as do payroll recipients)."""
    pool = pop.of_kind("retail", "defi", "exchange_deposit", "merchant")
    rows: Rows = []
    for actor in ep.members:
        for _ in range(int(rng.binomial(1, 0.3))):
            other = str(pop.address[rng.choice(pool)])
            amount = float(np.round(rng.lognormal(np.log(150), 1.3), 2))
            pair = (actor, other) if rng.random() < 0.6 else (other, actor)
            rows.append(
                (
                    int(_times(rng, day_ms, 1)[0]),
                    *pair,
                    amount,
                    str(rng.choice(ASSETS, p=ASSET_WEIGHTS)),
                )
            )
    return rows


def mix_assets(rows: Rows, rng: np.random.Generator) -> Rows:
    """About a third of an episode's transfers move another asset than its main one."""
    swap = rng.random(len(rows)) < 0.35
    assets = rng.choice(ASSETS, len(rows), p=ASSET_WEIGHTS)
    return [
        (t, a, b, x, str(assets[i]) if swap[i] else asset)
        for i, (t, a, b, x, asset) in enumerate(rows)
    ]


def typology_weights(names: tuple[str, ...], day: int, seed: int) -> np.ndarray:
    """Each typology's share on ``day``: slow, seeded waves, so the mix drifts over time."""
    rng = np.random.default_rng([seed, 77, len(names)])
    periods = rng.uniform(60, 200, len(names))
    phases = rng.uniform(0, 2 * np.pi, len(names))
    w = 1.0 + 0.7 * np.sin(2 * np.pi * day / periods + phases)
    return w / w.sum()


def plan_episode(
    pop: Population,
    groups: tuple[CrimeGroup, ...],
    key: tuple[int, ...],
    typology: str,
    start: int,
    rng: np.random.Generator,
) -> Episode:
    """Choose actors, counterparties and scale for a new episode of ``typology``; a
    campaign is run by one of ``groups`` and draws on its mules and exits."""
    illicit = typology in LAUNDERING
    net = pop.network
    group_index = int(rng.integers(len(groups)))
    group = groups[group_index]

    serial = itertools.count()

    def fresh(n: int) -> list[str]:
        """New addresses, never seen before (numbered across the whole episode)."""
        return [address_id(net, "e", *key, next(serial)) for _ in range(n)]

    def existing(kind: str, n: int) -> list[str]:
        return [str(a) for a in pop.address[rng.choice(pop.of_kind(kind), n)]]

    def actors(n: int) -> list[str]:
        """Illicit actors: fresh addresses mixed with recruited aged wallets (mules), most
        of them the group's own."""
        k = int(rng.binomial(n, 0.35))
        reused = int(rng.binomial(k, MULE_REUSE))
        own = [str(a) for a in rng.choice(group.mules, reused, replace=False)]
        return fresh(n - k) + own + existing("retail", k - reused)

    exits = (
        [str(a) for a in rng.choice(group.exits, 4, replace=False)]
        if illicit
        else existing("exchange_deposit", 4)
    )
    duration = int(rng.integers(2, MAX_DURATION + 1))
    scale = float(rng.lognormal(np.log(6_000), 0.9))
    # bots and launderers in other time zones often move funds at night (UTC)
    extra: dict = {"night": bool(rng.random() < (0.6 if illicit else 0.25))}
    if typology == "peel_chain":
        who, other = actors(int(rng.integers(4, 12))), exits
        scale *= 6
    elif typology == "layering_path":  # half of them come back to where they began
        extra["round_trip"] = bool(rng.random() < 0.5)
        who = actors(int(rng.integers(3, 7) if extra["round_trip"] else rng.integers(4, 12)))
        other = exits
        scale *= 6
    elif typology == "fan_in_smurfing":
        who, other = actors(int(rng.integers(8, 30))), exits[:1]
        extra["below_threshold"] = rng.random() < 0.6
    elif typology == "fan_out_distribution":
        who, other = actors(int(rng.integers(8, 30))), []
        extra["exits"] = exits
    elif typology == "cycle":
        who, other = actors(int(rng.integers(2, 6))), []
        scale *= 3
    elif typology == "structuring":
        who, other = actors(1), actors(4) + exits
    elif typology == "mixer_in_out":
        who, other = actors(int(rng.integers(3, 10))), existing("mixer", 1)
        extra["denomination"] = float(rng.choice([1_000.0, 10_000.0, 100_000.0]))
    elif typology == "rapid_pass_through":
        who, other = actors(2), exits
        scale *= 4
    elif typology in ("dormant_reactivation", "savings_reactivation"):
        who = existing("whale" if rng.random() < 0.3 else "retail", 1)
        who += actors(4) if illicit else existing("retail", 3)
        other = exits
        scale *= 3
    elif typology == "burst":
        who, other = actors(int(rng.integers(6, 20))), exits
    elif typology == "exchange_deposit_fan_in":
        who = existing("exchange_deposit", 1) + existing("retail", int(rng.integers(15, 60)))
        other = existing("exchange_hot", 1)
    elif typology == "invoice_payments":
        who = existing("merchant", 1) + existing("retail", int(rng.integers(5, 15)))
        other, extra["below_threshold"] = existing("exchange_deposit", 1), True
        scale = 25_000.0
    elif typology in ("payroll_fan_out", "airdrop"):
        source = "institution" if typology == "payroll_fan_out" else "defi"
        recipients = int(rng.integers(15, 80))
        fresh_share = 0.5 if typology == "airdrop" else 0.05
        k = int(rng.binomial(recipients, fresh_share))
        who = existing(source, 1) + existing("retail", recipients - k) + fresh(k)
        other, extra["same_amount"] = [], True
        extra["payday"] = int(rng.integers(0, 7)) if typology == "payroll_fan_out" else None
        scale = (
            float(rng.uniform(1_500, 6_000))
            if typology == "payroll_fan_out"
            else float(rng.uniform(5, 60))
        )
    elif typology == "market_maker_round_trip":
        who = existing("market_maker", int(rng.integers(2, 4)))
        who += existing("defi", int(rng.integers(2, 5)))
        who += existing("whale", int(rng.integers(1, 5)))
        other = []
        scale *= 2
    elif typology == "bridge_relay":
        who = existing("bridge", 1)
        other = existing("retail", 1) + existing("defi", 1)
        scale *= 2
    elif typology == "nft_mint_burst":
        who, other = existing("defi", 1) + existing("retail", int(rng.integers(10, 40))), []
        extra["inbound"] = True
        scale = float(rng.uniform(50, 400))
    elif typology == "savings_circle":
        who, other = existing("retail", int(rng.integers(3, 6))), []
        scale = float(rng.uniform(300, 3_000))
    elif typology in ("wallet_migration", "spending_chain"):
        who = existing("retail" if rng.random() < 0.8 else "whale", 1)
        who += fresh(int(rng.integers(2, 6)))
        other = existing("merchant", 3)
        scale *= 2
    elif typology == "privacy_mixer_user":
        who, other = existing("retail", 3), existing("mixer", 1)
        extra["denomination"] = float(rng.choice([1_000.0, 10_000.0]))
    else:
        raise ValueError(f"unknown typology {typology!r}")
    if typology in (
        "mixer_in_out",
        "privacy_mixer_user",
        "dormant_reactivation",
        "savings_reactivation",
        "burst",
        "nft_mint_burst",
    ):
        duration = max(duration // 3, 2)
    who = list(dict.fromkeys(who))
    if len(who) < 2:
        who += fresh(2 - len(who))
    return Episode(
        key=key,
        typology=typology,
        illicit=illicit,
        start=start,
        duration=duration,
        actors=who,
        counterparties=other,
        scale=scale,
        caught=bool(rng.random() < 0.85),
        label_delay=int(rng.integers(5, 40)),
        asset=str(rng.choice(ASSETS, p=ASSET_WEIGHTS)),
        group=group_index if illicit else None,
        funder=str(rng.choice(group.funders)) if illicit and rng.random() < FUNDED else None,
        extra=extra,
    )
