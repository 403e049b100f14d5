"""The transfer simulator and the simulated source behave like a live SOT."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from aml_pipeline.simulator.episodes import LAUNDERING, LOOKALIKES, typology_weights
from aml_pipeline.simulator.profiles import SMALL
from aml_pipeline.simulator.transfers import TransferSimulator, day_index
from aml_pipeline.sources.base import BatchNotAvailable
from aml_pipeline.sources.simulated import MAX_LABEL_DELAY, MIN_LABEL_DELAY, SimulatedSource
from aml_pipeline.storage.objects import LocalStorage
from aml_pipeline_tests.conftest import START, small_source

pytestmark = pytest.mark.integration  # simulates whole networks

DAY = dt.date(2025, 3, 3)


@pytest.fixture(scope="module")
def sim() -> TransferSimulator:
    return small_source().simulator("ethereum")


def test_same_seed_same_bytes_other_seed_other_data():
    one = SimulatedSource(SMALL, dt.date(2025, 1, 1), seed=5, today=lambda: dt.date(2025, 6, 1))
    two = SimulatedSource(SMALL, dt.date(2025, 1, 1), seed=5, today=lambda: dt.date(2025, 6, 1))
    other = SimulatedSource(SMALL, dt.date(2025, 1, 1), seed=6, today=lambda: dt.date(2025, 6, 1))
    files = one.fetch("ethereum", DAY, 7).files
    assert files == two.fetch("ethereum", DAY, 7).files
    assert files["alerts.parquet"] != other.fetch("ethereum", DAY, 7).files["alerts.parquet"]


def test_transfers_are_heavy_tailed_multi_asset_with_rhythms(sim):
    days = [DAY + dt.timedelta(i) for i in range(14)]
    t = pd.concat([sim.transfers(d) for d in days], ignore_index=True)
    amount = t["amount_usd"]
    assert amount.max() / amount.median() > 200
    assert t["asset"].nunique() >= 5
    hours = (t["timestamp_ms"] // 3_600_000) % 24
    by_hour = np.bincount(hours, minlength=24)
    assert by_hour.max() / by_hour.min() > 1.5  # daily rhythm
    per_day = t.groupby(pd.to_datetime(t["timestamp_ms"], unit="ms").dt.date).size()
    weekend = per_day[[d.weekday() >= 5 for d in per_day.index]].mean()
    assert weekend < per_day[[d.weekday() < 5 for d in per_day.index]].mean()  # weekly


def test_addresses_churn(sim):
    pop = sim.population
    early, late = pop.active(day_index(DAY)), pop.active(day_index(DAY) + 120)
    assert 0.3 < early.mean() < 0.95
    assert (early != late).mean() > 0.1


def test_every_typology_is_injected_and_the_mix_drifts(sim):
    start = day_index(DAY)
    seen = {ep.typology for d in range(start, start + 120) for ep in sim.episodes_starting(d)}
    assert set(LAUNDERING) <= seen
    assert len(set(LOOKALIKES) & seen) >= len(LOOKALIKES) - 2
    assert (
        np.abs(
            typology_weights(LAUNDERING, start, 0) - typology_weights(LAUNDERING, start + 90, 0)
        ).max()
        > 0.03
    )


@pytest.fixture(scope="module")
def pairs(sim) -> dict[int, set[tuple[str, str]]]:
    """Day index -> the (from, to) pairs that transferred that day, for 90 days."""
    days = [DAY + dt.timedelta(i) for i in range(90)]
    return {
        day_index(d): set(zip(t["from_address"], t["to_address"], strict=True))
        for d in days
        for t in [sim.transfers(d)]
    }


def _episodes(sim, pairs, typology: str) -> list:
    """The episodes of ``typology`` that run entirely within the days of ``pairs``."""
    first, last = min(pairs), max(pairs)
    return [
        ep
        for ep in sim.episodes_active(first, last)
        if ep.typology == typology and ep.start >= first and ep.start + ep.duration <= last
    ]


def _moved(pairs, ep) -> set[tuple[str, str]]:
    return set().union(*(pairs[d] for d in range(ep.start, ep.start + ep.duration)))


def test_campaigns_leave_their_flow_shapes(sim, pairs):
    rings = _episodes(sim, pairs, "cycle")
    assert rings
    for ep in rings:  # funds go round every ring
        ring = set(zip(ep.actors, ep.actors[1:] + ep.actors[:1], strict=True))
        assert ring <= _moved(pairs, ep)
    layering = _episodes(sim, pairs, "layering_path")
    back = [ep for ep in layering if ep.extra["round_trip"]]
    assert back and len(back) < len(layering)  # some layering paths come back to the origin
    for ep in back:
        assert (ep.actors[-1], ep.actors[0]) in _moved(pairs, ep)
    for ep in _episodes(sim, pairs, "fan_in_smurfing"):  # collection fan-in
        moved = _moved(pairs, ep)
        assert sum((s, ep.actors[0]) in moved for s in ep.actors[1:]) >= 3


def test_lookalikes_leave_the_innocent_shapes(sim, pairs):
    makers = _episodes(sim, pairs, "market_maker_round_trip")
    assert makers
    for ep in makers:  # a market maker trades both ways with most of its counterparties
        moved, maker = _moved(pairs, ep), ep.actors[0]
        both = [o for o in ep.actors[1:] if {(maker, o), (o, maker)} <= moved]
        assert len(both) >= len(ep.actors[1:]) / 2
    payrolls = [ep for ep in _episodes(sim, pairs, "payroll_fan_out") if ep.duration >= 7]
    assert payrolls
    for ep in payrolls:  # a weekly payroll pays all its staff at once
        moved = _moved(pairs, ep)
        assert all((ep.actors[0], r) in moved for r in ep.actors[1:])
    assert not any(ep.illicit for ep in makers)


def test_crime_groups_reuse_their_mules_and_exits(sim):
    start = day_index(DAY)
    campaigns = [
        ep for d in range(start, start + 60) for ep in sim.episodes_starting(d) if ep.illicit
    ]
    seen: dict[str, tuple] = {}
    reused = 0
    for ep in campaigns:
        group = sim.groups[ep.group]
        if ep.typology in ("peel_chain", "layering_path", "rapid_pass_through", "burst"):
            assert set(ep.counterparties) <= set(group.exits)  # cashed out as before
        for actor in set(ep.actors) & set(group.mules):
            reused += actor in seen and seen[actor] != ep.key
            seen.setdefault(actor, ep.key)
    assert reused >= 3  # a mule of one campaign works again in a later one


def test_most_alerts_are_false_positives_and_lookalikes_are_alerted():
    source = small_source()
    labels = pd.concat([source.labels("ethereum", DAY + dt.timedelta(i), 7) for i in range(3)])
    rate = labels["is_sar_filed"].mean()
    assert 0.02 < rate < 0.4


def test_a_day_exists_only_once_it_is_over():
    source = SimulatedSource(SMALL, dt.date(2025, 1, 1), today=lambda: dt.date(2025, 3, 5))
    assert source.available_dates("ethereum", 7)[-1] == dt.date(2025, 3, 4)
    with pytest.raises(
        BatchNotAvailable,
        match="no batch for 2025-03-05: batches exist for days from 2025-01-01 that are over",
    ):
        source.fetch("ethereum", dt.date(2025, 3, 5), 7)
    with pytest.raises(BatchNotAvailable):
        source.fetch("ethereum", dt.date(2024, 12, 31), 7)


def test_labels_arrive_on_their_label_date_once_it_is_over(tmp_path):
    source = small_source()
    everything = source.labels("ethereum", DAY, 7)
    delay = pd.Series([(d - DAY).days for d in everything["label_date"]])
    assert delay.min() >= MIN_LABEL_DELAY and delay.max() <= MAX_LABEL_DELAY
    assert delay.max() >= 30  # days to weeks
    arrival = DAY + dt.timedelta(int(delay.mode()[0]))
    events = source.fetch_label_events("ethereum", arrival, 7)
    assert (events["label_date"] == arrival).all()
    mine = set(everything.loc[everything["label_date"] == arrival, "alert_id"])
    assert mine and mine <= set(events["alert_id"])  # ... among other days' alerts
    assert set(events["processing_date"]) > {DAY}
    with pytest.raises(BatchNotAvailable, match="not all known before the day is over"):
        source.fetch_label_events("ethereum", dt.date(2025, 6, 1), 7)
    # served from the simulated SOT's label table once a day's labels were computed
    cached = SimulatedSource(SMALL, START, label_cache=LocalStorage(tmp_path))
    first = cached.labels("ethereum", DAY, 7)
    again = SimulatedSource(SMALL, START, label_cache=LocalStorage(tmp_path))
    again.build = None  # a rebuild would fail: the cache must answer
    pd.testing.assert_frame_equal(again.labels("ethereum", DAY, 7), first)


def test_profiles_take_knob_overrides():
    from aml_pipeline.simulator.profiles import DEMO, parse_profile

    assert parse_profile("demo") is DEMO
    custom = parse_profile("demo, addresses=1000, campaigns_per_day=2.5")
    assert (custom.addresses, custom.campaigns_per_day) == (1000, 2.5)
    assert custom.transfers_per_day == DEMO.transfers_per_day
    with pytest.raises(ValueError, match="unknown simulator knob 'speed'"):
        parse_profile("demo,speed=3")
    with pytest.raises(ValueError, match="unknown simulator profile"):
        parse_profile("huge")
