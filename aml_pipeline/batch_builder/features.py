"""Per-address features of the contract, computed from a window of transfers.

Everything is vectorized over integer address codes (``np.bincount`` and sorted groups),
so a window of a few million legs takes seconds. Following current upstream, the columns
in ``RETIRED_FEATURES`` are not produced.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from aml_pipeline.batch_builder.graph import graph_features
from aml_pipeline.batch_builder.window import Window
from aml_pipeline.contract.files import list_column
from aml_pipeline.domain import DAY_MS, HOUR_MS, NEAR_THRESHOLD_SHARE
from aml_pipeline.domain import REPORTING_THRESHOLD_USD as THRESHOLD_USD

SMALL_USD = 100.0
NIGHT_HOURS = 6  # 00:00-05:59 UTC


def _safe_div(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(b > 0, a / np.where(b > 0, b, 1), 0.0)


def _entropy(matrix: np.ndarray) -> np.ndarray:
    """Normalized Shannon entropy of each row's distribution (0 = concentrated)."""
    total = matrix.sum(axis=1, keepdims=True)
    p = _safe_div(matrix, total)
    with np.errstate(divide="ignore", invalid="ignore"):
        h = -np.where(p > 0, p * np.log(p), 0.0).sum(axis=1)
    return h / np.log(matrix.shape[1])


def _grid(
    index: np.ndarray, column: np.ndarray, width: int, n: int, weights: np.ndarray | None = None
) -> np.ndarray:
    return np.bincount(index * width + column, weights, minlength=n * width).reshape(n, width)


def _moments(codes: np.ndarray, x: np.ndarray, n: int) -> tuple[np.ndarray, ...]:
    count = np.bincount(codes, minlength=n).astype(float)
    mean = _safe_div(np.bincount(codes, x, n), count)
    centered = x - mean[codes]
    m2 = _safe_div(np.bincount(codes, centered**2, n), count)
    m3 = _safe_div(np.bincount(codes, centered**3, n), count)
    m4 = _safe_div(np.bincount(codes, centered**4, n), count)
    skew = _safe_div(m3, m2**1.5)
    kurt = _safe_div(m4, m2**2) - 3.0
    return count, mean, m2, skew, np.where(m2 > 0, kurt, 0.0)


def _group_median(codes: np.ndarray, x: np.ndarray, n: int) -> np.ndarray:
    """Median of ``x`` per code (missing where a code has no values)."""
    order = np.lexsort((x, codes))
    xs = x[order]
    counts = np.bincount(codes, minlength=n)
    starts = np.cumsum(counts) - counts
    has = counts > 0
    lo = starts[has] + (counts[has] - 1) // 2
    hi = starts[has] + counts[has] // 2
    out = np.full(n, np.nan)
    out[has] = (xs[lo] + xs[hi]) / 2
    return out


