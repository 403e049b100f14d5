"""Reliability probe (``python -m benchmarks.probe_reliability``): hostile input and
injected faults, area by area, each attempt's outcome counted. The reliability table of
docs/operations.md is its output.

A scratch project is built with the command line (small simulator; 2025-03-01..08 landed
and trained on, 03-01..10 scored), then every attempt goes through the path a user's
deployment takes (the command line, the app, a real uvicorn server, the SQL console):

* console: statements that read outside the record, write, attach, change settings, load
  extensions, run forever or are no SQL, and ordinary questions;
* api: hostile dates, networks, paging, ids, Host names, tokens, methods and headers;
* batches: a day's batch corrupted (values, types, NaN/inf, duplicates, missing and extra
  columns, truncated, foreign or empty files, wrong META.json, directories for files) and
  landed with ``download`` from a local source;
* configuration: bad ``AML_*`` values and network files;
* faults: processes killed mid-run and mid-publication, a full disk, a truncated registry,
  a flipped model byte, a half-sent request, an unreachable webhook.

An attempt is *served* (an ordinary request answered), *refused* (a clear error naming
the problem: a 4xx with a JSON body, a one-line refusal, a validation report; nothing
written), *survived* (a fault after which the record is whole and the next command
succeeds) or *FAILED* (a traceback, a 500, a partial write, a hang, a wrong answer).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import errno
import hashlib
import io
import json
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

NETWORK = "ethereum"
TRAIN = ["--start-date", "2025-03-01", "--end-date", "2025-03-08"]
SCORED = [dt.date(2025, 3, 1) + dt.timedelta(d) for d in range(10)]
NEW_DAY = "2025-03-12"
OUTCOMES = ("served", "refused", "survived", "FAILED")
AREAS = ("SQL console", "HTTP API", "bad batches", "configuration", "faults")


@dataclass(frozen=True)
class Attempt:
    area: str
    what: str
    outcome: str
    note: str = ""


class Probe:
    """The attempts made so far."""

    def __init__(self) -> None:
        self.attempts: list[Attempt] = []

    def add(self, area: str, what: str, outcome: str, note: str = "") -> None:
        assert outcome in OUTCOMES, outcome
        self.attempts.append(
            Attempt(area, what, outcome, note.strip().splitlines()[0] if note.strip() else "")
        )
        mark = "  " if outcome != "FAILED" else "!!"
        print(
            f"{mark} {area:13} {outcome:8} {what[:70]}  {self.attempts[-1].note[:90]}", flush=True
        )

    def table(self) -> str:
        areas = [area for area in AREAS if any(a.area == area for a in self.attempts)]
        lines = [
            "| area | attempts | served | refused cleanly | faults survived | failed |",
            "|---|---|---|---|---|---|",
        ]
        total: Counter[str] = Counter()
        for area in areas:
            counts = Counter(a.outcome for a in self.attempts if a.area == area)
            total.update(counts)
            lines.append(
                f"| {area} | {sum(counts.values())} | {counts['served']} | {counts['refused']} | "
                f"{counts['survived']} | {counts['FAILED']} |"
            )
        lines.append(
            f"| **all** | {sum(total.values())} | {total['served']} | {total['refused']} | "
            f"{total['survived']} | {total['FAILED']} |"
        )
        failed = [a for a in self.attempts if a.outcome == "FAILED"]
        lines += ["", *(f"- FAILED {a.area}: {a.what}: {a.note}" for a in failed)]
        return "\n".join(lines)


@contextlib.contextmanager
def captured() -> Iterator[io.StringIO]:
    """The command line's printed output (stdout and stderr) in one buffer."""
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer), contextlib.redirect_stderr(buffer):
        yield buffer


def cli(*args: str) -> tuple[int, str]:
    """Run the command line in this process: its exit code (a raised exception is 99 with
    the traceback as output) and what it printed."""
    from aml_pipeline import cli as command_line

    with captured() as out:
        try:
            code = command_line.main(list(args))
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
            print(exc.code if not isinstance(exc.code, int) else "", file=sys.stderr)
        except Exception:
            import traceback

            traceback.print_exc()
            code = 99
    return code, out.getvalue()


