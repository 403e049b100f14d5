"""The batch builder on hand-made transfers: features, flows, detectors, clusters."""

from __future__ import annotations

import datetime as dt

import networkx as nx
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from aml_pipeline.batch_builder.build import build_batch
from aml_pipeline.batch_builder.graph import (
    KHOP_EXPAND_MAX_DEGREE,
    core_numbers,
    khop_features,
    pagerank,
    triangles,
)
from aml_pipeline.batch_builder.window import Window
from aml_pipeline.contract.validation import validate_batch

DAY = dt.date(2025, 2, 10)
DAY_MS = int(dt.datetime(2025, 2, 10, tzinfo=dt.UTC).timestamp() * 1000)
HOUR = 3_600_000


def transfers(rows: list[tuple[int, str, str, float]]) -> pd.DataFrame:
    """(ms offset from the processing day's midnight, from, to, usd) rows."""
    return pd.DataFrame(
        {
            "timestamp_ms": [DAY_MS + r[0] for r in rows],
            "from_address": [r[1] for r in rows],
            "to_address": [r[2] for r in rows],
            "amount_usd": [float(r[3]) for r in rows],
            "asset": "USDT",
        }
    )


def background(n: int = 60, seed: int = 0) -> list[tuple[int, str, str, float]]:
    """Ordinary activity among n wallets over the week before the processing day."""
    rng = np.random.default_rng(seed)
    return [
        (int(rng.integers(-6 * 24, 24)) * HOUR, f"w{a}", f"w{b}", float(rng.integers(5, 500)))
        for a, b in rng.integers(0, n, (400, 2))
        if a != b
    ]


@pytest.fixture(scope="module")
def batch():
    rows = background()
    rows += [(10 * HOUR + i * 60_000, f"smurf{i}", "collector", 9_000 + i) for i in range(12)]
    rows += [
        (2 * HOUR, "c1", "c2", 20_000),
        (3 * HOUR, "c2", "c3", 19_800),
        (4 * HOUR, "c3", "c1", 19_600),
    ]
    rows += [(5 * HOUR + i * HOUR, "structurer", f"w{i}", 9_500 + i) for i in range(4)]
    rows += [(-3 * 24 * HOUR, "old", "w1", 10.0)]  # active in the window, not on the day
    return build_batch(transfers(rows), "testnet", DAY, 7, tags={"w5": "exchange"})


def test_the_built_batch_is_contract_valid(batch):
    report = validate_batch("testnet", DAY, 7, batch.files())
    assert report.ok, report.format()


def test_features_of_a_simple_address(batch):
    f = batch.tables["features"].set_index("address")
    collector = f.loc["collector"]
    assert collector["degree_in"] == 12 and collector["degree_out"] == 0
    assert collector["tx_in_count"] == 12
    assert collector["total_in_usd"] == pytest.approx(sum(9_000 + i for i in range(12)))
    assert list(collector["hourly_activity"])[10] == 12
    assert collector["activity_days"] == 1
    assert f.loc["c1", "clustering_coefficient"] == pytest.approx(1.0)
    assert f.loc["c1", "kcore"] == 2


def test_detectors_find_the_injected_shapes(batch):
    alerts = batch.tables["alerts"]
    typologies = alerts.groupby("address")["typology_type"].agg(set)
    assert "FAN_IN" in typologies["collector"]
    assert "STRUCTURING" in typologies["structurer"]
    cycle = alerts[alerts["typology_type"] == "CYCLE_DETECTION"]
    assert set(cycle["address"]) == {"c1", "c2", "c3"}
    assert cycle["pattern_id"].nunique() == 1
    assert "old" not in set(alerts["address"])  # not active on the processing day
    assert alerts["alert_confidence_score"].between(0, 1).all()
    expected = np.select(
        [
            alerts["alert_confidence_score"] >= 0.9,
            alerts["alert_confidence_score"] >= 0.75,
            alerts["alert_confidence_score"] >= 0.6,
        ],
        ["critical", "high", "medium"],
        "low",
    )
    assert (alerts["severity"] == expected).all()


