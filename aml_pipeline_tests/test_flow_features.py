"""Money-flow graph features: shapes, cycles and guilt by association, on graphs small
enough to count by hand, and labels used only once they were known."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from aml_pipeline.features import flow_features
from aml_pipeline.features.alert_features import FEATURE_COLUMNS, build_alert_features
from aml_pipeline.features.flow_features import FLOW_FEATURES, build_flow_features
from aml_pipeline_tests.conftest import batch_tables

DAY = dt.date(2025, 3, 10)
NO_ALERTS = pd.DataFrame(
    {"alert_id": pd.Series(dtype=object), "address": pd.Series(dtype=object),
     "processing_date": pd.Series(dtype=object)}
)  # fmt: skip


def _flows(*edges: tuple[str, str, float]) -> pd.DataFrame:
    return pd.DataFrame(edges, columns=["from_address", "to_address", "amount_usd_sum"])


def _row(out: pd.DataFrame, address: str) -> pd.Series:
    return out.set_index("address").loc[address]


def test_shapes_and_cycles_counted_by_hand():
    flows = _flows(
        ("a", "b", 100.0), ("b", "c", 50.0), ("c", "a", 30.0),  # 3-cycle a-b-c, 30 round
        ("a", "d", 10.0), ("d", "e", 10.0), ("e", "f", 10.0), ("f", "a", 10.0),  # 4-cycle
        ("a", "g1", 20.0), ("a", "g2", 20.0), ("a", "g3", 20.0),  # scatter ...
        ("g1", "s", 5.0), ("g2", "s", 5.0), ("g3", "s", 5.0),  # ... gather into s
        ("t", "h1", 1.0), ("t", "h2", 1.0), ("h1", "a", 1.0), ("h2", "a", 1.0),  # gather
        ("a", "a", 999.0),  # a self-transfer is not a flow
    )  # fmt: skip
    row = _row(build_flow_features(pd.Series(["a", "a"]), flows, NO_ALERTS, None, DAY), "a")
    usd_in, usd_out = 30 + 10 + 1 + 1, 100 + 10 + 60
    assert row["top_payer_usd_share"] == pytest.approx(30 / usd_in)
    assert row["top_payee_usd_share"] == pytest.approx(100 / usd_out)
    assert row["pass_through_ratio"] == pytest.approx(usd_in / usd_out)
    assert row["two_way_counterparty_share"] == 0
    assert row["scatter_gather_width"] == 3
    assert row["gather_scatter_width"] == 2
    assert row["cycles_of_3"] == 1 and row["cycles_of_4"] == 1
    assert row["cycle_usd_share"] == pytest.approx(30 / usd_out)


def test_a_path_out_and_back_the_same_way_is_no_cycle():
    flows = _flows(("a", "b", 5.0), ("b", "a", 5.0), ("b", "c", 5.0), ("c", "b", 5.0))
    row = _row(build_flow_features(pd.Series(["a"]), flows, NO_ALERTS, None, DAY), "a")
    assert row["cycles_of_4"] == 0 and row["cycles_of_3"] == 0
    assert row["two_way_counterparty_share"] == 1


def test_paths_do_not_pass_through_hubs(monkeypatch):
    flows = _flows(("a", "x", 5.0), ("x", "y", 5.0), ("y", "a", 5.0), ("x", "z", 1.0))
    monkeypatch.setattr(flow_features, "HUB_DEGREE", 3)
    assert (
        _row(build_flow_features(pd.Series(["a"]), flows, NO_ALERTS, None, DAY), "a")["cycles_of_3"]
        == 1
    )  # x has 3 counterparties: not a hub
    monkeypatch.setattr(flow_features, "HUB_DEGREE", 2)
    row = _row(build_flow_features(pd.Series(["a"]), flows, NO_ALERTS, None, DAY), "a")
    assert row["cycles_of_3"] == 0 and row["two_hop_alerted_today"] == 0


def _labels(rows: list[tuple[str, dt.date, bool, dt.date]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["alert_id", "processing_date", "is_sar_filed", "label_date"])


def test_guilt_by_association_uses_only_labels_known_before_the_day():
    flows = _flows(("a", "b", 75.0), ("c", "a", 25.0), ("b", "far", 1.0), ("e", "c", 1.0))
    prior = pd.DataFrame(
        {
            "alert_id": ["b1", "c1", "far1", "e1", "old"],
            "address": ["b", "c", "far", "e", "c"],
            "processing_date": [DAY - dt.timedelta(d) for d in (3, 40, 5, 5, 200)],
        }
    )
    day_before, on_the_day = DAY - dt.timedelta(1), DAY
    labels = _labels([
        ("b1", DAY - dt.timedelta(3), True, day_before),  # known before the day: counts
        ("c1", DAY - dt.timedelta(40), True, on_the_day),  # known on the day: does not
        ("far1", DAY - dt.timedelta(5), True, day_before),
        ("e1", DAY - dt.timedelta(5), False, day_before),  # known, not SAR
        ("old", DAY - dt.timedelta(200), True, day_before),  # outside the 180-day look-back
    ])  # fmt: skip
    out = build_flow_features(pd.Series(["a", "c"]), flows, prior, labels, DAY)
    a = _row(out, "a")
    assert a["counterparties_known_sar"] == 1  # b
    assert a["usd_share_with_known_sar"] == pytest.approx(0.75)
    assert a["days_since_counterparty_sar"] == 3
    assert a["two_hop_known_sar"] == 1  # far, through b
    assert a["counterparties_alerted_today"] == 1  # c
    assert a["usd_share_with_alerted_today"] == pytest.approx(0.25)
    assert a["counterparties_alerted_30d"] == 1  # b (c's alert is 40 days old)
    assert a["two_hop_alerted_today"] == 0
    c = _row(out, "c")
    assert c["counterparties_known_sar"] == 0 and np.isnan(c["days_since_counterparty_sar"])
    # a day later the label of c1 is known: it reaches a's row
    next_day = DAY + dt.timedelta(1)
    later = _row(build_flow_features(pd.Series(["a"]), flows, prior, labels, next_day), "a")
    assert later["counterparties_known_sar"] == 2


def test_without_flows_counts_are_zero_and_shares_missing():
    for flows in (None, _flows()):
        row = _row(build_flow_features(pd.Series(["a"]), flows, NO_ALERTS, None, DAY), "a")
        assert row["cycles_of_3"] == 0 and row["counterparties_alerted_today"] == 0
        assert np.isnan(row["top_payer_usd_share"]) and np.isnan(row["cycle_usd_share"])


def test_a_simulated_day_is_the_same_whatever_the_row_order():
    tables = batch_tables()
    alerts, flows = tables["alerts"], tables["money_flows"]
    out = build_flow_features(alerts["address"], flows, NO_ALERTS, None, DAY)
    shuffled = build_flow_features(
        alerts["address"].sample(frac=1, random_state=1), flows.sample(frac=1, random_state=2),
        NO_ALERTS, None, DAY,
    )  # fmt: skip
    pd.testing.assert_frame_equal(out, shuffled)
    assert list(out.columns) == ["address", "processing_date", *FLOW_FEATURES]
    assert len(out) == alerts["address"].nunique()
    assert (out["counterparties_alerted_today"] > 0).mean() > 0.5  # alerts trade with alerts
    features = build_alert_features(
        alerts, tables["features"], tables["clusters"], None, out
    ).set_index("address")
    assert set(FLOW_FEATURES) <= set(FEATURE_COLUMNS)
    joined = features.loc[out["address"], list(FLOW_FEATURES)].groupby(level=0).first()
    pd.testing.assert_frame_equal(joined, out.set_index("address")[list(FLOW_FEATURES)],
                                  check_names=False, check_index_type=False)  # fmt: skip


def test_a_random_graph_agrees_with_networkx(monkeypatch):
    """Cycles (networkx.simple_cycles), distance-2 neighbours (networkx shortest paths),
    widths and the USD that goes round, counted by brute force on a random graph with
    two-way pairs and hubs (paths through a hub do not count)."""
    import networkx as nx

    rng = np.random.default_rng(7)
    names = [f"n{i:02d}" for i in range(40)]
    pairs = {tuple(rng.choice(names, 2, replace=False)) for _ in range(160)}
    pairs |= {("n00", n) for n in names[1:25]}  # n00 is a hub
    flows = _flows(*((a, b, float(rng.integers(1, 100))) for a, b in sorted(pairs)))
    monkeypatch.setattr(flow_features, "HUB_DEGREE", 12)
    g = nx.DiGraph()
    g.add_weighted_edges_from(flows.itertuples(index=False))
    small = {v for v in g if len(set(g.successors(v)) | set(g.predecessors(v))) <= 12}
    assert small != set(g)  # the hub and others are excluded
    anchors = names[:15]
    out = build_flow_features(pd.Series(anchors), flows, NO_ALERTS, None, DAY).set_index("address")
    w = nx.get_edge_attributes(g, "weight")
    for a in anchors:
        row = out.loc[a]
        sub = g.subgraph(small | {a})
        cycles = [c for c in nx.simple_cycles(sub, length_bound=4) if a in c]
        assert row["cycles_of_3"] == sum(len(c) == 3 for c in cycles), a
        assert row["cycles_of_4"] == sum(len(c) == 4 for c in cycles), a
        # closed walks of 3 and 4 through small nodes, out-and-back ones included
        rounds = [
            min(w[a, b], w[b, c], w[c, a])
            for b in sub.successors(a) if b != a
            for c in sub.successors(b) if c != a and sub.has_edge(c, a)
        ] + [
            min(w[a, b], w[b, c], w[c, d], w[d, a])
            for b in sub.successors(a) if b != a
            for c in sub.successors(b) if c != a
            for d in sub.successors(c) if d != a and sub.has_edge(d, a)
        ]  # fmt: skip
        usd_out = sum(w[a, b] for b in g.successors(a))
        if usd_out:
            assert row["cycle_usd_share"] == pytest.approx(max(rounds, default=0) / usd_out), a
        ends = [c for b in g.successors(a) if b in small for c in g.successors(b) if c != a]
        assert row["scatter_gather_width"] == max(map(ends.count, ends), default=0), a
        starts = [c for b in g.predecessors(a) if b in small for c in g.predecessors(b) if c != a]
        assert row["gather_scatter_width"] == max(map(starts.count, starts), default=0), a
        undirected = g.to_undirected()
        near = set(undirected[a]) | {a}
        far = {f for b in undirected[a] if b in small for f in undirected[b]} - near
        assert row["two_hop_alerted_today"] == len(far & set(anchors)), a
