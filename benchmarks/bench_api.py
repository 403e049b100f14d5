"""Results API latency over a short and a long history (``python -m benchmarks.bench_api``).

Synthetic published output (``--alerts`` alerts a day, files as the pipeline writes them)
is generated for the longest history; each shorter history hard-links its newest days.
For each history a real uvicorn server (``aml_pipeline.api.server.serve``, in its own
process, access log on) answers ``GET /scores/alerts/{date}`` (cycling over every day)
and ``GET /scores/alerts/latest`` with the default limit, requested one at a time by a
keep-alive loopback client. The seed's "Option A" - pandas reads every day's
``alert_scores.parquet`` on each request and then filters by date - is served the same way
and measured with fewer requests (it takes seconds per request at a year of history).

Targets: p95 < 50 ms at every size, and the longest history's p95 within 1.5x of the
shortest's.
"""

from __future__ import annotations

import argparse
import datetime as dt
import http.client
import json
import multiprocessing as mp
import os
import socket
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from aml_pipeline.storage import layout

NETWORK = "ethereum"
LAST_DAY = dt.date(2025, 12, 31)
FEATURES = [f"feature_{i:02d}" for i in range(40)]
ADDRESSES = 200_000  # an address has about 36 alerts a year at 20,000 alerts a day
TYPOLOGIES = ["PEEL_CHAIN", "FAN_IN", "FAN_OUT", "STRUCTURING", "RAPID_PASS_THROUGH"]
P95_TARGET_MS = 50.0
GROWTH_TARGET = 1.5


def _explanations(rng: np.random.Generator, n: int) -> list[str]:
    """``n`` distinct explanation JSON strings (five features each), as the scorer writes."""
    feats = rng.integers(0, len(FEATURES), size=(n, 5))
    values, contribs = rng.normal(size=(n, 5)), rng.normal(scale=0.3, size=(n, 5))
    base = rng.normal(-2.0, 0.1, size=n)
    out = []
    for i in range(n):
        top = ",".join(
            f'{{"feature":"{FEATURES[f]}","value":{v:.6f},"contribution":{c:.6f}}}'
            for f, v, c in zip(feats[i], values[i], contribs[i], strict=True)
        )
        out.append(f'{{"model_version":"1.0.0","base_value":{base[i]:.6f},"top_features":[{top}]}}')
    return out


def _write(path: Path, columns: dict[str, pa.Array]) -> None:
    pq.write_table(pa.table(columns), path, compression="zstd")


