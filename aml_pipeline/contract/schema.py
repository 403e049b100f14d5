"""Column-level specification of the SOT batch contract.

Follows ``shared/reference/sot-contract.md``. Where this module deliberately differs from
the upstream ClickHouse types, the column's ``note`` says why:

* ``UInt16``/``UInt32`` counters are held as signed 64-bit integers (pandas and Parquet
  readers everywhere handle int64; the values fit).
* ``Decimal128(18)`` USD volumes are held as float64: models and aggregations consume
  floats, and 18-digit decimals are not representable in pandas without object columns.
* ``Float32`` scores are widened to float64 so arithmetic does not change with the reader.

Every column is either *required* (a batch without it is refused) or *optional* (a missing
optional column becomes a column of missing values and is reported as schema drift).
Key columns must be non-null and unique within a file. Columns a batch carries that this
module does not know are kept as they are and reported.

Values: a float is never infinite, and a required one never missing; a value outside a
column's ``valid`` range is meaningless (a confidence of 5, a negative count or USD total)
and refuses the batch; one outside its ``usual`` range (a ratio above 1, an hour of 24), a
magnitude above ``MAX_PLAUSIBLE`` or a string outside ``allowed`` is merely odd and is
reported with its count.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Literal

ColumnType = Literal[
    "string", "int", "float", "bool", "date", "timestamp_ms", "string_list", "int_list"
]

#: The pandas dtype each contract type is conformed to.
PANDAS_DTYPES: dict[ColumnType, str] = {
    "string": "str",
    "int": "Int64",
    "float": "float64",
    "bool": "boolean",
    "date": "object",  # datetime.date values
    "timestamp_ms": "Int64",  # epoch milliseconds, as upstream exports them
    "string_list": "object",  # lists of str
    "int_list": "object",  # lists of int
}

#: The DuckDB/Parquet type each contract type is stored as.
DUCKDB_TYPES: dict[ColumnType, str] = {
    "string": "VARCHAR",
    "int": "BIGINT",
    "float": "DOUBLE",
    "bool": "BOOLEAN",
    "date": "DATE",
    "timestamp_ms": "BIGINT",
    "string_list": "VARCHAR[]",
    "int_list": "BIGINT[]",
}


#: ``(low, high)`` bounds of a numeric column, either end open (None).
Bounds = tuple[float | None, float | None]
#: Above this magnitude a number is reported as implausible (no USD amount reaches it).
MAX_PLAUSIBLE = 1e15


@dataclass(frozen=True)
class ColumnSpec:
    """One column of a contract table, with the values it may take."""

    name: str
    type: ColumnType
    description: str
    required: bool = False
    missing_means: str = "missing value"
    note: str = ""
    valid: Bounds | None = None  # outside: meaningless, the batch is refused
    usual: Bounds | None = None  # outside: odd, reported with a count
    allowed: tuple[str, ...] | None = None  # any other string: odd, reported


@dataclass(frozen=True)
class TableSpec:
    """One file of a batch (or the ground truth) and its columns."""

    name: str
    file: str
    key: tuple[str, ...]
    columns: tuple[ColumnSpec, ...]
    required_file: bool = True
    description: str = ""
    by_name: dict[str, ColumnSpec] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "by_name", {c.name: c for c in self.columns})

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]


SEVERITIES = ("low", "medium", "high", "critical")
CLUSTER_TYPES = ("same_entity", "pattern", "network", "time_proximity")
#: Integer columns that are not counts (an id, and positions in a day or a week).
_NOT_COUNTS = {"community_id", "peak_hour", "peak_day", "peak_activity_hour", "peak_activity_day"}
#: USD (or native) amounts that may be negative.
_SIGNED_AMOUNTS = {"net_flow_usd"}


def _value_rules(col: ColumnSpec) -> ColumnSpec:
    """``col`` with the value rules its name and type imply."""
    name, rules = col.name, dict[str, Any]()
    if name in ("alert_confidence_score", "confidence_avg"):
        rules["valid"] = (0.0, 1.0)
    elif col.type == "int" and name not in _NOT_COUNTS:
        rules["valid"] = (0.0, None)  # counts, degrees, windows
    elif (
        col.type == "float"
        and (name.endswith(("_usd", "_usd_sum")) or name == "amount_sum")
        and name not in _SIGNED_AMOUNTS
    ):
        rules["valid"] = (0.0, None)
    if name.endswith("_ratio"):
        rules["usual"] = (0.0, 1.0)
    elif name.endswith("_hour"):
        rules["usual"] = (0.0, 23.0)
    elif name.endswith("_day") and col.type == "int" and name in _NOT_COUNTS:
        rules["usual"] = (0.0, 6.0)
    if name in ("severity", "severity_max"):
        rules["allowed"] = SEVERITIES
    elif name == "cluster_type":
        rules["allowed"] = CLUSTER_TYPES
    return replace(col, **rules)


def _with_rules(spec: TableSpec) -> TableSpec:
    return replace(spec, columns=tuple(_value_rules(c) for c in spec.columns))


def _req(name: str, type_: ColumnType, description: str, note: str = "") -> ColumnSpec:
    return ColumnSpec(name, type_, description, required=True, note=note)


def _opt(
    name: str, type_: ColumnType, description: str, missing: str = "missing value", note: str = ""
) -> ColumnSpec:
    return ColumnSpec(name, type_, description, required=False, missing_means=missing, note=note)


_BATCH_KEYS = (
    _req("window_days", "int", "trailing window the batch was computed over", note="UInt16"),
    _req("processing_date", "date", "batch date"),
)

ALERTS = TableSpec(
    name="alerts",
    file="alerts.parquet",
    key=("alert_id",),
    description="One row per alert raised by a typology detector.",
    columns=(
        *_BATCH_KEYS,
        _req("alert_id", "string", "unique per batch; derived upstream from address+typology+date"),
        _req("address", "string", "the alerted address"),
        _req("typology_type", "string", "detector typology, e.g. PEEL_CHAIN, STRUCTURING"),
        _opt("pattern_id", "string", "structural pattern the alert came from", "'' (no pattern)"),
        _opt(
            "pattern_type",
            "string",
            "cycle, layering_path, smurfing_network, ...",
            "'' (no pattern)",
        ),
        _opt("severity", "string", "low / medium / high / critical", "'medium'"),
        _opt("suspected_address_type", "string", "exchange, dex, mixer, ...", "'unknown'"),
        _opt("suspected_address_subtype", "string", "finer address type", "''"),
        _req(
            "alert_confidence_score",
            "float",
            "detector confidence in [0, 1]",
            note="Float32 upstream",
        ),
        _opt("description", "string", "human-readable text", "''"),
        _opt(
            "volume_usd",
            "float",
            "volume involved (USD)",
            "0",
            note="Decimal128(18) upstream; float64 here",
        ),
        _opt("evidence_json", "string", "JSON evidence", "'{}'"),
        _opt("risk_indicators", "string_list", "indicators that fired", "empty list"),
    ),
)

ALERT_DEFAULTS: dict[str, object] = {
    "pattern_id": "",
    "pattern_type": "",
    "severity": "medium",
    "suspected_address_type": "unknown",
    "suspected_address_subtype": "",
    "description": "",
    "volume_usd": 0.0,
    "evidence_json": "{}",
}

_F: ColumnType = "float"
_I: ColumnType = "int"
_B: ColumnType = "bool"
_FEATURE_GROUPS: dict[str, tuple[tuple[str, ColumnType], ...]] = {
    "topology": (
        ("degree_in", _I),
        ("degree_out", _I),
        ("degree_total", _I),
        ("unique_counterparties", _I),
    ),
    "volume": tuple(
        (n, _F)
        for n in (
            "total_in_usd",
            "total_out_usd",
            "net_flow_usd",
            "total_volume_usd",
            "avg_tx_in_usd",
            "avg_tx_out_usd",
            "median_tx_in_usd",
            "median_tx_out_usd",
            "max_tx_usd",
            "min_tx_usd",
        )
    ),
    "distribution": tuple(
        (n, _F)
        for n in (
            "amount_variance",
            "amount_skewness",
            "amount_kurtosis",
            "volume_std",
            "volume_cv",
            "flow_concentration",
        )
    ),
    "counts": (("tx_in_count", _I), ("tx_out_count", _I), ("tx_total_count", _I)),
    "temporal": (
        ("activity_days", _I),
        ("activity_span_days", _I),
        ("avg_daily_volume_usd", _F),
        ("peak_hour", _I),
        ("peak_day", _I),
        ("regularity_score", _F),
        ("burst_factor", _F),
    ),
    "flow": tuple(
        (n, _F)
        for n in (
            "reciprocity_ratio",
            "flow_diversity",
            "counterparty_concentration",
            "concentration_ratio",
            "velocity_score",
            "structuring_score",
        )
    ),
    "assets": (
        ("unique_assets_in", _I),
        ("unique_assets_out", _I),
        ("dominant_asset_in", "string"),
        ("dominant_asset_out", "string"),
        ("asset_diversity_score", _F),
    ),
    "behaviour": (
        ("hourly_activity", "int_list"),
        ("daily_activity", "int_list"),
        ("peak_activity_hour", _I),
        ("peak_activity_day", _I),
        ("hourly_entropy", _F),
        ("daily_entropy", _F),
        ("weekend_transaction_ratio", _F),
        ("night_transaction_ratio", _F),
        ("small_transaction_ratio", _F),
        ("consistency_score", _F),
    ),
    "graph": (
        ("pagerank", _F),
        ("betweenness", _F),
        ("closeness", _F),
        ("clustering_coefficient", _F),
        ("kcore", _I),
        ("community_id", _I),
        ("centrality_score", _F),
        ("khop1_count", _I),
        ("khop2_count", _I),
        ("khop3_count", _I),
        ("khop1_volume_usd", _F),
        ("khop2_volume_usd", _F),
        ("khop3_volume_usd", _F),
    ),
    "advanced_flow": tuple(
        (n, _F)
        for n in (
            "flow_reciprocity_entropy",
            "counterparty_stability",
            "flow_burstiness",
            "transaction_regularity",
            "amount_predictability",
        )
    ),
    "anomaly": (
        ("behavioral_anomaly_score", _F),
        ("graph_anomaly_score", _F),
        ("neighborhood_anomaly_score", _F),
        ("global_anomaly_score", _F),
        ("outlier_transactions", _I),
        ("suspicious_pattern_score", _F),
    ),
    "flags": tuple(
        (n, _B)
        for n in (
            "is_exchange_like",
            "is_whale",
            "is_mixer_like",
            "is_contract_like",
            "is_new_address",
            "is_dormant_reactivated",
            "is_high_volume_trader",
            "is_hub_address",
            "is_retail_active",
            "is_whale_inactive",
            "is_retail_inactive",
            "is_regular_user",
        )
    ),
    "other": (
        ("unique_recipients_count", _I),
        ("unique_senders_count", _I),
        ("completeness_score", _F),
        ("quality_score", _F),
        ("outlier_score", _F),
        ("confidence_score", _F),
        ("first_activity_timestamp", "timestamp_ms"),
        ("last_activity_timestamp", "timestamp_ms"),
    ),
}

#: The feature columns upstream has retired (stopped exporting): the anomaly scores, ten
#: of the twelve flags and the quality scores. Still optional and read when present; their
#: absence is expected, so it is stated here once instead of reported for every batch.
RETIRED_FEATURES: tuple[str, ...] = (
    *(name for name, _ in _FEATURE_GROUPS["anomaly"]),
    *(
        name
        for name, _ in _FEATURE_GROUPS["flags"]
        if name not in ("is_exchange_like", "is_hub_address")
    ),
    "completeness_score",
    "quality_score",
    "outlier_score",
    "confidence_score",
)

#: Feature column name -> contract group, for every optional feature column.
FEATURE_GROUP_OF: dict[str, str] = {
    name: group for group, cols in _FEATURE_GROUPS.items() for name, _ in cols
}

FEATURES = TableSpec(
    name="features",
    file="features.parquet",
    key=("address",),
    description="One row per address: features computed over the batch window.",
    columns=(
        *_BATCH_KEYS,
        _req("address", "string", "the address"),
        *(
            _opt(name, type_, f"{group} feature", "missing value (schema drift is reported)")
            if name not in RETIRED_FEATURES
            else _opt(
                name,
                type_,
                f"{group} feature, retired upstream (no longer produced)",
                "missing value (expected, so not reported per batch)",
            )
            for group, cols in _FEATURE_GROUPS.items()
            for name, type_ in cols
        ),
    ),
)

CLUSTERS = TableSpec(
    name="clusters",
    file="clusters.parquet",
    key=("cluster_id",),
    description="One row per alert cluster.",
    columns=(
        *_BATCH_KEYS,
        _req("cluster_id", "string", "cluster identifier"),
        _req("cluster_type", "string", "same_entity, pattern, network, time_proximity"),
        _opt("primary_address", "string", "the cluster's main address", "''"),
        _opt("pattern_id", "string", "pattern the cluster came from", "''"),
        _opt("primary_alert_id", "string", "the cluster's main alert", "''"),
        _req("related_alert_ids", "string_list", "member alert ids"),
        _opt("addresses_involved", "string_list", "member addresses", "empty list"),
        _opt(
            "total_alerts",
            "int",
            "number of member alerts",
            "length of related_alert_ids",
            note="UInt32 upstream",
        ),
        _opt(
            "total_volume_usd",
            "float",
            "summed member volume (USD)",
            "0",
            note="Decimal128(18) upstream; float64 here",
        ),
        _opt("severity_max", "string", "highest member severity", "missing value"),
        _opt("confidence_avg", "float", "mean member confidence", "missing value"),
        _opt("earliest_alert_timestamp", "timestamp_ms", "first member alert (ms)"),
        _opt("latest_alert_timestamp", "timestamp_ms", "last member alert (ms)"),
    ),
)

MONEY_FLOWS = TableSpec(
    name="money_flows",
    file="money_flows.parquet",
    key=("from_address", "to_address"),
    required_file=False,
    description="One row per directed address pair over the window (optional file).",
    columns=(
        *_BATCH_KEYS,
        _req("from_address", "string", "sender"),
        _req("to_address", "string", "receiver"),
        _req("tx_count", "int", "transfers in the window"),
        _opt("amount_sum", "float", "native amount", note="Decimal128 upstream; float64 here"),
        _req("amount_usd_sum", "float", "USD amount", note="Decimal128 upstream; float64 here"),
        _opt("first_seen_timestamp", "timestamp_ms", "first transfer (ms)"),
        _opt("last_seen_timestamp", "timestamp_ms", "last transfer (ms)"),
        _opt("active_days", "int", "days with a transfer"),
        _opt("avg_tx_size_usd", "float", "mean transfer size (USD)"),
        _opt("unique_assets", "int", "distinct assets"),
        _opt("dominant_asset", "string", "most-used asset"),
        _opt("hourly_pattern", "int_list", "24 hourly counts"),
        _opt("weekly_pattern", "int_list", "7 weekday counts"),
        _opt("reciprocity_ratio", "float", "min/max of the two directions' USD"),
        _opt("is_bidirectional", "bool", "transfers both ways"),
    ),
)

GROUND_TRUTH = TableSpec(
    name="ground_truth",
    file="ground_truth.parquet",
    key=("alert_id",),
    description=(
        "Per-alert labels. A label is usable only on or after its label_date (T+tau); "
        "anything that trains or evaluates must filter on it."
    ),
    columns=(
        _req("alert_id", "string", "the alert the label is for"),
        _req("processing_date", "date", "the alert's batch date"),
        _req("is_sar_filed", "bool", "a SAR was filed / the address was confirmed illicit"),
        _req("label_date", "date", "the day the label became known (>= processing_date)"),
    ),
)

# every batch table with the value rules of its columns
ALERTS, FEATURES, CLUSTERS, MONEY_FLOWS = (
    _with_rules(spec) for spec in (ALERTS, FEATURES, CLUSTERS, MONEY_FLOWS)
)

#: The data files of a batch, in landing order.
BATCH_TABLES: tuple[TableSpec, ...] = (ALERTS, FEATURES, CLUSTERS, MONEY_FLOWS)

META_FILE = "META.json"
SEED_META_FILE = "metadata.json"

#: Optional JSON file of canary alerts: a list (or ``{"traps": [...]}``) of
#: ``{"alert_id": str, "expected_score": float in [0, 1]}``, each alert_id one of the
#: batch's alerts and listed once. Covered by META.json's sha256 map, not by its counts.
PATTERN_TRAPS_FILE = "pattern_traps.json"
SCHEMA_VERSION = "1.0.0"

#: META.json fields as upstream writes them (all required in the upstream layout).
META_FIELDS: dict[str, str] = {
    "schema_version": "contract version, '1.0.0'",
    "batch_id": "'{network}-{date}-{window}d'",
    "network": "network name",
    "processing_date": "ISO date",
    "window_days": "integer window",
    "generated_at": "ISO-8601 UTC time the export was made",
    "counts": "{file stem: row count}",
    "sha256": "{file name: hex digest}",
}


def batch_id(network: str, processing_date: str, window_days: int) -> str:
    """The upstream batch id ``{network}-{date}-{window}d``."""
    return f"{network}-{processing_date}-{window_days}d"
