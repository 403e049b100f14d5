"""money_flows: one row per directed address pair over the window.

Only USD amounts are known from a transfers table, so the optional native ``amount_sum``
is not produced.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from aml_pipeline.batch_builder.window import Window
from aml_pipeline.contract.files import list_column


def money_flows(w: Window) -> pd.DataFrame:
    """The contract's money_flows table for the window (sorted by from, to)."""
    t = w.transfers
    frame = pd.DataFrame({
        "src": w.src, "dst": w.dst, "usd": t["amount_usd"].to_numpy(dtype="float64"),
        "ts": t["timestamp_ms"].to_numpy(dtype="int64"), "asset": t["asset"].astype(str),
    })
    frame["day"] = (frame["ts"] - w.start_ms) // 86_400_000
    frame["hour"] = (frame["ts"] // 3_600_000) % 24
    frame["weekday"] = (frame["ts"] // 86_400_000 + 3) % 7
    grouped = frame.groupby(["src", "dst"], sort=True)
    flows = grouped.agg(
        tx_count=("usd", "size"), amount_usd_sum=("usd", "sum"),
        first_seen_timestamp=("ts", "min"), last_seen_timestamp=("ts", "max"),
        active_days=("day", "nunique"), unique_assets=("asset", "nunique"),
    )
    dominant = (frame.groupby(["src", "dst", "asset"], sort=True)["usd"].sum()
                .reset_index().sort_values(["src", "dst", "usd", "asset"],
                                           ascending=[True, True, False, True])
                .drop_duplicates(["src", "dst"]).set_index(["src", "dst"])["asset"])
    flows["dominant_asset"] = dominant.reindex(flows.index).to_numpy()
    pair = flows.index.to_frame(index=False)
    idx = grouped.ngroup().to_numpy()
    hourly = np.bincount(idx * 24 + frame["hour"].to_numpy(),
                         minlength=len(pair) * 24).reshape(-1, 24)
    weekly = np.bincount(idx * 7 + frame["weekday"].to_numpy(),
                         minlength=len(pair) * 7).reshape(-1, 7)
    reverse = flows["amount_usd_sum"].reindex(
        pd.MultiIndex.from_arrays([pair["dst"], pair["src"]])).to_numpy()
    forward = flows["amount_usd_sum"].to_numpy()
    reverse = np.nan_to_num(reverse)
    ratio = np.where(reverse > 0, np.minimum(forward, reverse) / np.maximum(forward, reverse),
                     0.0)
    addresses = w.addresses
    return pd.DataFrame({
        "window_days": w.window_days,
        "processing_date": [w.day] * len(pair),
        "from_address": addresses[pair["src"].to_numpy()],
        "to_address": addresses[pair["dst"].to_numpy()],
        "tx_count": flows["tx_count"].to_numpy(),
        "amount_usd_sum": forward,
        "first_seen_timestamp": flows["first_seen_timestamp"].to_numpy(),
        "last_seen_timestamp": flows["last_seen_timestamp"].to_numpy(),
        "active_days": flows["active_days"].to_numpy(),
        "avg_tx_size_usd": forward / flows["tx_count"].to_numpy(),
        "unique_assets": flows["unique_assets"].to_numpy(),
        "dominant_asset": flows["dominant_asset"].to_numpy(),
        "hourly_pattern": list_column(hourly),
        "weekly_pattern": list_column(weekly),
        "reciprocity_ratio": ratio,
        "is_bidirectional": reverse > 0,
    })
