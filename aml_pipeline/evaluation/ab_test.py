"""A/B test of two alert-scoring model files on the same test days.

Both models score every day of a test range with the features the daily run gave those
days (the ``model_comparison`` asset reads them from the warehouse; this module builds
them from test-data folders and a label file, with the label history known before each
day), each day is scored a second time for the Tier 1 determinism check, and
``compare_models`` validates and compares them; the report is written beside the JSON.

Test data is laid out like the landed input: ``{test_data}/{YYYY-MM-DD}/`` holding
alerts.parquet, features.parquet, clusters.parquet and optionally pattern_traps.json
(``{test_data}/{network}/{YYYY-MM-DD}/`` with a single network is accepted too).
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import multiprocessing
import re
from collections.abc import Callable, Mapping
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightgbm as lgb
import pandas as pd

from aml_pipeline.contract.files import sha256_hex
from aml_pipeline.contract.schema import (
    ALERTS,
    CLUSTERS,
    FEATURES,
    MONEY_FLOWS,
    PATTERN_TRAPS_FILE,
    TableSpec,
)
from aml_pipeline.contract.traps import load_pattern_traps
from aml_pipeline.dates import date_range
from aml_pipeline.evaluation.budget import DEFAULT_DAILY_BUDGET
from aml_pipeline.evaluation.comparison import compare_models
from aml_pipeline.evaluation.maturity import (
    LabelMaturity,
    estimate_label_maturity,
    labelled_share,
)
from aml_pipeline.evaluation.report import write_comparison_report
from aml_pipeline.features.alert_features import (
    CATEGORIES,
    FEATURE_COLUMNS,
    build_alert_features,
)
from aml_pipeline.features.flow_features import build_flow_features
from aml_pipeline.features.history import LABEL_HISTORY_DAYS, build_alert_history
from aml_pipeline.models.registry import (
    REGISTRY_FILE,
    LoadedModel,
    check_compatible,
    check_schema,
    load_entry,
)
from aml_pipeline.models.scoring import score_frame
from aml_pipeline.sources.landing import read_landed_table
from aml_pipeline.storage.objects import LocalStorage

_VERSIONED_STEM = re.compile(r"^(?P<kind>.+)_v(?P<version>\d+\.\d+\.\d+)$")
_DATE_DIR = re.compile(r"^\d{4}-\d{2}-\d{2}$")


@dataclass(frozen=True)
class DayBatch:
    """One test day's batch tables (conformed to the contract) and pattern traps."""

    alerts: pd.DataFrame
    address_features: pd.DataFrame
    clusters: pd.DataFrame
    money_flows: pd.DataFrame
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

    When a ``model_metadata.json`` beside the file has an entry for it, the model is loaded
    as the registry loads it: verified against the recorded sha256 and with its
    calibration map. Otherwise version and kind come from a ``{kind}_v{X.Y.Z}`` stem
    (version = stem otherwise), the features from the booster, and the scores are the
    booster's own (uncalibrated) output; such a model's feature schema and vocabularies
    cannot be checked against the code's, which its entry's ``unchecked`` says.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"model file {path} not found")
    entry = _registry_entry(path)
    if entry is not None:
        return load_entry(entry, lambda name: (path.parent / name).read_bytes())
    data = path.read_bytes()
    try:
        booster = lgb.Booster(model_str=data.decode("utf-8"))
    except (UnicodeDecodeError, lgb.basic.LightGBMError) as exc:
        raise ValueError(f"{path}: not a LightGBM model file ({exc})") from exc
    match = _VERSIONED_STEM.match(path.stem)
    entry = {
        "version": match["version"] if match else path.stem,
        "kind": match["kind"] if match else "model",
        "features": booster.feature_name(),
        "file": path.name,
        "unchecked": f"no {REGISTRY_FILE} entry beside {path.name}: its feature schema and "
        "category vocabularies are assumed to be this code's",
    }
    return LoadedModel(booster, entry, sha256_hex(data))


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
            money_flows=_read_table(root, day, MONEY_FLOWS),
            pattern_traps=load_pattern_traps(traps) if traps.is_file() else [],
        )
    return out


class IncompleteLabelHistory(ValueError):
    """A label file that cannot give the test days the label history production had."""


def _ranges(days: list[dt.date]) -> str:
    """Days as compact ranges: ``2025-01-01..2025-01-09, 2025-02-03``."""
    parts: list[list[dt.date]] = []
    for day in sorted(days):
        if parts and day - parts[-1][-1] == dt.timedelta(1):
            parts[-1].append(day)
        else:
            parts.append([day])
    return ", ".join(str(p[0]) if len(p) == 1 else f"{p[0]}..{p[-1]}" for p in parts)


