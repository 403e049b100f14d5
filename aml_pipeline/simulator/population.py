"""The address population: kinds, activity, daily rhythms, churn and public tags."""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass

import numpy as np

#: kind -> (share of the population, public tag, tag coverage)
KINDS: dict[str, tuple[float, str, float]] = {
    "retail": (0.80, "wallet", 0.0),
    "merchant": (0.04, "merchant", 0.3),
    "exchange_deposit": (0.06, "exchange", 0.5),
    "exchange_hot": (0.004, "exchange", 1.0),
    "defi": (0.012, "defi", 0.9),
    "bridge": (0.004, "bridge", 0.9),
    "mixer": (0.002, "mixer", 0.9),
    "whale": (0.01, "wallet", 0.0),
    "market_maker": (0.006, "institutional", 0.4),
    "institution": (0.006, "institutional", 0.6),
}
KIND_NAMES = tuple(KINDS)
#: Services and institutions: never the subject of an investigation about a customer.
SERVICE_KINDS = ("exchange_hot", "defi", "bridge", "mixer", "market_maker", "institution")
#: typical transfer size (median USD, log-sd) of transfers a kind sends
AMOUNTS: dict[str, tuple[float, float]] = {
    "retail": (120.0, 1.4),
    "merchant": (600.0, 1.2),
    "exchange_deposit": (900.0, 1.3),
    "exchange_hot": (700.0, 1.6),
    "defi": (350.0, 1.5),
    "bridge": (2_500.0, 1.4),
    "mixer": (5_000.0, 1.0),
    "whale": (25_000.0, 1.6),
    "market_maker": (8_000.0, 1.1),
    "institution": (3_000.0, 1.0),
}
#: who sends to whom: sender kind -> {receiver kind: weight}
MIXING: dict[str, dict[str, float]] = {
    "retail": {
        "retail": 0.30,
        "merchant": 0.15,
        "exchange_deposit": 0.25,
        "defi": 0.20,
        "bridge": 0.04,
        "mixer": 0.006,
        "whale": 0.02,
        "market_maker": 0.024,
    },
    "merchant": {"retail": 0.3, "exchange_deposit": 0.5, "merchant": 0.1, "defi": 0.1},
    "exchange_deposit": {"exchange_hot": 1.0},
    "exchange_hot": {
        "retail": 0.75,
        "whale": 0.1,
        "merchant": 0.05,
        "exchange_hot": 0.05,
        "market_maker": 0.05,
    },
    "defi": {"retail": 0.6, "defi": 0.2, "whale": 0.1, "market_maker": 0.1},
    "bridge": {"retail": 0.5, "defi": 0.3, "exchange_deposit": 0.2},
    "mixer": {"retail": 1.0},
    "whale": {
        "exchange_deposit": 0.4,
        "defi": 0.3,
        "whale": 0.1,
        "market_maker": 0.1,
        "retail": 0.1,
    },
    "market_maker": {"defi": 0.4, "exchange_deposit": 0.3, "market_maker": 0.2, "whale": 0.1},
    "institution": {"retail": 0.6, "exchange_deposit": 0.3, "merchant": 0.1},
}
ASSETS = ("ETH", "USDT", "USDC", "DAI", "WBTC", "LINK")
ASSET_WEIGHTS = np.array([0.42, 0.26, 0.16, 0.06, 0.06, 0.04])


def address_id(network: str, *parts: object) -> str:
    """A deterministic 0x-style address for a population member or campaign actor."""
    digest = hashlib.sha1(":".join([network, *map(str, parts)]).encode()).hexdigest()
    return "0x" + digest


def hour_profile(peak: float, spread: float) -> np.ndarray:
    """A 24-hour activity profile peaking at ``peak`` (UTC), normalized to sum 1."""
    hours = np.arange(24)
    distance = np.minimum(np.abs(hours - peak), 24 - np.abs(hours - peak))
    weights = 0.15 + np.exp(-0.5 * (distance / spread) ** 2)
    return weights / weights.sum()


@dataclass(eq=False)
class Population:
    """Every ordinary address of one simulated network."""

    network: str
    address: np.ndarray  # str ids
    kind: np.ndarray  # int index into KIND_NAMES
    weight: np.ndarray  # relative activity
    tag: np.ndarray  # public tag ('' = untagged)
    region: np.ndarray  # 0..2: peak-hour region
    churn_period: np.ndarray  # days
    churn_active: np.ndarray  # active days per period
    churn_phase: np.ndarray
    exchange_of: np.ndarray  # deposit address -> index of its exchange hot wallet (-1)

    @classmethod
    def generate(cls, network: str, size: int, seed: int) -> Population:
        rng = np.random.default_rng([seed, 11, size])
        shares = np.array([KINDS[k][0] for k in KIND_NAMES])
        counts = np.maximum(np.floor(shares / shares.sum() * size).astype(int), 2)
        counts[0] += size - counts.sum()
        kind = np.repeat(np.arange(len(KIND_NAMES)), counts)
        rng.shuffle(kind)
        n = len(kind)
        weight = rng.lognormal(0.0, 1.5, n)
        for name, boost in (
            ("exchange_hot", 60.0),
            ("defi", 8.0),
            ("bridge", 6.0),
            ("market_maker", 6.0),
            ("merchant", 3.0),
            ("mixer", 4.0),
        ):
            weight[kind == KIND_NAMES.index(name)] *= boost
        coverage = np.array([KINDS[k][2] for k in KIND_NAMES])[kind]
        tags = np.array([KINDS[k][1] for k in KIND_NAMES], dtype=object)[kind]
        tag = np.where(rng.random(n) < coverage, tags, "")
        period = rng.integers(60, 400, n)
        always_on = np.isin(
            kind,
            [
                KIND_NAMES.index(k)
                for k in ("exchange_hot", "defi", "bridge", "mixer", "market_maker")
            ],
        )
        active = np.where(always_on, period, (period * rng.uniform(0.35, 0.95, n)).astype(int))
        hot = np.flatnonzero(kind == KIND_NAMES.index("exchange_hot"))
        exchange_of = np.where(kind == KIND_NAMES.index("exchange_deposit"), rng.choice(hot, n), -1)
        return cls(
            network=network,
            address=np.array([address_id(network, "p", i) for i in range(n)], dtype=object),
            kind=kind,
            weight=weight,
            tag=tag.astype(object),
            region=rng.choice(3, n, p=[0.5, 0.35, 0.15]),
            churn_period=period,
            churn_active=active,
            churn_phase=rng.integers(0, 400, n),
            exchange_of=exchange_of,
        )

    def __len__(self) -> int:
        return len(self.address)

    def active(self, day_index: int) -> np.ndarray:
        """Boolean mask of addresses active on a day (periodic churn)."""
        return (day_index + self.churn_phase) % self.churn_period < self.churn_active

    def of_kind(self, *names: str) -> np.ndarray:
        """Indexes of the addresses of the given kinds."""
        return self._of_kinds(names)

    @functools.lru_cache(maxsize=32)  # noqa: B019 - the population never changes
    def _of_kinds(self, names: tuple[str, ...]) -> np.ndarray:
        return np.flatnonzero(np.isin(self.kind, [KIND_NAMES.index(n) for n in names]))

    @functools.cached_property
    def services(self) -> frozenset[str]:
        """The addresses of ``SERVICE_KINDS``."""
        return frozenset(self.address[self.of_kind(*SERVICE_KINDS)])

    def tags(self) -> dict[str, str]:
        """Public address tags (what a chain-analytics vendor would know)."""
        return {a: t for a, t in zip(self.address, self.tag, strict=True) if t}
