"""The ``aml-pipeline`` command line. Its modules parse arguments and print; what it runs
is planned and launched by ``defs.runs``, in the persistent Dagster instance, so the UI
shows what it did."""

from aml_pipeline.cli.main import build_parser, main

__all__ = ["build_parser", "main"]
