"""Pattern traps: built with every batch, validated when present, passed through landing."""

from __future__ import annotations

import datetime as dt
import json

import pandas as pd
import pytest

from aml_pipeline.batch_builder.build import build_batch
from aml_pipeline.batch_builder.traps import TRAPS_PER_DAY, select_traps
from aml_pipeline.contract.conform import read_parquet_bytes
from aml_pipeline.contract.schema import META_FILE, PATTERN_TRAPS_FILE
from aml_pipeline.contract.validation import validate_batch
from aml_pipeline.sources.landing import fetch_and_validate, land, read_landed_traps, verify_landed
from aml_pipeline.sources.local import LocalDirectorySource
from aml_pipeline.storage.objects import LocalStorage
from aml_pipeline_tests.conftest import DAY, NETWORK, small_source, write_upstream


def _files() -> dict[str, bytes]:
    return dict(small_source().fetch(NETWORK, DAY, 7).files)


def _errors(files: dict[str, bytes]) -> list[tuple[str, str, str]]:
    report = validate_batch(NETWORK, DAY, 7, files)
    return [(p.file, p.column, p.problem) for p in report.errors]


def test_simulated_batch_traps_echo_the_detector_confidence():
    files = _files()
    traps = json.loads(files[PATTERN_TRAPS_FILE])
    alerts = read_parquet_bytes(files["alerts.parquet"]).set_index("alert_id")
    assert len(traps) == TRAPS_PER_DAY
    assert len({t["alert_id"] for t in traps}) == len(traps)
    for trap in traps:
        confidence = alerts.loc[trap["alert_id"], "alert_confidence_score"]
        assert trap["expected_score"] == round(float(confidence), 4)
    meta = json.loads(files[META_FILE])
    assert PATTERN_TRAPS_FILE in meta["sha256"] and "pattern_traps" not in meta["counts"]
    assert validate_batch(NETWORK, DAY, 7, files).ok


def test_traps_are_deterministic_and_depend_on_the_day():
    alerts = pd.DataFrame(
        {"alert_id": [f"a{i}" for i in range(50)], "alert_confidence_score": [0.5] * 50}
    )
    once = select_traps(alerts, NETWORK, DAY)
    assert once == select_traps(alerts.iloc[::-1], NETWORK, DAY)  # row order is irrelevant
    assert once != select_traps(alerts, NETWORK, DAY + dt.timedelta(1))
    assert once != select_traps(alerts, "bitcoin", DAY)
    assert select_traps(alerts.head(2), NETWORK, DAY) == [
        {"alert_id": "a0", "expected_score": 0.5},
        {"alert_id": "a1", "expected_score": 0.5},
    ]


def test_a_day_without_alerts_has_an_empty_trap_list():
    empty = pd.DataFrame(
        {
            "timestamp_ms": [0],
            "from_address": ["a"],
            "to_address": ["b"],
            "amount_usd": [5.0],
        }
    )
    batch = build_batch(empty, "testnet", DAY, 7)
    files = batch.files()
    assert json.loads(files[PATTERN_TRAPS_FILE]) == []
    assert files == build_batch(empty, "testnet", DAY, 7).files()
    assert validate_batch("testnet", DAY, 7, files).ok


def _without_traps() -> dict[str, bytes]:
    """The simulated batch without its traps file, and without it in META.json."""
    files = _files()
    del files[PATTERN_TRAPS_FILE]
    meta = json.loads(files[META_FILE])
    del meta["sha256"][PATTERN_TRAPS_FILE]
    files[META_FILE] = json.dumps(meta).encode()
    return files


def _with_traps(traps: object) -> dict[str, bytes]:
    """The simulated batch with ``traps`` (bytes or JSON-able) as an unlisted traps file."""
    files = _without_traps()
    files[PATTERN_TRAPS_FILE] = traps if isinstance(traps, bytes) else json.dumps(traps).encode()
    return files


