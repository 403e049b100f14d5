"""``demo``: land, train on, score and publish the last days of every network, then say
what was done and where to look."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from pathlib import Path

from aml_pipeline.cli.arguments import partition_days
from aml_pipeline.cli.landing import ingest
from aml_pipeline.cli.scoring import score_range
from aml_pipeline.cli.training import optimistic, print_metrics, rests_on, train_network
from aml_pipeline.defs import runs
from aml_pipeline.defs.partitions import last_partition
from aml_pipeline.defs.run_results import failure_text
from aml_pipeline.settings import Settings


def demo(args: argparse.Namespace) -> int:
    """Ingest the last ``--days`` complete days of every network, train on the oldest
    ``--train-days`` of them (whose labels are the most complete today), score, validate
    and publish every day, and print a summary."""
    from aml_pipeline.defs.network import EVALUATION_ASSETS, FEATURE_ASSETS, SCORING_ASSETS

    settings = Settings.from_env()
    if not 2 <= args.train_days < args.days:
        raise SystemExit("--train-days must be at least 2 and fewer than --days")
    end = args.end_date or last_partition()
    days = partition_days(settings, end - dt.timedelta(args.days - 1), end)
    trained = days[: args.train_days]
    models = {}
    for network in settings.networks:
        code = ingest(network, days, {})
        if code:
            return code
        failed = runs.materialize(settings, network, days, FEATURE_ASSETS)
        if failed is not None:
            print(
                f"features failed (run {failed.run_id}):\n{failure_text(failed)}", file=sys.stderr
            )
            return 1
        print(
            f"training {network} on {trained[0]}..{trained[-1]} with the labels known today "
            f"(labels arrive 5 to 60 days after an alert, so the oldest days have the most); "
            f"{trained[-1] + dt.timedelta(1)}..{days[-1]} are held out"
        )
        models[network] = train_network(network, trained[0], trained[-1], None, {})
        print_metrics(models[network])
        code = score_range(network, days[0], days[-1], (*SCORING_ASSETS, *EVALUATION_ASSETS))
        if code:
            return code
    print(summary(settings, days, models))
    return 0


def summary(settings: Settings, days: list[dt.date], models: dict[str, dict]) -> str:
    """What the demo did and where to look: counts, metrics, the last day's top alerts."""
    from aml_pipeline.storage import layout
    from aml_pipeline.storage.objects import storage_at

    storage = storage_at(settings.data_root)
    sources = sorted({f"'{n.batch_source}'" for n in settings.network_settings()})
    lines = [
        f"\nDemo done: {len(days)} days x {len(settings.networks)} network(s) from the "
        f"{' and '.join(sources)} source."
    ]
    for network in settings.networks:
        published = [storage.resolve_dir(layout.output_day(network, d)) for d in days]
        metadata = [
            json.loads(storage.read_bytes(f"{day}/processing_metadata.json"))
            for day in published
            if storage.exists(f"{day}/processing_metadata.json")
        ]
        scored = sum(m["outputs"]["alert_scores.parquet"]["rows"] for m in metadata)
        used = sorted({m["models"]["alert_scorer"]["version"] for m in metadata})
        trained = models[network]["alert_scorer"]
        figures = ", ".join(
            f"{name} {trained[key]:.3f}"
            for name, key in (("AUC-ROC", "auc_roc"), ("AUC-PR", "auc_pr"))
            if trained.get(key) is not None
        )
        lines.append(
            f"  {network}: {len(metadata)} days published, {scored} alerts scored by "
            f"alert_scorer v{', v'.join(used)}; trained now: v{trained['version']} "
            f"(validation {figures or 'n/a'}"
            + (
                "; optimistic: its labels were not mature"
                if optimistic(trained)
                else rests_on(trained.get("validation"))
            )
            + ")"
            + ("" if trained["champion"] else "; promote it with aml-pipeline promote")
        )
        evaluation = layout.model_evaluation(network, used[-1])
        if storage.exists(evaluation):
            held_out = json.loads(storage.read_bytes(evaluation))["summary"]
            auc = held_out["mean_auc_roc_held_out"]
            judged = (
                f"mean AUC-ROC {auc:.3f} over {held_out['held_out_days_with_tier3']} days"
                if auc is not None
                else "no mean AUC-ROC yet"
            )
            lines.append(
                f"  held-out days, tier 3 on mature labels only: {judged}; "
                f"{held_out['held_out_days_immature']} held-out day(s) wait for their labels "
                f"to mature ({storage.url(evaluation)})"
            )
        top = top_alerts(storage.read_path(f"{published[-1]}/alert_scores.parquet"), 5)
        lines.append(f"  top alerts of {days[-1]} ({network}):")
        lines.extend(f"    {row}" for row in top)
    lines += [
        f"  published results : {storage.url('output')}/{{network}}/{{date}}/",
        f"  models            : {storage.url('trained_models')}",
        f"  warehouse         : {storage.url('warehouse')} (one Parquet file per asset and day)",
        "  see the runs      : make ui, then open http://127.0.0.1:3000",
        "  query the results : make api, then open http://127.0.0.1:8000/docs",
    ]
    return "\n".join(lines)


def top_alerts(scores: Path, n: int) -> list[str]:
    """The ``n`` highest-scored alerts of a published day's ``alert_scores.parquet``."""
    from aml_pipeline.storage.tables import duckdb_cursor

    with duckdb_cursor() as con:
        rows = con.execute(
            "SELECT alert_id, score, explain_json FROM read_parquet(?) "
            "ORDER BY score DESC, alert_id LIMIT ?",
            [str(scores), n],
        ).fetchall()
    lines = []
    for alert_id, score, explanation in rows:
        reasons = json.loads(explanation)["top_features"][:2] if explanation else []
        why = ", ".join(f"{r['feature']} {r['contribution']:+.2f}" for r in reasons)
        lines.append(f"{alert_id}  score {score:.3f}  ({why})")
    return lines