def line_with(text: str, needle: str, default: str | None = None) -> str:
    """The first line of ``text`` holding ``needle``, else ``default`` (else its last)."""
    found = next((line for line in text.splitlines() if needle in line), None)
    if found is not None:
        return found
    return one_line(text) if default is None else default


def one_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else ""


def tree_digest(folder: Path) -> str:
    """A digest of every file a reader sees under ``folder`` (through published links)."""
    digest = hashlib.sha256()
    if folder.exists():
        for path, dirs, files in sorted(os.walk(folder, followlinks=True)):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            for name in sorted(f for f in files if not f.startswith(".")):
                file = Path(path) / name
                digest.update(str(file.relative_to(folder)).encode() + file.read_bytes())
    return digest.hexdigest()


def record_digest(data: Path) -> str:
    """``tree_digest`` of the batches and tables (not the failed-run record, which a
    refused landing adds to by design)."""
    return tree_digest(data / "input") + tree_digest(data / "warehouse")


# -- the project ------------------------------------------------------------------------


def build_project(home: Path) -> None:
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    os.environ.update(
        {
            "DAGSTER_HOME": str(home),
            "AML_DATA_ROOT": str(home / "data"),
            "AML_SIM_PROFILE": "small",
            "AML_LABELS_AS_OF": "2025-05-01",
            "AML_NETWORKS_DIR": str(home / "networks"),
        }
    )
    for args in (
        ["download", "--network", NETWORK, *TRAIN],
        ["train", "--network", NETWORK, *TRAIN],
        ["score", "--network", NETWORK, "--start-date", "2025-03-01", "--end-date", "2025-03-10"],
    ):
        code, out = cli(*args)
        if code != 0:
            raise SystemExit(f"building the project failed: {args}\n{out}")


# -- console ----------------------------------------------------------------------------


def probe_console(probe: Probe, data_root: Path) -> None:
    import duckdb

    from aml_pipeline.api.console import ConsoleRefused, open_console, run_query

    hostile = [
        "SELECT * FROM read_csv('/etc/passwd')",
        "SELECT * FROM read_text('/etc/hostname')",
        "SELECT * FROM read_blob('/proc/self/environ')",
        f"SELECT * FROM read_parquet('{data_root}/../../etc/x.parquet')",
        "SELECT * FROM glob('/*')",
        "SELECT * FROM read_json_auto('http://example.com/x.json')",
        "COPY alert_scores TO '/tmp/aml-probe-out.csv'",
        "COPY (SELECT 1) TO '/tmp/aml-probe-out.parquet' (FORMAT parquet)",
        "EXPORT DATABASE '/tmp/aml-probe-export'",
        "ATTACH '/tmp/aml-probe.db' AS x",
        "SET enable_external_access = true",
        "SET allowed_directories = ['/']",
        "SET memory_limit = '100GB'",
        "RESET lock_configuration",
        "INSTALL httpfs",
        "LOAD httpfs",
        "CREATE TABLE t AS SELECT 1",
        "CREATE VIEW v AS SELECT 1",
        "DROP VIEW alert_scores",
        "INSERT INTO alert_scores SELECT * FROM alert_scores",
        "SELECT 1; DROP VIEW alert_scores",
        "CHECKPOINT",
        "VACUUM",
        "SELECT getenv('HOME')",
        "SELECT count(*) FROM range(1000000000000) a, range(10) b",
        "",
        "-- only a comment",
        "SELEC 1",
        "SELECT * FROM no_such_table",
        "SELECT repeat('x', 2000000000)",
    ]
    ordinary = [
        "SELECT count(*) FROM alert_scores",
        "SELECT processing_date, count(*), avg(score) FROM alert_scores GROUP BY 1 ORDER BY 1",
        "EXPLAIN SELECT * FROM alert_scores WHERE score > 0.9",
        "SELECT a.alert_id, r.rank FROM alert_scores a JOIN alert_rankings r USING (alert_id) "
        "ORDER BY r.rank LIMIT 5",
        "SELECT * FROM tier1_evaluation",
    ]
    with open_console(data_root, [NETWORK]) as (conn, _):
        for sql in hostile + ordinary:
            try:
                table = run_query(conn, sql, timeout_s=3)
            except (ConsoleRefused, duckdb.Error) as exc:
                outcome = "refused" if sql in hostile else "FAILED"
                probe.add("SQL console", sql or "(empty)", outcome, str(exc))
                continue
            except Exception as exc:
                probe.add("SQL console", sql or "(empty)", "FAILED", f"{type(exc).__name__}: {exc}")
                continue
            rows = 0 if table is None else table.num_rows
            if sql in ordinary:
                probe.add("SQL console", sql, "served", f"{rows} rows")
            else:
                probe.add("SQL console", sql, "FAILED", f"ran and returned {rows} rows")
    for path in ("/tmp/aml-probe-out.csv", "/tmp/aml-probe-out.parquet", "/tmp/aml-probe.db"):
        if Path(path).exists():
            probe.add("SQL console", f"file written: {path}", "FAILED", "a write escaped")


