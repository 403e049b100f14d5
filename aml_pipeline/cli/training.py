"""``train`` (the models on a date range) and ``promote`` (a model version to champion),
and how a trained model's figures are printed."""

from __future__ import annotations

import argparse
import datetime as dt
import shutil
import sys
from pathlib import Path
from typing import Any

from aml_pipeline.cli.arguments import partition_days, settings_for
from aml_pipeline.defs import runs
from aml_pipeline.defs.run_results import failure_text, materialized_metadata
from aml_pipeline.settings import Settings


def train_network(
    network: str, start: dt.date, end: dt.date, as_of: dt.date | None, overrides: dict[str, str]
) -> dict[str, dict[str, Any]]:
    """Prepare the range's labels and features, then train the three models
    (``runs.prepare_training``, ``runs.train_models``); each model's metadata. Exits with
    the reason when a day is not landed or a run fails."""
    settings = settings_for(network)
    days = partition_days(settings, start, end)
    if as_of is not None:
        overrides = {**overrides, "labels_as_of": as_of.isoformat()}
    hint = f"aml-pipeline download --network {network} --start-date {start} --end-date {end}"
    try:
        known_by = runs.prepare_training(settings, network, days, overrides)
        print(f"features ready for {start}..{end}, labels through {known_by}", flush=True)
        return runs.train_models(settings, network, days, as_of, overrides)
    except runs.NotLanded as exc:
        raise SystemExit(
            f"{exc}: land them first ({hint})" if exc.days else f"{exc}: {hint}"
        ) from None
    except runs.RunFailed as failed:
        raise SystemExit(f"{failed}:\n{failure_text(failed.run)}") from None


def train(args: argparse.Namespace) -> int:
    """Train the models on a date range (the seed's train_models.py)."""
    overrides = {"input_dir": str(Path(args.data_dir).resolve())} if args.data_dir else {}
    models = train_network(args.network, args.start_date, args.end_date, args.as_of, overrides)
    print_metrics(models)
    if args.output:
        source = Path(Settings.from_env().data_root) / models["alert_scorer"]["file"]
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, args.output)
        print(f"alert scorer copied to {args.output}")
    return 0


def promote(args: argparse.Namespace) -> int:
    """Make a registered model version the champion used for scoring: a materialization
    of its champion asset, which refuses a version that fails a gate (unless
    ``--override`` gives a reason) and records the promotion in the registry."""
    settings = settings_for(args.network)
    config = {args.kind: args.version, "reason": args.reason, "override": args.override}
    result = runs.run_job(
        settings,
        "training_job",
        {
            **runs.run_config(settings, args.network, {}),
            "ops": {f"{args.network}__champions": {"config": config}},
        },
        (args.network, (f"{args.kind}_champion",)),
    )
    if not result.success:
        print(failure_text(result), file=sys.stderr)
        return 1
    champion = materialized_metadata(result)[f"{args.kind}_champion"]
    gates = ", ".join(
        f"{g['name']} {'passed' if g['passed'] else 'FAILED (overridden)'}"
        for g in champion["gates"]
    )
    change = (
        f"champion v{champion['previous']} -> v{champion['champion']}"
        if champion["promoted"]
        else f"v{champion['champion']} is already the champion"
    )
    print(f"{args.network} {args.kind}: {change}; gates: {gates}")
    return 0


def print_metrics(models: dict[str, dict]) -> None:
    """Each trained model's validation figures, baselines, split and warnings."""
    for kind in sorted(models):
        m = models[kind]
        scores = ", ".join(
            f"{k} {m[k]:.3f}" for k in ("auc_roc", "auc_pr", "ndcg@10", "ndcg@50") if k in m
        )
        print(
            f"  {kind} v{m['version']}: {scores} ({m['rows']} labelled rows, "
            f"{m['positives']} SAR){' [champion]' if m['champion'] else ''}"
        )
        for name, base in m["baselines"].items():
            print(f"      baseline {name}: " + ", ".join(f"{k} {v:.3f}" for k, v in base.items()))
        if m.get("validation"):
            print(f"      {_split_text(m['validation'])}")
        intervals = m.get("validation_intervals")
        if intervals:
            print(
                f"      95 % intervals over {intervals['blocks']}: "
                + ", ".join(
                    f"{k} {intervals[k][1]:.3f}..{intervals[k][2]:.3f}"
                    for k in ("auc_roc", "auc_pr")
                )
            )
        warning = optimistic(m)
        if warning:
            print(f"      {warning}")


def rests_on(split: dict | None) -> str:
    """What a model's validation figures rest on, for the demo's summary."""
    if not split:
        return ""
    days = split["calibration_days"]
    return f", on {len(days)} days with mature labels, {min(days)}..{max(days)}"


def _split_text(split: dict) -> str:
    """One line on what a model was validated on."""
    days = split["early_stopping_days"] + split["calibration_days"]
    text = (
        f"validated on the {split['split']} {min(days)}..{max(days)}: early stopping on "
        f"{len(split['early_stopping_days'])} of them, the figures above on the other "
        f"{len(split['calibration_days'])}"
    )
    if split["weighted_rows"]:
        text += (
            f"; {split['weighted_rows']} labelled rows of younger days trained on, weighted "
            f"up to {split['max_weight']:g}x for the labels still to come"
        )
    return text


def optimistic(metadata: dict) -> str:
    """A warning when a model's validation labels were not mature, else ''."""
    checked = metadata.get("validation_labels")
    if not checked or checked["mature"]:
        return ""
    return (
        f"validated on labels {checked['labelled_share']:.0%} complete, not yet mature "
        "(the first labels to arrive are mostly SARs): these figures are optimistic; "
        "tier 3 and make quality judge held-out days by mature labels"
    )
