"""Graph features on the window's transfer graph, with scipy sparse matrices.

* pagerank: power iteration on the USD-weighted directed graph;
* betweenness, closeness: estimated from breadth-first searches out of a fixed, seeded
  sample of sources (single-shortest-path trees), normalized to [0, 1];
* clustering coefficient: exact triangle counts on the degree-ordered orientation;
* kcore: exact core numbers by vectorized peeling;
* community_id: connected components once hubs (``Window.hub``) are set aside;
* khop{1,2,3}: neighbourhood sizes and USD volume within 1-3 hops for ``focus``
  addresses; addresses with more than ``KHOP_EXPAND_MAX_DEGREE`` counterparties are
  reached but not expanded through (as analysts do with exchanges and popular contracts).
"""

from __future__ import annotations

from typing import TypeAlias

import numpy as np
import pandas as pd
import scipy.sparse as sp
from pandas.api.extensions import ExtensionArray
from scipy.sparse import csgraph

from aml_pipeline.batch_builder.window import Window

#: A feature column: floats, or nullable integers (counts with missing values).
Column: TypeAlias = np.ndarray | ExtensionArray

PAGERANK_DAMPING = 0.85
PAGERANK_ITERATIONS = 40
BFS_SOURCES = 16
KHOP_EXPAND_MAX_DEGREE = 50


def pagerank(directed: sp.csr_matrix) -> np.ndarray:
    n = directed.shape[0]
    out_weight = np.asarray(directed.sum(axis=1)).ravel()
    inv = np.where(out_weight > 0, 1.0 / np.where(out_weight > 0, out_weight, 1), 0.0)
    transition = sp.diags(inv) @ directed
    rank = np.full(n, 1.0 / n)
    dangling = out_weight == 0
    for _ in range(PAGERANK_ITERATIONS):
        rank = (
            PAGERANK_DAMPING * (transition.T @ rank + rank[dangling].sum() / n)
            + (1 - PAGERANK_DAMPING) / n
        )
    return rank / rank.sum()


def core_numbers(sym: sp.csr_matrix) -> np.ndarray:
    """Core number of every node: peel all nodes of degree <= k, raise k, repeat.

    The matrix is cut down to the surviving nodes whenever they halve, so late peeling
    rounds touch only the dense core.
    """
    core = np.zeros(sym.shape[0], np.int64)
    ids = np.arange(sym.shape[0])
    sub = sym
    degree = np.asarray(sub.sum(axis=1)).ravel()
    k = 0
    while len(ids):
        k = max(k, int(degree.min()))
        remove = degree <= k
        while remove.any():
            core[ids[remove]] = k
            degree = degree - sub @ remove.astype(float)
            degree[remove] = np.inf
            remove = degree <= k
        alive = np.isfinite(degree)
        if alive.sum() <= len(ids) // 2 or not alive.any():
            sub, ids, degree = sub[alive][:, alive], ids[alive], degree[alive]
        else:
            degree = np.where(alive, degree, np.inf)
    return core


def triangles(sym: sp.csr_matrix) -> np.ndarray:
    """Triangles through each node, exact, without forming the square of a hub's row.

    Edges are oriented from lower to higher degree rank (A+), so every triangle u<v<w is
    seen once; u and w are counted from ``A+ o (A+ A+)``, the middle node v from
    ``A+ o (A+^T A+)``. Both products stay small because out-degrees in A+ are bounded.
    """
    n = sym.shape[0]
    degree = np.asarray(sym.sum(axis=1)).ravel()
    rank = np.empty(n, np.int64)
    rank[np.lexsort((np.arange(n), degree))] = np.arange(n)
    coo = sym.tocoo()
    keep = rank[coo.row] < rank[coo.col]
    up = sp.csr_matrix((np.ones(int(keep.sum())), (coo.row[keep], coo.col[keep])), shape=(n, n))
    closing = up.multiply(up @ up)
    middle = up.multiply(up.T @ up)
    counts = (
        np.asarray(closing.sum(axis=1)).ravel()
        + np.asarray(closing.sum(axis=0)).ravel()
        + np.asarray(middle.sum(axis=1)).ravel()
    )
    return np.rint(counts).astype(np.int64)


