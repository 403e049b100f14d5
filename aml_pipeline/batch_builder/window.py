"""The transfers of a window, indexed for fast per-address aggregation."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import pandas as pd
import scipy.sparse as sp

from aml_pipeline.domain import DAY_MS, HOUR_MS

REQUIRED_TRANSFER_COLUMNS = ("timestamp_ms", "from_address", "to_address", "amount_usd")
#: An address with at least this many counterparties (and in the top 0.5 %) is a hub.
HUB_MIN_DEGREE = 30
HUB_QUANTILE = 0.995


def weekday(ts_ms: np.ndarray) -> np.ndarray:
    """Monday = 0 ... Sunday = 6 of epoch-millisecond timestamps (UTC)."""
    return (ts_ms // DAY_MS + 3) % 7  # 1970-01-01 was a Thursday


@dataclass
class Window:
    """Transfers of ``window_days`` days ending on ``day``, with integer address codes.

    ``legs`` has two rows per transfer (the sender's and the receiver's view), which is
    what most per-address aggregates need.
    """

    day: dt.date
    window_days: int
    transfers: pd.DataFrame
    addresses: np.ndarray  # code -> address
    src: np.ndarray  # codes
    dst: np.ndarray
    assets: np.ndarray  # asset code -> asset name
    asset: np.ndarray  # asset code per transfer

    @classmethod
    def build(cls, transfers: pd.DataFrame, day: dt.date, window_days: int) -> Window:
        missing = [c for c in REQUIRED_TRANSFER_COLUMNS if c not in transfers.columns]
        if missing:
            raise ValueError(f"transfers table lacks required column(s) {missing}")
        start_ms = _day_ms(day - dt.timedelta(window_days - 1))
        end_ms = _day_ms(day + dt.timedelta(1))
        ts = transfers["timestamp_ms"].to_numpy()
        t = transfers[(ts >= start_ms) & (ts < end_ms)]
        if "asset" not in t.columns:
            t = t.assign(asset="USD")
        t = t[[*REQUIRED_TRANSFER_COLUMNS, "asset"]].reset_index(drop=True)
        codes, addresses = pd.factorize(
            np.concatenate([t["from_address"].to_numpy(), t["to_address"].to_numpy()]),
            sort=True,
        )
        n = len(t)
        asset, assets = pd.factorize(t["asset"].astype(str), sort=True)
        return cls(
            day=day,
            window_days=window_days,
            transfers=t,
            addresses=np.asarray(addresses, dtype=object),
            src=codes[:n].astype(np.int64),
            dst=codes[n:].astype(np.int64),
            assets=np.asarray(assets, dtype=object),
            asset=asset.astype(np.int64),
        )

    @property
    def n_addresses(self) -> int:
        return len(self.addresses)

    @property
    def start_ms(self) -> int:
        return _day_ms(self.day - dt.timedelta(self.window_days - 1))

    @property
    def day_start_ms(self) -> int:
        return _day_ms(self.day)

    @cached_property
    def legs(self) -> pd.DataFrame:
        """address, counterparty, amount, ts, asset (codes), outgoing, hour, day, weekday;
        sorted by address, then time."""
        t = self.transfers
        n = len(t)
        address = np.concatenate([self.src, self.dst])
        ts = np.tile(t["timestamp_ms"].to_numpy(dtype="int64"), 2)
        order = np.lexsort((ts, address))
        ts = ts[order]
        return pd.DataFrame(
            {
                "address": address[order],
                "counterparty": np.concatenate([self.dst, self.src])[order],
                "amount": np.tile(t["amount_usd"].to_numpy(dtype="float64"), 2)[order],
                "ts": ts,
                "asset": np.tile(self.asset, 2)[order],
                "outgoing": np.r_[np.ones(n, bool), np.zeros(n, bool)][order],
                "hour": (ts // HOUR_MS) % 24,
                "day": (ts - self.start_ms) // DAY_MS,
                "weekday": weekday(ts),
            }
        )

    @cached_property
    def directed(self) -> sp.csr_matrix:
        """USD-weighted directed transfer graph over address codes."""
        n = self.n_addresses
        amount = self.transfers["amount_usd"].to_numpy(dtype="float64")
        graph = sp.csr_matrix((amount, (self.src, self.dst)), shape=(n, n))
        graph.sum_duplicates()
        return graph

    @cached_property
    def undirected(self) -> sp.csr_matrix:
        """0/1 symmetric counterparty graph without self loops."""
        sym = (self.directed + self.directed.T).tocsr()
        sym.setdiag(0)
        sym.eliminate_zeros()
        sym.data[:] = 1.0
        return sym

    @cached_property
    def degree(self) -> np.ndarray:
        """Distinct counterparties of each address."""
        return np.diff(self.undirected.indptr)

    @cached_property
    def hub(self) -> np.ndarray:
        """Hubs: the busiest addresses (exchanges, popular contracts) by counterparties."""
        if not self.n_addresses:
            return np.zeros(0, bool)
        cut = max(HUB_MIN_DEGREE, float(np.quantile(self.degree, HUB_QUANTILE)))
        return self.degree >= cut

    @cached_property
    def active_today(self) -> np.ndarray:
        """Boolean per address code: did it transfer on the processing day itself."""
        mask = np.zeros(self.n_addresses, bool)
        today = self.transfers["timestamp_ms"].to_numpy() >= self.day_start_ms
        mask[self.src[today]] = True
        mask[self.dst[today]] = True
        return mask


def _day_ms(day: dt.date) -> int:
    return int(dt.datetime.combine(day, dt.time(), dt.UTC).timestamp() * 1000)
