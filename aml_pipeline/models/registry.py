"""The model registry: native LightGBM files plus ``model_metadata.json`` per network.

Layout (as the seed lays it out): ``trained_models/{network}/alert_scorer_v1.3.0.txt``,
``alert_ranker_v1.3.0.txt``, ``cluster_scorer_v1.3.0.txt`` (and, for the two scorers,
``..._v1.3.0.calibration.json``) and ``model_metadata.json`` holding every version's
metadata, its files' sha256 and the champion of each model kind.

Registering takes the registry's lock once for the version choice, the file writes (each
a temp file and a rename) and the entry; loading verifies the files' sha256 against the
entry, so a swapped or tampered file is refused.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd

from aml_pipeline.contract.files import sha256_hex
from aml_pipeline.features.alert_features import FEATURE_SCHEMA_VERSION
from aml_pipeline.models.calibration import PlattCalibration
from aml_pipeline.storage import layout
from aml_pipeline.storage.objects import Storage

MODEL_KINDS = ("alert_scorer", "alert_ranker", "cluster_scorer")
REGISTRY_FILE = "model_metadata.json"


class ModelSchemaError(ValueError):
    """A model this code cannot feed: the scoring data lacks columns it was trained on, or
    its feature schema or category vocabularies are not the code's."""


class ModelNotFound(LookupError):
    """No such model (or no champion yet) in the registry."""


class RegistryUnreadable(ValueError):
    """A ``model_metadata.json`` that is not a readable registry (truncated, edited)."""


def parse_registry(data: bytes, name: str) -> dict[str, Any]:
    """The registry document ``data`` of file ``name``; ``RegistryUnreadable`` names the
    file and the problem when it is not a JSON object with champions and versions."""
    try:
        registry = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RegistryUnreadable(
            f"{name} is not readable JSON ({exc}): restore it from a backup or retrain"
        ) from None
    if not isinstance(registry, dict) or not {"champions", "versions"} <= set(registry):
        raise RegistryUnreadable(
            f"{name} is not a model registry (a JSON object with champions and versions): "
            "restore it from a backup or retrain"
        )
    return registry


class ModelIntegrityError(ValueError):
    """A model or calibration file that is not the one its registry entry recorded."""


@dataclass(frozen=True)
class LoadedModel:
    booster: lgb.Booster
    entry: dict[str, Any]
    sha256: str
    calibration: PlattCalibration | None = None

    @property
    def version(self) -> str:
        return self.entry["version"]

    @property
    def features(self) -> list[str]:
        return self.entry["features"]

    def predict(self, x: pd.DataFrame) -> np.ndarray:
        """Scores of the rows of ``x``: calibrated probabilities when the model has a
        calibration map, else the booster's own output."""
        if self.calibration is None:
            return np.asarray(self.booster.predict(x))
        return self.calibration.apply(np.asarray(self.booster.predict(x, raw_score=True)))


class ModelRegistry:
    """Versions and champions of one network's models."""

    def __init__(self, storage: Storage, network: str) -> None:
        self.storage, self.network = storage, network
        self.folder = layout.models_folder(network)

    def _read(self) -> dict[str, Any]:
        key = f"{self.folder}/{REGISTRY_FILE}"
        if not self.storage.exists(key):
            return {"network": self.network, "champions": {}, "versions": []}
        return parse_registry(self.storage.read_bytes(key), self.storage.url(key))

    def _write(self, registry: dict[str, Any]) -> None:
        data = json.dumps(registry, indent=2, sort_keys=True, default=str) + "\n"
        self.storage.write_bytes(f"{self.folder}/{REGISTRY_FILE}", data.encode())

    def entries(self, kind: str | None = None) -> list[dict[str, Any]]:
        """Every recorded version (of ``kind``), oldest first."""
        return [e for e in self._read()["versions"] if kind is None or e["kind"] == kind]

    def entry(self, kind: str, version: str) -> dict[str, Any] | None:
        """The recorded entry of ``kind`` ``version``, or None."""
        return next((e for e in self.entries(kind) if e["version"] == version), None)

    def champions(self) -> dict[str, str]:
        return dict(self._read()["champions"])

    def _next_version(self, registry: dict[str, Any], kind: str, schema_version: int) -> str:
        """``{schema}.{n}.0`` with n one more than the latest of that schema and kind."""
        minors = [
            int(e["version"].split(".")[1])
            for e in registry["versions"]
            if e["kind"] == kind and e["version"].split(".")[0] == str(schema_version)
        ]
        return f"{schema_version}.{max(minors, default=-1) + 1}.0"

    def model_key(self, kind: str, version: str) -> str:
        return f"{self.folder}/{kind}_v{version}.txt"

    def calibration_key(self, kind: str, version: str) -> str:
        return f"{self.folder}/{kind}_v{version}.calibration.json"

    def register(
        self,
        kind: str,
        booster: lgb.Booster,
        entry: dict[str, Any],
        calibration: PlattCalibration | None = None,
        promote_if_first: bool = True,
    ) -> dict[str, Any]:
        """Give the model the next version of its feature schema, save its file (and its
        calibration map) and record the entry with their sha256, all under the registry's
        lock; the first of a kind becomes champion. Returns the recorded entry."""
        if kind not in MODEL_KINDS:
            raise ValueError(f"unknown model kind {kind!r}")
        model = booster.model_to_string().encode()
        with self.storage.locked(f"{self.folder}/{REGISTRY_FILE}"):
            registry = self._read()
            version = self._next_version(registry, kind, entry["feature_schema_version"])
            self.storage.write_bytes(self.model_key(kind, version), model)
            entry = {
                **entry,
                "kind": kind,
                "version": version,
                "file": self.model_key(kind, version).split("/")[-1],
                "sha256": sha256_hex(model),
            }
            if calibration is not None:
                data = (json.dumps(calibration.to_dict(), sort_keys=True) + "\n").encode()
                self.storage.write_bytes(self.calibration_key(kind, version), data)
                entry["calibration"] = {
                    **calibration.to_dict(),
                    "file": self.calibration_key(kind, version).split("/")[-1],
                    "sha256": sha256_hex(data),
                }
            registry["versions"].append(entry)
            if promote_if_first and kind not in registry["champions"]:
                registry["champions"][kind] = version
            self._write(registry)
        return entry

    def promote(
        self,
        kind: str,
        version: str,
        reason: str = "",
        gates: list[dict[str, Any]] | None = None,
        override: str = "",
    ) -> dict[str, Any]:
        """Make ``version`` the champion used for scoring; the change is recorded in the
        registry's ``promotions`` history with the ``gates`` it was judged by (and the
        ``override`` reason when one failed), and returned."""
        with self.storage.locked(f"{self.folder}/{REGISTRY_FILE}"):
            registry = self._read()
            if not any(e["kind"] == kind and e["version"] == version for e in registry["versions"]):
                raise ModelNotFound(f"{self.network} has no {kind} v{version}")
            record = {
                "kind": kind,
                "version": version,
                "previous": registry["champions"].get(kind),
                "reason": reason,
                "promoted_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                **({"gates": gates} if gates is not None else {}),
                **({"override": override} if override else {}),
            }
            registry["champions"][kind] = version
            registry.setdefault("promotions", []).append(record)
            self._write(registry)
        return record

    def load(self, kind: str, version: str | None = None) -> LoadedModel:
        """A model by version, or the champion; its files must match the entry's sha256."""
        version = version or self.champions().get(kind)
        if version is None:
            raise ModelNotFound(f"{self.network} has no champion {kind}: train one first")
        entry = self.entry(kind, version)
        if entry is None:
            raise ModelNotFound(f"{self.network} has no {kind} v{version}")
        return load_entry(entry, lambda name: self.storage.read_bytes(f"{self.folder}/{name}"))


