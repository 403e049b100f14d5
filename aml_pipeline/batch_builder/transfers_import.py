"""Build SOT batches from anyone's transfers table (CSV or Parquet) with the same builder.

Column names are recognised from common exports (AMLSim, PaySim-style, on-chain dumps);
only the transfer columns are read, so label columns such as ``is_sar``/``alert_id``
never reach a batch. Batches are written in the upstream layout that
``aml-pipeline download --source DIR`` reads; labels go to
``ground-truth/{network}/ground_truth.parquet`` with their ``label_date``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from aml_pipeline.batch_builder.build import build_batch
from aml_pipeline.contract.conform import read_parquet_bytes
from aml_pipeline.contract.files import parquet_bytes
from aml_pipeline.contract.schema import GROUND_TRUTH
from aml_pipeline.storage.objects import LocalStorage

TRANSFER_ALIASES: dict[str, tuple[str, ...]] = {
    "timestamp_ms": (
        "timestamp_ms",
        "timestamp",
        "tran_timestamp",
        "block_timestamp",
        "time",
        "datetime",
    ),
    "from_address": ("from_address", "from", "orig_acct", "nameorig", "sender", "source"),
    "to_address": ("to_address", "to", "bene_acct", "namedest", "receiver", "target"),
    "amount_usd": ("amount_usd", "base_amt", "amount", "value_usd", "usd"),
    "asset": ("asset", "token", "currency", "symbol"),
}
LABEL_ALIASES: dict[str, tuple[str, ...]] = {
    "address": ("address", "account_id", "acct_id", "account", "orig_acct"),
    "event_date": ("event_date", "date", "sar_date", "label_date"),
}


class TransfersFileError(ValueError):
    """The input file does not have what a transfers (or labels) table needs."""


def _pick(
    columns: Iterable[str], aliases: dict[str, tuple[str, ...]], file: Path, required: set[str]
) -> dict[str, str]:
    lower = {c.lower(): c for c in columns}
    found = {}
    for target, names in aliases.items():
        match = next((lower[n] for n in names if n in lower), None)
        if match is not None:
            found[target] = match
        elif target in required:
            raise TransfersFileError(f"{file}: no column for {target} (tried {', '.join(names)})")
    return found


def _read_table(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise TransfersFileError(f"{path}: no such file")
    if path.suffix == ".parquet":
        return pd.read_parquet(path)
    return pd.read_csv(path, dtype=str, keep_default_na=False)


#: Epoch numbers below each bound are in the unit of its scale to milliseconds.
_EPOCH_UNITS = ((1e11, 1e3), (1e14, 1.0), (1e17, 1e-3), (float("inf"), 1e-6))


def _to_ms(values: pd.Series, file: Path) -> np.ndarray:
    """Epoch milliseconds from epoch s/ms/us/ns numbers or date-time strings."""
    numeric = pd.to_numeric(values, errors="coerce")
    if numeric.notna().all():
        epoch = numeric.to_numpy(dtype="float64")
        scale = next(f for bound, f in _EPOCH_UNITS if np.abs(epoch).max(initial=0) < bound)
        return (epoch * scale).astype("int64")
    parsed = pd.to_datetime(values, utc=True, errors="coerce", format="mixed")
    if parsed.isna().any():
        bad = values[parsed.isna()].iloc[0]
        raise TransfersFileError(f"{file}: unparseable timestamp {bad!r}")
    return parsed.astype("datetime64[ms, UTC]").astype("int64").to_numpy()


def _to_date(values: pd.Series, file: Path) -> pd.Series:
    text = values.astype(str).str.replace(r"^(\d{4})(\d{2})(\d{2})$", r"\1-\2-\3", regex=True)
    parsed = pd.to_datetime(text, errors="coerce", format="ISO8601")
    if parsed.isna().any():
        raise TransfersFileError(f"{file}: unparseable date {values[parsed.isna()].iloc[0]!r}")
    return parsed.dt.date


def _refuse_bad_rows(t: pd.DataFrame, cols: dict[str, str], file: Path) -> None:
    """Raise naming file, column and rows when amounts or addresses are unusable."""
    amount = t["amount_usd"].to_numpy()
    checks = [
        ("amount_usd", ~np.isfinite(amount) | (amount < 0), "missing, non-numeric or negative"),
        ("from_address", t["from_address"].isin(["", "nan", "None"]).to_numpy(), "empty"),
        ("to_address", t["to_address"].isin(["", "nan", "None"]).to_numpy(), "empty"),
    ]
    problems = [
        f"column {cols[name]!r}: {int(bad.sum())} row(s) {what} (first at row {int(bad.argmax())})"
        for name, bad, what in checks
        if bad.any()
    ]
    if problems:
        raise TransfersFileError(f"{file}: " + "; ".join(problems))


def read_transfers(path: Path) -> tuple[pd.DataFrame, list[str]]:
    """The transfers table in builder columns, and the input columns that were ignored."""
    raw = _read_table(path)
    cols = _pick(
        raw.columns,
        TRANSFER_ALIASES,
        path,
        {"timestamp_ms", "from_address", "to_address", "amount_usd"},
    )
    out = pd.DataFrame(
        {
            "timestamp_ms": _to_ms(raw[cols["timestamp_ms"]], path),
            "from_address": raw[cols["from_address"]].astype(str).str.strip().to_numpy(),
            "to_address": raw[cols["to_address"]].astype(str).str.strip().to_numpy(),
            "amount_usd": pd.to_numeric(raw[cols["amount_usd"]], errors="coerce").to_numpy(
                dtype="float64"
            ),
            "asset": raw[cols["asset"]].astype(str).to_numpy() if "asset" in cols else "USD",
        }
    )
    _refuse_bad_rows(out, cols, path)
    ignored = sorted(set(raw.columns) - set(cols.values()))
    return out.sort_values("timestamp_ms", kind="stable").reset_index(drop=True), ignored


def read_labels(path: Path) -> pd.DataFrame:
    """Illicit addresses: ``address`` and the date from which they count (``event_date``)."""
    raw = _read_table(path)
    cols = _pick(raw.columns, LABEL_ALIASES, path, {"address"})
    dates = (
        _to_date(raw[cols["event_date"]], path)
        if "event_date" in cols
        else pd.Series([dt.date.min] * len(raw))
    )
    labels = pd.DataFrame(
        {"address": raw[cols["address"]].astype(str).to_numpy(), "event_date": dates.to_numpy()}
    )
    return labels.groupby("address", as_index=False)["event_date"].min()


@dataclass(frozen=True)
class ImportResult:
    days: int
    alerts: int
    positives: int
    output_dir: Path


def import_transfers(
    transfers: pd.DataFrame,
    labels: pd.DataFrame | None,
    network: str,
    start: dt.date,
    end: dt.date,
    output_dir: Path,
    window_days: int = 7,
    label_delay_days: int = 30,
    progress: Callable[[dt.date, int], None] | None = None,
) -> ImportResult:
    """Write one upstream-layout batch per day from ``start`` to ``end`` (and labels).

    An alert is SAR-filed when its address is in ``labels`` with an ``event_date`` on or
    before the alert's day; every label becomes known ``label_delay_days`` after the
    alert's day. Labels already in ``output_dir`` for other days are kept.
    """
    storage = LocalStorage(output_dir)
    illicit = (
        dict(zip(labels["address"], labels["event_date"], strict=True))
        if labels is not None
        else {}
    )
    gt_frames, n_alerts, n_pos = [], 0, 0
    day = start
    while day <= end:
        batch = build_batch(transfers, network, day, window_days)
        folder = f"snapshots/{network}/{day.isoformat()}/{window_days}"
        storage.publish_dir(folder, batch.files())
        alerts = batch.tables["alerts"]
        event = [illicit.get(a) for a in alerts["address"]]
        sar = np.array([e is not None and e <= day for e in event], dtype=bool)
        gt_frames.append(
            pd.DataFrame(
                {
                    "alert_id": alerts["alert_id"],
                    "processing_date": [day] * len(alerts),
                    "is_sar_filed": sar,
                    "label_date": [day + dt.timedelta(label_delay_days)] * len(alerts),
                }
            )
        )
        n_alerts += len(alerts)
        n_pos += int(sar.sum())
        if progress:
            progress(day, len(alerts))
        day += dt.timedelta(1)
    if labels is not None:
        key = f"ground-truth/{network}/{GROUND_TRUTH.file}"
        if storage.exists(key):  # keep the labels of days imported before
            earlier = read_parquet_bytes(storage.read_bytes(key))
            gt_frames.insert(0, earlier[~earlier["processing_date"].between(start, end)])
        gt = pd.concat(gt_frames, ignore_index=True)[GROUND_TRUTH.column_names]
        gt = gt.sort_values(["processing_date", "alert_id"], kind="stable")
        storage.write_bytes(key, parquet_bytes(gt.reset_index(drop=True)))
    return ImportResult((end - start).days + 1, n_alerts, n_pos, output_dir)
