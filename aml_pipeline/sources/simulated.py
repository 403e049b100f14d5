"""The simulator as a live SOT: daily batches once a day is over, labels at T+tau."""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
from collections.abc import Callable

import pandas as pd

from aml_pipeline.batch_builder.build import BuiltBatch, build_batch
from aml_pipeline.contract.conform import conform_table, read_parquet_bytes
from aml_pipeline.contract.files import parquet_bytes
from aml_pipeline.contract.schema import GROUND_TRUTH
from aml_pipeline.dates import date_range
from aml_pipeline.simulator.profiles import SimulationProfile
from aml_pipeline.simulator.transfers import TransferSimulator
from aml_pipeline.sources.base import BatchNotAvailable, BatchSource, FetchedBatch, labels_of_day
from aml_pipeline.storage.objects import Storage

FALSE_SAR_RATE = 0.01
FALSE_SAR_PERIOD = 30  # days
#: Days from an alert to its label: a caught campaign's delay (5-39) plus 0-5 days per
#: alert for a SAR, 7-60 days for a case closed without one.
MIN_LABEL_DELAY, MAX_LABEL_DELAY = 5, 60


def utc_today() -> dt.date:
    """Today's date in UTC."""
    return dt.datetime.now(dt.UTC).date()


def _unit(*parts: object) -> float:
    """A deterministic number in [0, 1) from ``parts`` (per-alert randomness)."""
    digest = hashlib.sha1("|".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def simulated_labels(
    alerts: pd.DataFrame, sim: TransferSimulator, day: dt.date, window_days: int, seed: int
) -> pd.DataFrame:
    """Ground truth for a day's alerts.

    An alert is SAR-filed when its address acted in a laundering campaign active in the
    window and that campaign was caught (about 85 %). About 1 % of the other addresses are
    wrongly suspected for a ``FALSE_SAR_PERIOD``, and their alerts of that period get a
    false SAR: a false report is a judgement about a customer, so an address alerted every
    day (a busy merchant or deposit address) is not reported more often for it, and a
    service (exchange hot wallet, DeFi contract, bridge, mixer, market maker, institution)
    is never the subject. Each label is known ``label_date - processing_date`` days later:
    the campaign's investigation delay (5-40 days) plus a few days per alert for true SARs,
    7-60 days for cases closed without a SAR.
    """
    actors = sim.illicit_actors(day - dt.timedelta(window_days - 1), day)
    services = sim.population.services
    rows = []
    for alert in alerts.itertuples(index=False):
        campaign = actors.get(alert.address)
        u = _unit(seed, alert.alert_id)
        if campaign is not None and campaign.caught:
            sar, delay = True, campaign.label_delay + int(u * 6)
        else:
            period = day.toordinal() // FALSE_SAR_PERIOD
            suspect = _unit(seed, "suspect", alert.address, period) < FALSE_SAR_RATE
            sar = suspect and alert.address not in services
            delay = 7 + int(_unit(seed, "delay", alert.alert_id) * (MAX_LABEL_DELAY - 6))
        rows.append((alert.alert_id, day, sar, day + dt.timedelta(delay)))
    return pd.DataFrame(rows, columns=GROUND_TRUTH.column_names)


class SimulatedSource(BatchSource):
    """Batches and labels from the transfer simulator and the batch builder.

    A day's batch exists once the day is over (by ``today()``) and from ``start`` on, and
    the labels that became known on a day are served once that day is over, exactly like
    a live SOT; they are the labels of alerts from ``labels_since`` (the network's first
    landed day; ``start`` if None) on, since no earlier alert was ever served. Labels of a
    day's alerts are kept in ``label_cache`` (the simulated SOT's own label table), so
    serving a day's label arrivals does not rebuild the batches of the weeks before it.
    """

    name = "simulated"

    def __init__(
        self,
        profile: SimulationProfile,
        start: dt.date,
        seed: int = 0,
        today: Callable[[], dt.date] = utc_today,
        label_cache: Storage | None = None,
        labels_since: dt.date | None = None,
    ) -> None:
        self.profile, self.start, self.seed, self.today = profile, start, seed, today
        self.label_cache, self.labels_since = label_cache, labels_since or start
        self._simulators: dict[tuple[str, int], TransferSimulator] = {}

    def __getstate__(self) -> dict:
        """Pickled (to fetch days in worker processes) without the simulators: caches that
        a worker rebuilds for its own days."""
        return {**self.__dict__, "_simulators": {}}

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

    def _cache_key(self, network: str, day: dt.date, window_days: int) -> str:
        return f"{network}/window_{window_days}/labels/{day.isoformat()}.parquet"

    @functools.lru_cache(maxsize=1024)  # noqa: B019 - small frames; saves rebuilding a batch
    def labels(self, network: str, day: dt.date, window_days: int) -> pd.DataFrame:
        """Every label of the day's alerts, known yet or not."""
        key = self._cache_key(network, day, window_days)
        if self.label_cache is not None and self.label_cache.exists(key):
            return conform_table(read_parquet_bytes(self.label_cache.read_bytes(key)), GROUND_TRUTH)
        alerts = self.build(network, day, window_days).tables["alerts"]
        labels = conform_table(
            simulated_labels(
                alerts, self.simulator(network, window_days), day, window_days, self.seed
            ),
            GROUND_TRUTH,
        )
        if self.label_cache is not None:
            self.label_cache.write_bytes(key, parquet_bytes(labels))
        return labels

    def _check_available(self, network: str, day: dt.date) -> None:
        if not self.start <= day < self.today():
            raise BatchNotAvailable(
                f"simulated {network} has no batch for {day}: batches exist for days "
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

    def fetch_label_events(
        self, network: str, label_date: dt.date, window_days: int
    ) -> pd.DataFrame:
        if label_date >= self.today():
            raise BatchNotAvailable(
                f"the labels of {label_date} are not all known before the day is over "
                f"(today is {self.today()})"
            )
        first = max(self.labels_since, label_date - dt.timedelta(MAX_LABEL_DELAY))
        last = label_date - dt.timedelta(MIN_LABEL_DELAY)
        days = date_range(first, last) if first <= last else []
        frames = [self.labels(network, day, window_days) for day in days]
        if not frames:
            return labels_of_day(pd.DataFrame(columns=GROUND_TRUTH.column_names), label_date)
        return labels_of_day(pd.concat(frames, ignore_index=True), label_date)
