"""The pipeline's settings: one typed object read from ``AML_*`` environment variables, and
one file per network for what differs between networks.

``Settings`` is the only place defaults are written. A network's own settings (window,
source, source directory, simulator, schedule hour, sensor look-back) come from
``{AML_NETWORKS_DIR}/{network}.yaml`` where that file exists, else from the environment's
values; adding a network is adding its file. ``settings_table()`` renders the variables
for ``docs/operations.md`` (a test keeps the two equal) and the UI shows them as the ``pipeline``
resource's config.
"""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

NETWORK_PATTERN = r"^[a-z][a-z0-9_]{0,31}$"
DEFAULT_NETWORK = "ethereum"


# The settings a network file may set (the environment's values are their defaults).
WindowDays = Annotated[int, Field(ge=1, le=366, description="trailing window of the batches, days")]
BatchSource = Annotated[
    Literal["simulated", "local"],
    Field(description="`simulated` (no SOT access needed) or `local`"),
]
SourceDir = Annotated[str, Field(description="directory of the `local` source")]
SimProfile = Annotated[
    str,
    Field(
        description="simulator scale: `small`, `demo` or `large`, optionally with knobs: "
        "`demo,addresses=80000,transfers_per_day=50000`"
    ),
]
SimSeed = Annotated[
    int, Field(ge=0, description="simulator seed (same seed, byte-identical batches)")
]
ScheduleHour = Annotated[
    int, Field(ge=0, le=23, description="UTC hour of the network's daily schedule")
]
LookbackDays = Annotated[
    int, Field(ge=1, le=366, description="days the new-batch sensor looks back for gaps")
]
AlertBudget = Annotated[
    int,
    Field(
        ge=1,
        le=1_000_000,
        description="alerts the analysts work a day: tier 3 reports precision and recall in "
        "each day's top this many",
    ),
]

LabelHorizon = Annotated[
    int,
    Field(
        ge=1,
        le=3650,
        description="days after an alert by which every label of it has arrived: training "
        "reads (and `train` fetches) label days only up to its range's end plus this",
    ),
]

MaturityDays = Annotated[
    int,
    Field(
        ge=0,
        le=3650,
        description="days after which a day's labels count as complete enough to judge a "
        "model by (tier 3's `labels_mature`); `0`: estimated from the label delays observed "
        "(Kaplan-Meier, the day by which 95 % of the labels have arrived)",
    ),
]


