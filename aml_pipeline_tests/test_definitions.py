"""The Definitions object: exact assets, checks, jobs; one group per network; no warnings."""

from __future__ import annotations

import subprocess
import sys

import dagster as dg

INGESTION = [
    "landed_batch",
    "raw_alerts",
    "raw_features",
    "raw_clusters",
    "raw_money_flows",
    "batch_metadata",
    "ground_truth",
]
CHECKS = {
    "landed_batch": "landed_files_match_meta",
    "raw_alerts": "conforms_to_contract",
    "raw_features": "conforms_to_contract",
    "raw_clusters": "conforms_to_contract",
    "raw_money_flows": "conforms_to_contract",
    "ground_truth": "labels_known_in_time",
    "tier1_evaluation": "tier1_passed",
}


FEATURES = ["alert_history", "alert_features", "cluster_features"]
MODELS = ["alert_scorer", "alert_ranker", "cluster_scorer"]
SCORING = ["alert_scores", "alert_rankings", "cluster_scores", "scoring_manifest"]
SCORING += ["published_scores"]
EVALUATION = ["tier1_evaluation", "tier2_evaluation", "tier3_evaluation"]
GROUPS = {
    **{n: "ethereum" for n in INGESTION + FEATURES},
    **{n: "ethereum_models" for n in MODELS},
    **{n: "ethereum_scoring" for n in SCORING},
    **{n: "ethereum_validation" for n in [*EVALUATION, "model_comparison"]},
}
UNPARTITIONED = {*MODELS, "model_comparison"}


def test_assets_checks_and_jobs_are_exactly_the_expected_ones(make_defs):
    defs = make_defs()
    graph = defs.resolve_asset_graph()
    assert graph.get_all_asset_keys() == {dg.AssetKey(["ethereum", n]) for n in GROUPS}
    assert graph.asset_check_keys == {
        dg.AssetCheckKey(dg.AssetKey(["ethereum", a]), c) for a, c in CHECKS.items()
    }
    assert {j.name for j in defs.jobs} == {
        "daily_job",
        "ingestion_job",
        "features_job",
        "training_job",
        "scoring_job",
        "import_transfers_job",
    }
    assert [s.name for s in defs.schedules] == ["daily_scoring_schedule"]
    assert {s.name for s in defs.sensors} == {"new_batch_sensor", "label_arrival_sensor"}
    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        name = key.path[-1]
        assert node.group_name == GROUPS[name], key
        assert (node.partitions_def is None) == (name in UNPARTITIONED), key
        assert node.kinds, key
        assert node.description, key


def test_backfills_run_two_weeks_per_run(make_defs):
    graph = make_defs().resolve_asset_graph()
    for name in INGESTION + FEATURES + SCORING + EVALUATION:
        policy = graph.get(dg.AssetKey(["ethereum", name])).backfill_policy
        assert policy.max_partitions_per_run == 14, name


def test_history_reads_only_earlier_days(make_defs):
    graph = make_defs().resolve_asset_graph()
    mappings = graph.get(dg.AssetKey(["ethereum", "alert_history"])).partition_mappings
    for upstream in ("raw_alerts", "ground_truth"):  # never the day itself
        mapping = mappings[dg.AssetKey(["ethereum", upstream])]
        assert (mapping.start_offset, mapping.end_offset) == (-180, -1), upstream


def test_publication_waits_for_tier1(make_defs):
    graph = make_defs().resolve_asset_graph()
    published = graph.get(dg.AssetKey(["ethereum", "published_scores"]))
    assert dg.AssetKey(["ethereum", "tier1_evaluation"]) in published.parent_keys


def test_every_contract_check_is_blocking(make_defs):
    graph = make_defs().resolve_asset_graph()
    for check_key in graph.asset_check_keys:
        assert graph.get_check_spec(check_key).blocking, check_key


def test_one_shared_daily_partitioning_across_networks(make_defs):
    defs = make_defs(networks=["ethereum", "bitcoin"])
    graph = defs.resolve_asset_graph()
    groups = {graph.get(k).group_name for k in graph.get_all_asset_keys()}
    suffixes = ("", "_models", "_scoring", "_validation")
    assert groups == {f"{n}{s}" for n in ("ethereum", "bitcoin") for s in suffixes}
    partitioned = [k for k in graph.get_all_asset_keys() if graph.get(k).partitions_def]
    assert len({id(graph.get(k).partitions_def) for k in partitioned}) == 1
    only = graph.get(dg.AssetKey(["bitcoin", "raw_alerts"])).partitions_def
    assert isinstance(only, dg.DailyPartitionsDefinition)
    assert only.timezone == "UTC"


def test_contract_tables_declare_their_column_schema(make_defs):
    graph = make_defs().resolve_asset_graph()
    schema = graph.get(dg.AssetKey(["ethereum", "raw_alerts"])).metadata["dagster/column_schema"]
    names = [c.name for c in schema.columns]
    assert names[:4] == ["window_days", "processing_date", "alert_id", "address"]


def test_module_loads_without_deprecation_warnings(tmp_path):
    code = (
        "import warnings; warnings.simplefilter('error', DeprecationWarning);"
        "import dagster as dg; warnings.simplefilter('error', dg.SupersessionWarning);"
        "from aml_pipeline.definitions import defs; defs.resolve_all_job_defs();"
        "defs.resolve_asset_graph()"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={"AML_DATA_ROOT": str(tmp_path), "PATH": ""},
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "Warning" not in result.stderr, result.stderr