def build_test_features(
    test_data: Path, days: dict[dt.date, DayBatch], labels: pd.DataFrame
) -> tuple[dict[dt.date, pd.DataFrame], list[str]]:
    """Alert features of each test day exactly as the daily run built them, and warnings.

    The history uses the alerts of the ``LABEL_HISTORY_DAYS`` days before each day (test
    days plus earlier day folders of ``test_data``; the data begins at the first folder)
    and the labels of ``labels`` whose ``label_date`` is before the day. A label file
    without ``label_date`` and ``processing_date`` cannot say what was known when, and a
    file with no label for any alerted look-back day cannot give the history production
    had: both are refused (``IncompleteLabelHistory``). Look-back days with alerts but no
    label in the file are named in the warnings.
    """
    root = _days_root(Path(test_data).resolve())
    if not {"label_date", "processing_date"} <= set(labels.columns):
        raise IncompleteLabelHistory(
            "the ground truth has no label_date and processing_date columns, so it cannot "
            "say which labels were known before each test day; production's features use "
            f"the labels of the {LABEL_HISTORY_DAYS} days before it"
        )
    known = labels.assign(
        processing_date=pd.to_datetime(labels["processing_date"]).dt.date,
        label_date=pd.to_datetime(labels["label_date"]).dt.date,
    )
    start = min(days)
    folders = sorted(d for d in map(_folder_day, root.iterdir()) if d is not None)
    since = folders[0] if folders else start
    alerts = {day: batch.alerts for day, batch in days.items()}
    for day in date_range(start - dt.timedelta(LABEL_HISTORY_DAYS), start - dt.timedelta(1)):
        if (root / day.isoformat()).is_dir():
            alerts[day] = _read_table(root, day, ALERTS)
    look_back = [d for d, a in alerts.items() if d < start and not a.empty]
    labelled_days = set(known["processing_date"])
    uncovered = sorted(d for d in look_back if d not in labelled_days)
    warnings = []
    if look_back and len(uncovered) == len(look_back):
        raise IncompleteLabelHistory(
            f"the ground truth has no label for any alert of the {len(look_back)} look-back "
            f"day(s) before {start} ({_ranges(look_back)}): the test alerts would get no label "
            "history, which the daily run did have; pass a label file covering the "
            f"{LABEL_HISTORY_DAYS} days before the range (with label_date)"
        )
    if uncovered:
        warnings.append(
            f"no label in the ground truth for the alerts of {len(uncovered)} look-back "
            f"day(s): {_ranges(uncovered)}"
        )
    frames = [a for a in alerts.values() if not a.empty]
    everything = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    features = {
        day: build_alert_features(
            batch.alerts,
            batch.address_features,
            batch.clusters,
            build_alert_history(batch.alerts["address"], everything, day, known, since),
            build_flow_features(batch.alerts["address"], batch.money_flows, everything, known, day),
        )
        for day, batch in days.items()
    }
    return features, warnings


def _folder_day(path: Path) -> dt.date | None:
    return dt.date.fromisoformat(path.name) if _DATE_DIR.match(path.name) else None


def read_ground_truth(path: Path) -> pd.DataFrame:
    """Labels from a Parquet or CSV file (``alert_id``, ``is_sar_filed``, optional dates),
    or from a folder of daily Parquet files such as the warehouse's ``label_events``.

    Every label is kept, whatever its ``label_date``: this is evaluation at T+tau.
    """
    path = Path(path)
    if path.is_dir():
        files = sorted(path.glob("*.parquet"))
        if not files:
            raise FileNotFoundError(f"ground truth folder {path} holds no .parquet file")
        frames = [f for f in map(pd.read_parquet, files) if not f.empty]
        return pd.concat(frames, ignore_index=True) if frames else pd.read_parquet(files[0])
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
        **({"unchecked": model.entry["unchecked"]} if "unchecked" in model.entry else {}),
    }


#: Loads a model from its stored file; picklable, so a fresh process can call it too.
ModelLoader = Callable[[], LoadedModel]


def score_days(
    model: LoadedModel, features: dict[dt.date, pd.DataFrame]
) -> dict[str, pd.DataFrame]:
    """The alert scores of each day's features, by ISO day."""
    return {
        day.isoformat(): score_frame(model, frame, "alert_id", CATEGORIES, explain_coverage=0)
        for day, frame in features.items()
    }


def _load_and_score(
    loaders: Mapping[str, ModelLoader], features: dict[dt.date, pd.DataFrame]
) -> dict[str, dict[str, pd.DataFrame]]:
    return {label: score_days(load(), features) for label, load in loaders.items()}


