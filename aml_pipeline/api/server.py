"""Running the results API with uvicorn (``aml-pipeline serve``)."""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Sequence
from pathlib import Path

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
    uvicorn.run(app, host=host, port=port, server_header=False)


def is_loopback(host: str) -> bool:
    """Whether binding ``host`` keeps the server on this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
