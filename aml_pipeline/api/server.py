"""Running the results API with uvicorn (``aml-pipeline serve``)."""

from __future__ import annotations

import asyncio
import ipaddress
import os
from collections.abc import Sequence
from typing import Any

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

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
        data_root,
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
#: Seconds a client has to send a whole request head, from connecting or from the end of
#: its previous response; then the connection is closed (against held, half-sent requests).
REQUEST_HEAD_S = 10.0


class BoundedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a deadline for each request's head (uvicorn bounds only
    the idle time between requests, and a byte received cancels even that)."""

    _head_deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        if self._head_deadline is not None:
            self._head_deadline.cancel()

    def _arm(self) -> None:
        if self._head_deadline is not None:
            self._head_deadline.cancel()
        self._head_deadline = self.loop.call_later(REQUEST_HEAD_S, self._head_timed_out)

    def _head_timed_out(self) -> None:
        if self.cycle is not None and not self.cycle.response_complete:
            return  # the head came: the request is being answered
        if not self.transport.is_closing():
            self.conn.send(h11.ConnectionClosed())
            self.transport.close()


def server_config(app: Any, host: str = "127.0.0.1", port: int = 8000) -> uvicorn.Config:
    """uvicorn's configuration with bounds: the pure-Python h11 parser (httptools has no
    limit on a request's head) reading at most ``MAX_HEAD_BYTES`` within ``REQUEST_HEAD_S``
    seconds, ``KEEP_ALIVE_S`` idle seconds, ``MAX_CONNECTIONS`` at once, no Server
    header."""
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        http=BoundedH11Protocol,
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
