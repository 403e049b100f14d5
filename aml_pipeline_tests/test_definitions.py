"""The Definitions object: exact assets, checks, jobs; one group per network; no warnings."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import pytest
import yaml

from aml_pipeline.defs.network import (
    CHAMPION_ASSETS,
    DAILY_ASSETS,
    EVALUATION_ASSETS,
    INGESTION_ASSETS,
    MODEL_ASSETS,
)

pytestmark = pytest.mark.integration  # loads the definitions in fresh processes

ROOT = Path(__file__).resolve().parents[1]

INGESTION = [
    "landed_batch",
    "raw_alerts",
    "raw_features",
    "raw_clusters",
    "raw_money_flows",
    "batch_metadata",
    "label_events",
]
CHECKS = {
    ("landed_batch", "landed_files_match_meta"),
    ("landed_batch", "contract_drift"),
    ("raw_alerts", "conforms_to_contract"),
    ("raw_features", "conforms_to_contract"),
    ("raw_clusters", "conforms_to_contract"),
    ("raw_money_flows", "conforms_to_contract"),
    ("label_events", "labels_known_in_time"),
    ("tier1_evaluation", "tier1_passed"),
    ("alert_scorer_champion", "gates"),
    ("alert_ranker_champion", "gates"),
    ("cluster_scorer_champion", "gates"),
}
FEATURES = ["alert_history", "flow_features", "alert_features", "cluster_features"]
MODELS = ["alert_scorer", "alert_ranker", "cluster_scorer"]
MODELS += [f"{kind}_champion" for kind in MODELS]
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
DAILY = [*INGESTION, *FEATURES, *SCORING, *EVALUATION]
#: Whether each daily table has its due day: one check each, evaluated at the deadline.
FRESHNESS = {(name, "day_on_time") for name in DAILY}
#: The checks that warn instead of stopping the run.
WARNING_CHECKS = {("landed_batch", "contract_drift"), *FRESHNESS}


def test_assets_checks_and_jobs_are_exactly_the_expected_ones(make_defs):
    defs = make_defs()
    graph = defs.resolve_asset_graph()
    network_keys = {dg.AssetKey(["ethereum", n]) for n in GROUPS}
    assert graph.get_all_asset_keys() == {*network_keys, dg.AssetKey("run_failures")}
    record = graph.get(dg.AssetKey("run_failures"))  # written by the run-failure sensor
    assert record.group_name == "monitoring" and record.kinds and record.description
    assert graph.asset_check_keys == {
        dg.AssetCheckKey(dg.AssetKey(["ethereum", a]), c) for a, c in CHECKS | FRESHNESS
    }
    assert {j.name for j in defs.jobs} == {
        "daily_job",
        "ethereum_daily_job",
        "ethereum_freshness_job",
        "ingestion_job",
        "features_job",
        "training_job",
        "scoring_job",
        "import_transfers_job",
    }
    assert [s.name for s in defs.schedules] == ["ethereum_daily_schedule"]
    assert {s.name for s in defs.sensors} == {
        "ethereum_new_batch_sensor",
        "ethereum_label_arrival_sensor",
        "ethereum_freshness_sensor",
        "dead_run_sensor",
        "run_failure_sensor",
        "run_tagging_sensor",
    }
    for key in network_keys:
        node = graph.get(key)
        name = key.path[-1]
        assert node.group_name == GROUPS[name], key
        assert (node.partitions_def is None) == (name in UNPARTITIONED), key
        assert node.kinds, key
        assert node.description, key
        assert node.code_version, key


def test_backfills_run_two_weeks_per_run(make_defs):
    graph = make_defs().resolve_asset_graph()
    for name in INGESTION + FEATURES + SCORING + EVALUATION:
        policy = graph.get(dg.AssetKey(["ethereum", name])).backfill_policy
        assert policy.max_partitions_per_run == 14, name


def test_runs_that_write_or_read_the_look_back_start_one_at_a_time(make_defs):
    """A UI backfill is several 14-day runs; a chunk's look-back reads the days of the
    chunk before, so the queue must start them one by one (a run-granularity pool)."""
    graph = make_defs().resolve_asset_graph()
    for name in INGESTION + FEATURES:
        assert graph.get(dg.AssetKey(["ethereum", name])).pools == {"ethereum_daily_tables"}
    for name in SCORING + EVALUATION:
        assert not graph.get(dg.AssetKey(["ethereum", name])).pools, name
    pools = yaml.safe_load((ROOT / "dagster.yaml").read_text())["concurrency"]["pools"]
    assert pools == {"granularity": "run", "default_limit": 1}


def test_the_instance_is_the_same_from_any_working_directory(tmp_path, monkeypatch):
    """dagster.yaml names no relative path: the UI or the daemon started from another
    folder opens the instance under DAGSTER_HOME, not an empty one under the folder."""
    home, elsewhere = tmp_path / "project", tmp_path / "elsewhere"
    home.mkdir(), elsewhere.mkdir()
    (home / "dagster.yaml").write_text((ROOT / "dagster.yaml").read_text())
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    monkeypatch.chdir(elsewhere)
    instance = dg.DagsterInstance.get()
    try:
        instance.add_run(dg.DagsterRun(job_name="probe", run_id="probe-run"))
        assert instance.get_run_by_id("probe-run") is not None
    finally:
        instance.dispose()
    assert not list(elsewhere.iterdir())
    assert (home / "history" / "runs.db").is_file()


# Dagster's own backfill code (the path the UI takes) still calls AssetSelection.sources()
@pytest.mark.filterwarnings("ignore:Function `AssetSelection.sources`:DeprecationWarning")
def test_a_backfill_of_n_days_targets_those_days_and_nothing_later(make_defs):
    """What the UI's Materialize dialog sends (assets + partition names) becomes an asset
    backfill whose targets Dagster derives through the partition mappings: every daily
    asset must be targeted for exactly the chosen days, the first included."""
    from dagster._core.execution.asset_backfill import AssetBackfillData

    graph = make_defs().resolve_asset_graph()
    daily = [k for k in graph.get_all_asset_keys() if graph.get(k).partitions_def]
    days = ["2025-01-01", "2025-01-02", "2025-01-03"]
    with dg.instance_for_test() as instance:
        target = AssetBackfillData.from_asset_partitions(
            asset_graph=graph,
            partition_names=days,
            asset_selection=daily,
            dynamic_partitions_store=instance,
            backfill_start_timestamp=time.time(),
            all_partitions=False,
        ).target_subset
    for key in daily:
        assert sorted(target.get_partitions_subset(key).get_partition_keys()) == days, key


def test_scores_depend_on_the_champions_and_the_champions_on_the_candidates(make_defs):
    """A newly trained candidate makes its champion stale in the UI, not the scores."""
    graph = make_defs().resolve_asset_graph()
    kinds = ("alert_scorer", "alert_ranker", "cluster_scorer")
    for output in ("alert_scores", "alert_rankings", "cluster_scores"):
        parents = graph.get(dg.AssetKey(["ethereum", output])).parent_keys
        assert {dg.AssetKey(["ethereum", f"{k}_champion"]) for k in kinds} <= parents, output
        assert not {dg.AssetKey(["ethereum", k]) for k in kinds} & parents, output
    for kind in kinds:
        champion = graph.get(dg.AssetKey(["ethereum", f"{kind}_champion"]))
        assert dg.AssetKey(["ethereum", kind]) in champion.parent_keys
    scorer = graph.get(dg.AssetKey(["ethereum", "alert_scorer_champion"]))
    assert dg.AssetKey(["ethereum", "model_comparison"]) in scorer.parent_keys


def test_publication_waits_for_tier1(make_defs):
    graph = make_defs().resolve_asset_graph()
    published = graph.get(dg.AssetKey(["ethereum", "published_scores"]))
    assert dg.AssetKey(["ethereum", "tier1_evaluation"]) in published.parent_keys


def test_every_contract_check_is_blocking(make_defs):
    graph = make_defs().resolve_asset_graph()
    for check_key in graph.asset_check_keys:
        name = (check_key.asset_key.path[-1], check_key.name)
        assert graph.get_check_spec(check_key).blocking == (name not in WARNING_CHECKS), name


def test_one_shared_daily_partitioning_across_networks(make_defs):
    defs = make_defs(networks=["ethereum", "bitcoin"])
    graph = defs.resolve_asset_graph()
    groups = {graph.get(k).group_name for k in graph.get_all_asset_keys()}
    suffixes = ("", "_models", "_scoring", "_validation")
    networks = {f"{n}{s}" for n in ("ethereum", "bitcoin") for s in suffixes}
    assert groups == networks | {"monitoring"}  # the run-failure record is the instance's
    partitioned = [k for k in graph.get_all_asset_keys() if graph.get(k).partitions_def]
    assert len({id(graph.get(k).partitions_def) for k in partitioned}) == 1
    # a daily check records each day's result on that day's partition
    checks = [graph.get_check_spec(k) for k in graph.asset_check_keys]
    per_day = {id(spec.partitions_def) for spec in checks if spec.partitions_def}
    assert per_day == {id(graph.get(partitioned[0]).partitions_def)}
    assert len([spec for spec in checks if spec.partitions_def]) == 2 * len(
        CHECKS
        - {
            (f"{kind}_champion", "gates")
            for kind in ("alert_scorer", "alert_ranker", "cluster_scorer")
        }
    )
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
        "from aml_pipeline.defs.definitions import defs; defs.resolve_all_job_defs();"
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


def test_the_landed_batch_and_the_published_day_carry_a_daily_freshness_policy(make_defs):
    """The landed batch and the published day carry a daily cron freshness policy due four
    hours after the network's schedule (02:00 UTC by default), over the last 24 hours."""
    graph = make_defs().resolve_asset_graph()
    for name in ("landed_batch", "published_scores"):
        policy = graph.get(dg.AssetKey(["ethereum", name])).freshness_policy
        assert isinstance(policy, dg.FreshnessPolicy), name
        assert policy.deadline_cron == "0 6 * * *" and policy.timezone == "UTC"
        assert policy.lower_bound_delta.total_seconds() == 24 * 3600


