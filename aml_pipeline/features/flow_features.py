"""Money-flow graph features of each alerted address: who it pays and is paid by.

Laundering is a pattern between addresses, so these features read the day's
``money_flows`` (one row per directed address pair over the batch window) around each
alerted address:

- **shape**: how concentrated its USD in and out is on one counterparty, how much of
  what came in went out again (pass-through), how many counterparties trade both ways,
  and the widest scatter-gather (it pays many addresses that all pay one other address)
  and gather-scatter (many addresses that one other address paid all pay it);
- **short cycles**: cycles of length 3 and 4 through the address, and the USD that goes
  round (the largest smallest-flow of a closed path of length 3 or 4 through it, so a
  4-path that comes back the way it went counts here but not as a cycle) as a share of
  what the address sent;
- **guilt by association**: how many counterparties (1 hop, and 2 hops through
  non-hub addresses) were alerted on the day or in the ``HISTORY_DAYS`` before it, how
  many had an alert labelled SAR-filed by a label known before the day (``label_date`` <
  day: exactly the rule of the address's own label history), the share of the address's
  USD exchanged with those, and the days since their latest such SAR.

Paths of two or more hops pass only through addresses with at most ``HUB_DEGREE``
counterparties: an exchange or a market maker links everyone to everyone, and walking
through it costs its degree squared while saying nothing about a laundering ring. One
function computes the features for training and for scoring, in DuckDB over the day's
frames (no SQL is built from data).
"""

from __future__ import annotations

import datetime as dt

import duckdb
import pandas as pd

from aml_pipeline.features.history import HISTORY_DAYS, known_sar_days

#: Addresses with more counterparties than this are hubs: no 2-hop path passes through one.
HUB_DEGREE = 200
FLOW_SHAPE_FEATURES = (
    "top_payer_usd_share",
    "top_payee_usd_share",
    "pass_through_ratio",
    "two_way_counterparty_share",
    "scatter_gather_width",
    "gather_scatter_width",
)
CYCLE_FEATURES = ("cycles_of_3", "cycles_of_4", "cycle_usd_share")
ASSOCIATION_FEATURES = (
    "counterparties_alerted_today",
    "usd_share_with_alerted_today",
    "counterparties_alerted_30d",
    "counterparties_known_sar",
    "usd_share_with_known_sar",
    "days_since_counterparty_sar",
    "two_hop_alerted_today",
    "two_hop_known_sar",
)
#: The association features that read labels (only those known before the day).
KNOWN_SAR_FEATURES = (
    "counterparties_known_sar",
    "usd_share_with_known_sar",
    "days_since_counterparty_sar",
    "two_hop_known_sar",
)
FLOW_FEATURES = (*FLOW_SHAPE_FEATURES, *CYCLE_FEATURES, *ASSOCIATION_FEATURES)
#: The money_flows columns the features read.
FLOW_COLUMNS = ("from_address", "to_address", "amount_usd_sum")

