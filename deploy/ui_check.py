"""The Dagster UI renders its main pages without errors (``make ui-check``).

Starts ``dagster-webserver`` on 127.0.0.1 (a free port) with the project's instance
(``DAGSTER_HOME``, the project root) and ``workspace.yaml``, waits until the code location
is loaded (GraphQL ``workspaceOrError``; a load error fails the check) and opens three pages
in headless Chromium (Debian's ``chromium``; installed with apt-get when missing):

- ``graph``: the lineage graph of the asset group ``ethereum``,
- ``lineage``: the global asset lineage (every group),
- ``partitions``: the partitions page of the asset ``ethereum/alert_scores``,
- ``tier3``: the events of ``ethereum/tier3_evaluation``, one per day with that day's own
  figures (``in_sample`` says whether the model was trained on it),
- ``runs``: the Runs tab of ``ethereum_daily_job``,
- ``check``: the history of the check ``conforms_to_contract`` of ``ethereum/raw_alerts``,
  one row per day,
- ``automation``: the Automation page (the network's schedule and sensors).

Then it checks what the UI tells through the same GraphQL API the pages read: the daily
job's Runs tab lists every run of that job (the command line's included); the newest
materialized day of ``ethereum/alert_scores`` shows that day's own row count (the rows of
its published file, not its run's total); every result of that check belongs to a day and
every materialized day has one; and no asset needs config, so "Materialize all" opens the
backfill dialog, not a launchpad that cannot launch.

Each page's screenshot is saved as ``data/ui-check/{page}.png`` (with its rendered DOM,
``{page}.html``, and Chromium's log, ``{page}.chromium.log``; the webserver's output goes to
``webserver.log``). A page fails if its rendered text shows an error (an error boundary, a
Python or GraphQL error, an empty graph, a missing asset ...), if the browser console
reports a GraphQL error or an uncaught exception, or if one of the page's own markers is
missing, so a blank or wrong page fails too. It prints one line per page and exits non-zero
on any failure. An empty instance (no runs) is fine.

Not part of ``make test``: it needs Chromium and the webserver (15-30 s).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
LOCATION = "aml_pipeline"
GROUP = "ethereum"
ASSET = "ethereum/alert_scores"
CHECK = "conforms_to_contract"
LOCATIONS = """
{
  workspaceOrError {
    __typename
    ... on PythonError { message cause { message } }
    ... on Workspace {
      locationEntries {
        name
        loadStatus
        locationOrLoadError { __typename ... on PythonError { message cause { message } } }
      }
    }
  }
}"""
# Texts (lower case) that a healthy page never shows: Dagster's error boundary ("Sorry, ...
# can't be displayed. Please report this error ..."), Python errors and tracebacks, the
# GraphQL error toast, load errors, the empty states of a missing group, asset or schedule,
# and Chromium's own error page.
ERROR_TEXTS = (
    "something went wrong",
    "can't be displayed",
    "please report this error",
    "unexpected error",
    "unexpected graphql error",
    "pythonerror",
    "traceback (most recent call last)",
    "dagsterusercodeloaderror",
    "an error occurred",
    "could not load",
    "error loading",
    "failed to fetch",
    "this graph is empty",
    "no assets were found",
    "no matching materialized assets",
    "no automations",
    "this site can\u2019t be reached",
    "err_connection",
)
# Headless without a sandbox (root), a fixed window; the console log goes to stderr.
CHROMIUM_FLAGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
                  "--no-default-browser-check", "--hide-scrollbars", "--lang=en-US",
                  "--window-size=1600,1000", "--enable-logging=stderr", "--v=0"]  # fmt: skip
# Browser console messages that mean an error (Dagster logs "[GraphQL error]" on errors).
CONSOLE_ERRORS = re.compile(r"^(\[GraphQL error\]|Uncaught|Unexpected GraphQL error)")
CONSOLE_LINE = re.compile(r':CONSOLE[^\]]*\] "(.*)", source: ')


@dataclass(frozen=True)
class Page:
    """A UI page, and the patterns (regexes) that its rendered text must all contain."""

    name: str
    path: str
    markers: tuple[str, ...]


def pages(asset: str) -> list[Page]:
    """The checked pages (routes of Dagster 1.13's UI)."""
    return [
        Page(
            "graph",
            f"/locations/{LOCATION}/asset-groups/{GROUP}",
            (r"\bLineage\b", r"\braw_alerts\b", r"\blanded_batch\b"),
        ),
        Page(
            "partitions",
            f"/assets/{asset}?view=partitions",
            (
                r"\d+ Partitions? Selected",
                r"Materialized \(\d+\)",
                r"Missing \(\d+\)",
                r"\b20\d\d-\d\d-\d\d\b",
            ),
        ),
        Page("lineage", "/asset-groups", (r"\bethereum\b", r"\bethereum_validation\b")),
        Page("tier3", f"/assets/{GROUP}/tier3_evaluation?view=events", (r"\btier3_evaluation\b",)),
        Page("runs", f"/locations/{LOCATION}/jobs/{GROUP}_daily_job/runs", (r"\bRuns\b",)),
        Page(
            "check",
            f"/assets/{GROUP}/raw_alerts?view=checks&checkDetail={CHECK}",
            (rf"\b{CHECK}\b", r"\b20\d\d-\d\d-\d\d\b"),
        ),
        Page(
            "automation",
            "/automation",
            (r"\bethereum_daily_schedule\b", r"\bethereum_new_batch_sensor\b"),
        ),
    ]


class _VisibleText(HTMLParser):
    """The text of an HTML document without its scripts and styles."""

    SKIP = frozenset({"script", "style", "noscript", "template"})

    def __init__(self) -> None:
        super().__init__()
        self.parts: list[str] = []
        self._skipping = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self.SKIP:
            self._skipping += 1

    def handle_endtag(self, tag: str) -> None:
        if tag in self.SKIP and self._skipping:
            self._skipping -= 1

    def handle_data(self, data: str) -> None:
        if not self._skipping:
            self.parts.append(data)


def visible_text(dom: str) -> str:
    """``dom``'s visible text, whitespace collapsed."""
    parser = _VisibleText()
    parser.feed(dom)
    return " ".join(" ".join(parser.parts).replace("\u200b", " ").split())


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def kill_group(process: subprocess.Popen, grace: float = 20) -> None:
    """Stop ``process`` and everything in its process group: SIGTERM, then SIGKILL."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(grace)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)  # children that outlived their parent
    process.wait(10)


def ensure_chromium() -> str:
    """The path of ``chromium``; installed with apt-get (Debian's package) when missing."""
    found = shutil.which("chromium")
    if found:
        return found
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        raise SystemExit("chromium is missing: install it (apt-get install chromium)")
    print("chromium is missing: apt-get install chromium ...", flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-q", "chromium"]
    for command in (install, ["apt-get", "update", "-q"], install):
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=1200)
        found = shutil.which("chromium")
        if done.returncode == 0 and found:
            return found
    raise SystemExit(f"could not install chromium: {(done.stderr or done.stdout)[-1500:]}")


@contextlib.contextmanager
def webserver(workspace: Path, port: int, log: Path) -> Iterator[subprocess.Popen]:
    """``dagster-webserver`` on 127.0.0.1:``port`` in its own process group, output to
    ``log``; the group (the webserver and its code server) is killed on exit."""
    env = {**os.environ}
    env.setdefault("DAGSTER_HOME", str(ROOT))
    command = [str(BIN / "dagster-webserver"), "-h", "127.0.0.1", "-p", str(port),
               "-w", str(workspace)]  # fmt: skip
    with open(log, "wb") as out:
        process = subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        yield process
    finally:
        kill_group(process)


def graphql(url: str, query: str, variables: dict | None = None) -> dict:
    """The ``data`` of a GraphQL query; SystemExit on an HTTP or GraphQL error."""
    request = urllib.request.Request(
        f"{url}/graphql",
        data=json.dumps({"query": query, "variables": variables or {}}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        body = json.load(response)
    if body.get("errors"):
        raise SystemExit(f"GraphQL errors: {body['errors']}")
    return body["data"]


def wait_started(url: str, process: subprocess.Popen, deadline: float, log: Path) -> None:
    """Wait until the webserver answers ``/server_info``."""
    while True:
        with (
            contextlib.suppress(OSError),
            urllib.request.urlopen(f"{url}/server_info", timeout=5) as response,
        ):
            if response.status == 200:
                return
        if process.poll() is not None:
            raise SystemExit(f"the webserver exited ({process.returncode}); see {log}")
        if time.monotonic() > deadline:
            raise SystemExit(f"the webserver did not answer {url}/server_info; see {log}")
        time.sleep(0.5)


def error_message(error: dict) -> str:
    """A GraphQL ``PythonError``'s message and its cause's, on one line."""
    messages = [error["message"], *([error["cause"]["message"]] if error.get("cause") else [])]
    return " ".join(" ".join(messages).split())[:600]


def wait_location(url: str, deadline: float) -> str | None:
    """Wait until every code location has finished loading; its load error, if any."""
    while True:
        with contextlib.suppress(OSError):
            workspace = graphql(url, LOCATIONS)["workspaceOrError"]
            if workspace["__typename"] == "PythonError":
                return error_message(workspace)
            entries = workspace.get("locationEntries") or []
            if entries and all(entry["loadStatus"] == "LOADED" for entry in entries):
                errors = [
                    f"{entry['name']}: {error_message(entry['locationOrLoadError'])}"
                    for entry in entries
                    if entry["locationOrLoadError"]["__typename"] == "PythonError"
                ]
                if not any(entry["name"] == LOCATION for entry in entries):
                    errors.append(f"no code location {LOCATION!r}")
                return "; ".join(errors) or None
        if time.monotonic() > deadline:
            return "the code location did not load in time"
        time.sleep(1)


def render(chromium: str, url: str, screenshot: Path, budget_ms: int) -> tuple[str, str]:
    """Load ``url`` in headless Chromium, save a screenshot; (rendered DOM, browser log).

    ``--virtual-time-budget`` lets the React app fetch and render before the DOM is dumped
    and the screenshot taken (virtual time runs faster than the clock when the page idles).
    """
    with tempfile.TemporaryDirectory(prefix="ui-check-chromium-") as profile:
        command = [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}",
                   f"--virtual-time-budget={budget_ms}", f"--screenshot={screenshot}",
                   "--dump-dom", url]  # fmt: skip
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                   text=True, start_new_session=True)  # fmt: skip
        try:
            dom, log = process.communicate(timeout=budget_ms / 1000 + 90)
        except subprocess.TimeoutExpired:
            raise RuntimeError("chromium did not finish in time") from None
        finally:
            kill_group(process, grace=5)  # its helper processes, if any are left
    if process.returncode != 0:
        raise RuntimeError(f"chromium exited {process.returncode}: {log[-500:]}")
    return dom, log


def problems(page: Page, text: str, browser_log: str) -> list[str]:
    """Why ``page``'s rendered ``text`` (and the browser's console log) is not healthy."""
    found = []
    lower = text.lower()
    for error in ERROR_TEXTS:
        at = lower.find(error)
        if at >= 0:
            found.append(f'shows "{text[at : at + 100]}"')
    for message in CONSOLE_LINE.findall(browser_log):
        if CONSOLE_ERRORS.match(message):
            found.append(f"console: {message[:200]}")
    missing = [marker for marker in page.markers if not re.search(marker, text)]
    if missing:
        shown = "" if found else f' (page text: "{text[:200]}")'
        found.append(f"lacks {', '.join(missing)}{shown}")
    return found


def check_page(chromium: str, url: str, page: Page, out: Path, budget_ms: int) -> str | None:
    """Render ``page`` and save its screenshot and DOM; why it failed, or None."""
    screenshot = out / f"{page.name}.png"
    screenshot.unlink(missing_ok=True)
    try:
        dom, browser_log = render(chromium, url + page.path, screenshot, budget_ms)
    except RuntimeError as error:
        return str(error)
    (out / f"{page.name}.html").write_text(dom)
    (out / f"{page.name}.chromium.log").write_text(browser_log)
    found = problems(page, visible_text(dom), browser_log)
    if not screenshot.is_file() or screenshot.stat().st_size == 0:
        found.append("no screenshot")
    return "; ".join(found) or None


JOB_RUNS = """
query JobRuns($job: String!, $location: String!) {
  pipelineOrError(params: {pipelineName: $job, repositoryName: "__repository__",
                           repositoryLocationName: $location}) {
    __typename
    ... on Pipeline { runs(limit: 5000) { runId } }
  }
  runsOrError(filter: {pipelineName: $job}, limit: 5000) {
    ... on Runs { results { runId } }
  }
}"""
NEWEST_DAY = """
query NewestDay($path: [String!]!) {
  assetOrError(assetKey: {path: $path}) {
    ... on Asset {
      assetMaterializations(limit: 1) {
        partition
        metadataEntries { label ... on IntMetadataEntry { intValue } }
      }
    }
  }
}"""


def job_runs_listed(url: str, job: str) -> tuple[str | None, str]:
    """Whether the job's Runs tab lists every run of the job; (failure, what was seen)."""
    data = graphql(url, JOB_RUNS, {"job": job, "location": LOCATION})
    pipeline = data["pipelineOrError"]
    if pipeline["__typename"] != "Pipeline":
        return f"no job {job}: {pipeline['__typename']}", ""
    listed = {run["runId"] for run in pipeline["runs"]}
    every = {run["runId"] for run in data["runsOrError"]["results"]}
    if listed != every:
        return f"its Runs tab lists {len(listed)} of the job's {len(every)} runs", ""
    return None, f"its Runs tab lists all {len(every)} runs of the job"


def day_row_count(url: str, data_root: Path) -> tuple[str | None, str]:
    """Whether the newest materialized day of alert_scores shows its own row count."""
    path = ASSET.split("/")
    found = graphql(url, NEWEST_DAY, {"path": path})["assetOrError"]
    events = found.get("assetMaterializations") or []
    if not events:
        return None, "no materialized day yet"
    day = events[0]["partition"]
    shown = {e["label"]: e.get("intValue") for e in events[0]["metadataEntries"]}
    file = data_root / "output" / path[0] / day / f"{path[1]}.parquet"
    rows = pq.read_metadata(file).num_rows
    if shown.get("dagster/row_count") != rows:
        return f"{day} shows {shown.get('dagster/row_count')} rows, its file has {rows}", ""
    return None, f"{day} shows its own {rows} rows"


CHECK_DAYS = """
query CheckDays($path: [String!]!, $check: String!) {
  assetCheckExecutions(assetKey: {path: $path}, checkName: $check, limit: 5000) {
    partition
  }
  assetNodeOrError(assetKey: {path: $path}) {
    ... on AssetNode { partitionStats { numMaterialized } }
  }
}"""
CONFIG_FIELDS = """
{
  assetNodes { assetKey { path } configField { isRequired } }
}"""


def check_per_day(url: str) -> tuple[str | None, str]:
    """Whether every result of the raw alerts' contract check belongs to a day, and every
    materialized day has one (the check's history reads day by day)."""
    found = graphql(url, CHECK_DAYS, {"path": [GROUP, "raw_alerts"], "check": CHECK})
    days = [e["partition"] for e in found["assetCheckExecutions"]]
    stats = found["assetNodeOrError"].get("partitionStats") or {}
    materialized = stats.get("numMaterialized", 0)
    if None in days:
        return f"{days.count(None)} of {len(days)} results belong to no day", ""
    if len(set(days)) != materialized:
        return f"results on {len(set(days))} days, {materialized} days materialized", ""
    return None, f"{len(days)} results, on each of the {materialized} materialized days"


def materialize_all_needs_no_config(url: str) -> tuple[str | None, str]:
    """Whether any asset requires config: then the UI's "Materialize all" opens a launchpad
    instead of the backfill dialog (Dagster's own rule, ``configField.isRequired``)."""
    nodes = graphql(url, CONFIG_FIELDS)["assetNodes"]
    needing = [
        "/".join(n["assetKey"]["path"]) for n in nodes if (n["configField"] or {}).get("isRequired")
    ]
    if needing:
        return f"{len(needing)} asset(s) need config: {needing[:3]}", ""
    return None, f"none of the {len(nodes)} assets needs config"


def report(name: str, url: str, failure: str | None, ok: str) -> None:
    """One result line: what, where, OK or FAIL, and why."""
    print(f"{name:<11} {'FAIL' if failure else 'OK':<4} {url}  {failure or ok}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workspace", type=Path, default=ROOT / "workspace.yaml")
    parser.add_argument("--asset", default=ASSET, help="asset key of the partitions page")
    parser.add_argument("--out", type=Path, default=ROOT / "data" / "ui-check")
    parser.add_argument("--startup-timeout", type=float, default=120, help="seconds")
    parser.add_argument("--budget", type=int, default=20000, help="virtual ms per page")
    args = parser.parse_args()
    began = time.monotonic()
    args.out.mkdir(parents=True, exist_ok=True)
    chromium = ensure_chromium()
    port, log = free_port(), args.out / "webserver.log"
    url = f"http://127.0.0.1:{port}"
    failures = 0
    with webserver(args.workspace.resolve(), port, log) as process:
        deadline = time.monotonic() + args.startup_timeout
        wait_started(url, process, deadline, log)
        load_error = wait_location(url, deadline)
        report("location", f"{url}/graphql", load_error, f"{LOCATION} loaded")
        failures += bool(load_error)
        for page in pages(args.asset):
            reason = check_page(chromium, url, page, args.out, args.budget)
            failures += bool(reason)
            report(page.name, url + page.path, reason, "no error text; its markers shown")
        data_root = Path(os.environ.get("AML_DATA_ROOT", ROOT / "data"))
        for name, (reason, seen) in (
            ("job runs", job_runs_listed(url, f"{GROUP}_daily_job")),
            ("day rows", day_row_count(url, data_root)),
            ("check days", check_per_day(url)),
            ("no config", materialize_all_needs_no_config(url)),
        ):
            failures += bool(reason)
            report(name, f"{url}/graphql", reason, seen)
    seconds = time.monotonic() - began
    if failures:
        raise SystemExit(
            f"ui-check: FAIL ({failures} failed, {seconds:.0f} s; screenshots, "
            f"DOMs and the webserver log in {args.out})"
        )
    print(f"ui-check: OK ({seconds:.0f} s; screenshots in {args.out})")


if __name__ == "__main__":
    main()