def generate(root: Path, days: int, alerts: int, seed: int = 0) -> None:
    """Write ``days`` published days ending ``LAST_DAY`` under ``root/output/NETWORK``."""
    rng = np.random.default_rng(seed)
    explain = np.array(_explanations(rng, alerts), dtype=object)
    clusters = max(alerts // 20, 1)
    for k in range(days):
        day = LAST_DAY - dt.timedelta(days - 1 - k)
        folder = root / layout.output_day(NETWORK, day)
        folder.mkdir(parents=True)
        ids = pa.array([f"{day:%Y%m%d}-{i:06d}" for i in range(alerts)])
        scores = rng.beta(1.2, 6.0, size=alerts)
        common = {
            "network": pa.array([NETWORK] * alerts),
            "processing_date": pa.array([day] * alerts, pa.date32()),
            "window_days": pa.array(np.full(alerts, 7, np.int32)),
        }
        _write(
            folder / "alert_scores.parquet",
            {
                "alert_id": ids,
                "score": pa.array(scores),
                "model_version": pa.array(["1.0.0"] * alerts),
                "latency_ms": pa.array(rng.uniform(5, 50, size=alerts)),
                "explain_json": pa.array(explain[rng.permutation(alerts)].tolist(), pa.string()),
                "address": [f"0x{a:040x}" for a in rng.integers(0, ADDRESSES, size=alerts)],
                "typology_type": pa.array(rng.choice(TYPOLOGIES, size=alerts)),
                **common,
            },
        )
        order = np.lexsort((np.arange(alerts), -scores))
        _write(
            folder / "alert_rankings.parquet",
            {
                "alert_id": ids.take(pa.array(order)),
                "rank": pa.array(np.arange(1, alerts + 1, dtype=np.int32)),
                "score": pa.array(scores[order]),
                "model_version": pa.array(["1.0.0"] * alerts),
                **common,
            },
        )
        _write(
            folder / "cluster_scores.parquet",
            {
                "cluster_id": pa.array([f"{day:%Y%m%d}-c{i:05d}" for i in range(clusters)]),
                "score": pa.array(rng.uniform(size=clusters)),
                "model_version": pa.array(["1.0.0"] * clusters),
                "explain_json": pa.array(explain[:clusters].tolist(), pa.string()),
                **{name: col[:clusters] for name, col in common.items()},
            },
        )
        meta = {"status": "success", "alerts": alerts, "clusters": clusters, "run_id": f"r{k}"}
        (folder / "processing_metadata.json").write_text(json.dumps(meta))


def link_newest(source: Path, target: Path, days: int) -> None:
    """Give ``target`` the newest ``days`` day directories of ``source`` (hard links)."""
    names = sorted(p.name for p in (source / layout.output_network(NETWORK)).iterdir())[-days:]
    for name in names:
        folder = target / layout.output_day(NETWORK, name)
        folder.mkdir(parents=True)
        for file in (source / layout.output_day(NETWORK, name)).iterdir():
            os.link(file, folder / file.name)


def option_a_app(root: Path):
    """The seed's Option A behind the same routes: pandas loads every day, then filters."""
    import pandas as pd
    from fastapi import FastAPI, HTTPException

    app = FastAPI()

    def every_day() -> pd.DataFrame:
        files = sorted((root / layout.output_network(NETWORK)).glob("*/alert_scores.parquet"))
        return pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)

    @app.get("/scores/alerts/{date}")
    def alert_scores(date: str, limit: int = 100) -> dict:
        scores = every_day()
        day = scores["processing_date"].max() if date == "latest" else dt.date.fromisoformat(date)
        rows = scores[scores["processing_date"] == day]
        if rows.empty:
            raise HTTPException(404, f"No scores for date {date}")
        top = rows.sort_values(["score", "alert_id"], ascending=[False, True]).head(limit)
        columns = ["alert_id", "score", "model_version", "latency_ms"]
        return {"total": len(rows), "rows": top[columns].to_dict(orient="records")}

    @app.get("/scores/alerts")
    def alert_scores_range(start_date: str, end_date: str, limit: int = 100) -> dict:
        scores = every_day()
        first, last = dt.date.fromisoformat(start_date), dt.date.fromisoformat(end_date)
        rows = scores[scores["processing_date"].between(first, last)]
        top = rows.sort_values(["score", "alert_id"], ascending=[False, True]).head(limit)
        columns = ["processing_date", "alert_id", "score", "model_version"]
        return {"total": len(rows), "rows": top[columns].to_dict(orient="records")}

    return app