_SQL = """
WITH
edges AS (  -- one row per directed pair, self-transfers dropped
    SELECT from_address AS src, to_address AS dst, sum(amount_usd_sum) AS usd
    FROM flows WHERE from_address <> to_address GROUP BY ALL
),
links AS (SELECT src AS a, dst AS b FROM edges UNION SELECT dst, src FROM edges),
degree AS (SELECT a AS address, count(*) AS n FROM links GROUP BY ALL),
small AS (SELECT address FROM degree WHERE n <= $hub),
anchors AS (SELECT DISTINCT address FROM alerted),
outs AS (
    SELECT e.src AS anchor, e.dst AS cp, e.usd FROM edges e JOIN anchors x ON e.src = x.address
),
ins AS (
    SELECT e.dst AS anchor, e.src AS cp, e.usd FROM edges e JOIN anchors x ON e.dst = x.address
),
cps AS (  -- counterparties in either direction, USD both ways, traded both ways or not
    SELECT anchor, cp, sum(usd) AS usd, count(*) = 2 AS both_ways
    FROM (SELECT * FROM outs UNION ALL SELECT * FROM ins) GROUP BY ALL
),
shape_in AS (SELECT anchor, sum(usd) AS usd_in, max(usd) AS top_in FROM ins GROUP BY ALL),
shape_out AS (SELECT anchor, sum(usd) AS usd_out, max(usd) AS top_out FROM outs GROUP BY ALL),
marks AS (
    SELECT c.anchor, c.cp, c.usd, c.both_ways,
           t.address IS NOT NULL AS alerted_today,
           p.address IS NOT NULL AS alerted_before,
           s.last_sar
    FROM cps c
    LEFT JOIN anchors t ON t.address = c.cp
    LEFT JOIN prior_alerted p ON p.address = c.cp
    LEFT JOIN known_sar s ON s.address = c.cp
),
one_hop AS (
    SELECT anchor,
           sum(usd) AS usd_all,
           avg(both_ways::DOUBLE) AS reciprocal_share,
           count(*) FILTER (alerted_today) AS alerted_today,
           sum(usd) FILTER (alerted_today) AS alerted_today_usd,
           count(*) FILTER (alerted_before) AS alerted_30d,
           count(*) FILTER (last_sar IS NOT NULL) AS known_sar,
           sum(usd) FILTER (last_sar IS NOT NULL) AS known_sar_usd,
           max(last_sar) AS last_sar
    FROM marks GROUP BY ALL
),
reach AS (  -- addresses 2 hops away (not 1) through a non-hub counterparty
    SELECT DISTINCT c.anchor, l.b AS far
    FROM cps c JOIN small s ON s.address = c.cp JOIN links l ON l.a = c.cp
    WHERE l.b <> c.anchor
),
far_stats AS (
    SELECT r.anchor,
           count(t.address) AS alerted_today,
           count(k.address) AS known_sar
    FROM reach r
    ANTI JOIN cps c ON c.anchor = r.anchor AND c.cp = r.far
    LEFT JOIN anchors t ON t.address = r.far
    LEFT JOIN known_sar k ON k.address = r.far
    GROUP BY ALL
),
scatter AS (  -- anchor pays many small b that all pay one c
    SELECT anchor, max(width) AS width FROM (
        SELECT o.anchor, e.dst, count(*) AS width
        FROM outs o JOIN small s ON s.address = o.cp JOIN edges e ON e.src = o.cp
        WHERE e.dst <> o.anchor GROUP BY ALL
    ) GROUP BY ALL
),
gather AS (  -- one s paid many small b that all pay the anchor
    SELECT anchor, max(width) AS width FROM (
        SELECT i.anchor, e.src, count(*) AS width
        FROM ins i JOIN small s ON s.address = i.cp JOIN edges e ON e.dst = i.cp
        WHERE e.src <> i.anchor GROUP BY ALL
    ) GROUP BY ALL
),
paths_out AS (  -- anchor -> b -> c, b and c small, c not the anchor
    SELECT o.anchor, o.cp AS b, e.dst AS c, least(o.usd, e.usd) AS usd
    FROM outs o JOIN small sb ON sb.address = o.cp JOIN edges e ON e.src = o.cp
    JOIN small sc ON sc.address = e.dst
    WHERE e.dst <> o.anchor
),
paths_in AS (  -- c -> d -> anchor, d small
    SELECT i.anchor, i.cp AS d, e.src AS c, least(i.usd, e.usd) AS usd
    FROM ins i JOIN small sd ON sd.address = i.cp JOIN edges e ON e.dst = i.cp
    WHERE e.src <> i.anchor
),
out_half AS (SELECT anchor, c, count(*) AS n, max(usd) AS usd FROM paths_out GROUP BY ALL),
in_half AS (SELECT anchor, c, count(*) AS n, max(usd) AS usd FROM paths_in GROUP BY ALL),
three AS (  -- anchor -> b -> c -> anchor
    SELECT p.anchor, count(*) AS n, max(least(p.usd, e.usd)) AS usd
    FROM paths_out p JOIN edges e ON e.src = p.c AND e.dst = p.anchor GROUP BY ALL
),
four AS (  -- anchor -> b -> c -> d -> anchor, counted by meeting point c
    SELECT o.anchor, sum(o.n * i.n) AS n, max(least(o.usd, i.usd)) AS usd
    FROM out_half o JOIN in_half i USING (anchor, c) GROUP BY ALL
),
back_and_forth AS (  -- the closed walks of `four` with b = d: not cycles
    SELECT p.anchor, count(*) AS n
    FROM paths_out p JOIN paths_in q ON q.anchor = p.anchor AND q.c = p.c AND q.d = p.b
    GROUP BY ALL
),
cycle_stats AS (
    SELECT x.address AS anchor,
           coalesce(t.n, 0) AS cycles_3,
           coalesce(f.n, 0) - coalesce(w.n, 0) AS cycles_4,
           greatest(t.usd, f.usd) AS cycle_usd
    FROM anchors x
    LEFT JOIN three t ON t.anchor = x.address
    LEFT JOIN four f ON f.anchor = x.address
    LEFT JOIN back_and_forth w ON w.anchor = x.address
)
SELECT x.address,
       si.top_in / nullif(si.usd_in, 0) AS top_payer_usd_share,
       so.top_out / nullif(so.usd_out, 0) AS top_payee_usd_share,
       least(si.usd_in, so.usd_out) / nullif(greatest(si.usd_in, so.usd_out), 0)
           AS pass_through_ratio,
       h.reciprocal_share AS two_way_counterparty_share,
       coalesce(sc.width, 0) AS scatter_gather_width,
       coalesce(ga.width, 0) AS gather_scatter_width,
       coalesce(cy.cycles_3, 0) AS cycles_of_3,
       coalesce(cy.cycles_4, 0) AS cycles_of_4,
       CASE WHEN so.usd_out > 0 THEN coalesce(cy.cycle_usd, 0) / so.usd_out END
           AS cycle_usd_share,
       coalesce(h.alerted_today, 0) AS counterparties_alerted_today,
       coalesce(h.alerted_today_usd, 0) / nullif(h.usd_all, 0) AS usd_share_with_alerted_today,
       coalesce(h.alerted_30d, 0) AS counterparties_alerted_30d,
       coalesce(h.known_sar, 0) AS counterparties_known_sar,
       coalesce(h.known_sar_usd, 0) / nullif(h.usd_all, 0) AS usd_share_with_known_sar,
       $day - h.last_sar AS days_since_counterparty_sar,
       coalesce(f.alerted_today, 0) AS two_hop_alerted_today,
       coalesce(f.known_sar, 0) AS two_hop_known_sar
FROM anchors x
LEFT JOIN shape_in si ON si.anchor = x.address
LEFT JOIN shape_out so ON so.anchor = x.address
LEFT JOIN one_hop h ON h.anchor = x.address
LEFT JOIN scatter sc ON sc.anchor = x.address
LEFT JOIN gather ga ON ga.anchor = x.address
LEFT JOIN cycle_stats cy ON cy.anchor = x.address
LEFT JOIN far_stats f ON f.anchor = x.address
ORDER BY x.address
"""