class NetworkSettings(BaseModel):
    """One network's settings: its file's values over the environment's (no defaults of
    its own: those are ``Settings``'s)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=NETWORK_PATTERN)
    window_days: WindowDays
    batch_source: BatchSource
    source_dir: SourceDir
    sim_profile: SimProfile
    sim_seed: SimSeed
    schedule_hour: ScheduleHour
    sensor_lookback_days: LookbackDays
    alert_budget: AlertBudget
    label_horizon_days: LabelHorizon
    label_maturity_days: MaturityDays


#: What a network file may set (everything of ``NetworkSettings`` but its name).
NETWORK_FIELDS = tuple(name for name in NetworkSettings.model_fields if name != "name")


class SettingsError(ValueError):
    """A setting (variable or network file) that cannot be used; one line naming it."""


#: The names a loopback-bound server is reached by.
LOOPBACK_HOSTS = ("127.0.0.1", "localhost")


class Settings(BaseSettings):
    """The environment's settings (``AML_`` + the field name, upper case); empty values
    count as unset."""

    model_config = SettingsConfigDict(env_prefix="AML_", env_ignore_empty=True)

    networks: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="comma-separated networks, each its own asset group, jobs, schedule and "
        "sensors; default: the networks that have a file in `AML_NETWORKS_DIR`, else "
        f"`{DEFAULT_NETWORK}`",
    )
    networks_dir: str = Field(
        default="./networks",
        description="directory of `{network}.yaml` files with a network's own settings "
        "(any of: " + ", ".join(f"`{n}`" for n in NETWORK_FIELDS) + ")",
    )
    data_root: str = Field(
        default="./data",
        description="root of `input/`, `warehouse/`, `output/`, `trained_models/`, "
        "`validation_results/`",
    )
    window_days: WindowDays = 7
    batch_source: BatchSource = "simulated"
    source_dir: SourceDir = ""
    sim_profile: SimProfile = "demo"
    sim_seed: SimSeed = 0
    partitions_start: dt.date = Field(
        default=dt.date(2025, 1, 1), description="first daily partition"
    )
    labels_as_of: dt.date | None = Field(
        default=None,
        description="labels whose `label_date` is after this are not visible; default: today (UTC)",
    )
    explain_coverage: int = Field(
        default=-1, ge=-1, description="alerts explained per day: `-1` all, `0` none, `N` top N"
    )
    fetch_workers: int = Field(
        default=2,
        ge=1,
        le=32,
        description="processes that fetch and validate the days of a ranged landing run at "
        "once (`1`: in the run's own process)",
    )
    min_free_mb: int = Field(
        default=256,
        ge=0,
        le=10**7,
        description="MB a landing must leave free on the data root's disk; a range that "
        "would not is refused before anything is written",
    )
    s3_cache_mb: int = Field(
        default=20_000,
        ge=16,
        le=10**8,
        description="MB of downloaded copies an `s3://` data root keeps on the local disk for "
        "DuckDB to scan; beyond it the least recently used are removed",
    )
    parallel_runs: int = Field(
        default=2,
        ge=1,
        le=32,
        description="runs a ranged command (`download`, `train`, `score --no-ingest`, `demo`) "
        "executes at once, each in its own process, where its runs are independent: landing "
        "batches, and features or scoring over stored batches (`1`: one after the other)",
    )
    schedule_hour: ScheduleHour = 2
    sensor_lookback_days: LookbackDays = 7
    alert_budget: AlertBudget = 100
    label_horizon_days: LabelHorizon = 120
    label_maturity_days: MaturityDays = 0
    api_allowed_hosts: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: list(LOOPBACK_HOSTS),
        description="comma-separated Host names the results API answers (others get 400, "
        "against DNS rebinding); add the name it is deployed under (`*.example.com`: its "
        "subdomains; `::1`: an IPv6 address)",
    )

    api_token: str = Field(
        default="",
        description="bearer token the results API requires on every route but `/health` and "
        "the documentation; required to serve on a non-loopback address",
    )

    failure_webhook: str = Field(
        default="",
        pattern=r"^(https?://\S+)?$",
        description="URL told of each failed run by a JSON POST (`text`, a one-line summary "
        "as chat webhooks expect, and the fields); empty: none",
    )

    @field_validator("networks", mode="before")
    @classmethod
    def _split(cls, value: Any) -> Any:
        return value.split(",") if isinstance(value, str) else value

    @field_validator("api_allowed_hosts", mode="before")
    @classmethod
    def _hosts(cls, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        return [host.strip() for host in value.split(",") if host.strip()]

    @field_validator("networks")
    @classmethod
    def _check(cls, value: list[str]) -> list[str]:
        return parse_networks(",".join(value))

    @field_validator("labels_as_of", mode="before")
    @classmethod
    def _unset(cls, value: Any) -> Any:
        return None if value == "" else value

    @model_validator(mode="after")
    def _default_networks(self) -> Settings:
        if not self.networks:
            self.networks = sorted(network_files(self.networks_dir)) or [DEFAULT_NETWORK]
        return self

    @classmethod
    def from_env(cls) -> Settings:
        """The settings of this process's environment; a bad value is one line naming the
        variable."""
        try:
            return cls()
        except ValidationError as exc:
            error = exc.errors()[0]
            name = "AML_" + str(error["loc"][0]).upper() if error["loc"] else "AML_*"
            raise SettingsError(f"{name}: {error['msg']}") from None

    def network(self, name: str) -> NetworkSettings:
        """``name``'s settings: its file's values over this environment's; a bad value is
        one line naming the file and the setting."""
        values = {field: getattr(self, field) for field in NETWORK_FIELDS}
        path = network_files(self.networks_dir).get(name)
        if path is None:
            return NetworkSettings(name=name, **values)
        try:
            return NetworkSettings(name=name, **{**values, **read_network_file(path)})
        except ValidationError as exc:
            error = exc.errors()[0]
            where = ".".join(map(str, error["loc"]))
            raise SettingsError(f"{path}: {where}: {error['msg']}") from None

    def network_settings(self) -> list[NetworkSettings]:
        """Every configured network's settings, in order."""
        return [self.network(name) for name in self.networks]

    def as_of(self) -> str:
        """``labels_as_of`` as an ISO date, empty when unset (today)."""
        return self.labels_as_of.isoformat() if self.labels_as_of else ""


def parse_networks(text: str) -> list[str]:
    """Split and check a comma-separated network list (lowercase identifiers)."""
    networks = [n.strip() for n in text.split(",") if n.strip()]
    for network in networks:
        if not re.match(NETWORK_PATTERN, network):
            raise SettingsError(f"invalid network name {network!r}: use lowercase [a-z0-9_]")
    if len(set(networks)) != len(networks):
        raise SettingsError(f"networks must not repeat: {text!r}")
    return networks


def network_files(folder: str) -> dict[str, Path]:
    """The ``{network}.yaml`` files in ``folder`` by network (none if it does not exist);
    a file whose name is not a network name is refused, naming it."""
    root = Path(folder)
    if not root.is_dir():
        return {}
    files = {path.stem: path for path in sorted(root.glob("*.yaml"))}
    for name, path in files.items():
        if not re.match(NETWORK_PATTERN, name) or not path.is_file():
            raise SettingsError(
                f"{path}: {name!r} is not a network name (lowercase [a-z0-9_], a file): "
                "rename or remove it"
            )
    return files


def read_network_file(path: Path) -> dict[str, Any]:
    """A network file's settings (checked by ``Settings.network``); a file that is not a
    mapping of known settings is one line naming it and the problem."""
    try:
        values = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise SettingsError(f"{path}: not valid YAML ({exc})") from None
    if not isinstance(values, dict):
        raise SettingsError(f"{path}: expected a mapping of settings, got {type(values).__name__}")
    unknown = sorted(set(values) - set(NETWORK_FIELDS))
    if unknown:
        raise SettingsError(
            f"{path}: unknown setting(s) {unknown}; allowed: {list(NETWORK_FIELDS)}"
        )
    return values


def settings_table() -> str:
    """The environment variables as a Markdown table (``docs/operations.md``, "Settings")."""
    rows = ["| variable | default | meaning |", "|---|---|---|"]
    for name, field in Settings.model_fields.items():
        default = field.get_default(call_default_factory=True)
        shown = "" if default in (None, [], "") else f"`{default}`"
        rows.append(f"| `AML_{name.upper()}` | {shown} | {field.description} |")
    return "\n".join(rows)
