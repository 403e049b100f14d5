"""money_flows: one row per directed address pair over the window.

Only USD amounts are known from a transfers table, so the optional native ``amount_sum``
is not produced.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from aml_pipeline.batch_builder.window import Window, weekday
from aml_pipeline.contract.files import list_column
from aml_pipeline.domain import DAY_MS, HOUR_MS


def money_flows(w: Window) -> pd.DataFrame:
    """The contract's money_flows table for the window (sorted by from, to)."""
    n = w.n_addresses
    usd = w.transfers["amount_usd"].to_numpy(dtype="float64")
    ts = w.transfers["timestamp_ms"].to_numpy(dtype="int64")
    pair, keys = pd.factorize(w.src * n + w.dst, sort=True)
    m = len(keys)
    src, dst = keys // n, keys % n
    total = np.bincount(pair, usd, m)
    count = np.bincount(pair, minlength=m)
    seen = pd.Series(ts).groupby(pair).agg(["min", "max"])
    first, last = seen["min"].to_numpy(), seen["max"].to_numpy()
    day = (ts - w.start_ms) // DAY_MS
    active_days = np.bincount(pd.unique(pair * w.window_days + day) // w.window_days, minlength=m)
    k = max(len(w.assets), 1)
    by_asset = np.bincount(pair * k + w.asset, usd, m * k).reshape(m, k)
    hourly = np.bincount(pair * 24 + (ts // HOUR_MS) % 24, minlength=m * 24).reshape(m, 24)
    weekly = np.bincount(pair * 7 + weekday(ts), minlength=m * 7).reshape(m, 7)
    reverse_at = np.searchsorted(keys, dst * n + src)
    found = (reverse_at < m) & (keys[np.minimum(reverse_at, m - 1)] == dst * n + src)
    reverse = np.where(found, total[np.minimum(reverse_at, m - 1)], 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(found, np.minimum(total, reverse) / np.maximum(total, reverse), 0.0)
    return pd.DataFrame(
        {
            "window_days": w.window_days,
            "processing_date": [w.day] * m,
            "from_address": w.addresses[src],
            "to_address": w.addresses[dst],
            "tx_count": count,
            "amount_usd_sum": total,
            "first_seen_timestamp": first,
            "last_seen_timestamp": last,
            "active_days": active_days,
            "avg_tx_size_usd": total / np.maximum(count, 1),
            "unique_assets": (by_asset > 0).sum(axis=1),
            "dominant_asset": w.assets[by_asset.argmax(axis=1)] if len(w.assets) else None,
            "hourly_pattern": list_column(hourly),
            "weekly_pattern": list_column(weekly),
            "reciprocity_ratio": ratio,
            "is_bidirectional": found,
        }
    )