def test_every_asset_job_launches_without_hand_written_config(make_defs):
    """The launchpad and "Materialize all" open no required config: the model and
    comparison ranges default to the stored feature days."""
    defs = make_defs()
    jobs = [defs.resolve_implicit_global_asset_job_def()]
    jobs += [defs.resolve_job_def(j.name) for j in defs.jobs if j.name != "import_transfers_job"]
    for job in jobs:
        fields = job.run_config_schema.config_type.fields
        assert not any(field.is_required for field in fields.values()), job.name


_CODE_VERSIONS = """
import inspect, json, sys

edited, original = sys.argv[1], inspect.getsource


def getsource(obj):
    text = original(obj)
    return text + "\\n# an edit\\n" if getattr(obj, "__name__", None) == edited else text


inspect.getsource = getsource
from aml_pipeline.defs.definitions import defs

specs = defs.resolve_all_asset_specs()
print(json.dumps({spec.key.path[-1]: spec.code_version for spec in specs if spec.code_version}))
"""


def _code_versions(tmp_path: Path, edited: str) -> dict[str, str]:
    """Each asset's code_version, with the source of module ``edited`` changed."""
    env = {**os.environ, "AML_DATA_ROOT": str(tmp_path), "DAGSTER_HOME": str(tmp_path)}
    loaded = subprocess.run([sys.executable, "-c", _CODE_VERSIONS, edited], env=env,
                            capture_output=True, text=True, timeout=120, check=True)  # fmt: skip
    return json.loads(loaded.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize(
    ("module", "changes"),
    [
        # the label readers: training, the comparison and the evaluations, nothing upstream
        (
            "aml_pipeline.defs.assets.labels",
            {*MODEL_ASSETS, "model_comparison", *EVALUATION_ASSETS},
        ),
        # the daily tables' shared code: every daily asset, the champions and the comparison
        (
            "aml_pipeline.defs.assets.daily",
            {*DAILY_ASSETS, *CHAMPION_ASSETS, "model_comparison"},
        ),
        # the contract checks: only what lands and conforms the batches
        ("aml_pipeline.contract.problems", set(INGESTION_ASSETS)),
    ],
)
def test_an_assets_code_version_follows_the_code_it_runs(tmp_path, module, changes):
    """Editing a helper changes the code version (the UI's staleness) of exactly the assets
    that run it."""
    before = _code_versions(tmp_path, "no.such.module")
    after = _code_versions(tmp_path, module)
    assert before.keys() == after.keys()
    assert {name for name in before if before[name] != after[name]} == changes
