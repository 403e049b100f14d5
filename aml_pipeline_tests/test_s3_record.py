"""The whole pipeline with its record on a real S3 server (``make s3-check``): the same
days run on the local disk and on SeaweedFS publish identical scores, rankings and
cluster scores (all but ``latency_ms``, the time each scoring took)."""

from __future__ import annotations

import io

import pandas as pd
import pytest

from aml_pipeline import cli
from aml_pipeline.storage import s3
from aml_pipeline.storage.objects import storage_at

pytestmark = pytest.mark.s3

DEMO = ["demo", "--days", "6", "--train-days", "4", "--end-date", "2025-03-10"]
DAYS = [f"2025-03-{d:02d}" for d in range(5, 11)]
PUBLISHED = ("alert_scores.parquet", "alert_rankings.parquet", "cluster_scores.parquet")


def _published(root: str) -> dict[str, pd.DataFrame]:
    storage = storage_at(root)
    found = {}
    for day in DAYS:
        version = storage.resolve_dir(f"output/ethereum/{day}")
        for name in PUBLISHED:
            frame = pd.read_parquet(io.BytesIO(storage.read_bytes(f"{version}/{name}")))
            found[f"{day}/{name}"] = frame.drop(columns=["latency_ms"], errors="ignore")
    return found


def test_the_demo_on_s3_publishes_what_it_publishes_on_a_local_disk(
    cli_home, s3_root, monkeypatch, capsys
):
    assert cli.main(DEMO) == 0, capsys.readouterr().err
    local = _published(str(cli_home / "data"))
    monkeypatch.setenv("AML_DATA_ROOT", s3_root)
    monkeypatch.setenv("DAGSTER_HOME", str(cli_home / "second"))
    (cli_home / "second").mkdir()
    (cli_home / "second" / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    assert cli.main(DEMO) == 0, capsys.readouterr().err
    remote = _published(s3_root)
    assert set(remote) == set(local)
    for name, frame in local.items():
        assert len(frame) > 0, name
        pd.testing.assert_frame_equal(remote[name], frame, check_exact=True, obj=name)
    bucket, prefix = s3.split_url(s3_root)
    listed = s3.client().list_objects_v2(Bucket=bucket, Prefix=f"{prefix}/output/ethereum/")
    assert listed["KeyCount"] > 0  # on the server, not on a local disk
    assert not (cli_home / "second" / "data").exists()
