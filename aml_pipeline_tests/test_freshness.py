"""Freshness per day: the day that is due is named, each daily table's check says whether
it has that day, and the sensor evaluates the checks once after each deadline."""

from __future__ import annotations

import datetime as dt

import dagster as dg
import pytest

from aml_pipeline.defs import freshness
from aml_pipeline.defs.network import INGESTION_ASSETS, LANDING_ASSETS, asset_keys
from aml_pipeline.defs.tags import RANGE_END, RANGE_START, STAGE_TAG
from aml_pipeline_tests.conftest import NETWORK


def _at(day: str, hour: int, minute: int = 0) -> dt.datetime:
    return dt.datetime.fromisoformat(day).replace(hour=hour, minute=minute, tzinfo=dt.UTC)


@pytest.mark.parametrize(
    ("schedule_hour", "now", "due", "deadline"),
    [
        (2, _at("2025-01-11", 5, 59), "2025-01-09", _at("2025-01-10", 6)),
        (2, _at("2025-01-11", 6), "2025-01-10", _at("2025-01-11", 6)),
        # a late schedule: yesterday runs at 23:00, due 4 hours later, after midnight
        (23, _at("2025-01-12", 2, 59), "2025-01-09", _at("2025-01-11", 3)),
        (23, _at("2025-01-12", 3), "2025-01-10", _at("2025-01-12", 3)),
    ],
)
def test_the_due_day_is_the_latest_whose_deadline_passed(schedule_hour, now, due, deadline):
    assert freshness.due_day(now, schedule_hour) == (dt.date.fromisoformat(due), deadline)


def _checks(result: dg.ExecuteInProcessResult) -> dict[str, dg.AssetCheckEvaluation]:
    return {e.asset_key.path[-1]: e for e in result.get_asset_check_evaluations()}


def test_a_table_without_its_due_day_fails_freshness_and_names_the_day(make_defs, monkeypatch):
    defs = make_defs()
    job = defs.resolve_job_def(f"{NETWORK}_freshness_job")
    with dg.instance_for_test() as instance:
        assert (
            defs.resolve_job_def("daily_job")
            .execute_in_process(
                tags={RANGE_START: "2025-01-09", RANGE_END: "2025-01-10"},
                asset_selection=asset_keys([NETWORK], INGESTION_ASSETS),
                instance=instance,
            )
            .success
        )
        monkeypatch.setattr(freshness, "utc_now", lambda: _at("2025-01-11", 7))
        on_time = _checks(job.execute_in_process(instance=instance))
        monkeypatch.setattr(freshness, "utc_now", lambda: _at("2025-01-12", 9))
        late = _checks(job.execute_in_process(instance=instance))
    for name in INGESTION_ASSETS:
        assert on_time[name].passed, name
        assert on_time[name].metadata["due_day"].value == "2025-01-10"
    scores = on_time["alert_scores"]  # never computed: failing, a warning, the day named
    assert not scores.passed and scores.severity == dg.AssetCheckSeverity.WARN
    assert scores.description == "2025-01-10 is missing since 2025-01-11 06:00 UTC"
    assert scores.metadata["latest_day"].value == "none"
    for name in LANDING_ASSETS:  # the 11th's batch never came
        assert not late[name].passed, name
        assert late[name].metadata["latest_day"].value == "2025-01-10"
        assert late[name].metadata["overdue_hours"].value == 3.0


def test_the_freshness_sensor_runs_the_checks_once_per_deadline(make_defs, monkeypatch):
    sensor = make_defs().resolve_sensor_def(f"{NETWORK}_freshness_sensor")
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING
    with dg.instance_for_test() as instance:
        monkeypatch.setattr(freshness, "utc_now", lambda: _at("2025-01-11", 7))
        first = sensor(dg.build_sensor_context(instance=instance))
        (request,) = first.run_requests
        assert request.run_key == "freshness-2025-01-10"
        assert request.tags == {"network": NETWORK, STAGE_TAG: "freshness"}
        again = sensor(dg.build_sensor_context(instance=instance, cursor=first.cursor))
        assert not again.run_requests
        assert again.skip_reason.skip_message == (
            "2025-01-10 was checked at its deadline 2025-01-11 06:00"
        )
        monkeypatch.setattr(freshness, "utc_now", lambda: _at("2025-01-12", 6))
        (next_day,) = sensor(
            dg.build_sensor_context(instance=instance, cursor=first.cursor)
        ).run_requests
        assert next_day.run_key == "freshness-2025-01-11"
