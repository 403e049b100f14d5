"""Running the results API with uvicorn (``aml-pipeline serve``)."""

from __future__ import annotations

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
    configured = list(networks) if networks is not None else settings.networks
    app = create_app(Path(data_root), configured, default_network, settings.api_allowed_hosts)
    uvicorn.run(app, host=host, port=port, server_header=False)
