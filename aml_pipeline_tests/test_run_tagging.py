"""Runs started from an asset selection get the network and stage tags every run carries."""

from __future__ import annotations

import uuid

import dagster as dg

from aml_pipeline.defs.run_tagging import build_run_tagging_sensor, tag_untagged_runs


def _add(instance: dg.DagsterInstance, names: list[list[str]] | None, tags: dict) -> str:
    run_id = str(uuid.uuid4())
    selection = frozenset(dg.AssetKey(path) for path in names) if names is not None else None
    instance.add_run(
        dg.DagsterRun(job_name="__ASSET_JOB", run_id=run_id, asset_selection=selection, tags=tags)
    )
    return run_id


def test_asset_selection_runs_are_tagged_once_and_others_left_alone():
    with dg.instance_for_test() as instance:
        scoring = [["ethereum", n] for n in ("alert_history", "flow_features")]
        untagged = _add(instance, [*scoring, ["ethereum", "alert_features"]], {})
        both = _add(instance, [["ethereum", "raw_alerts"], ["bitcoin", "raw_alerts"]], {})
        tagged = _add(instance, scoring, {"network": "ethereum", "aml/stage": "custom"})
        no_selection = _add(instance, None, {})
        result = build_run_tagging_sensor()(dg.build_sensor_context(instance=instance))
        assert result.skip_message == "tagged 2 run(s)"
        tags = {r: instance.get_run_by_id(r).tags for r in (untagged, both, tagged, no_selection)}
        assert tags[untagged]["network"] == "ethereum"
        assert tags[untagged]["aml/stage"] == "custom"  # three of the four feature assets
        assert tags[both]["network"] == "bitcoin,ethereum"
        assert tags[tagged] == {"network": "ethereum", "aml/stage": "custom"}
        assert "network" not in tags[no_selection]
        assert tag_untagged_runs(instance) == []  # tagged once