def _run_server(kind: str, root: str, port: int) -> None:
    """Child process: serve ``kind`` ("duckdb" or "option_a") on loopback, output muted."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.dup2(devnull, 2)
    if kind == "duckdb":
        from aml_pipeline.api.server import serve

        serve("127.0.0.1", port, root, NETWORK, networks=[NETWORK])
    else:
        import uvicorn

        uvicorn.run(option_a_app(Path(root)), host="127.0.0.1", port=port, log_level="warning")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _connect(port: int, server: mp.process.BaseProcess, kind: str) -> http.client.HTTPConnection:
    """A keep-alive connection to the server, once it accepts connections."""
    deadline = time.monotonic() + 60
    while True:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
        try:
            conn.connect()
            return conn
        except OSError:
            conn.close()
            if time.monotonic() > deadline or not server.is_alive():
                raise RuntimeError(f"{kind} server did not start") from None
            time.sleep(0.1)


def measure(kind: str, root: Path, paths: list[str], requests: int, warmup: int) -> dict:
    """p50/p95/max latency (ms) of ``requests`` GETs cycling over ``paths``, after warm-up."""
    port = _free_port()
    server = mp.get_context("spawn").Process(target=_run_server, args=(kind, str(root), port))
    server.start()
    try:
        conn = _connect(port, server, kind)
        timings = []
        for i in range(warmup + requests):
            path = paths[i % len(paths)]
            start = time.perf_counter()
            conn.request("GET", path)
            response = conn.getresponse()
            payload = response.read()
            elapsed = (time.perf_counter() - start) * 1000
            if response.status != 200 or not json.loads(payload)["rows"]:
                raise RuntimeError(f"{kind} {path}: HTTP {response.status}")
            if i >= warmup:
                timings.append(elapsed)
        conn.close()
    finally:
        server.terminate()
        server.join(30)
    q = statistics.quantiles(timings, n=100, method="inclusive")
    return {
        "requests": requests,
        "p50_ms": round(q[49], 2),
        "p95_ms": round(q[94], 2),
        "max_ms": round(max(timings), 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--alerts", type=int, default=20_000, help="alerts per day")
    parser.add_argument("--days", default="30,365", help="history sizes, comma-separated")
    parser.add_argument("--requests", type=int, default=300, help="measured requests (API)")
    parser.add_argument("--warmup", type=int, default=20, help="unmeasured requests first")
    parser.add_argument("--option-a-requests", type=int, default=10)
    parser.add_argument("--workdir", help="keep the generated data here (default: temp dir)")
    args = parser.parse_args()
    sizes = sorted(int(d) for d in args.days.split(","))

    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        base = Path(tmp)
        began = time.perf_counter()
        generate(base / f"days_{sizes[-1]}", sizes[-1], args.alerts)
        for size in sizes[:-1]:
            link_newest(base / f"days_{sizes[-1]}", base / f"days_{size}", size)
        generated_s = time.perf_counter() - began
        results: dict = {
            "alerts_per_day": args.alerts,
            "generate_s": round(generated_s, 1),
            "runs": [],
        }
        for size in sizes:
            root = base / f"days_{size}"
            days = sorted(p.name for p in (root / layout.output_network(NETWORK)).iterdir())
            by_date = [f"/scores/alerts/{d}" for d in days]
            latest = ["/scores/alerts/latest"]
            for kind, n, warm in (
                ("duckdb", args.requests, args.warmup),
                ("option_a", args.option_a_requests, 1),
            ):
                for route, paths in (("/scores/alerts/{date}", by_date), (latest[0], latest)):
                    stats = measure(kind, root, paths, n, warm)
                    row = {"days": size, "impl": kind, "route": route, **stats}
                    results["runs"].append(row)
                    print(json.dumps(row), flush=True)

    api = {(r["days"], r["route"]): r for r in results["runs"] if r["impl"] == "duckdb"}
    routes = sorted({route for _, route in api})
    results["targets"] = {
        "p95_under_50ms": all(r["p95_ms"] < P95_TARGET_MS for r in api.values()),
        "growth": {
            route: round(api[(sizes[-1], route)]["p95_ms"] / api[(sizes[0], route)]["p95_ms"], 2)
            for route in routes
        },
    }
    results["targets"]["growth_within_1.5x"] = all(
        g <= GROWTH_TARGET for g in results["targets"]["growth"].values()
    )

    print(f"\n{'days':>5} {'impl':<9} {'route':<22} {'n':>4} {'p50 ms':>9} {'p95 ms':>9}")
    for r in results["runs"]:
        print(
            f"{r['days']:>5} {r['impl']:<9} {r['route']:<22} {r['requests']:>4} "
            f"{r['p50_ms']:>9.2f} {r['p95_ms']:>9.2f}"
        )
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
