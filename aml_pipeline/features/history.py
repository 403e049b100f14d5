"""The address's own alert history as of a day: how often it was alerted before, and what
was known about its earlier alerts' labels before the day (``label_date`` before the
processing date, never on or after it)."""

from __future__ import annotations

import datetime as dt

import pandas as pd

#: Days of earlier alerts behind the alert-count history features.
HISTORY_DAYS = 30
#: Days of earlier alerts whose known labels feed the label-history features; long
#: enough for labels that arrive weeks after the activity.
LABEL_HISTORY_DAYS = 180
ALERT_COUNT_FEATURES = ("prior_alerts_30d", "prior_alert_days_30d", "prior_typologies_30d")
#: From labels of the address's alerts in the LABEL_HISTORY_DAYS before the day that were
#: known before the day: how many, how many SAR-filed, that share, and days since the
#: latest SAR-filed one. The rate and the days are missing without such a label.
LABEL_HISTORY_FEATURES = (
    "known_labels_180d",
    "known_sar_180d",
    "known_sar_rate_180d",
    "days_since_known_sar",
)
#: Days of earlier alert data the look-back window holds (0 to LABEL_HISTORY_DAYS; the same
#: for every address of a day): tells the models when the history features were still
#: filling up because the data had only just begun.
COVERAGE_FEATURE = "history_coverage_days"
HISTORY_FEATURES = (*ALERT_COUNT_FEATURES, *LABEL_HISTORY_FEATURES, COVERAGE_FEATURE)
#: History columns that are counts (0 without history); the others stay missing.
HISTORY_COUNTS = (*ALERT_COUNT_FEATURES, "known_labels_180d", "known_sar_180d")
#: The columns of earlier days' alerts that ``build_alert_history`` reads.
HISTORY_ALERT_COLUMNS = ("alert_id", "address", "processing_date", "typology_type")


def _known_labels(
    prior_alerts: pd.DataFrame, label_events: pd.DataFrame, day: dt.date
) -> pd.DataFrame:
    """Labels of alerts in the ``LABEL_HISTORY_DAYS`` before ``day`` that became known before
    ``day``, with the alert's address."""
    first = day - dt.timedelta(LABEL_HISTORY_DAYS)
    dates, known_on = label_events["processing_date"], label_events["label_date"]
    known = label_events[(dates >= first) & (dates < day) & (known_on < day)]
    return known[["alert_id", "processing_date", "is_sar_filed"]].merge(
        prior_alerts[["alert_id", "address"]].drop_duplicates("alert_id"), on="alert_id"
    )


def _latest_sar(known: pd.DataFrame) -> pd.Series:
    """Per address of ``known`` (``_known_labels``), its latest SAR-filed alert's day."""
    sar = known[known["is_sar_filed"].astype(bool)]
    return sar.groupby("address")["processing_date"].max()


def known_sar_days(
    prior_alerts: pd.DataFrame, label_events: pd.DataFrame | None, day: dt.date
) -> pd.Series:
    """Per address, the day of its latest alert of the ``LABEL_HISTORY_DAYS`` before ``day``
    that a label known before ``day`` says was SAR-filed (the rule of the label history)."""
    if label_events is None or label_events.empty or prior_alerts.empty:
        return pd.Series(dtype=object, name="processing_date")
    return _latest_sar(_known_labels(prior_alerts, label_events, day))


def build_alert_history(
    addresses: pd.Series,
    prior_alerts: pd.DataFrame,
    day: dt.date,
    label_events: pd.DataFrame | None = None,
    data_since: dt.date | None = None,
) -> pd.DataFrame:
    """One row per distinct address in ``addresses`` (the day's alerted addresses): how
    often it was alerted in the ``HISTORY_DAYS`` before ``day``, on how many days, with how
    many typologies; what was known about its alerts of the ``LABEL_HISTORY_DAYS`` before
    ``day`` (``LABEL_HISTORY_FEATURES``); and the day's ``COVERAGE_FEATURE``, the days of
    data between ``data_since`` (the day the network's data began; ``day`` if unknown)
    and ``day``, at most ``LABEL_HISTORY_DAYS``.

    ``prior_alerts`` needs ``alert_id``, ``address``, ``processing_date`` and
    ``typology_type``; ``label_events`` are labels as they arrived (``alert_id``,
    ``processing_date``, ``is_sar_filed``, ``label_date``). Only alerts dated before
    ``day`` and labels whose ``label_date`` is before ``day`` are used.
    """
    columns = ["address", "processing_date", *HISTORY_FEATURES]
    index = pd.Index(sorted(set(addresses)), name="address")
    stats = pd.DataFrame(index=index, columns=list(HISTORY_FEATURES), dtype="float64")
    if not prior_alerts.empty:
        dates = prior_alerts["processing_date"]
        prior = prior_alerts[(dates >= day - dt.timedelta(HISTORY_DAYS)) & (dates < day)]
        grouped = prior.groupby("address", sort=True)
        stats["prior_alerts_30d"] = grouped.size()
        stats["prior_alert_days_30d"] = grouped["processing_date"].nunique()
        stats["prior_typologies_30d"] = grouped["typology_type"].nunique()
        if label_events is not None and not label_events.empty:
            known = _known_labels(prior_alerts, label_events, day)
            sar = known["is_sar_filed"].astype(bool)
            stats["known_labels_180d"] = known.groupby("address").size()
            stats["known_sar_180d"] = sar.groupby(known["address"]).sum()
            stats["days_since_known_sar"] = _latest_sar(known).map(lambda d: float((day - d).days))
    stats = stats.astype("float64")
    stats["known_sar_rate_180d"] = stats["known_sar_180d"] / stats["known_labels_180d"]
    stats[list(HISTORY_COUNTS)] = stats[list(HISTORY_COUNTS)].fillna(0.0)
    began = data_since if data_since is not None else day
    stats[COVERAGE_FEATURE] = float(min(max((day - began).days, 0), LABEL_HISTORY_DAYS))
    stats = stats.reset_index()
    stats["processing_date"] = [day] * len(stats)
    return stats[columns]


#: alert_history column -> the (table, column) pairs it is computed from.
HISTORY_LINEAGE: dict[str, list[tuple[str, str]]] = {
    **{
        c: [("raw_alerts", "address"), ("raw_alerts", "processing_date")]
        for c in ALERT_COUNT_FEATURES
    },
    "prior_typologies_30d": [("raw_alerts", "address"), ("raw_alerts", "typology_type")],
    COVERAGE_FEATURE: [("raw_alerts", "processing_date")],
    **{
        c: [
            ("raw_alerts", "address"),
            ("label_events", "is_sar_filed"),
            ("label_events", "label_date"),
        ]
        for c in LABEL_HISTORY_FEATURES
    },
}
