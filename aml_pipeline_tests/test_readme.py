"""The command blocks of the README and of every page under ``docs/``, run as written
(``make readme-check``; CI runs it, ``make test`` leaves it out: it takes about two
minutes; that every block is named runs in both).

Every fenced ``bash`` block of those pages carries a ``<!-- readme-check: NAME -->`` line
(``skip (why)`` for the few that cannot run here, such as the quick start itself); the named
blocks, each name once over all pages, run with bash, in ``ORDER``, in a fresh project
folder whose ``.venv`` is this one, on the simulator's small profile.
``../shared/extdata/amlsim_10k/`` next to that folder holds AMLSim-shaped files made from
simulated transfers. The HTTP examples run against ``aml-pipeline serve`` on a free port
(the only change made to a block: that port for 8000, and a temporary folder for
``/tmp/``).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pandas as pd
import pytest

from aml_pipeline_tests.conftest import small_source

ROOT = Path(__file__).resolve().parents[1]
#: The pages whose command blocks run: the README, then every page of docs/.
PAGES = (ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")))
ORDER = ("walkthrough", "import", "ab", "sql", "api", "api-ranges")
MARKER = re.compile(r"<!-- readme-check: (\S+)(?: \(.*\))? -->")
AMLSIM_FIRST, AMLSIM_LAST = dt.date(2017, 1, 1), dt.date(2017, 1, 14)


def page_blocks(page: Path) -> dict[str, str]:
    """The ``bash`` blocks of one page by their marker's name; a block without one is an
    error (a new example must be named here and run, or say why not)."""
    blocks: dict[str, str] = {}
    lines = page.read_text().splitlines()
    for number, line in enumerate(lines):
        if line.strip() != "```bash":
            continue
        marker = MARKER.fullmatch(lines[number - 1].strip()) if number else None
        where = f"{page.relative_to(ROOT)}:{number + 1}"
        assert marker, f"{where}: a bash block without a readme-check marker"
        end = lines.index("```", number + 1)
        name = marker.group(1)
        if name != "skip":
            assert name not in blocks, f"{where}: a second block named {name!r}"
            blocks[name] = "\n".join(lines[number + 1 : end]) + "\n"
    return blocks


def all_blocks() -> dict[str, str]:
    """Every page's named blocks; a name used on two pages is an error."""
    blocks: dict[str, str] = {}
    for page in PAGES:
        for name, block in page_blocks(page).items():
            assert name not in blocks, f"{page.relative_to(ROOT)}: {name!r} is named twice"
            blocks[name] = block
    return blocks


def write_amlsim_files(folder: Path) -> None:
    """AMLSim's two files (transfers with its label columns, SAR accounts) covering
    ``AMLSIM_FIRST`` and the window before it through ``AMLSIM_LAST``."""
    sim = small_source().simulator("ethereum")
    shift = dt.date(2025, 1, 14) - AMLSIM_LAST
    t = sim.window(dt.date(2025, 1, 14), (AMLSIM_LAST - AMLSIM_FIRST).days + 8)
    stamps = pd.to_datetime(t["timestamp_ms"], unit="ms", utc=True) - pd.Timedelta(shift)
    folder.mkdir(parents=True)
    pd.DataFrame(
        {
            "tran_id": range(len(t)),
            "orig_acct": t["from_address"],
            "bene_acct": t["to_address"],
            "tx_type": "TRANSFER",
            "base_amt": t["amount_usd"],
            "tran_timestamp": stamps.dt.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "is_sar": "False",
            "alert_id": "-1",
        }
    ).to_csv(folder / "transactions.csv.gz", index=False)
    illicit = sorted(sim.illicit_actors(dt.date(2025, 1, 1), dt.date(2025, 1, 14)))
    pd.DataFrame({"ACCOUNT_ID": illicit, "EVENT_DATE": "20170110"}).to_csv(
        folder / "sar_accounts.csv", index=False
    )


def _run(block: str, name: str, project: Path, env: dict[str, str]) -> None:
    result = subprocess.run(["bash", "-euo", "pipefail", "-c", block], cwd=project, env=env,
                            capture_output=True, text=True, timeout=600)  # fmt: skip
    assert result.returncode == 0, (
        f"block {name!r} failed ({result.returncode}):\n{block}\n"
        f"--- stdout\n{result.stdout[-3000:]}\n--- stderr\n{result.stderr[-3000:]}"
    )


def test_every_block_of_every_page_is_run_or_says_why_not():
    assert sorted(all_blocks()) == sorted(ORDER)
    assert len(PAGES) > 1, "the docs/ pages are missing"


@contextlib.contextmanager
def serving(project: Path, env: dict[str, str], port: int) -> Iterator[None]:
    """``aml-pipeline serve`` on ``port`` until the block is done."""
    command = [".venv/bin/aml-pipeline", "serve", "--host", "127.0.0.1", "--port", str(port)]
    server = subprocess.Popen(command, cwd=project, env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                    break
            assert server.poll() is None and time.monotonic() < deadline, "serve did not start"
            time.sleep(0.3)
        yield
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(20)


@pytest.mark.readme
def test_the_readme_examples_run_as_written(tmp_path, free_tcp_port):
    blocks = all_blocks()
    project = tmp_path / "work" / "project"
    project.mkdir(parents=True)
    (project / ".venv").symlink_to(sys.prefix)
    shutil.copy(ROOT / "dagster.yaml", project / "dagster.yaml")
    write_amlsim_files(tmp_path / "work" / "shared" / "extdata" / "amlsim_10k")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AML_", "DAGSTER_"))}
    env |= {"DAGSTER_HOME": str(project), "AML_SIM_PROFILE": "small"}
    port = free_tcp_port
    for name in ORDER:
        block = blocks[name].replace("/tmp/", f"{tmp_path}/")
        if not name.startswith("api"):
            _run(block, name, project, env)
            continue
        with serving(project, env, port):
            _run(block.replace("127.0.0.1:8000", f"127.0.0.1:{port}"), name, project, env)
    assert (tmp_path / "labels.parquet").is_file() and (tmp_path / "aml.duckdb").is_file()
    assert _days(project / "data" / "output" / "ethereum") == _range("2025-01-15", "2025-01-28")
    assert _days(project / "data" / "input" / "amlsim") == _range("2017-01-01", "2017-01-14")


def _days(folder: Path) -> list[str]:
    """The days published or landed in ``folder`` (not its hidden version folders)."""
    return sorted(p.name for p in folder.iterdir() if re.fullmatch(r"\d{4}-\d\d-\d\d", p.name))


def _range(first: str, last: str) -> list[str]:
    return [str(d) for d in pd.date_range(first, last).date]
