"""The simulator as a live SOT: daily batches once a day is over, labels at T+tau."""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
from collections.abc import Callable

import pandas as pd

from aml_pipeline.batch_builder.build import BuiltBatch, build_batch
from aml_pipeline.contract.schema import GROUND_TRUTH
from aml_pipeline.simulator.profiles import SimulationProfile
from aml_pipeline.simulator.transfers import TransferSimulator
from aml_pipeline.sources.base import BatchNotAvailable, BatchSource, FetchedBatch, known_labels

FALSE_SAR_RATE = 0.01


def _unit(*parts: object) -> float:
    """A deterministic number in [0, 1) from ``parts`` (per-alert randomness)."""
    digest = hashlib.sha1("|".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def simulated_labels(
    alerts: pd.DataFrame, sim: TransferSimulator, day: dt.date, window_days: int, seed: int
) -> pd.DataFrame:
    """Ground truth for a day's alerts.

    An alert is SAR-filed when its address acted in a laundering campaign active in the
    window and that campaign was caught (about 85 %); about 1 % of the others get a false
    SAR. Each label is known ``label_date - processing_date`` days later: the campaign's
    investigation delay (5-40 days) plus a few days per alert for true SARs, 7-60 days
    for cases closed without a SAR.
    """
    actors = sim.illicit_actors(day - dt.timedelta(window_days - 1), day)
    rows = []
    for alert in alerts.itertuples(index=False):
        campaign = actors.get(alert.address)
        u = _unit(seed, alert.alert_id)
        if campaign is not None and campaign.caught:
            sar, delay = True, campaign.label_delay + int(u * 6)
        else:
            sar = u < FALSE_SAR_RATE
            delay = 7 + int(_unit(seed, "delay", alert.alert_id) * 54)
        rows.append((alert.alert_id, day, sar, day + dt.timedelta(delay)))
    return pd.DataFrame(rows, columns=GROUND_TRUTH.column_names)


class SimulatedSource(BatchSource):
    """Batches and labels from the transfer simulator and the batch builder.

    A day's batch exists once the day is over (by ``today()``), and a label only once its
    ``label_date`` has passed, exactly like a live SOT.
    """

    name = "simulated"

    def __init__(
        self,
        profile: SimulationProfile,
        start: dt.date,
        seed: int = 0,
        today: Callable[[], dt.date] = lambda: dt.datetime.now(dt.UTC).date(),
    ) -> None:
        self.profile, self.start, self.seed, self.today = profile, start, seed, today
        self._simulators: dict[tuple[str, int], TransferSimulator] = {}

    def simulator(self, network: str, window_days: int = 7) -> TransferSimulator:
        """The network's simulator, its caches sized for ``window_days``."""
        key = (network, window_days)
        if key not in self._simulators:
            self._simulators[key] = TransferSimulator(network, self.profile, self.seed, window_days)
        return self._simulators[key]

    def available_dates(self, network: str, window_days: int) -> list[dt.date]:
        days = (self.today() - self.start).days
        return [self.start + dt.timedelta(d) for d in range(max(days, 0))]

    @functools.lru_cache(maxsize=2)  # noqa: B019 - a batch is fetched once, then labelled
    def build(self, network: str, day: dt.date, window_days: int) -> BuiltBatch:
        """The batch of ``day`` built from the simulated transfers of its window."""
        sim = self.simulator(network, window_days)
        return build_batch(
            sim.window(day, window_days), network, day, window_days, sim.address_tags()
        )

    @functools.lru_cache(maxsize=1024)  # noqa: B019 - small frames; saves rebuilding a batch
    def labels(self, network: str, day: dt.date, window_days: int) -> pd.DataFrame:
        """Every label of the day's alerts, known yet or not."""
        alerts = self.build(network, day, window_days).tables["alerts"]
        return simulated_labels(
            alerts, self.simulator(network, window_days), day, window_days, self.seed
        )

    def _check_available(self, network: str, day: dt.date) -> None:
        if not self.start <= day < self.today():
            raise BatchNotAvailable(
                f"simulated {network} has no batch for {day} yet: batches exist for days "
                f"from {self.start} that are over (today is {self.today()})"
            )

    def fetch(self, network: str, processing_date: dt.date, window_days: int) -> FetchedBatch:
        self._check_available(network, processing_date)
        batch = self.build(network, processing_date, window_days)
        self.labels(network, processing_date, window_days)  # while the build is cached
        return FetchedBatch(
            network,
            processing_date,
            window_days,
            batch.files(),
            origin=f"simulated(profile={self.profile.name}, seed={self.seed})",
        )

    def fetch_labels(
        self, network: str, processing_date: dt.date, window_days: int, as_of: dt.date
    ) -> pd.DataFrame:
        try:
            self._check_available(network, processing_date)
        except BatchNotAvailable:
            return known_labels(
                pd.DataFrame(columns=GROUND_TRUTH.column_names), processing_date, as_of
            )
        labels = self.labels(network, processing_date, window_days)
        return known_labels(labels, processing_date, min(as_of, self.today()))
