"""import-transfers: anyone's transfers become batches the pipeline lands like real ones."""

from __future__ import annotations

import datetime as dt
import json

import pandas as pd
import pytest

from aml_pipeline import cli
from aml_pipeline.batch_builder.transfers_import import (
    TransfersFileError,
    read_labels,
    read_transfers,
)
from aml_pipeline.contract.schema import META_FILE
from aml_pipeline.contract.validation import validate_batch
from aml_pipeline_tests.conftest import small_source

pytestmark = pytest.mark.integration  # imports and lands batches through the CLI

FIRST, LAST = dt.date(2025, 3, 10), dt.date(2025, 3, 12)


@pytest.fixture
def files(tmp_path):
    """An AMLSim-shaped transfers CSV (with its leaky columns) and a SAR account list."""
    sim = small_source().simulator("ethereum")
    t = sim.window(LAST, 9)
    csv = pd.DataFrame(
        {
            "tran_id": range(len(t)),
            "orig_acct": t["from_address"],
            "bene_acct": t["to_address"],
            "tx_type": "TRANSFER",
            "base_amt": t["amount_usd"],
            "tran_timestamp": pd.to_datetime(t["timestamp_ms"], unit="ms", utc=True).dt.strftime(
                "%Y-%m-%dT%H:%M:%SZ"
            ),
            "is_sar": "True",
            "alert_id": "7",  # label columns that must never reach a batch
        }
    )
    illicit = sorted(sim.illicit_actors(FIRST - dt.timedelta(6), LAST))
    sar = pd.DataFrame({"ACCOUNT_ID": illicit, "EVENT_DATE": "20250311"})
    (tmp_path / "tx.csv").write_text(csv.to_csv(index=False))
    (tmp_path / "sar.csv").write_text(sar.to_csv(index=False))
    return tmp_path


def test_reading_recognises_columns_and_drops_label_columns(files):
    transfers, ignored = read_transfers(files / "tx.csv")
    assert list(transfers.columns) == [
        "timestamp_ms",
        "from_address",
        "to_address",
        "amount_usd",
        "asset",
    ]
    assert {"is_sar", "alert_id", "tran_id", "tx_type"} == set(ignored)
    labels = read_labels(files / "sar.csv")
    assert set(labels["event_date"]) == {dt.date(2025, 3, 11)}


def test_a_file_without_an_amount_column_is_refused_clearly(tmp_path):
    (tmp_path / "bad.csv").write_text("from,to,timestamp\na,b,2025-01-01\n")
    with pytest.raises(TransfersFileError, match=r"bad.csv: no column for amount_usd"):
        read_transfers(tmp_path / "bad.csv")


def test_import_then_download_lands_valid_batches(files, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    monkeypatch.setenv("AML_DATA_ROOT", str(tmp_path / "data"))
    monkeypatch.setenv("AML_LABELS_AS_OF", "2025-06-01")
    (tmp_path / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    out = tmp_path / "sot"
    code = cli.main(
        [
            "import-transfers",
            "--transfers",
            str(files / "tx.csv"),
            "--labels",
            str(files / "sar.csv"),
            "--network",
            "ethereum",
            "--start-date",
            str(FIRST),
            "--end-date",
            str(LAST),
            "--output-dir",
            str(out),
        ]
    )
    assert code == 0, capsys.readouterr().err
    assert "imported 3 days" in capsys.readouterr().out
    for day in (FIRST, LAST):
        folder = out / "snapshots" / "ethereum" / str(day) / "7"
        files_ = {p.name: p.read_bytes() for p in folder.iterdir()}
        assert validate_batch("ethereum", day, 7, files_).ok
        assert json.loads(files_[META_FILE])["network"] == "ethereum"
    gt = pd.read_parquet(out / "ground-truth" / "ethereum" / "ground_truth.parquet")
    first_day = gt[gt["processing_date"] == FIRST]
    assert not first_day["is_sar_filed"].any()  # before the SAR event date
    assert gt[gt["processing_date"] == LAST]["is_sar_filed"].any()
    assert ((gt["label_date"] - gt["processing_date"]).map(lambda d: d.days) >= 30).all()

    code = cli.main(
        [
            "download",
            "--network",
            "ethereum",
            "--start-date",
            str(FIRST),
            "--end-date",
            str(LAST),
            "--source",
            str(out),
        ]
    )
    assert code == 0
    assert "[3/3] ethereum 2025-03-12: landed" in capsys.readouterr().out
    # the network keeps the imported directory as its source: its labels arrive 30 days on
    from aml_pipeline.defs.resources import PipelineConfig
    from aml_pipeline.settings import Settings

    source = PipelineConfig.from_settings(Settings.from_env()).source("ethereum")
    arrived = source.fetch_label_events("ethereum", LAST + dt.timedelta(30), 7)
    assert arrived["is_sar_filed"].any() and (arrived["processing_date"] == LAST).all()


def test_rows_with_unusable_amounts_or_addresses_are_refused(tmp_path):
    (tmp_path / "t.csv").write_text(
        "timestamp,from,to,amount\n"
        "2025-01-01T00:00:00Z,a,b,10\n"
        "2025-01-01T01:00:00Z,a,,10\n"
        "2025-01-01T02:00:00Z,a,b,-5\n"
        "2025-01-01T03:00:00Z,a,b,\n"
    )
    with pytest.raises(TransfersFileError) as err:
        read_transfers(tmp_path / "t.csv")
    text = str(err.value)
    assert "column 'amount': 2 row(s) missing, non-numeric or negative (first at row 2)" in text
    assert "column 'to': 1 row(s) empty (first at row 1)" in text


def test_epoch_numbers_in_any_unit_become_milliseconds(tmp_path):
    ms = 1_735_689_600_000
    for unit, value in (("s", ms // 1000), ("ms", ms), ("us", ms * 1000), ("ns", ms * 10**6)):
        (tmp_path / f"{unit}.csv").write_text(f"timestamp,from,to,usd\n{value},a,b,1\n")
        transfers, _ = read_transfers(tmp_path / f"{unit}.csv")
        assert transfers["timestamp_ms"].tolist() == [ms], unit


def test_a_second_import_keeps_the_labels_of_the_first(files, tmp_path):
    from aml_pipeline.batch_builder.transfers_import import import_transfers

    transfers, _ = read_transfers(files / "tx.csv")
    labels = read_labels(files / "sar.csv")
    out = tmp_path / "sot"
    import_transfers(transfers, labels, "ethereum", FIRST, FIRST, out)
    import_transfers(transfers, labels, "ethereum", LAST, LAST, out)
    import_transfers(transfers, labels, "ethereum", LAST, LAST, out)  # idempotent
    gt = pd.read_parquet(out / "ground-truth" / "ethereum" / "ground_truth.parquet")
    assert set(gt["processing_date"]) == {FIRST, LAST}
    assert not gt["alert_id"].duplicated().any()