def load_entry(entry: dict[str, Any], read: Callable[[str], bytes]) -> LoadedModel:
    """The model of a registry ``entry`` whose files ``read(name)`` returns, verified
    against the entry's sha256 (``ModelIntegrityError`` names a file that differs)."""
    data = _verified(entry["file"], read(entry["file"]), entry.get("sha256"))
    calibration = None
    if "calibration" in entry:  # the verified file is the map applied
        name = entry["calibration"]["file"]
        mapping = _verified(name, read(name), entry["calibration"]["sha256"])
        calibration = PlattCalibration.from_dict(json.loads(mapping))
    return LoadedModel(lgb.Booster(model_str=data.decode()), entry, entry["sha256"], calibration)


def _verified(name: str, data: bytes, expected: str | None) -> bytes:
    if expected is None:
        raise ModelIntegrityError(f"{name}: its registry entry records no sha256: retrain it")
    actual = sha256_hex(data)
    if actual != expected:
        raise ModelIntegrityError(
            f"{name}: sha256 {actual[:12]}... is not the {expected[:12]}... recorded "
            f"in {REGISTRY_FILE}: the file was changed or swapped after it was registered; "
            "restore it or retrain"
        )
    return data


def check_schema(model: LoadedModel, columns: list[str]) -> None:
    """Refuse scoring data that lacks features the model was trained on."""
    missing = [c for c in model.features if c not in columns]
    if missing:
        raise ModelSchemaError(
            f"{model.entry['kind']} v{model.version} was trained on {len(model.features)} "
            f"features; the scoring data lacks {len(missing)}: {missing[:8]}"
            f"{' ...' if len(missing) > 8 else ''} (feature schema "
            f"{model.entry.get('feature_schema_version')})"
        )


def check_compatible(model: LoadedModel, categories: Mapping[str, Sequence[str]]) -> None:
    """Refuse a model trained on another feature schema, or whose vocabulary of a
    categorical feature differs from ``categories`` (the code's): codes are positions in
    the vocabulary, so one inserted value would silently shift every later code. A bare
    model file loaded without its metadata (its entry says ``unchecked``) passes."""
    if "unchecked" in model.entry:
        return
    name = f"{model.entry['kind']} v{model.version}"
    schema = model.entry.get("feature_schema_version")
    if schema != FEATURE_SCHEMA_VERSION:
        raise ModelSchemaError(
            f"{name} was trained on feature schema {schema}; this code computes schema "
            f"{FEATURE_SCHEMA_VERSION}: retrain it"
        )
    recorded = model.entry.get("categories") or {}
    for column, values in categories.items():
        if column not in model.features:
            continue
        if column not in recorded:
            raise ModelSchemaError(f"{name} records no vocabulary of {column}: retrain it")
        theirs, ours = list(recorded[column]), list(values)
        if theirs == ours:
            continue
        at = next(
            (i for i, (a, b) in enumerate(zip(theirs, ours, strict=False)) if a != b),
            min(len(theirs), len(ours)),
        )
        model_value = repr(theirs[at]) if at < len(theirs) else "nothing"
        code_value = repr(ours[at]) if at < len(ours) else "nothing"
        raise ModelSchemaError(
            f"{name}: its vocabulary of {column} differs from this code's at code {at}: the "
            f"model has {model_value}, the code {code_value} (every later code would be read "
            "as another value): retrain it"
        )