# -- api --------------------------------------------------------------------------------


def probe_api(probe: Probe, data_root: Path) -> None:
    from fastapi.testclient import TestClient

    from aml_pipeline.api.app import create_app

    app = create_app(data_root, [NETWORK, "bitcoin"], NETWORK)
    client = TestClient(app, base_url="http://127.0.0.1", raise_server_exceptions=False)
    day = SCORED[-1].isoformat()

    def expect(what: str, answer, served: bool) -> None:
        code = answer.status_code
        try:
            answer.json() if answer.content and answer.request.method != "HEAD" else None
            body_ok = True
        except ValueError:
            body_ok = answer.headers.get("content-type", "").startswith("text/html")
        if code >= 500 or not body_ok:
            probe.add("HTTP API", what, "FAILED", f"{code} {answer.text[:80]}")
        elif served and code < 300:
            probe.add("HTTP API", what, "served", str(code))
        elif not served and 400 <= code < 500:
            probe.add("HTTP API", what, "refused", f"{code} {answer.text[:80]}")
        else:
            probe.add("HTTP API", what, "FAILED", f"unexpected {code}")

    bad_dates = [
        "0001-01-01",
        "9999-12-31",
        "2025-02-30",
        "2025-13-01",
        "..%2f..%2fetc",
        "2025-03-05'; DROP TABLE x; --",
        "1e10",
        "-1",
        "\uff12\uff10\uff12\uff15-03-05",
    ]
    for route in ("/scores/alerts", "/rankings/alerts", "/scores/clusters", "/evaluations"):
        expect(f"GET {route}/latest", client.get(f"{route}/latest"), served=True)
        for bad in bad_dates:
            answer = client.get(f"{route}/{bad}")
            expect(f"GET {route}/{bad}", answer, served=False)
    ranges = [
        ("0001-01-01", "0001-01-01"),
        ("9999-12-31", "9999-12-31"),
        ("2025-03-10", "2025-03-01"),
        ("2000-01-01", "2099-12-31"),
        ("2025-03-01", "2025-03-10"),
    ]
    for route in ("/scores/alerts", "/scores/clusters", "/evaluations"):
        for start, end in ranges:
            answer = client.get(route, params={"start_date": start, "end_date": end})
            refused = start > end or end[:4] == "2099"  # reversed, or longer than allowed
            expect(f"GET {route}?{start}..{end}", answer, served=not refused)
    for address in ("x" * 20_000, "' OR 1=1 --", "%00", "a/../../b"):
        answer = client.get(f"/addresses/{address}/alerts")
        expect(f"GET /addresses/{address[:20]}.../alerts", answer, served=answer.status_code == 200)
    for network in ("ETHEREUM", "bitcoin", "../x", "a" * 1000, "ethereum;DROP", ""):
        answer = client.get("/dates/latest", params={"network": network})
        expect(f"GET /dates/latest?network={network[:20]}", answer, served=False)
    for name, value in [
        ("limit", "0"),
        ("limit", "-1"),
        ("limit", "10001"),
        ("limit", "1e9"),
        ("limit", "abc"),
        ("offset", "-1"),
        ("offset", str(10**13)),
        ("min_score", "nan"),
        ("min_score", "inf"),
        ("min_score", "x"),
    ]:
        answer = client.get(f"/scores/alerts/{day}", params={name: value})
        expect(f"GET /scores/alerts/{day}?{name}={value}", answer, served=False)
    for alert_id in ("x" * 300, "%00", "..%2F..%2F"):
        answer = client.get(f"/scores/alerts/{day}/{alert_id}")
        expect(f"GET /scores/alerts/{day}/{alert_id[:20]}", answer, served=False)
    for host in ("attacker.example", "", "127.0.0.1:80@evil.example", "[::1]", "localhost.evil"):
        answer = client.get("/scores/alerts/latest", headers={"Host": host})
        expect(f"Host: {host}", answer, served=False)
    for method in ("POST", "PUT", "DELETE", "PATCH", "TRACE"):
        expect(
            f"{method} /scores/alerts/latest",
            client.request(method, "/scores/alerts/latest"),
            served=False,
        )
    for route in ("/health", "/networks", "/models", "/scores/alerts/latest", "/runs/failures"):
        expect(f"HEAD {route}", client.head(route), served=True)
    expect("GET /docs (offline assets)", client.get("/docs"), served=True)
    guarded = TestClient(
        create_app(data_root, [NETWORK], NETWORK, token="s3cret"),
        base_url="http://127.0.0.1",
        raise_server_exceptions=False,
    )
    for header in (
        {},
        {"Authorization": "Bearer wrong"},
        {"Authorization": "Basic czNjcmV0"},
        {"Authorization": "Bearer"},
    ):
        expect(f"token {header or 'none'}", guarded.get("/models", headers=header), served=False)
    expect(
        "token right",
        guarded.get("/models", headers={"Authorization": "Bearer s3cret"}),
        served=True,
    )
    probe_real_server(probe, app)


