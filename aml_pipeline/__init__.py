"""aml-pipeline: a Dagster data-asset pipeline for blockchain AML alerts."""

__version__ = "0.1.0"
