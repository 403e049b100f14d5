"""The champion assets of one network: which registered version of each model scores.

``{network}/{kind}_champion`` depends on the model asset ``{network}/{kind}`` (and the
alert scorer's on ``model_comparison``), and scoring depends on the champions, not on the
models: a newly trained candidate makes its champion asset stale in the UI, and the
scores turn stale only when a champion changes (the champion asset's data version is the
champion's version and file hash). Materializing a champion is the only way to promote:
``aml-pipeline promote``, the training job (which keeps the champion, or makes the first
trained version it), and an A/B promotion (``from_comparison``: the challenger of the
latest ``model_comparison`` when it won significantly on mature days). A version changes
champion only after passing the gates (``evaluation.gates``); a failed gate refuses it,
naming the gate, unless ``override`` gives a reason, which the registry records.
"""

import datetime as dt
import functools
import sys
from collections.abc import Iterator
from typing import Any

import dagster as dg
import pandas as pd
from pydantic import Field

from aml_pipeline.defs.assets import daily as daily_module
from aml_pipeline.defs.assets.daily import day_rows
from aml_pipeline.defs.resources import PipelineConfig
from aml_pipeline.defs.warehouse import Warehouse
from aml_pipeline.evaluation import gates as gates_module
from aml_pipeline.evaluation.gates import (
    Gate,
    compatibility_gate,
    failed_gates,
    refusal,
    tier1_gate,
)
from aml_pipeline.features.alert_features import CATEGORIES
from aml_pipeline.features.cluster_features import CLUSTER_TYPES
from aml_pipeline.models.registry import (
    MODEL_KINDS,
    ModelIntegrityError,
    ModelNotFound,
    ModelRegistry,
)
from aml_pipeline.provenance import module_version
from aml_pipeline.storage.tables import MissingPartitions

#: Tier 1 runs on this many of the latest stored days when no comparison names the days.
GATE_DAYS = 3
#: How many of the latest model_comparison materializations are searched for a version.
COMPARISONS_SEARCHED = 20
GATES_CHECK = "gates"


def champion_key(network: str, kind: str) -> dg.AssetKey:
    return dg.AssetKey([network, f"{kind}_champion"])


def vocabularies(kind: str) -> dict[str, list[str]]:
    """The code's vocabularies of ``kind``'s categorical features."""
    if kind == "cluster_scorer":
        return {"cluster_type": list(CLUSTER_TYPES)}
    return {k: list(v) for k, v in CATEGORIES.items()}


class ChampionConfig(dg.Config):
    """Which version of each selected model becomes (or stays) the champion."""

    alert_scorer: str = Field(
        default="",
        description="Version to promote; empty = keep the champion (the latest version "
        "when there is none).",
    )
    alert_ranker: str = Field(default="", description="As alert_scorer.")
    cluster_scorer: str = Field(default="", description="As alert_scorer.")
    from_comparison: bool = Field(
        default=False,
        description="alert_scorer: promote the challenger of the latest model_comparison "
        "when it won significantly (else keep the champion).",
    )
    reason: str = Field(default="", description="Recorded with the promotion.")
    override: str = Field(
        default="",
        description="Promote even when a gate fails; this reason is recorded in the "
        "registry with the failed gates.",
    )


def _comparisons(instance: dg.DagsterInstance, network: str) -> list[dict[str, Any]]:
    """The latest model_comparison materializations' metadata values, newest first."""
    records = instance.fetch_materializations(
        dg.AssetKey([network, "model_comparison"]), limit=COMPARISONS_SEARCHED
    ).records
    return [
        {k: v.value for k, v in r.asset_materialization.metadata.items()}
        for r in records
        if r.asset_materialization is not None
    ]


def _days(comparison: dict[str, Any]) -> list[dt.date]:
    first, last = (dt.date.fromisoformat(d) for d in comparison["test_range"])
    return [first + dt.timedelta(i) for i in range((last - first).days + 1)]