def _rank_within(group: np.ndarray, key: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Order by group then descending key; each row's 0-based rank inside its group."""
    order = np.lexsort((-key, group))
    counts = np.bincount(group, minlength=n)
    starts = np.cumsum(counts) - counts
    return order, np.arange(len(order)) - starts[group[order]]


def _pair_table(legs: pd.DataFrame, n: int, window_days: int) -> pd.DataFrame:
    """Per (address, counterparty): volume, volume out, volume in, active days."""
    key = legs["address"].to_numpy() * n + legs["counterparty"].to_numpy()
    pair, pair_keys = pd.factorize(key, sort=True)
    amount, out = legs["amount"].to_numpy(), legs["outgoing"].to_numpy()
    m = len(pair_keys)
    day_keys = pd.unique(pair * window_days + legs["day"].to_numpy())
    return pd.DataFrame(
        {
            "address": pair_keys // n,
            "counterparty": pair_keys % n,
            "volume": np.bincount(pair, amount, m),
            "out": np.bincount(pair, np.where(out, amount, 0.0), m),
            "in": np.bincount(pair, np.where(out, 0.0, amount), m),
            "days": np.bincount(day_keys // window_days, minlength=m),
        }
    )


def address_features(w: Window) -> pd.DataFrame:
    """One row per address code of the window with the contract's feature columns
    (k-hop columns excepted: see ``graph.khop_features``)."""
    n = w.n_addresses
    legs = w.legs
    code = legs["address"].to_numpy()
    amount = legs["amount"].to_numpy()
    out_mask = legs["outgoing"].to_numpy()
    ts = legs["ts"].to_numpy()
    f: dict[str, Any] = {}

    first = np.searchsorted(code, np.arange(n))  # legs are sorted by address, then time
    last = np.searchsorted(code, np.arange(n), side="right") - 1
    out_count = np.bincount(code[out_mask], minlength=n)
    in_count = np.bincount(code[~out_mask], minlength=n)
    out_sum = np.bincount(code[out_mask], amount[out_mask], n)
    in_sum = np.bincount(code[~out_mask], amount[~out_mask], n)
    pairs = _pair_table(legs, n, w.window_days)
    p_code = pairs["address"].to_numpy()
    degree_out = np.bincount(p_code[pairs["out"].to_numpy() > 0], minlength=n)
    degree_in = np.bincount(p_code[pairs["in"].to_numpy() > 0], minlength=n)
    counterparties = np.bincount(p_code, minlength=n)
    f.update(
        degree_in=degree_in,
        degree_out=degree_out,
        degree_total=degree_in + degree_out,
        unique_counterparties=counterparties,
    )

    total = in_sum + out_sum
    count, mean, var, skew, kurt = _moments(code, amount, n)
    f.update(
        total_in_usd=in_sum,
        total_out_usd=out_sum,
        net_flow_usd=in_sum - out_sum,
        total_volume_usd=total,
        avg_tx_in_usd=_safe_div(in_sum, in_count),
        avg_tx_out_usd=_safe_div(out_sum, out_count),
        median_tx_in_usd=_group_median(code[~out_mask], amount[~out_mask], n),
        median_tx_out_usd=_group_median(code[out_mask], amount[out_mask], n),
        max_tx_usd=np.maximum.reduceat(amount, first) if n else amount[:0],
        min_tx_usd=np.minimum.reduceat(amount, first) if n else amount[:0],
        amount_variance=var,
        amount_skewness=skew,
        amount_kurtosis=kurt,
    )

    days = legs["day"].to_numpy()
    daily_volume = _grid(code, days, w.window_days, n, amount)
    daily_count = _grid(code, days, w.window_days, n)
    active_days = (daily_count > 0).sum(axis=1)
    first_day = np.where(active_days > 0, (daily_count > 0).argmax(axis=1), 0)
    last_day = np.where(
        active_days > 0, w.window_days - 1 - (daily_count[:, ::-1] > 0).argmax(axis=1), 0
    )
    volume_std = daily_volume.std(axis=1)
    f.update(volume_std=volume_std, volume_cv=_safe_div(volume_std, daily_volume.mean(axis=1)))

    share = _safe_div(pairs["volume"].to_numpy(), total[p_code])
    f["flow_concentration"] = np.bincount(p_code, share**2, n)
    order, rank = _rank_within(p_code, share, n)
    top_code, top_share = p_code[order], share[order]
    f["counterparty_concentration"] = np.bincount(top_code[rank == 0], top_share[rank == 0], n)
    f["concentration_ratio"] = np.bincount(top_code[rank < 3], top_share[rank < 3], n)
    with np.errstate(divide="ignore", invalid="ignore"):
        plogp = np.where(share > 0, share * np.log(share), 0.0)
    f["flow_diversity"] = _safe_div(
        -np.bincount(p_code, plogp, n), np.log(np.maximum(counterparties, 2))
    )

    f.update(tx_in_count=in_count, tx_out_count=out_count, tx_total_count=in_count + out_count)

    hourly_count = _grid(code, legs["hour"].to_numpy(), 24, n)
    hourly_volume = _grid(code, legs["hour"].to_numpy(), 24, n, amount)
    weekday = legs["weekday"].to_numpy()
    weekly_count = _grid(code, weekday, 7, n)
    weekly_volume = _grid(code, weekday, 7, n, amount)

    same = np.zeros(len(code), bool)  # this leg follows another of the same address
    same[1:] = code[1:] == code[:-1]
    gaps = np.where(same, np.diff(ts, prepend=ts[:1]), 0).astype(float) / HOUR_MS
    gap_count = np.bincount(code[same], minlength=n).astype(float)
    gap_mean = _safe_div(np.bincount(code[same], gaps[same], n), gap_count)
    gap_sd = np.sqrt(
        _safe_div(np.bincount(code[same], (gaps[same] - gap_mean[code[same]]) ** 2, n), gap_count)
    )
    hour_key = code * (24 * w.window_days) + (ts - w.start_ms) // HOUR_MS  # sorted
    run_start = np.flatnonzero(np.diff(hour_key, prepend=-1) != 0)
    run_length = np.diff(np.r_[run_start, len(hour_key)])
    run_code = code[run_start]
    active_hours = np.bincount(run_code, minlength=n)
    peak_hourly = (
        np.maximum.reduceat(run_length, np.searchsorted(run_code, np.arange(n)))
        if n
        else run_length
    )
    f.update(
        activity_days=active_days,
        activity_span_days=np.where(active_days > 0, last_day - first_day + 1, 0),
        avg_daily_volume_usd=_safe_div(total, active_days),
        peak_hour=hourly_volume.argmax(axis=1),
        peak_day=weekly_volume.argmax(axis=1),
        regularity_score=np.where(gap_count > 0, 1.0 / (1.0 + _safe_div(gap_sd, gap_mean)), np.nan),
        burst_factor=_safe_div(peak_hourly.astype(float), _safe_div(count, active_hours)),
    )

    p_in, p_out = pairs["in"].to_numpy(), pairs["out"].to_numpy()
    both = (p_in > 0) & (p_out > 0)
    near_threshold = (amount >= NEAR_THRESHOLD_SHARE * THRESHOLD_USD) & (amount < THRESHOLD_USD)
    out_minus_in_ms = _safe_div(
        np.bincount(code[out_mask], ts[out_mask], n), out_count.astype(float)
    ) - _safe_div(np.bincount(code[~out_mask], ts[~out_mask], n), in_count.astype(float))
    balance = _safe_div(np.minimum(in_sum, out_sum), np.maximum(in_sum, out_sum))
    f.update(
        reciprocity_ratio=_safe_div(np.bincount(p_code[both], (p_in + p_out)[both], n), total),
        # outflow that on average precedes the inflow is not forwarding: no velocity
        velocity_score=np.where(
            out_minus_in_ms >= 0, balance * np.exp(-np.abs(out_minus_in_ms) / DAY_MS), 0.0
        ),
        structuring_score=_safe_div(np.bincount(code, near_threshold.astype(float), n), count),
    )

    asset_codes, asset_names = legs["asset"].to_numpy(), w.assets
    k = len(asset_names)
    for side, mask in (("in", ~out_mask), ("out", out_mask)):
        grid = _grid(code[mask], asset_codes[mask], max(k, 1), n, amount[mask])
        f[f"unique_assets_{side}"] = (grid > 0).sum(axis=1)
        dominant = asset_names[grid.argmax(axis=1)] if k else np.full(n, None)
        f[f"dominant_asset_{side}"] = np.where(grid.sum(axis=1) > 0, dominant, np.full(n, None))
    asset_grid = _grid(code, asset_codes, max(k, 1), n, amount)
    f["asset_diversity_score"] = _entropy(asset_grid) if k > 1 else np.zeros(n)

    f.update(
        hourly_activity=list_column(hourly_count),
        daily_activity=list_column(weekly_count),
        peak_activity_hour=hourly_count.argmax(axis=1),
        peak_activity_day=weekly_count.argmax(axis=1),
        hourly_entropy=_entropy(hourly_count),
        daily_entropy=_entropy(weekly_count),
        weekend_transaction_ratio=_safe_div(weekly_count[:, 5:].sum(axis=1), count),
        night_transaction_ratio=_safe_div(hourly_count[:, :NIGHT_HOURS].sum(axis=1), count),
        small_transaction_ratio=_safe_div(
            np.bincount(code, (amount < SMALL_USD).astype(float), n), count
        ),
        consistency_score=1.0
        / (1.0 + _safe_div(daily_count.std(axis=1), daily_count.mean(axis=1))),
    )

    f.update(graph_features(w))

    in_share = _safe_div(in_sum, total)
    with np.errstate(divide="ignore", invalid="ignore"):
        binary_h = -np.nan_to_num(in_share * np.log2(in_share)) - np.nan_to_num(
            (1 - in_share) * np.log2(1 - in_share)
        )
    pair_days = pairs["days"].to_numpy()
    f.update(
        flow_reciprocity_entropy=binary_h,
        counterparty_stability=_safe_div(
            np.bincount(p_code[pair_days >= 2], minlength=n).astype(float),
            counterparties.astype(float),
        ),
        flow_burstiness=np.where(
            gap_count > 0, _safe_div(gap_sd - gap_mean, gap_sd + gap_mean), np.nan
        ),
        transaction_regularity=np.where(
            gap_count > 0,
            _safe_div(np.minimum(gap_mean, gap_sd), np.maximum(gap_mean, gap_sd)),
            np.nan,
        ),
        amount_predictability=1.0 / (1.0 + _safe_div(np.sqrt(var), mean)),
    )

    f.update(
        is_exchange_like=(degree_in >= 20) & (degree_out >= 20) & (f["reciprocity_ratio"] < 0.2),
        is_hub_address=w.hub,
        unique_recipients_count=degree_out,
        unique_senders_count=degree_in,
        first_activity_timestamp=ts[first],
        last_activity_timestamp=ts[last],
    )
    return pd.DataFrame({"address": w.addresses, **f}, index=pd.RangeIndex(n))