@contextlib.contextmanager
def real_server(app) -> Iterator[int]:
    import uvicorn

    from aml_pipeline.api.server import server_config

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(server_config(app))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.01)
    try:
        yield sock.getsockname()[1]
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


def _answer(port: int, data: bytes, wait: float = 15) -> tuple[bytes, float]:
    start = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=wait) as conn:
        with contextlib.suppress(OSError):
            conn.sendall(data)
        chunks = []
        with contextlib.suppress(OSError):
            while chunk := conn.recv(65536):
                chunks.append(chunk)
    return b"".join(chunks), time.monotonic() - start


def probe_real_server(probe: Probe, app) -> None:
    head = b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n"
    with real_server(app) as port:
        big, _ = _answer(port, head + b"X-Big: " + b"a" * 8_000_000 + b"\r\n\r\n")
        outcome = "refused" if big.startswith(b"HTTP/1.1 400") else "FAILED"
        probe.add("HTTP API", "an 8 MB request header (real server)", outcome, big[:40].decode())
        closed, took = _answer(port, head, wait=30)
        outcome = "survived" if not closed and took < 15 else "FAILED"
        probe.add(
            "faults", "a half-sent request (real server)", outcome, f"closed after {took:.1f} s"
        )

        def hammer(results: list) -> None:
            try:
                answer, _ = _answer(port, head + b"Connection: close\r\n\r\n", wait=20)
                results.append(answer[:12])
            except OSError as exc:
                results.append(str(exc).encode())

        results: list[bytes] = []
        threads = [threading.Thread(target=hammer, args=(results,)) for _ in range(150)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        codes = Counter(r.decode(errors="replace") for r in results)
        bad = [
            c for c in codes if not (c.startswith("HTTP/1.1 200") or c.startswith("HTTP/1.1 503"))
        ]
        outcome = "FAILED" if bad or len(results) < 150 else "survived"
        probe.add("faults", "150 connections at once (real server)", outcome, str(dict(codes)))


# -- batches ----------------------------------------------------------------------------


def probe_batches(probe: Probe, home: Path) -> None:
    from aml_pipeline.contract.files import build_meta, parquet_bytes
    from aml_pipeline.contract.schema import BATCH_TABLES, META_FILE

    window = 7
    root = home / "batches"
    source = root / "sot"
    folder = source / "snapshots" / NETWORK / NEW_DAY / str(window)
    landed_from = home / "data" / "input" / NETWORK / "2025-03-08"
    clean = {p.name: p.read_bytes() for p in landed_from.iterdir() if p.name != "LANDING.json"}
    specs = {spec.name: spec for spec in BATCH_TABLES}
    tables = {
        name: pq.read_table(io.BytesIO(clean[spec.file])).to_pandas()
        for name, spec in specs.items()
        if spec.file in clean
    }
    for frame in tables.values():  # the day moved to NEW_DAY, as its SOT would send it
        if "processing_date" in frame:
            frame["processing_date"] = dt.date.fromisoformat(NEW_DAY)
    env = {
        "AML_DATA_ROOT": str(root / "data"),
        "AML_BATCH_SOURCE": "local",
        "AML_SOURCE_DIR": str(source),
    }

    def files_of(frames: dict[str, pd.DataFrame]) -> dict[str, bytes]:
        files = {specs[n].file: parquet_bytes(f) for n, f in frames.items()}
        counts = {n: len(f) for n, f in frames.items()}
        files[META_FILE] = build_meta(
            NETWORK, NEW_DAY, window, files, counts, generated_at=f"{NEW_DAY}T23:00:00Z"
        )
        return files

    def land(what: str, files: dict[str, bytes], dirs: tuple[str, ...] = ()) -> None:
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        for name, data in files.items():
            (folder / name).write_bytes(data)
        for name in dirs:
            (folder / name).unlink(missing_ok=True)
            (folder / name).mkdir()
        before = record_digest(root / "data")
        with patched_env(env):
            code, out = cli(
                "download", "--network", NETWORK, "--start-date", NEW_DAY, "--end-date", NEW_DAY
            )
        if code == 99 or "Traceback" in out:
            probe.add("bad batches", what, "FAILED", one_line(out))
        elif code == 0:
            probe.add("bad batches", what, "served", "landed: it conforms")
        elif record_digest(root / "data") != before:
            probe.add("bad batches", what, "FAILED", "refused, but the record changed")
        else:
            errors = (line.strip() for line in out.splitlines())
            problem = next((e for e in errors if e.startswith("ERROR ")), "")  # the report's
            probe.add("bad batches", what, "refused" if problem else "FAILED", problem or out)

    land("the clean batch", files_of(tables))
    kinds = {
        "NaN": math.nan,
        "+inf": math.inf,
        "-inf": -math.inf,
        "1e300": 1e300,
        "-3": -3.0,
        "5.0": 5.0,
    }
    for table, column in (
        ("alerts", "alert_confidence_score"),
        ("features", "total_in_usd"),
        ("money_flows", "amount_usd"),
        ("clusters", "total_volume_usd"),
    ):
        frame = tables[table]
        if column not in frame:
            column = next(c for c in frame.columns if pd.api.types.is_float_dtype(frame[c]))
        for label, value in kinds.items():
            corrupted = dict(tables)
            changed = frame.copy()
            changed[column] = changed[column].astype("float64")
            changed.loc[0, column] = value
            corrupted[table] = changed
            land(f"{table}.{column} = {label}", files_of(corrupted))
    for table, frame in tables.items():
        key = specs[table].key[-1]
        text = frame.copy()
        text[key] = text[key].astype(str)
        duplicated = pd.concat([frame, frame.iloc[[0]]], ignore_index=True)
        nulled = frame.copy()
        nulled[key] = nulled[key].astype(object)
        nulled.loc[0, key] = None
        extra = frame.assign(unexpected_column="x")
        dropped = frame.drop(columns=[specs[table].column_names[-1]])
        wrong_type = frame.copy()
        numeric = next((c for c in frame.columns if pd.api.types.is_numeric_dtype(frame[c])), None)
        if numeric:
            wrong_type[numeric] = wrong_type[numeric].astype(str)
            wrong_type.loc[0, numeric] = "not a number"
        for label, changed in (
            ("a duplicated row", duplicated),
            ("a null key", nulled),
            ("an extra column", extra),
            ("a missing column", dropped),
            (f"text in {numeric}", wrong_type),
        ):
            land(f"{table}: {label}", files_of({**tables, table: changed}))
    good = files_of(tables)
    for name in ("alerts.parquet", "features.parquet", META_FILE):
        data = good[name]
        for label, bad in (
            ("truncated", data[: len(data) // 2]),
            ("empty", b""),
            ("foreign bytes", np.random.default_rng(1).bytes(len(data))),
            ("one byte flipped", data[:100] + bytes([data[100] ^ 0xFF]) + data[101:]),
        ):
            land(f"{name} {label}", {**good, name: bad})
        land(f"{name} is a directory", {k: v for k, v in good.items() if k != name}, dirs=(name,))
        land(f"{name} missing", {k: v for k, v in good.items() if k != name})
    meta = json.loads(good[META_FILE])
    for field, value in (
        ("network", "bitcoin"),
        ("processing_date", "2025-03-13"),
        ("window_days", 30),
        ("batch_id", "x"),
    ):
        land(
            f"META.json {field} = {value}",
            {**good, META_FILE: json.dumps({**meta, field: value}).encode()},
        )


@contextlib.contextmanager
def patched_env(values: dict[str, str]) -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


# -- configuration ----------------------------------------------------------------------


def probe_configuration(probe: Probe, home: Path) -> None:
    land = ["download", "--network", NETWORK, "--start-date", "2025-03-21", "--end-date",
            "2025-03-21"]  # fmt: skip
    cases: list[tuple[str, dict[str, str], list[str], str]] = [
        (f"AML_{name}={value}", {f"AML_{name}": value}, land, f"AML_{name}")
        for name, value in (
            ("WINDOW_DAYS", "0"),
            ("WINDOW_DAYS", "abc"),
            ("BATCH_SOURCE", "ftp"),
            ("NETWORKS", "Bad Name"),
            ("NETWORKS", "a,a"),
            ("FAILURE_WEBHOOK", "ftp://x"),
            ("MIN_FREE_MB", "-1"),
            ("PARTITIONS_START", "2025-02-30"),
            ("LABELS_AS_OF", "tomorrow"),
            ("FETCH_WORKERS", "0"),
            ("SCHEDULE_HOUR", "24"),
            ("EXPLAIN_COVERAGE", "-2"),
            ("API_TOKEN", ""),
        )
        if value
    ]
    networks = home / "networks"
    files = {
        "bad yaml": "window_days: [",
        "an unknown key": "colour: blue\n",
        "a bad value": "window_days: 0\n",
        "not a mapping": "- 1\n",
    }
    for label, text in files.items():
        cases.append((f"networks/{NETWORK}.yaml with {label}", {"__file__": text}, land, ".yaml"))
    cases.append(("serve on 0.0.0.0 without a token", {}, ["serve", "--host", "0.0.0.0"], "TOKEN"))
    cases.append(("a network file named 'Bad Name.yaml'", {"__bad_name__": "1"}, land, "Bad Name"))
    for what, env, args, named in cases:
        file_text, bad_name = env.pop("__file__", None), env.pop("__bad_name__", None)
        networks.mkdir(exist_ok=True)
        if file_text is not None:
            (networks / f"{NETWORK}.yaml").write_text(file_text)
        if bad_name:
            (networks / "Bad Name.yaml").write_text("window_days: 7\n")
        with patched_env(env):
            code, out = cli(*args)
        shutil.rmtree(networks)
        line = line_with(out, named)
        if code in (0, 99) or "Traceback" in out or named not in out:
            probe.add("configuration", what, "FAILED", line or f"exit {code}")
        else:
            probe.add("configuration", what, "refused", line)


# -- faults -----------------------------------------------------------------------------


def _started(home: Path) -> list:
    import dagster as dg

    with dg.DagsterInstance.from_config(str(home)) as instance:
        return instance.get_runs(filters=dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTED]))


@contextlib.contextmanager
def corrupted(path: Path, data: bytes) -> Iterator[None]:
    """``path`` holds ``data`` within the block, then its own bytes again."""
    saved = path.read_bytes()
    path.write_bytes(data)
    try:
        yield
    finally:
        path.write_bytes(saved)


def refused(probe: Probe, what: str, code: int, out: str, name: str) -> None:
    """A fault that the command must refuse, naming ``name``, without a traceback."""
    outcome = "refused" if name in out and code not in (0, 99) else "FAILED"
    probe.add("faults", what, outcome, line_with(out, name))


def probe_faults(probe: Probe, home: Path) -> None:
    from fastapi.testclient import TestClient

    from aml_pipeline.api.app import create_app
    from aml_pipeline.sources.landing import verify_landed
    from aml_pipeline.storage.objects import LocalStorage

    data = home / "data"
    days = ["--start-date", "2025-03-09", "--end-date", "2025-03-10"]
    for delay in (4.0, 8.0, 12.0):  # kill -9 at different moments of a ranged command
        command = [sys.executable, "-m", "aml_pipeline.cli", "score", "--network", NETWORK, *days]
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(delay)
        process.send_signal(signal.SIGKILL)
        process.wait()
        code, out = cli("score", "--network", NETWORK, *days)
        whole = all(
            (data / "output" / NETWORK / d / "alert_scores.parquet").is_file()
            for d in ("2025-03-09", "2025-03-10")
        )
        left = _started(home)
        outcome = "survived" if code == 0 and whole and not left else "FAILED"
        probe.add(
            "faults",
            f"kill -9 of `score` after {delay:g} s, then `score` again",
            outcome,
            f"exit {code}, runs left STARTED: {len(left)}",
        )
    day_key = f"output/{NETWORK}/2025-03-10"
    for delay in (0.05, 0.2, 0.5, 1.0, 2.0):  # kill -9 of a publisher mid-publication
        script = (
            "import itertools\n"
            "from aml_pipeline.storage.objects import LocalStorage\n"
            f"s = LocalStorage({str(data)!r})\n"
            "for i in itertools.count():\n"
            "    body = b'%d' % i * 200000\n"
            f"    s.publish_dir({day_key!r}, {{'a.bin': body, 'b.bin': body}})\n"
        )
        process = subprocess.Popen([sys.executable, "-c", script])
        time.sleep(delay)
        process.send_signal(signal.SIGKILL)
        process.wait()
        storage = LocalStorage(data)
        folder = storage.resolve_dir(day_key)
        a, b = (storage.read_bytes(f"{folder}/{name}") for name in ("a.bin", "b.bin"))
        outcome = "survived" if a == b and len(a) > 0 else "FAILED"
        probe.add(
            "faults",
            f"kill -9 of a publisher after {delay:g} s",
            outcome,
            "the day is one whole version" if a == b else "a mix of versions",
        )
    code, out = cli(
        "score",
        "--network",
        NETWORK,
        "--start-date",
        "2025-03-10",
        "--end-date",
        "2025-03-10",
        "--no-ingest",
    )  # restores the day
    probe.add(
        "faults",
        "re-publishing the day after the kills",
        "survived" if code == 0 else "FAILED",
        one_line(out),
    )

    serial = {"AML_PARALLEL_RUNS": "1"}  # the faults are injected in this process
    land = ["download", "--network", NETWORK, "--start-date", "2025-03-13", "--end-date",
            "2025-03-14"]  # fmt: skip
    original = LocalStorage.free_bytes
    LocalStorage.free_bytes = lambda self: 100 * 2**20  # type: ignore[method-assign]
    before = record_digest(data)
    try:
        with patched_env(serial):
            code, out = cli(*land)
    finally:
        LocalStorage.free_bytes = original  # type: ignore[method-assign]
    clean = code not in (0, 99) and "too little space" in out and record_digest(data) == before
    outcome = "refused" if clean else "FAILED"
    probe.add("faults", "a disk without room for the range", outcome, line_with(out, "space"))

    publish = LocalStorage.publish_dir

    def full(self, key, files):
        if key.endswith("2025-03-14"):
            raise OSError(errno.ENOSPC, "No space left on device")
        publish(self, key, files)

    LocalStorage.publish_dir = full  # type: ignore[method-assign]
    try:
        with patched_env(serial):
            code, out = cli(*land)
    finally:
        LocalStorage.publish_dir = publish  # type: ignore[method-assign]
    landed = (data / "input" / NETWORK / "2025-03-13" / "META.json").is_file()
    none = not (data / "input" / NETWORK / "2025-03-14").exists()
    named = "2025-03-13..2025-03-13 landed" in out
    outcome = "survived" if landed and none and named else "FAILED"
    what = "the disk full on the second day of a landing"
    probe.add("faults", what, outcome, line_with(out, "No space"))
    code, out = cli(*land)
    outcome = "survived" if code == 0 else "FAILED"
    probe.add("faults", "the same landing with room again", outcome, one_line(out))

    score = ["score", "--network", NETWORK, "--start-date", "2025-03-10", "--end-date",
             "2025-03-10"]  # fmt: skip
    registry = data / "trained_models" / NETWORK / "model_metadata.json"
    with corrupted(registry, registry.read_bytes()[:40]):
        code, out = cli(*score, "--no-ingest")
        refused(probe, "a truncated model registry, then `score`", code, out, registry.name)
        client = TestClient(create_app(data, [NETWORK], NETWORK), base_url="http://127.0.0.1")
        answer = client.get("/models")
        outcome = "refused" if answer.status_code == 503 else "FAILED"
        what = "a truncated model registry, then GET /models"
        probe.add("faults", what, outcome, f"{answer.status_code} {answer.text[:80]}")

    model = next((data / "trained_models" / NETWORK).glob("alert_scorer_v*.txt"))
    good = model.read_bytes()
    middle = len(good) // 2
    with corrupted(model, good[:middle] + bytes([good[middle] ^ 0x01]) + good[middle + 1 :]):
        code, out = cli(*score, "--no-ingest")
        refused(probe, "a flipped byte in the champion model file", code, out, model.name)

    landed_file = (data / "input" / NETWORK / "2025-03-10" / "alerts.parquet").resolve()
    landed_file.write_bytes(landed_file.read_bytes()[:1000])
    code, out = cli(*score)
    healed = not verify_landed(LocalStorage(data / "input"), NETWORK, dt.date(2025, 3, 10))
    outcome = "survived" if code == 0 and healed else "FAILED"
    what = "a landed file truncated on disk, then `score` (lands the day again)"
    probe.add("faults", what, outcome, one_line(out))

    table = data / "warehouse" / NETWORK / "raw_alerts" / "2025-03-10.parquet"
    with corrupted(table, table.read_bytes()[:1000]):
        code, out = cli(*score, "--no-ingest")
        what = "a warehouse partition truncated on disk, then `score --no-ingest`"
        refused(probe, what, code, out, table.name)

    blocker = data / "warehouse" / NETWORK / "raw_alerts" / "2025-03-21.parquet" / "in-the-way"
    blocker.mkdir(parents=True)
    webhook = {"AML_FAILURE_WEBHOOK": "http://127.0.0.1:9/unreachable", **serial}
    with patched_env(webhook):
        code, out = cli("download", "--network", NETWORK, "--start-date", "2025-03-21",
                        "--end-date", "2025-03-21")  # fmt: skip
    shutil.rmtree(blocker.parent)
    failures = pq.read_table(data / "monitoring" / "run_failures").to_pylist()
    recorded = any(row["first_day"] == dt.date(2025, 3, 21) for row in failures)
    ok = code not in (0, 99) and recorded and "webhook was not reached" in out
    what = "a failed run with an unreachable webhook"
    probe.add("faults", what, "survived" if ok else "FAILED", line_with(out, "webhook"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", action="store_true", help="keep the scratch project")
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="aml-probe-"))
    started = time.monotonic()
    probe = Probe()
    try:
        build_project(home)
        print(f"project built in {time.monotonic() - started:.0f} s", flush=True)
        probe_console(probe, home / "data")
        probe_api(probe, home / "data")
        probe_batches(probe, home)
        probe_configuration(probe, home)
        probe_faults(probe, home)
    finally:
        if not args.keep:
            shutil.rmtree(home, ignore_errors=True)
    print(f"\n{probe.table()}\n\nprobe took {time.monotonic() - started:.0f} s")


if __name__ == "__main__":
    main()