class _Promotion:
    """One kind's wanted champion, and the days its tier 1 gate runs on."""

    def __init__(
        self,
        context: dg.AssetExecutionContext,
        config: ChampionConfig,
        registry: ModelRegistry,
        kind: str,
    ) -> None:
        self.kind, self.registry = kind, registry
        self.current = registry.champions().get(kind)
        self.note = ""
        versions = [e["version"] for e in registry.entries(kind)]
        if not versions:
            raise dg.Failure(description=f"{registry.network} has no {kind} yet: train one first")
        # comparisons are of alert scorers: another kind's versions are never in them
        scorer = kind == "alert_scorer"
        comparisons = _comparisons(context.instance, registry.network) if scorer else []
        self.comparison = None
        if scorer and config.from_comparison:
            latest: dict[str, Any] = comparisons[0] if comparisons else {}
            won = bool(latest.get("significant"))
            won = won and str(latest.get("winner")).startswith("B")
            if won and latest.get("model_a") == self.current:
                self.version, self.comparison = latest["model_b"], latest
                self.reason = config.reason or latest["recommendation"]
            else:
                self.version, self.reason = self.current or versions[-1], config.reason
                self.note = (
                    f"the latest model_comparison's baseline v{latest.get('model_a')} is not the "
                    f"champion v{self.current}"
                    if won
                    else "no significant challenger in the latest model_comparison"
                    + (f": {latest['recommendation']}" if latest else " (none yet)")
                )
            return
        self.version = getattr(config, kind) or self.current or versions[-1]
        self.reason = config.reason
        if registry.entry(kind, self.version) is None:
            raise dg.Failure(description=f"{registry.network} has no {kind} v{self.version}")
        self.comparison = next(
            (c for c in comparisons if self.version in (c.get("model_a"), c.get("model_b"))),
            None,
        )

    @property
    def changes(self) -> bool:
        return self.version != self.current

    def gate_days(self, warehouse: Warehouse) -> list[dt.date]:
        """The comparison's days, else the latest ``GATE_DAYS`` stored feature days."""
        if self.comparison and self.comparison.get("test_range"):
            return _days(self.comparison)
        stored = warehouse.stored_days(dg.AssetKey([self.registry.network, "alert_features"]))
        return stored[-GATE_DAYS:]

    def gates(self, warehouse: Warehouse) -> list[Gate]:
        """The compatibility gate, and for a new alert-scorer champion tier 1; a model or
        gate day that cannot be read fails its gate, with the reason."""
        load = functools.partial(self.registry.load, self.kind, self.version)
        try:
            found = [compatibility_gate(load(), vocabularies(self.kind))]
        except (ModelIntegrityError, ModelNotFound) as exc:
            return [Gate("compatible", False, f"the model cannot be loaded: {exc}")]
        if self.kind == "alert_scorer" and self.changes and found[0].passed:
            days = self.gate_days(warehouse)
            key = dg.AssetKey([self.registry.network, "alert_features"])
            try:
                frame = warehouse.read_days(key, days) if days else pd.DataFrame()
            except MissingPartitions as exc:
                found.append(Gate("tier1", False, f"its days cannot be read: {exc}"))
                return found
            found.append(tier1_gate(load, {day: day_rows(frame, day) for day in days}))
        return found


def build_champion_assets(network: str) -> dg.AssetsDefinition:
    """The champion of each model kind of one network, with its blocking gates check."""
    specs = [
        dg.AssetSpec(
            champion_key(network, kind),
            deps=[
                dg.AssetKey([network, kind]),
                *([dg.AssetKey([network, "model_comparison"])] if kind == "alert_scorer" else []),
            ],
            group_name=f"{network}_models",
            kinds={"lightgbm"},
            description=f"The {kind} version that scores every day, promoted only through "
            "its gates (feature schema and vocabularies equal the code's"
            + ("; tier 1 passes on the comparison days" if kind == "alert_scorer" else "")
            + "). Its data version is the champion's version and file hash.",
            skippable=True,
        )
        for kind in MODEL_KINDS
    ]
    checks = [
        dg.AssetCheckSpec(
            GATES_CHECK,
            asset=champion_key(network, kind),
            blocking=True,
            description="The gates the champion passed when it was materialized; a gate "
            "failed under an override is a warning.",
        )
        for kind in MODEL_KINDS
    ]

    @dg.multi_asset(
        specs=specs,
        check_specs=checks,
        name=f"{network}__champions",
        can_subset=True,
        code_version=module_version(sys.modules[__name__], daily_module, gates_module),
    )
    def champions(
        context: dg.AssetExecutionContext,
        config: ChampionConfig,
        pipeline: PipelineConfig,
        warehouse: Warehouse,
    ) -> Iterator[dg.MaterializeResult]:
        registry = ModelRegistry(pipeline.storage(), network)
        for kind in MODEL_KINDS:
            key = champion_key(network, kind)
            if key not in context.selected_asset_keys:
                continue
            wanted = _Promotion(context, config, registry, kind)
            found = wanted.gates(warehouse)
            failed = failed_gates(found)
            if failed and not config.override:
                raise dg.Failure(description=refusal(kind, wanted.version, found))
            record = None
            if wanted.changes:
                record = registry.promote(
                    kind,
                    wanted.version,
                    wanted.reason,
                    [gate.to_dict() for gate in found],
                    config.override if failed else "",
                )
            entry = registry.entry(kind, wanted.version)
            if entry is None:
                missing = f"{network} {kind} v{wanted.version} is not registered"
                raise dg.Failure(description=missing)
            yield dg.MaterializeResult(
                asset_key=key,
                metadata={
                    "champion": wanted.version,
                    "previous": str(wanted.current),
                    "promoted": record is not None,
                    "reason": wanted.reason,
                    "note": wanted.note,
                    "gates": dg.MetadataValue.json([gate.to_dict() for gate in found]),
                    "file": entry["file"],
                    "sha256": entry["sha256"],
                },
                data_version=dg.DataVersion(f"{wanted.version}:{entry['sha256'][:16]}"),
                check_results=[
                    dg.AssetCheckResult(
                        asset_key=key,
                        check_name=GATES_CHECK,
                        passed=not failed,
                        severity=dg.AssetCheckSeverity.WARN,  # only an override gets here
                        metadata={
                            gate.name: dg.MetadataValue.text(
                                f"{'passed' if gate.passed else 'FAILED'}: {gate.detail}"
                            )
                            for gate in found
                        }
                        | ({"override": config.override} if failed else {}),
                    )
                ],
            )

    return champions
