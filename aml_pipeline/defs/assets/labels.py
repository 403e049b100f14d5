"""The labels known at a time, read from a network's stored label events: what training,
the model comparison and tier 3 see."""

import datetime as dt

import dagster as dg
import pandas as pd

from aml_pipeline.contract.schema import GROUND_TRUTH
from aml_pipeline.dates import date_range
from aml_pipeline.defs.resources import PipelineConfig
from aml_pipeline.defs.warehouse import Warehouse
from aml_pipeline.evaluation.maturity import LabelMaturity, estimate_label_maturity


def last_label_day(
    warehouse: Warehouse,
    network: str,
    alert_days: list[dt.date],
    as_of: dt.date | None = None,
) -> dt.date:
    """The last label day stored (not after ``as_of``), or the day before the first of
    ``alert_days`` when no label day is stored yet."""
    stored = warehouse.stored_days(dg.AssetKey([network, "label_events"]))
    if not stored:
        return min(alert_days) - dt.timedelta(1)
    return stored[-1] if as_of is None else min(as_of, stored[-1])


def network_label_maturity(
    pipeline: PipelineConfig, warehouse: Warehouse, network: str, through: dt.date
) -> LabelMaturity:
    """``network``'s label maturity: its ``label_maturity_days`` setting, else estimated
    from every stored alert and the label events stored up to ``through``."""
    setting = pipeline.network(network).label_maturity_days
    if setting:
        return LabelMaturity.from_setting(setting)

    def stored(name: str, columns: list[str]) -> pd.DataFrame:
        key = dg.AssetKey([network, name])
        days = [d for d in warehouse.stored_days(key) if d <= through]
        return warehouse.read_days(key, days, columns)

    alerts = stored("raw_alerts", ["alert_id", "processing_date"])
    return estimate_label_maturity(
        alerts, stored("label_events", ["alert_id", "label_date"]), through
    )


def read_known_labels(
    warehouse: Warehouse,
    network: str,
    alert_days: list[dt.date],
    through: dt.date,
    since: dt.date,
) -> pd.DataFrame:
    """Labels of the alerts of ``alert_days`` that arrived by ``through``: the label events
    of ``min(alert_days)..through``, every one of them stored (after ``since``)."""
    first = min(alert_days)
    if through < first:
        return pd.DataFrame(columns=GROUND_TRUTH.column_names)
    events = warehouse.read_days(
        dg.AssetKey([network, "label_events"]), date_range(first, through), None, since
    )
    return events[events["processing_date"].isin(set(alert_days))].reset_index(drop=True)
