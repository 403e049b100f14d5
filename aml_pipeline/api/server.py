"""Running the results API with uvicorn (``aml-pipeline serve``)."""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import uvicorn

from aml_pipeline.api.app import create_app
from aml_pipeline.settings import Settings


def serve(
    host: str,
    port: int,
    data_root: str | os.PathLike[str],
    default_network: str,
    networks: Sequence[str] | None = None,
) -> None:
    """Serve the API until interrupted; ``networks`` defaults to the AML_NETWORKS setting,
    the allowed Host names are AML_API_ALLOWED_HOSTS."""
    settings = Settings.from_env()
    if not is_loopback(host) and not settings.api_token:
        raise SystemExit(
            f"refusing to serve the results on {host}, reachable from other machines, without "
            "a bearer token: set AML_API_TOKEN (and AML_API_ALLOWED_HOSTS to the name "
            "clients use)"
        )
    configured = list(networks) if networks is not None else settings.networks
    app = create_app(
        Path(data_root),
        configured,
        default_network,
        settings.api_allowed_hosts,
        settings.api_token,
    )
    uvicorn.Server(server_config(app, host, port)).run()


#: The largest request head (request line and headers) the server reads; beyond: 400.
MAX_HEAD_BYTES = 64 * 1024
#: Seconds an idle keep-alive connection is held.
KEEP_ALIVE_S = 5
#: Connections served at once; beyond, 503 at once rather than a growing queue.
MAX_CONNECTIONS = 64


def server_config(app: Any, host: str = "127.0.0.1", port: int = 8000) -> uvicorn.Config:
    """uvicorn's configuration with bounds: the pure-Python h11 parser (httptools has no
    limit on a request's head) reading at most ``MAX_HEAD_BYTES``, ``KEEP_ALIVE_S`` idle
    seconds, ``MAX_CONNECTIONS`` at once, no Server header."""
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        http="h11",
        h11_max_incomplete_event_size=MAX_HEAD_BYTES,
        timeout_keep_alive=KEEP_ALIVE_S,
        limit_concurrency=MAX_CONNECTIONS,
        server_header=False,
        log_level="warning",
    )


def is_loopback(host: str) -> bool:
    """Whether binding ``host`` keeps the server on this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