def _bfs_samples(sym: sp.csr_matrix, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Betweenness and closeness estimated from BFS trees of sampled sources."""
    n = sym.shape[0]
    if n < 3:
        return np.zeros(n), np.zeros(n)
    degree = np.asarray(sym.sum(axis=1)).ravel()
    rng = np.random.default_rng(seed)
    candidates = np.flatnonzero(degree > 0)
    sources = rng.choice(candidates, min(BFS_SOURCES, len(candidates)), replace=False)
    between = np.zeros(n)
    dist_sum, reached = np.zeros(n), np.zeros(n)
    distances = csgraph.shortest_path(sym, directed=False, unweighted=True, indices=sources)
    for s, dist in zip(sources, distances, strict=True):
        order, pred = csgraph.breadth_first_order(sym, s, directed=False, return_predecessors=True)
        depth = np.zeros(n, np.int64)
        depth[order] = dist[order].astype(np.int64)
        subtree = np.zeros(n)
        subtree[order] = 1.0
        for level in range(int(depth[order].max()), 0, -1):
            nodes = order[depth[order] == level]
            np.add.at(subtree, pred[nodes], subtree[nodes])
        inner = order[1:]
        between[inner] += subtree[inner] - 1.0
        dist_sum[order] += depth[order]
        reached[order] += 1
    closeness = np.where(
        dist_sum > 0, (reached - 1).clip(0) / np.where(dist_sum > 0, dist_sum, 1), 0.0
    )
    return between / max(between.max(), 1e-12), closeness


def khop_features(w: Window, focus: np.ndarray) -> dict[str, Column]:
    """Sizes and USD volume of the 1-3 hop neighbourhoods of the ``focus`` address codes.

    Busy addresses (more than ``KHOP_EXPAND_MAX_DEGREE`` counterparties) are reached but
    not expanded through; a busy focus address gets its 1-hop values only. Addresses
    outside ``focus`` get missing values.
    """
    directed, sym, degree = w.directed, w.undirected, w.degree
    busy = degree > KHOP_EXPAND_MAX_DEGREE
    n = sym.shape[0]
    out = {f"khop{k}_{m}": np.full(n, np.nan) for k in (1, 2, 3) for m in ("count", "volume_usd")}
    focus = np.asarray(focus, dtype=np.int64)
    if not len(focus):
        return _with_int_counts(out)
    volume = np.asarray((directed + directed.T).sum(axis=1)).ravel() / 2
    out["khop1_count"][focus] = degree[focus]
    out["khop1_volume_usd"][focus] = (sym @ volume)[focus]
    quiet = focus[~busy[focus]]
    expand = sp.diags((~busy).astype(float)) @ sym  # busy rows do not expand
    for chunk in np.array_split(quiet, max(1, len(quiet) // 512)):
        if not len(chunk):
            continue
        seen = expand[chunk].tocsr()
        seen.data[:] = 1.0
        frontier = seen
        own = sp.csr_matrix(
            (np.ones(len(chunk)), (np.arange(len(chunk)), chunk)), shape=(len(chunk), n)
        )
        seen = (seen + own).tocsr()
        for k in (2, 3):  # breadth-first: expand only the newly reached nodes
            reached = (frontier @ expand).tocsr()
            reached.data[:] = 1.0
            frontier = (reached - reached.multiply(seen)).tocsr()
            frontier.eliminate_zeros()
            seen = (seen + frontier).tocsr()
            out[f"khop{k}_count"][chunk] = seen.getnnz(axis=1) - 1
            out[f"khop{k}_volume_usd"][chunk] = seen @ volume - volume[chunk]
    return _with_int_counts(out)


def _with_int_counts(values: dict[str, np.ndarray]) -> dict[str, Column]:
    """k-hop counts as nullable integers (the contract's type), volumes as floats."""
    return {
        k: pd.array(v, dtype="Float64").astype("Int64") if k.endswith("_count") else v
        for k, v in values.items()
    }


def graph_features(w: Window) -> dict[str, np.ndarray]:
    """The contract's graph columns (except k-hop) for every address code of the window."""
    directed, sym, degree = w.directed, w.undirected, w.degree.astype(float)
    n = len(degree)
    pr = pagerank(directed) if n else np.zeros(0)
    tri = triangles(sym) if n else np.zeros(0)
    possible = degree * (degree - 1) / 2
    between, closeness = _bfs_samples(sym, seed=w.day.toordinal())
    keep = sp.diags((~w.hub).astype(float))
    non_hub = (keep @ sym @ keep).tocsr()
    non_hub.eliminate_zeros()  # explicit zeros would still count as edges
    _, components = csgraph.connected_components(non_hub, directed=False)
    dmax = max(degree.max(), 1.0) if n else 1.0
    prmax = max(pr.max(), 1e-12) if n else 1.0
    return {
        "pagerank": pr,
        "betweenness": between,
        "closeness": closeness,
        "clustering_coefficient": np.where(
            possible > 0, tri / np.where(possible > 0, possible, 1), 0.0
        ),
        "kcore": core_numbers(sym) if n else np.zeros(0, np.int64),
        "community_id": components.astype(np.int64),
        "centrality_score": (degree / dmax + pr / prmax + between) / 3.0,
    }
