"""A/B test of two alert-scoring model files on the same test days.

Both models score every day of a test range (features built exactly as training and
scoring build them), each day is scored a second time for the Tier 1 determinism check,
and ``compare_models`` validates and compares them; the report is written beside the JSON.

Test data is laid out like the landed input: ``{test_data}/{YYYY-MM-DD}/`` holding
alerts.parquet, features.parquet, clusters.parquet and optionally pattern_traps.json
(``{test_data}/{network}/{YYYY-MM-DD}/`` with a single network is accepted too).
"""

from __future__ import annotations

import datetime as dt
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightgbm as lgb
import pandas as pd

from aml_pipeline.contract.files import sha256_hex
from aml_pipeline.contract.schema import ALERTS, CLUSTERS, FEATURES, PATTERN_TRAPS_FILE, TableSpec
from aml_pipeline.dates import date_range
from aml_pipeline.features.alert_features import (
    CATEGORIES,
    FEATURE_COLUMNS,
    LABEL_HISTORY_DAYS,
    build_alert_features,
    build_alert_history,
)
from aml_pipeline.ingestion import read_landed_table
from aml_pipeline.models.registry import REGISTRY_FILE, LoadedModel, check_schema
from aml_pipeline.models.scoring import score_frame
from aml_pipeline.storage import LocalStorage
from aml_pipeline.validation.comparison import compare_models
from aml_pipeline.validation.report import write_comparison_report
from aml_pipeline.validation.validator_utils import load_pattern_traps

_VERSIONED_STEM = re.compile(r"^(?P<kind>.+)_v(?P<version>\d+\.\d+\.\d+)$")
_DATE_DIR = re.compile(r"^\d{4}-\d{2}-\d{2}$")


@dataclass(frozen=True)
class DayBatch:
    """One test day's batch tables (conformed to the contract) and pattern traps."""

    alerts: pd.DataFrame
    address_features: pd.DataFrame
    clusters: pd.DataFrame
    pattern_traps: list[dict[str, Any]]


def _registry_entry(path: Path) -> dict[str, Any] | None:
    """The entry of ``model_metadata.json`` beside ``path`` whose "file" is its name."""
    registry = path.parent / REGISTRY_FILE
    if not registry.is_file():
        return None
    try:
        versions = json.loads(registry.read_text(encoding="utf-8")).get("versions", [])
    except (json.JSONDecodeError, UnicodeDecodeError, AttributeError) as exc:
        raise ValueError(f"{registry}: not a model registry ({exc})") from exc
    return next((e for e in versions if e.get("file") == path.name), None)


def load_model_file(path: Path) -> LoadedModel:
    """A LightGBM native model file with its metadata.

    Metadata comes from the ``model_metadata.json`` entry for the file when there is one,
    else version and kind from a ``{kind}_v{X.Y.Z}`` stem (version = stem otherwise) and
    the booster's own feature names.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"model file {path} not found")
    data = path.read_bytes()
    try:
        booster = lgb.Booster(model_str=data.decode("utf-8"))
    except (UnicodeDecodeError, lgb.basic.LightGBMError) as exc:
        raise ValueError(f"{path}: not a LightGBM model file ({exc})") from exc
    entry = _registry_entry(path)
    if entry is None:
        match = _VERSIONED_STEM.match(path.stem)
        entry = {
            "version": match["version"] if match else path.stem,
            "kind": match["kind"] if match else "model",
            "features": booster.feature_name(),
        }
    elif entry.get("features") != booster.feature_name():
        raise ValueError(
            f"{path}: the booster's features differ from its {REGISTRY_FILE} entry "
            f"(v{entry.get('version')})"
        )
    return LoadedModel(booster, {**entry, "file": path.name}, sha256_hex(data))


def _days_root(test_data: Path) -> Path:
    """The folder holding the day folders: ``test_data`` or its single network folder."""
    if not test_data.is_dir():
        raise FileNotFoundError(f"test data directory {test_data} not found")
    children = [p for p in test_data.iterdir() if p.is_dir() and not p.name.startswith(".")]
    if any(_DATE_DIR.match(p.name) for p in children):
        return test_data
    networks = [p for p in children if any(_DATE_DIR.match(c.name) for c in p.iterdir())]
    if len(networks) == 1:
        return networks[0]
    found = f"network folders {sorted(p.name for p in networks)}" if networks else "none"
    raise ValueError(
        f"{test_data}: expected day folders YYYY-MM-DD (or one network folder holding them), "
        f"found {found}"
    )


def _read_table(root: Path, day: dt.date, spec: TableSpec) -> pd.DataFrame:
    """A day's table read and conformed like a landed one (``root`` is the network dir)."""
    return read_landed_table(LocalStorage(root.parent), root.name, day, spec)


