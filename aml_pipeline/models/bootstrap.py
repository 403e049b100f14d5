"""Bootstrap intervals of AUC-ROC and AUC-PR over blocks of alerts.

Resamples draw whole ``groups`` (blocks; the alerts' addresses) with replacement: alerts on
one address are not independent, and resampling them one by one would make the intervals
too narrow. Without ``groups`` every alert is its own block. Resamples holding a single
class are skipped and counted. Deterministic for a given ``seed``. One model's figures
(``bootstrap_aucs``, what training records about its validation) and the difference of two
models scored on the same alerts (``paired_bootstrap``, the A/B comparison and
``make quality``) use the same draws.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd

#: Weights per bootstrap chunk (resamples x alerts); bounds memory on big days.
BOOTSTRAP_CHUNK_DRAWS = 2_000_000


class _GroupedScores:
    """One model's scores as tie groups (ascending), for fast weighted AUCs.

    A bootstrap resample is a vector of weights, one per alert (how often it was drawn);
    the weighted negatives and positives in each tie group are one ``bincount`` per chunk
    of resamples, and both AUCs follow from their cumulative sums.
    """

    def __init__(self, scores: np.ndarray, y_true: np.ndarray) -> None:
        _, group = np.unique(scores, return_inverse=True)
        self.n_groups = int(group.max()) + 1
        self.key = group + self.n_groups * y_true.astype(np.int64)

    def metrics(self, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """AUC-ROC and AUC-PR per row of ``weights`` (NaN for single-class rows).

        Equal to ``roc_auc_score`` (ties count one half) and ``average_precision_score``
        of the alerts repeated by their weights.
        """
        k, width = weights.shape[0], 2 * self.n_groups
        keys = self.key[None, :] + width * np.arange(k)[:, None]
        counts = np.bincount(keys.ravel(), weights=weights.ravel(), minlength=k * width)
        counts = counts.reshape(k, 2, self.n_groups)
        neg, pos = counts[:, 0], counts[:, 1]
        n_neg, n_pos = neg.sum(axis=1), pos.sum(axis=1)
        neg_below = np.cumsum(neg, axis=1) - neg
        pos_below = np.cumsum(pos, axis=1) - pos
        true_pos = n_pos[:, None] - pos_below  # alerts at or above each group
        false_pos = n_neg[:, None] - neg_below
        with np.errstate(divide="ignore", invalid="ignore"):
            precision = np.where(pos > 0, true_pos / (true_pos + false_pos), 0.0)
            auc_roc = (pos * (neg_below + 0.5 * neg)).sum(axis=1) / (n_pos * n_neg)
            auc_pr = (pos * precision).sum(axis=1) / n_pos
        single_class = (n_pos == 0) | (n_neg == 0)
        auc_roc[single_class] = auc_pr[single_class] = np.nan
        return auc_roc, auc_pr


def block_weights(
    rng: np.random.Generator, blocks: np.ndarray, n_blocks: int, n_resamples: int
) -> np.ndarray:
    """Per resample (row) and alert (column): how often the alert's block was drawn when
    ``n_blocks`` blocks are drawn with replacement."""
    draws = rng.integers(0, n_blocks, size=(n_resamples, n_blocks))
    offsets = n_blocks * np.arange(n_resamples)[:, None]
    counts = np.bincount((draws + offsets).ravel(), minlength=n_resamples * n_blocks)
    return counts.reshape(n_resamples, n_blocks)[:, blocks].astype("float64")


def _interval(values: np.ndarray, estimate: float, confidence: float) -> dict[str, Any]:
    tail = 100 * (1 - confidence) / 2
    low, high = np.percentile(values, [tail, 100 - tail])
    return {
        "estimate": estimate,
        "ci_low": float(low),
        "ci_high": float(high),
        "significant": bool(low > 0 or high < 0),
    }


def _check(n_resamples: int, confidence: float) -> None:
    if n_resamples < 1 or not 0 < confidence < 1:
        raise ValueError("n_resamples must be >= 1 and confidence within (0, 1)")


def _blocks(n: int, groups: np.ndarray | None) -> tuple[np.ndarray, int]:
    blocks, names = pd.factorize(pd.Series(np.arange(n) if groups is None else groups))
    return blocks, len(names)


def _resamples(
    models: list[_GroupedScores], blocks: np.ndarray, n_blocks: int, n_resamples: int, seed: int
) -> Iterator[list[tuple[np.ndarray, np.ndarray]]]:
    """Per chunk of resamples: each model's AUC-ROC and AUC-PR arrays, same draws."""
    rng = np.random.default_rng(seed)
    chunk = max(1, BOOTSTRAP_CHUNK_DRAWS // max(len(blocks), n_blocks))
    for start in range(0, n_resamples, chunk):
        weights = block_weights(rng, blocks, n_blocks, min(chunk, n_resamples - start))
        yield [model.metrics(weights) for model in models]


def bootstrap_aucs(
    y_true: np.ndarray,
    scores: np.ndarray,
    *,
    groups: np.ndarray | None = None,
    n_resamples: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
) -> dict[str, list[float]] | None:
    """``[estimate, low, high]`` of AUC-ROC and AUC-PR over block resamples; None when
    the labels hold a single class."""
    _check(n_resamples, confidence)
    y_true = np.asarray(y_true, dtype=bool)
    if y_true.all() or not y_true.any():
        return None
    model = _GroupedScores(np.asarray(scores), y_true)
    (roc,), (pr,) = model.metrics(np.ones((1, len(y_true))))
    blocks, n_blocks = _blocks(len(y_true), groups)
    draws = list(_resamples([model], blocks, n_blocks, n_resamples, seed))
    out = {}
    for name, estimate, index in (("auc_roc", roc, 0), ("auc_pr", pr, 1)):
        values = np.concatenate([chunk[0][index] for chunk in draws])
        values = values[np.isfinite(values)]
        if not len(values):
            return None
        found = _interval(values, float(estimate), confidence)
        out[name] = [found["estimate"], found["ci_low"], found["ci_high"]]
    return out


def _no_interval(base: dict[str, Any], reason: str) -> dict[str, Any]:
    empty = {"estimate": None, "ci_low": None, "ci_high": None, "significant": False}
    return {**base, "n_valid": 0, "reason": reason, "auc_roc_diff": empty, "auc_pr_diff": empty}


def paired_bootstrap(
    y_true: np.ndarray,
    scores_a: np.ndarray,
    scores_b: np.ndarray,
    *,
    groups: np.ndarray | None = None,
    n_resamples: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
) -> dict[str, Any]:
    """Percentile CIs of AUC-ROC and AUC-PR differences (B - A) over paired resamples
    (the same draw for both models)."""
    _check(n_resamples, confidence)
    y_true = np.asarray(y_true, dtype=bool)
    n = len(y_true)
    blocks, n_blocks = _blocks(n, groups)
    base = {
        "n_alerts": n,
        "n_blocks": n_blocks,
        "blocks": "alerts" if groups is None else "addresses",
        "n_resamples": n_resamples,
        "seed": seed,
        "confidence": confidence,
    }
    if n == 0 or y_true.all() or not y_true.any():
        reason = "no paired labelled alerts" if n == 0 else "pooled labels hold a single class"
        return _no_interval(base, reason)
    a, b = _GroupedScores(scores_a, y_true), _GroupedScores(scores_b, y_true)
    everything = np.ones((1, n))
    (roc_a,), (pr_a,) = a.metrics(everything)
    (roc_b,), (pr_b,) = b.metrics(everything)
    roc_diffs, pr_diffs = [], []
    for (ra, pa), (rb, pb) in _resamples([a, b], blocks, n_blocks, n_resamples, seed):
        roc_diffs.append(rb - ra)
        pr_diffs.append(pb - pa)
    roc_diff, pr_diff = np.concatenate(roc_diffs), np.concatenate(pr_diffs)
    valid = np.isfinite(roc_diff)
    if not valid.any():
        return _no_interval(base, "every bootstrap resample held a single class")
    return {
        **base,
        "n_valid": int(valid.sum()),
        "reason": None,
        "auc_roc_diff": _interval(roc_diff[valid], roc_b - roc_a, confidence),
        "auc_pr_diff": _interval(pr_diff[valid], pr_b - pr_a, confidence),
    }