def _addresses(values: object) -> pd.DataFrame:
    return pd.DataFrame({"address": pd.Series(values, dtype="string")})


def build_flow_features(
    alerted: pd.Series,
    flows: pd.DataFrame | None,
    prior_alerts: pd.DataFrame,
    label_events: pd.DataFrame | None,
    day: dt.date,
) -> pd.DataFrame:
    """One row per distinct address of ``alerted`` (the day's alerted addresses, its
    alerts' ``address`` column): ``address``, ``processing_date`` and ``FLOW_FEATURES``.

    ``flows`` is the day's money_flows (None or empty when the batch has none: counts are
    then 0, shares and days missing); ``prior_alerts`` the alerts of the days before
    ``day`` (``alert_id``, ``address``, ``processing_date``) and ``label_events`` the labels
    as they arrived, of which only those with ``label_date`` before ``day`` are used.
    """
    if flows is None or flows.empty:
        flows = pd.DataFrame({c: pd.Series(dtype="string") for c in FLOW_COLUMNS[:2]})
        flows["amount_usd_sum"] = pd.Series(dtype="float64")
    dates = prior_alerts["processing_date"] if not prior_alerts.empty else pd.Series()
    recent = prior_alerts[(dates >= day - dt.timedelta(HISTORY_DAYS)) & (dates < day)]
    sar_days = known_sar_days(prior_alerts, label_events, day)
    known_sar = _addresses(sar_days.index)
    known_sar["last_sar"] = pd.Series([d.toordinal() for d in sar_days], dtype="int64")
    con = duckdb.connect()
    try:
        con.execute("SET threads = 1")  # sums in one order: the same features every run
        for name, frame in (
            ("flows", flows[list(FLOW_COLUMNS)]),
            ("alerted", _addresses(pd.unique(alerted))),
            ("prior_alerted", _addresses(pd.unique(recent["address"]) if len(recent) else [])),
            ("known_sar", known_sar),
        ):
            con.register(name, frame)
        out = con.execute(_SQL, {"hub": HUB_DEGREE, "day": day.toordinal()}).df()
    finally:
        con.close()
    out = out.astype({c: "float64" for c in FLOW_FEATURES})
    out["address"] = out["address"].astype(object)
    out.insert(1, "processing_date", [day] * len(out))
    return out[["address", "processing_date", *FLOW_FEATURES]]


#: flow_features column -> the (table, column) pairs it is computed from.
_FLOWS = [("raw_money_flows", column) for column in FLOW_COLUMNS]
FLOW_LINEAGE: dict[str, list[tuple[str, str]]] = {
    **{c: [*_FLOWS, ("raw_alerts", "address")] for c in (*FLOW_SHAPE_FEATURES, *CYCLE_FEATURES)},
    **{
        c: [*_FLOWS, ("raw_alerts", "address"), ("raw_alerts", "processing_date")]
        for c in ASSOCIATION_FEATURES
    },
    **{
        c: [
            *_FLOWS,
            ("raw_alerts", "address"),
            ("raw_alerts", "processing_date"),
            ("label_events", "is_sar_filed"),
            ("label_events", "label_date"),
        ]
        for c in KNOWN_SAR_FEATURES
    },
}