def test_a_batch_without_traps_is_valid():
    report = validate_batch(NETWORK, DAY, 7, _without_traps())
    assert report.ok, report.format()
    assert any(p.file == PATTERN_TRAPS_FILE and p.severity == "info" for p in report.problems)


def _known_id() -> str:
    return json.loads(_files()[PATTERN_TRAPS_FILE])[0]["alert_id"]


def test_the_object_form_is_accepted():
    files = _with_traps({"traps": [{"alert_id": _known_id(), "expected_score": 0.7}]})
    assert not _errors(files)


@pytest.mark.parametrize(
    ("traps", "column", "words"),
    [
        (b"[{not json", "", "not valid JSON"),
        ({"alerts": []}, "", "must be a list"),
        ([1], "", "not objects"),
        ([{"alert_id": "nope", "expected_score": 0.5}], "alert_id", "not among the batch's alerts"),
        ([{"alert_id": 7, "expected_score": 0.5}], "alert_id", "non-empty string"),
        ([{"alert_id": "KNOWN", "expected_score": 1.5}], "expected_score", "[0, 1]"),
        ([{"alert_id": "KNOWN", "expected_score": "0.5"}], "expected_score", "[0, 1]"),
        ([{"alert_id": "KNOWN"}], "expected_score", "missing"),
        (b'[{"alert_id": "KNOWN", "expected_score": NaN}]', "expected_score", "finite"),
        (
            [
                {"alert_id": "KNOWN", "expected_score": 0.5},
                {"alert_id": "KNOWN", "expected_score": 0.6},
            ],
            "alert_id",
            "more than once",
        ),
    ],
)
def test_a_malformed_traps_file_refuses_the_batch(traps, column, words):
    known = _known_id()
    if isinstance(traps, bytes):
        traps = traps.replace(b"KNOWN", known.encode())
    else:
        traps = json.loads(json.dumps(traps).replace("KNOWN", known))
    ((file, col, problem),) = _errors(_with_traps(traps))
    assert (file, col) == (PATTERN_TRAPS_FILE, column)
    assert words in problem


def test_traps_pass_through_a_local_source_and_landing(tmp_path):
    files = _files()
    source_dir = tmp_path / "sot"
    write_upstream(source_dir, files)
    seed_dir = tmp_path / "seed" / DAY.isoformat()
    seed_dir.mkdir(parents=True)
    for name, data in files.items():
        if name != META_FILE:
            (seed_dir / name).write_bytes(data)
    expected = json.loads(files[PATTERN_TRAPS_FILE])
    for root in (source_dir, tmp_path / "seed"):
        source = LocalDirectorySource(LocalStorage(root))
        (checked,) = fetch_and_validate(source, NETWORK, [DAY], 7)
        assert checked.batch.files[PATTERN_TRAPS_FILE] == files[PATTERN_TRAPS_FILE]
        landing = LocalStorage(tmp_path / f"landed-{root.name}")
        land(landing, checked)
        folder = tmp_path / f"landed-{root.name}" / NETWORK / DAY.isoformat()
        assert (folder / PATTERN_TRAPS_FILE).read_bytes() == files[PATTERN_TRAPS_FILE]
        meta = json.loads((folder / META_FILE).read_bytes())
        assert PATTERN_TRAPS_FILE in meta["sha256"]
        assert verify_landed(landing, NETWORK, DAY) == []
        assert read_landed_traps(landing, NETWORK, DAY) == expected
        (folder / PATTERN_TRAPS_FILE).write_bytes(b"[]\n")
        assert verify_landed(landing, NETWORK, DAY) != []


def test_read_landed_traps_is_empty_without_the_file(tmp_path):
    write_upstream(tmp_path / "sot", _without_traps())
    (checked,) = fetch_and_validate(
        LocalDirectorySource(LocalStorage(tmp_path / "sot")), NETWORK, [DAY], 7
    )
    landing = LocalStorage(tmp_path / "landed")
    land(landing, checked)
    assert read_landed_traps(landing, NETWORK, DAY) == []