def read_test_days(test_data: Path, start: dt.date, end: dt.date) -> dict[dt.date, DayBatch]:
    """The batch of every day from ``start`` to ``end``; a missing day folder is an error."""
    root = _days_root(Path(test_data).resolve())
    days = date_range(start, end)
    missing = [day.isoformat() for day in days if not (root / day.isoformat()).is_dir()]
    if missing:
        raise FileNotFoundError(f"{root}: no day folder for {', '.join(missing)}")
    out = {}
    for day in days:
        traps = root / day.isoformat() / PATTERN_TRAPS_FILE
        out[day] = DayBatch(
            alerts=_read_table(root, day, ALERTS),
            address_features=_read_table(root, day, FEATURES),
            clusters=_read_table(root, day, CLUSTERS),
            pattern_traps=load_pattern_traps(traps) if traps.is_file() else [],
        )
    return out


def build_test_features(
    test_data: Path, days: dict[dt.date, DayBatch], labels: pd.DataFrame
) -> dict[dt.date, pd.DataFrame]:
    """Alert features of each day, as training and scoring build them.

    The history uses the alerts of the ``LABEL_HISTORY_DAYS`` days before each day (test
    days plus earlier day folders of ``test_data``; absent days count as no alerts) and
    those of ``labels`` that were known before the day; labels without ``label_date`` and
    ``processing_date`` are never known early.
    """
    root = _days_root(Path(test_data).resolve())
    first = min(days) - dt.timedelta(LABEL_HISTORY_DAYS)
    alerts = {day: batch.alerts for day, batch in days.items()}
    for day in date_range(first, min(days) - dt.timedelta(1)):
        if (root / day.isoformat()).is_dir():
            alerts[day] = _read_table(root, day, ALERTS)
    known = labels if {"label_date", "processing_date"} <= set(labels.columns) else None
    if known is not None:
        known = known.assign(
            processing_date=pd.to_datetime(known["processing_date"]).dt.date,
            label_date=pd.to_datetime(known["label_date"]).dt.date,
        )
    frames = [a for a in alerts.values() if not a.empty]
    everything = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    return {
        day: build_alert_features(
            batch.alerts,
            batch.address_features,
            batch.clusters,
            build_alert_history(everything, day, known),
        )
        for day, batch in days.items()
    }


def read_ground_truth(path: Path) -> pd.DataFrame:
    """Labels from a Parquet or CSV file (``alert_id``, ``is_sar_filed``, optional dates).

    Every label is kept, whatever its ``label_date``: this is evaluation at T+tau.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"ground truth file {path} not found")
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        return pd.read_parquet(path)
    if suffix == ".csv":
        return pd.read_csv(path, dtype={"alert_id": str})
    raise ValueError(f"{path}: ground truth must be a .parquet or .csv file")


def _model_inputs(path: Path, model: LoadedModel) -> dict[str, Any]:
    return {
        "path": str(path.resolve()),
        "version": model.version,
        "kind": model.entry.get("kind"),
        "sha256": model.sha256,
        "n_features": len(model.features),
    }


def run_ab_test(
    model_a: Path,
    model_b: Path,
    test_data: Path,
    start: dt.date,
    end: dt.date,
    ground_truth: Path,
    output: Path,
    n_resamples: int = 1000,
    seed: int = 0,
) -> dict[str, Any]:
    """Compare model A (baseline) with model B on the test days from ``start`` to ``end``.

    Writes ``output`` (JSON) and, beside it, ``comparison_report.md`` with ROC/PR PNGs;
    returns the ``compare_models`` result with an ``inputs`` description added. A model
    whose features the data lacks is refused (``ModelSchemaError``) before any scoring.
    """
    paths = {"A": Path(model_a), "B": Path(model_b)}
    models = {label: load_model_file(path) for label, path in paths.items()}
    for model in models.values():
        check_schema(model, list(FEATURE_COLUMNS))
    labels = read_ground_truth(ground_truth)
    days = read_test_days(test_data, start, end)
    features = build_test_features(test_data, days, labels)
    names = {label: f"{label} (v{model.version})" for label, model in models.items()}
    scores: dict[str, dict[str, pd.DataFrame]] = {name: {} for name in names.values()}
    rescored: dict[str, dict[str, pd.DataFrame]] = {name: {} for name in names.values()}
    for day, frame in features.items():
        for label, model in models.items():
            for target in (scores, rescored):
                target[names[label]][day.isoformat()] = score_frame(
                    model, frame, "alert_id", CATEGORIES, explain_coverage=0
                )
    result = compare_models(
        scores,
        {day.isoformat(): batch.alerts for day, batch in days.items()},
        labels,
        {day.isoformat(): batch.pattern_traps for day, batch in days.items()},
        rescored=rescored,
        n_resamples=n_resamples,
        seed=seed,
    )
    inputs = {
        "model_a": _model_inputs(paths["A"], models["A"]),
        "model_b": _model_inputs(paths["B"], models["B"]),
        "test_data": str(Path(test_data).resolve()),
        "start_date": start.isoformat(),
        "end_date": end.isoformat(),
        "ground_truth": {"path": str(Path(ground_truth).resolve()), "n_rows": len(labels)},
        "n_alerts": {day.isoformat(): len(batch.alerts) for day, batch in days.items()},
    }
    result = {"inputs": inputs, **result}
    write_comparison_report(result, Path(output))
    return result
