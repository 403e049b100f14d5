"""Settings: one typed object from AML_* variables, one file per network, one documented
table (docs/operations.md)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from aml_pipeline.defs.definitions import build_definitions
from aml_pipeline.defs.resources import PipelineConfig
from aml_pipeline.settings import Settings, settings_table

SETTINGS_PAGE = Path(__file__).resolve().parents[1] / "docs" / "operations.md"


@pytest.fixture
def env(tmp_path, monkeypatch):
    """A clean AML_* environment whose network files live in tmp_path/networks."""
    for name in list(__import__("os").environ):
        if name.startswith("AML_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AML_NETWORKS_DIR", str(tmp_path / "networks"))
    (tmp_path / "networks").mkdir()
    return tmp_path / "networks"


def test_defaults_without_files_are_one_ethereum_network(env):
    settings = Settings.from_env()
    assert settings.networks == ["ethereum"]
    assert settings.network("ethereum").window_days == 7
    assert settings.labels_as_of is None and settings.as_of() == ""


def test_a_network_file_adds_the_network_and_overrides_the_environment(env, monkeypatch):
    monkeypatch.setenv("AML_WINDOW_DAYS", "30")
    (env / "bitcoin.yaml").write_text(
        "window_days: 90\nbatch_source: local\nsource_dir: /sot/bitcoin\nschedule_hour: 5\n"
    )
    (env / "ethereum.yaml").write_text("sim_seed: 3\n")
    settings = Settings.from_env()
    assert settings.networks == ["bitcoin", "ethereum"]
    bitcoin, ethereum = settings.network_settings()
    assert (bitcoin.window_days, bitcoin.batch_source, bitcoin.source_dir) == (
        90,
        "local",
        "/sot/bitcoin",
    )
    assert (ethereum.window_days, ethereum.sim_seed, ethereum.schedule_hour) == (30, 3, 2)
    # AML_NETWORKS selects among them
    monkeypatch.setenv("AML_NETWORKS", "ethereum")
    assert Settings.from_env().networks == ["ethereum"]


def test_each_network_gets_its_own_job_schedule_sensors_and_config(env, tmp_path):
    (env / "bitcoin.yaml").write_text(
        f"window_days: 30\nbatch_source: local\nsource_dir: {tmp_path / 'btc'}\nschedule_hour: 5\n"
    )
    (env / "ethereum.yaml").write_text("schedule_hour: 3\nsim_profile: small\n")
    defs = build_definitions(Settings.from_env())
    schedules = {s.name: s.cron_schedule for s in defs.schedules}
    assert schedules == {
        "bitcoin_daily_schedule": "0 5 * * *",
        "ethereum_daily_schedule": "0 3 * * *",
    }
    assert {s.name for s in defs.sensors} == {
        f"{n}_{s}"
        for n in ("bitcoin", "ethereum")
        for s in ("new_batch_sensor", "label_arrival_sensor", "freshness_sensor")
    } | {"dead_run_sensor", "run_failure_sensor", "run_tagging_sensor"}  # the instance's
    for network in ("bitcoin", "ethereum"):
        job = defs.resolve_job_def(f"{network}_daily_job")
        assert {key.path[0] for key in job.asset_layer.executable_asset_keys} == {network}
    pipeline = PipelineConfig.from_settings(Settings.from_env())
    assert pipeline.window_days("bitcoin") == 30 and pipeline.window_days("ethereum") == 7
    assert pipeline.configured_source("bitcoin").source_dir == str(tmp_path / "btc")
    assert pipeline.configured_source("ethereum").sim_profile == "small"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("window: 7\n", r"bitcoin.yaml: unknown setting\(s\) \['window'\]"),
        ("schedule_hour: 25\n", r"bitcoin.yaml: schedule_hour: Input should be less than or"),
        ("- 1\n", r"bitcoin.yaml: expected a mapping"),
    ],
)
def test_a_bad_network_file_is_one_line_naming_it(env, text, message):
    (env / "bitcoin.yaml").write_text(text)
    with pytest.raises(ValueError, match=message):
        Settings.from_env().network_settings()


@pytest.mark.parametrize("name", ["...yaml", "Bad Name.yaml", "eth-main.yaml"])
def test_a_network_file_whose_name_is_not_a_network_is_refused_naming_it(env, name):
    (env / name).write_text("window_days: 7\n")
    with pytest.raises(ValueError, match=re.escape(f"{env / name}: ") + ".* is not a network"):
        Settings.from_env()


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("AML_WINDOW_DAYS", "seven", "AML_WINDOW_DAYS: Input should be a valid integer"),
        ("AML_BATCH_SOURCE", "ftp", "AML_BATCH_SOURCE: Input should be 'simulated' or 'local'"),
        ("AML_NETWORKS", "Eth", "AML_NETWORKS: Value error, invalid network name 'Eth'"),
        ("AML_PARTITIONS_START", "2025-13-01", "AML_PARTITIONS_START: Input should be a valid"),
    ],
)
def test_a_bad_variable_is_one_line_naming_it(env, monkeypatch, name, value, message):
    monkeypatch.setenv(name, value)
    with pytest.raises(ValueError, match=re.escape(message)):
        Settings.from_env()


def test_the_settings_page_documents_exactly_the_settings():
    assert settings_table() in SETTINGS_PAGE.read_text()


def test_the_ui_shows_each_setting_with_its_description():
    schema = PipelineConfig.model_json_schema()
    assert "AML_DATA_ROOT" in schema["properties"]["data_root"]["description"]
    network = schema["$defs"]["NetworkConfig"]["properties"]
    assert "AML_WINDOW_DAYS" in network["window_days"]["description"]


def test_the_command_line_says_a_bad_setting_in_one_line(env, capsys):
    from aml_pipeline import cli

    (env / "Bad Name.yaml").write_text("window_days: 7\n")
    args = ["download", "--network", "ethereum", "--start-date", "2025-01-01"]
    assert cli.main([*args, "--end-date", "2025-01-01"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("settings: ") and "'Bad Name' is not a network name" in err
    assert "Traceback" not in err


def test_a_bad_variable_is_named_by_a_command_that_opens_the_instance(
    env, tmp_path, monkeypatch, capsys
):
    """Not reported as an instance that cannot be opened."""
    from aml_pipeline import cli

    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    (tmp_path / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    monkeypatch.setenv("AML_WINDOW_DAYS", "0")
    span = ["--start-date", "2025-01-10", "--end-date", "2025-01-10"]
    assert cli.main(["download", "--network", "ethereum", *span]) == 2
    err = capsys.readouterr().err
    assert err.startswith("settings: AML_WINDOW_DAYS: ") and "Dagster instance" not in err
