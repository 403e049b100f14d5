"""Read-only HTTP API over the pipeline's published results (FastAPI + DuckDB)."""

from aml_pipeline.api.app import create_app
from aml_pipeline.api.database import ResultsDatabase
from aml_pipeline.api.server import serve

__all__ = ["ResultsDatabase", "create_app", "serve"]