def test_clusters_group_alerts_of_a_pattern(batch):
    clusters = batch.tables["clusters"]
    pattern = clusters[clusters["pattern_id"].str.startswith("cycle-")]
    assert len(pattern) == 1 and pattern.iloc[0]["cluster_type"] == "pattern"
    assert set(pattern.iloc[0]["addresses_involved"]) == {"c1", "c2", "c3"}
    assert pattern.iloc[0]["total_alerts"] == 3


def test_money_flows_aggregate_pairs(batch):
    flows = batch.tables["money_flows"].set_index(["from_address", "to_address"])
    row = flows.loc[("c1", "c2")]
    assert row["tx_count"] == 1 and row["amount_usd_sum"] == pytest.approx(20_000)
    assert not row["is_bidirectional"]
    assert sum(row["hourly_pattern"]) == 1


def test_the_same_transfers_give_the_same_bytes(batch):
    again = build_batch(transfers(background()), "testnet", DAY, 7)
    once_more = build_batch(transfers(background()), "testnet", DAY, 7)
    assert again.files() == once_more.files()


def test_graph_algorithms_match_networkx():
    g = nx.gnm_random_graph(300, 1500, seed=3)
    g.add_edges_from((0, i) for i in range(1, 200))
    sym = sp.csr_matrix(nx.to_scipy_sparse_array(g, format="csr", dtype=float))
    tri, core = triangles(sym), core_numbers(sym)
    assert all(tri[v] == t for v, t in nx.triangles(g).items())
    assert all(core[v] == k for v, k in nx.core_number(g).items())
    d = nx.gnm_random_graph(200, 900, seed=4, directed=True)
    for u, v in d.edges:
        d[u][v]["weight"] = float((u * 7 + v * 3) % 11 + 1)
    pr = pagerank(sp.csr_matrix(nx.to_scipy_sparse_array(d, weight="weight", format="csr")))
    reference = nx.pagerank(d, alpha=0.85, weight="weight", tol=1e-12, max_iter=500)
    assert max(abs(pr[v] - p) for v, p in reference.items()) < 1e-8


def test_khop_neighbourhoods_match_a_breadth_first_search():
    rng = np.random.default_rng(0)
    src, dst = rng.integers(0, 300, 1200), rng.integers(0, 300, 1200)
    src, dst = np.r_[src, np.zeros(100, int)], np.r_[dst, rng.integers(1, 300, 100)]  # a hub
    rows = [
        (int(t), f"a{s:03d}", f"a{d:03d}", 10.0)
        for t, s, d in zip(rng.integers(0, 3_600_000, len(src)), src, dst, strict=True)
        if s != d
    ]
    w = Window.build(transfers(rows), DAY, 1)
    focus = np.arange(0, w.n_addresses, 3)
    out = khop_features(w, focus)
    g = nx.from_scipy_sparse_array(w.undirected)
    volume = np.asarray((w.directed + w.directed.T).sum(axis=1)).ravel() / 2
    busy = {v for v in g if g.degree(v) > KHOP_EXPAND_MAX_DEGREE}
    assert busy
    for f in focus:
        seen, frontier = {f}, {f}
        for k in (1, 2, 3):
            if k > 1 and f in busy:
                assert pd.isna(out[f"khop{k}_count"][f])
                continue
            frontier = {
                v for u in frontier if k == 1 or u not in busy for v in g.neighbors(u)
            } - seen
            seen |= frontier
            assert out[f"khop{k}_count"][f] == len(seen) - 1
            assert out[f"khop{k}_volume_usd"][f] == pytest.approx(volume[list(seen - {f})].sum())


def test_an_empty_window_builds_an_empty_valid_batch():
    rows = [(-10 * 86_400_000, "a", "b", 5.0)]  # outside the window
    batch = build_batch(transfers(rows), "testnet", DAY, 7)
    assert all(len(df) == 0 for df in batch.tables.values())
    assert validate_batch("testnet", DAY, 7, batch.files()).ok
