"""What the money-flow graph features cost (``python -m benchmarks.bench_flow_features``).

On one simulated demo-profile day (about 3,000 alerts and 160,000 money flows) and on a
100,000-alert day made of disjoint copies of it (every address renamed per copy, so the
flow table grows in proportion and the graph keeps its shape), each measured in a fresh
process: the ``flow_features`` step (``build_flow_features``) against the step that
existed before it, ``alert_history`` + ``alert_features`` (``build_alert_history`` and
``build_alert_features``). Wall seconds and the process's peak memory over what the
loaded inputs took.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import multiprocessing
import resource
import tempfile
import time
from pathlib import Path

import pandas as pd

NETWORK = "ethereum"
DAY = dt.date(2025, 3, 20)
PRIOR_DAYS = 7
BIG_DAY_ALERTS = 100_000


def _simulate(folder: Path) -> int:
    """The demo day's batch tables and the alerts of the days before it, pickled."""
    from aml_pipeline.contract.conform import conform_table, read_parquet_bytes
    from aml_pipeline.contract.schema import BATCH_TABLES
    from aml_pipeline.simulator.profiles import DEMO
    from aml_pipeline.sources.simulated import SimulatedSource

    source = SimulatedSource(
        DEMO, start=dt.date(2025, 3, 1), seed=0, today=lambda: DAY + dt.timedelta(1)
    )
    for offset in range(PRIOR_DAYS + 1):
        day = DAY - dt.timedelta(offset)
        files = source.fetch(NETWORK, day, 7).files
        for spec in BATCH_TABLES if offset == 0 else BATCH_TABLES[:1]:
            table = conform_table(read_parquet_bytes(files[spec.file]), spec)
            table.to_pickle(folder / f"{spec.name}-{offset}.pkl")
    return len(pd.read_pickle(folder / "alerts-0.pkl"))


def _copies(frame: pd.DataFrame, columns: tuple[str, ...], k: int) -> pd.DataFrame:
    return frame.assign(**{c: frame[c].astype(str) + f"~{k}" for c in columns})


def _load(folder: Path, copies: int) -> dict[str, pd.DataFrame]:
    """The inputs of both steps, the day ``copies`` times over disjoint addresses."""
    tables = {
        name: pd.read_pickle(folder / f"{name}-0.pkl")
        for name in ("alerts", "features", "clusters", "money_flows")
    }
    prior = pd.concat(
        [pd.read_pickle(folder / f"alerts-{i}.pkl") for i in range(1, PRIOR_DAYS + 1)]
    )
    keyed = {
        "alerts": ("alert_id", "address"),
        "features": ("address",),
        "money_flows": ("from_address", "to_address"),
        "prior": ("alert_id", "address"),
    }
    out = {}
    for name, frame in {**tables, "prior": prior}.items():
        if name == "clusters":
            parts = [
                frame.assign(
                    cluster_id=frame["cluster_id"] + f"~{k}",
                    related_alert_ids=frame["related_alert_ids"].map(
                        lambda ids, k=k: [f"{a}~{k}" for a in ids]
                    ),
                )
                for k in range(copies)
            ]
        else:
            parts = [_copies(frame, keyed[name], k) for k in range(copies)]
        out[name] = pd.concat(parts, ignore_index=True)
    return out


def _measure(args: tuple[str, str, int]) -> dict:
    """One step on the loaded inputs, in this (fresh) process."""
    from aml_pipeline.features.alert_features import build_alert_features
    from aml_pipeline.features.flow_features import build_flow_features
    from aml_pipeline.features.history import build_alert_history

    folder, step, copies = args
    t = _load(Path(folder), copies)
    loaded = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    began = time.perf_counter()
    if step == "flow_features":
        rows = len(build_flow_features(t["alerts"]["address"], t["money_flows"], t["prior"],
                                       None, DAY))  # fmt: skip
    else:
        history = build_alert_history(t["alerts"]["address"], t["prior"], DAY)
        rows = len(build_alert_features(t["alerts"], t["features"], t["clusters"], history))
    seconds = time.perf_counter() - began
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {
        "step": step,
        "alerts": len(t["alerts"]),
        "money_flows": len(t["money_flows"]),
        "rows": rows,
        "seconds": round(seconds, 2),
        "peak_mb_over_inputs": round((peak - loaded) / 1024),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.parse_args()
    context = multiprocessing.get_context("spawn")
    with tempfile.TemporaryDirectory() as tmp:
        alerts = _simulate(Path(tmp))
        big = -(-BIG_DAY_ALERTS // alerts)
        for copies in (1, big):
            for step in ("alert_history + alert_features", "flow_features"):
                with context.Pool(1) as pool:
                    print(json.dumps(pool.apply(_measure, ((tmp, step, copies),))), flush=True)


if __name__ == "__main__":
    main()