def rescore_in_fresh_process(
    loaders: Mapping[str, ModelLoader], features: dict[dt.date, pd.DataFrame]
) -> dict[str, dict[str, pd.DataFrame]]:
    """Each model loaded again from its stored file and scored in a new (spawned) process,
    which shares nothing with this one: what tier 1's determinism check compares."""
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(1, mp_context=context) as pool:
        return pool.submit(_load_and_score, loaders, features).result()


def compare_loaded(
    loaders: Mapping[str, ModelLoader],
    features: dict[dt.date, pd.DataFrame],
    alerts: dict[dt.date, pd.DataFrame],
    labels: pd.DataFrame,
    traps: dict[dt.date, list[dict[str, Any]]],
    output: Path,
    inputs: dict[str, Any],
    n_resamples: int = 1000,
    seed: int = 0,
    budget: int = DEFAULT_DAILY_BUDGET,
    judged_days: list[dt.date] | None = None,
) -> dict[str, Any]:
    """Score every day with models ``A`` and ``B`` (``loaders`` load them), and again in a
    fresh process from their stored files for tier 1's determinism check; compare them
    (``compare_models``) at the daily alert ``budget``, the verdict resting on
    ``judged_days`` (the days with mature labels; None: all), write ``output`` and the
    report beside it."""
    models = {label: load() for label, load in loaders.items()}
    for model in models.values():
        check_schema(model, list(FEATURE_COLUMNS))
        check_compatible(model, CATEGORIES)
    names = {label: f"{label} (v{model.version})" for label, model in models.items()}
    scores = {names[label]: score_days(model, features) for label, model in models.items()}
    again = rescore_in_fresh_process(loaders, features)
    rescored = {names[label]: days for label, days in again.items()}
    result = compare_models(
        scores,
        {day.isoformat(): frame for day, frame in alerts.items()},
        labels,
        {day.isoformat(): day_traps for day, day_traps in traps.items()},
        rescored=rescored,
        thresholds={
            names[label]: model.entry.get("metrics", {}).get("f1_threshold")
            for label, model in models.items()
        },
        budget=budget,
        judged_days=None if judged_days is None else [d.isoformat() for d in judged_days],
        n_resamples=n_resamples,
        seed=seed,
    )
    result = {"inputs": inputs, **result}
    write_comparison_report(result, Path(output))
    return result


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
    budget: int = DEFAULT_DAILY_BUDGET,
    label_maturity_days: int = 0,
) -> dict[str, Any]:
    """Compare model A (baseline) with model B on the test days from ``start`` to ``end``
    of a test-data directory, with features built as the daily run built them, at a daily
    alert ``budget``. The verdict rests on the days whose labels are mature by the last
    label day of the ground truth (``label_maturity_days``, else estimated from the test
    days' alerts and the ground truth's label dates).

    Writes ``output`` (JSON) and, beside it, ``comparison_report.md`` with ROC/PR and
    reliability PNGs; returns the ``compare_models`` result with an ``inputs`` description
    (and the label-history ``warnings``) added. A model whose features the data lacks is
    refused (``ModelSchemaError``) before any scoring.
    """
    paths = {"A": Path(model_a), "B": Path(model_b)}
    models = {label: load_model_file(path) for label, path in paths.items()}
    loaders = {label: functools.partial(load_model_file, path) for label, path in paths.items()}
    labels = read_ground_truth(ground_truth)
    days = read_test_days(test_data, start, end)
    features, warnings = build_test_features(test_data, days, labels)
    through = max(pd.to_datetime(labels["label_date"])).date()
    tested = pd.concat([batch.alerts[["alert_id", "processing_date"]] for batch in days.values()])
    maturity = (
        LabelMaturity.from_setting(label_maturity_days)
        if label_maturity_days
        else estimate_label_maturity(tested, labels, through)
    )
    judged = [
        day
        for day, batch in days.items()
        if maturity.mature(day, through, labelled_share(batch.alerts["alert_id"], labels))
    ]
    inputs = {
        "model_a": _model_inputs(paths["A"], models["A"]),
        "model_b": _model_inputs(paths["B"], models["B"]),
        "test_data": str(Path(test_data).resolve()),
        "start_date": start.isoformat(),
        "end_date": end.isoformat(),
        "ground_truth": {"path": str(Path(ground_truth).resolve()), "n_rows": len(labels)},
        "n_alerts": {day.isoformat(): len(batch.alerts) for day, batch in days.items()},
        "labels_through": through.isoformat(),
        "label_maturity": maturity.to_dict(),
        "warnings": warnings,
    }
    return compare_loaded(
        loaders,
        features,
        {day: batch.alerts for day, batch in days.items()},
        labels,
        {day: batch.pattern_traps for day, batch in days.items()},
        output,
        inputs,
        n_resamples,
        seed,
        budget,
        judged,
    )
