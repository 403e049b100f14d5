"""The model registry: native LightGBM files plus ``model_metadata.json`` per network.

Layout (as the seed lays it out): ``trained_models/{network}/alert_scorer_v1.3.0.txt``,
``alert_ranker_v1.3.0.txt``, ``cluster_scorer_v1.3.0.txt`` and ``model_metadata.json``
holding every version's metadata and the champion of each model kind.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from typing import Any

import lightgbm as lgb

from aml_pipeline.contract.files import sha256_hex
from aml_pipeline.storage import Storage

MODEL_KINDS = ("alert_scorer", "alert_ranker", "cluster_scorer")
REGISTRY_FILE = "model_metadata.json"


class ModelSchemaError(ValueError):
    """The scoring data does not have the columns a model was trained on."""


class ModelNotFound(LookupError):
    """No such model (or no champion yet) in the registry."""


@dataclass(frozen=True)
class LoadedModel:
    booster: lgb.Booster
    entry: dict[str, Any]
    sha256: str

    @property
    def version(self) -> str:
        return self.entry["version"]

    @property
    def features(self) -> list[str]:
        return self.entry["features"]


class ModelRegistry:
    """Versions and champions of one network's models."""

    def __init__(self, storage: Storage, network: str) -> None:
        self.storage, self.network = storage, network
        self.folder = f"trained_models/{network}"

    def _read(self) -> dict[str, Any]:
        key = f"{self.folder}/{REGISTRY_FILE}"
        if not self.storage.exists(key):
            return {"network": self.network, "champions": {}, "versions": []}
        return json.loads(self.storage.read_bytes(key))

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

    def next_version(self, kind: str, schema_version: int) -> str:
        """``{schema}.{n}.0`` with n one more than the latest of that schema and kind."""
        minors = [
            int(e["version"].split(".")[1])
            for e in self.entries(kind)
            if e["version"].split(".")[0] == str(schema_version)
        ]
        return f"{schema_version}.{max(minors, default=-1) + 1}.0"

    def model_key(self, kind: str, version: str) -> str:
        return f"{self.folder}/{kind}_v{version}.txt"

    def register(
        self, kind: str, booster: lgb.Booster, entry: dict[str, Any], promote_if_first: bool = True
    ) -> dict[str, Any]:
        """Save the model file and record its metadata; the first of a kind is champion."""
        if kind not in MODEL_KINDS:
            raise ValueError(f"unknown model kind {kind!r}")
        version = entry["version"]
        self.storage.write_bytes(self.model_key(kind, version), booster.model_to_string().encode())
        entry = {**entry, "kind": kind, "file": self.model_key(kind, version).split("/")[-1]}
        with self.storage.locked(f"{self.folder}/{REGISTRY_FILE}"):
            registry = self._read()
            registry["versions"] = [
                e
                for e in registry["versions"]
                if not (e["kind"] == kind and e["version"] == version)
            ]
            registry["versions"].append(entry)
            if promote_if_first and kind not in registry["champions"]:
                registry["champions"][kind] = version
            self._write(registry)
        return entry

    def promote(self, kind: str, version: str, reason: str = "") -> dict[str, Any]:
        """Make ``version`` the champion used for scoring; the change is recorded in the
        registry's ``promotions`` history, and returned."""
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
            }
            registry["champions"][kind] = version
            registry.setdefault("promotions", []).append(record)
            self._write(registry)
        return record

    def load(self, kind: str, version: str | None = None) -> LoadedModel:
        """A model by version, or the champion."""
        version = version or self.champions().get(kind)
        if version is None:
            raise ModelNotFound(f"{self.network} has no champion {kind}: train one first")
        entry = self.entry(kind, version)
        if entry is None:
            raise ModelNotFound(f"{self.network} has no {kind} v{version}")
        data = self.storage.read_bytes(self.model_key(kind, version))
        return LoadedModel(lgb.Booster(model_str=data.decode()), entry, sha256_hex(data))


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
