"""The ``aml-pipeline`` command line: parsing, checks of the arguments and what is printed.
Every command materializes assets through Dagster (``defs.operations``), in the persistent
instance under DAGSTER_HOME, so the UI shows what it did."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import shutil
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from aml_pipeline.dates import date_range
from aml_pipeline.defs import operations
from aml_pipeline.defs.operations import RunResult, failure_text, pipeline_config
from aml_pipeline.settings import Settings, SettingsError, parse_networks
from aml_pipeline.sources.record import SourceMismatch, check_requested
from aml_pipeline.storage.objects import StorageUnavailable, check_data_root


def _date(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not an ISO date (YYYY-MM-DD): {text!r}") from exc


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from exc
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _days(start: dt.date, end: dt.date) -> list[dt.date]:
    if end < start:
        raise SystemExit(f"--end-date {end} is before --start-date {start}")
    return date_range(start, end)


def _source_config(source: str | None) -> dict[str, str]:
    if source is None:
        return {}
    if source == "simulated":
        return {"batch_source": "simulated"}
    if Path(source).is_dir():
        return {"batch_source": "local", "source_dir": str(Path(source).resolve())}
    raise SystemExit(f"--source must be 'simulated' or an existing directory, got {source!r}")


def _settings_for(network: str) -> Settings:
    """The environment's settings; exits if ``network`` is not one of its networks."""
    settings = Settings.from_env()
    if network not in settings.networks:
        raise SystemExit(
            f"network {network!r} is not configured (AML_NETWORKS={','.join(settings.networks)})"
        )
    return settings


def _last_partition() -> dt.date:
    """The last daily partition: the last UTC day that is over."""
    return dt.datetime.now(dt.UTC).date() - dt.timedelta(1)


def _partition_days(settings: Settings, start: dt.date, end: dt.date) -> list[dt.date]:
    """The days from ``start`` to ``end``; exits, naming the setting, unless every one is a
    daily partition (from AML_PARTITIONS_START to the last day that is over, UTC)."""
    days = _days(start, end)
    first = settings.partitions_start
    last = _last_partition()
    if start < first:
        raise SystemExit(
            f"{start} is before the first daily partition {first}: set "
            f"AML_PARTITIONS_START={start} (or earlier) and run the command again"
        )
    if end > last:
        raise SystemExit(
            f"{end} has no daily partition yet: the last one is {last} (a day becomes a "
            "partition once it is over, UTC)"
        )
    return days


def _ingest(network: str, days: list[dt.date], overrides: dict[str, str]) -> int:
    """Land the network's batches of ``days`` (in runs of at most MAX_DAYS_PER_RUN days,
    ``AML_PARALLEL_RUNS`` at once), printing a line per landed day, then their label
    arrivals (once every batch is landed: a day's labels are of earlier days' alerts, and a
    network's first landed day is where its labels begin)."""
    from aml_pipeline.defs.network import LANDING_ASSETS

    done = 0

    def progress(first: dt.date, last: dt.date, result: RunResult) -> None:
        nonlocal done
        counts = operations.landed_counts(result, network)
        for day in date_range(first, last):
            done += 1
            print(
                f"[{done}/{len(days)}] {network} {day}: landed "
                f"({counts.get(day.isoformat(), 'no counts')}; run {result.run_id[:8]})",
                flush=True,
            )

    settings = _settings_for(network)
    failed = operations.materialize(settings, network, days, LANDING_ASSETS, overrides, progress)
    if failed is not None:
        print(
            f"[{done + 1}/{len(days)}] {network} {operations.run_span(failed)}: FAILED (run "
            f"{failed.run_id})\n{failure_text(failed)}",
            file=sys.stderr,
        )
        return 1
    failed = operations.materialize(settings, network, days, ("label_events",), overrides)
    if failed is not None:
        print(
            f"label events of {operations.run_span(failed)} FAILED (run {failed.run_id})\n"
            f"{failure_text(failed)}",
            file=sys.stderr,
        )
        return 1
    return 0


def download(args: argparse.Namespace) -> int:
    """Land verified batches for ``--network`` over a date range (the seed's download).

    The network's first landing records its source; a later ``--source`` that names
    another one is refused before any run."""
    settings = _settings_for(args.network)
    days = _partition_days(settings, args.start_date, args.end_date)
    overrides = _source_config(args.source)
    if args.output_dir:
        overrides["input_dir"] = str(Path(args.output_dir).resolve())
    pipeline = pipeline_config(settings, args.network, overrides)
    if args.source is not None:
        try:
            check_requested(
                pipeline.input_storage(),
                args.network,
                pipeline.configured_source(args.network),
                pipeline.input_storage().url(""),
            )
        except SourceMismatch as exc:
            raise SystemExit(str(exc)) from None
    code = _ingest(args.network, days, overrides)
    problem = pipeline.source(args.network).labels_problem(args.network)
    if problem:
        print(f"warning: {problem}", file=sys.stderr)
    return code


def demo(args: argparse.Namespace) -> int:
    """Ingest the last ``--days`` complete days of every network, train on the oldest
    ``--train-days`` of them (whose labels are the most complete today), score, validate
    and publish every day, and print a summary."""
    from aml_pipeline.defs.network import EVALUATION_ASSETS, FEATURE_ASSETS, SCORING_ASSETS

    settings = Settings.from_env()
    if not 2 <= args.train_days < args.days:
        raise SystemExit("--train-days must be at least 2 and fewer than --days")
    end = args.end_date or dt.datetime.now(dt.UTC).date() - dt.timedelta(1)
    days = _partition_days(settings, end - dt.timedelta(args.days - 1), end)
    trained = days[: args.train_days]
    models = {}
    for network in settings.networks:
        code = _ingest(network, days, {})
        if code:
            return code
        failed = operations.materialize(settings, network, days, FEATURE_ASSETS)
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
        models[network] = _train(network, trained[0], trained[-1], None, {})
        _print_metrics(models[network])
        code = _score(network, days[0], days[-1], (*SCORING_ASSETS, *EVALUATION_ASSETS))
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
                if _optimistic(trained)
                else _rests_on(trained.get("validation"))
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


def _missing_runs(
    network: str,
    overrides: dict[str, str],
    names: tuple[str, ...],
    days: list[dt.date],
    stale: Sequence[dt.date] = (),
) -> list[list[dt.date]]:
    """The consecutive runs of ``days`` on which any of the assets ``names`` is not stored
    or that are ``stale``."""
    from aml_pipeline.storage.tables import TableStore

    tables = TableStore(pipeline_config(_settings_for(network), network, overrides).data_root)
    stored = [set(tables.stored_days((network, name))) for name in names]
    missing = [d for d in days if d in stale or not all(d in s for s in stored)]
    runs: list[list[dt.date]] = []
    for day in missing:
        if runs and day - runs[-1][-1] == dt.timedelta(1):
            runs[-1].append(day)
        else:
            runs.append([day])
    return runs


def _train(
    network: str, start: dt.date, end: dt.date, as_of: dt.date | None, overrides: dict[str, str]
) -> dict[str, dict]:
    """Fetch the label days up to the as-of date and compute the features of the range's
    days that lack them (each a pure function of earlier days, so stored ones are reused),
    then train the three models; returns each model's materialization metadata."""
    from aml_pipeline.defs.network import CHAMPION_ASSETS, FEATURE_ASSETS, MODEL_ASSETS

    settings = _settings_for(network)
    days = _partition_days(settings, start, end)
    if as_of is not None:
        overrides = {**overrides, "labels_as_of": as_of.isoformat()}
    hint = f"aml-pipeline download --network {network} --start-date {start} --end-date {end}"
    pipeline = pipeline_config(settings, network, overrides)
    if pipeline.record(network) is None:
        raise SystemExit(f"{network} has never been landed: {hint}")
    unlanded = [d for run in _missing_runs(network, overrides, ("raw_alerts",), days) for d in run]
    if unlanded:
        raise SystemExit(
            f"{len(unlanded)} day(s) of the training range are not landed, e.g. "
            f"{', '.join(map(str, unlanded[:5]))}: land them first ({hint})"
        )
    # labels that arrive after the range's label horizon cannot change its training
    known_by = min(pipeline.as_of(), _last_partition(), pipeline.labels_complete_by(network, end))
    label_days = date_range(start, known_by) if known_by >= start else []
    # a label day fetched while the source had no labels file is fetched again, and the
    # features after it (their label history read it) are computed again
    empty = operations.fetched_without_labels(network, label_days)
    for names, wanted, stale in (
        (("label_events",), label_days, empty),
        (FEATURE_ASSETS, days, [d for d in days if empty and d > empty[0]]),
    ):
        for run in _missing_runs(network, overrides, names, wanted, stale):
            failed = operations.materialize(settings, network, run, names, overrides)
            if failed is not None:
                raise SystemExit(
                    f"preparing {', '.join(names)} for {run[0]}..{run[-1]} failed (run "
                    f"{failed.run_id}):\n{failure_text(failed)}"
                )
    print(f"features ready for {start}..{end}, labels through {known_by}", flush=True)
    config = {
        "start_date": start.isoformat(),
        "end_date": end.isoformat(),
        "as_of": as_of.isoformat() if as_of else "",
    }
    ops = {f"{network}__{kind}": {"config": config} for kind in MODEL_ASSETS}
    result = operations.run_job(
        settings,
        "training_job",
        {**operations.run_config(settings, network, overrides), "ops": ops},
        (network, (*MODEL_ASSETS, *CHAMPION_ASSETS)),
    )
    if not result.success:
        raise SystemExit(f"training failed (run {result.run_id}):\n{failure_text(result)}")
    metadata = operations.materialized_metadata(result)
    return {
        kind: {
            **metadata[kind],
            "champion": metadata[f"{kind}_champion"]["champion"] == metadata[kind]["version"],
        }
        for kind in MODEL_ASSETS
    }


def _print_metrics(models: dict[str, dict]) -> None:
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
        warning = _optimistic(m)
        if warning:
            print(f"      {warning}")


def _rests_on(split: dict | None) -> str:
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


def _optimistic(metadata: dict) -> str:
    """A warning when a model's validation labels were not mature, else ''."""
    checked = metadata.get("validation_labels")
    if not checked or checked["mature"]:
        return ""
    return (
        f"validated on labels {checked['labelled_share']:.0%} complete, not yet mature "
        "(the first labels to arrive are mostly SARs): these figures are optimistic; "
        "tier 3 and make quality judge held-out days by mature labels"
    )


def train(args: argparse.Namespace) -> int:
    """Train the models on a date range (the seed's train_models.py)."""
    overrides = {"input_dir": str(Path(args.data_dir).resolve())} if args.data_dir else {}
    models = _train(args.network, args.start_date, args.end_date, args.as_of, overrides)
    _print_metrics(models)
    if args.output:
        source = Path(Settings.from_env().data_root) / models["alert_scorer"]["file"]
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, args.output)
        print(f"alert scorer copied to {args.output}")
    return 0


def _score(network: str, start: dt.date, end: dt.date, names: tuple[str, ...]) -> int:
    """Run the daily assets ``names`` of ``network`` over the range in runs of at most
    MAX_DAYS_PER_RUN days, printing progress."""
    settings = _settings_for(network)
    days = _partition_days(settings, start, end)
    done = 0
    began = time.perf_counter()

    def progress(first: dt.date, last: dt.date, result: RunResult) -> None:
        nonlocal done
        done += (last - first).days + 1
        print(
            f"[{done}/{len(days)} days] {network} {first}..{last} scored and published "
            f"(run {result.run_id[:8]}, {time.perf_counter() - began:.0f} s)",
            flush=True,
        )

    failed = operations.materialize(settings, network, days, names, on_chunk=progress)
    if failed is not None:
        print(f"scoring failed (run {failed.run_id}):\n{failure_text(failed)}", file=sys.stderr)
        return 1
    return 0


def score(args: argparse.Namespace) -> int:
    """Score and publish a date range (a backfill): ingest, features, score, publish."""
    from aml_pipeline.defs.network import (
        DAILY_ASSETS,
        EVALUATION_ASSETS,
        FEATURE_ASSETS,
        SCORING_ASSETS,
    )

    names = (
        DAILY_ASSETS
        if not args.no_ingest
        else (*FEATURE_ASSETS, *SCORING_ASSETS, *EVALUATION_ASSETS)
    )
    return _score(args.network, args.start_date, args.end_date, names)


def _budget(budget: int | None, network: str | None) -> int:
    """The daily alert budget: ``budget`` if given, else the network's ``alert_budget``
    (or the environment's, without a network)."""
    if budget is not None:
        return budget
    settings = Settings.from_env()
    return settings.network(network).alert_budget if network else settings.alert_budget


def _maturity_days(days: int | None, network: str | None) -> int:
    """The label maturity to judge by: ``days`` if given, else the network's
    ``label_maturity_days`` (0: estimated from the ground truth)."""
    if days is not None:
        return days
    return Settings.from_env().network(network).label_maturity_days if network else 0


def validate(args: argparse.Namespace) -> int:
    """A/B test two alert-scorer files with the validators' tiers 1-3 (the seed's
    validate_models.py); writes the JSON, comparison_report.md and its plots."""
    from aml_pipeline.evaluation.ab_test import run_ab_test
    from aml_pipeline.evaluation.maturity import LabelMaturity

    _days(args.start_date, args.end_date)
    try:
        result = run_ab_test(
            Path(args.model_a),
            Path(args.model_b),
            Path(args.test_data),
            args.start_date,
            args.end_date,
            Path(args.ground_truth),
            Path(args.output),
            n_resamples=args.resamples,
            seed=args.seed,
            budget=_budget(args.budget, args.network),
            label_maturity_days=_maturity_days(args.label_maturity_days, args.network),
        )
    except (FileNotFoundError, ValueError) as exc:
        print(f"validation failed: {exc}", file=sys.stderr)
        return 1
    for warning in result["inputs"]["warnings"]:
        print(f"WARNING: {warning}; those alerts' label history is incomplete", file=sys.stderr)
    for model in ("model_a", "model_b"):
        if "unchecked" in result["inputs"][model]:
            print(f"WARNING: {model}: {result['inputs'][model]['unchecked']}", file=sys.stderr)
    for name, aggregate in result["aggregate"].items():
        pooled = aggregate["tier3"]["pooled"]["metrics"]
        tiers = ", ".join(
            f"{part} {aggregate[part]['mean_score']:.3f}"
            for part in ("tier1", "tier2", "tier3", "total")
            if aggregate[part]["mean_score"] is not None
        )
        aucs = ", ".join(f"{m} {pooled[m]:.3f}" for m in ("auc_roc", "auc_pr") if pooled.get(m))
        print(f"  {name}: {tiers}; pooled {aucs}")
    inputs = result["inputs"]
    print(
        f"judged on {len(result['judged_days'])} of {len(inputs['n_alerts'])} test days, "
        f"those whose labels are mature by {inputs['labels_through']} "
        f"({LabelMaturity(**inputs['label_maturity']).describe()})"
    )
    print(f"winner: {result['winner']}\n{result['recommendation']}")
    print(f"written: {args.output} and {Path(args.output).parent / 'comparison_report.md'}")
    return 0


def promote(args: argparse.Namespace) -> int:
    """Make a registered model version the champion used for scoring: a materialization
    of its champion asset, which refuses a version that fails a gate (unless
    ``--override`` gives a reason) and records the promotion in the registry."""
    settings = _settings_for(args.network)
    config = {args.kind: args.version, "reason": args.reason, "override": args.override}
    result = operations.run_job(
        settings,
        "training_job",
        {
            **operations.run_config(settings, args.network, {}),
            "ops": {f"{args.network}__champions": {"config": config}},
        },
        (args.network, (f"{args.kind}_champion",)),
    )
    if not result.success:
        print(failure_text(result), file=sys.stderr)
        return 1
    champion = operations.materialized_metadata(result)[f"{args.kind}_champion"]
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


def serve(args: argparse.Namespace) -> int:
    """Serve the published results over HTTP (read-only) until interrupted."""
    from aml_pipeline.api import server

    settings = Settings.from_env()
    from aml_pipeline.storage.objects import storage_at

    print(f"serving {storage_at(settings.data_root).url('')} on http://{args.host}:{args.port} "
          f"(OpenAPI docs at /docs)", flush=True)  # fmt: skip
    server.serve(args.host, args.port, settings.data_root, settings.networks[0], settings.networks)
    return 0


def sql(args: argparse.Namespace) -> int:
    """The analyst's console: ``--query`` prints (or ``--output`` writes) a result,
    ``--catalog`` writes a DuckDB file of the views, neither opens a prompt."""
    from aml_pipeline.api import console

    settings = Settings.from_env()
    root = settings.data_root
    for target in (args.output, args.catalog):
        if target and not Path(target).resolve().parent.is_dir():
            raise SystemExit(f"{target}: its folder does not exist; create it first")
    try:
        if args.catalog:
            counts = console.write_catalog(args.catalog, root, settings.networks)
            print(f"wrote {args.catalog}: {_views(counts)}; open it with: duckdb {args.catalog}")
            if args.query is None:
                return 0
        with console.open_console(root, settings.networks) as (conn, counts):
            if args.query is not None and args.output:
                rows = console.write_result(conn, args.query, args.output, root, args.timeout)
                print(f"wrote {rows} row(s) to {args.output}")
            elif args.query is not None:
                _print_result(
                    console.run_query(
                        conn, args.query, console.PRINTED_ROWS + 1, timeout_s=args.timeout
                    )
                )
            else:
                print(f"views: {_views(counts)}. End statements with ';', quit with .quit")
                _prompt(conn, args.timeout)
    except console.QUERY_ERRORS as exc:
        raise SystemExit(str(exc)) from None
    return 0


def _views(counts: dict[str, int]) -> str:
    shown = [f"{name} ({n} files)" for name, n in counts.items() if n]
    return ", ".join(shown) or "none (nothing published yet)"


def _print_result(result: object) -> None:
    """A console result as a table; says when only its first rows were read."""
    from aml_pipeline.api.console import PRINTED_ROWS

    if result is None:
        return
    print(result.slice(0, PRINTED_ROWS).to_pandas().to_string(index=False))
    if result.num_rows > PRINTED_ROWS:  # one more row was read to know
        print(f"(the first {PRINTED_ROWS} rows; --output writes them all)")


def _prompt(conn: object, timeout_s: float) -> None:
    """Read statements until .quit or end of input; print each result or its error (a
    statement is stopped after ``timeout_s`` seconds, or by Ctrl-C)."""
    from aml_pipeline.api import console

    buffer = ""
    while True:
        try:
            line = input("sql> " if not buffer else "...> ")
        except EOFError:
            return
        if line.strip() in (".quit", ".exit") and not buffer:
            return
        buffer += line + "\n"
        if not buffer.rstrip().endswith(";"):
            continue
        try:
            _print_result(
                console.run_query(conn, buffer, console.PRINTED_ROWS + 1, timeout_s=timeout_s)
            )
        except console.QUERY_ERRORS as exc:
            print(f"error: {exc}")
        buffer = ""


def import_transfers_command(args: argparse.Namespace) -> int:
    """Build batches from a transfers file through the ``import_transfers_job``."""
    from aml_pipeline.defs.runs import STAGE_TAG

    try:
        parse_networks(args.network)  # one safe name: it becomes a directory
    except ValueError as exc:
        raise SystemExit(str(exc)) from exc
    config = {
        "transfers": str(Path(args.transfers).resolve()),
        "labels": str(Path(args.labels).resolve()) if args.labels else "",
        "network": args.network,
        "start_date": args.start_date.isoformat(),
        "end_date": _days(args.start_date, args.end_date)[-1].isoformat(),
        "output_dir": str(Path(args.output_dir).resolve()),
        "window_days": args.window_days,
        "label_delay_days": args.label_delay_days,
    }
    result = operations.run_job(
        Settings.from_env(),
        "import_transfers_job",
        {
            "ops": {"import_transfers_op": {"config": config}},
            "loggers": {"console": {"config": {"log_level": "INFO"}}},
        },
        tags={"network": args.network, STAGE_TAG: "import"},
    )
    if not result.success:
        print(f"import failed (run {result.run_id}):\n{failure_text(result)}", file=sys.stderr)
        return 1
    summary = result.output_for_node("import_transfers_op")
    print(
        f"imported {summary['days']} days: {summary['alerts']} alerts, "
        f"{summary['positives']} SAR-labelled, into {config['output_dir']}\n"
        f"land them with: aml-pipeline download --network {args.network} "
        f"--start-date {config['start_date']} --end-date {config['end_date']} "
        f"--source {config['output_dir']}"
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="aml-pipeline", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    dl = commands.add_parser("download", help="land verified daily batches from a source")
    dl.add_argument("--network", required=True)
    dl.add_argument("--start-date", required=True, type=_date)
    dl.add_argument("--end-date", required=True, type=_date)
    dl.add_argument(
        "--source",
        default=None,
        help="'simulated' or a directory in the seed/upstream layout (default: AML_BATCH_SOURCE)",
    )
    dl.add_argument(
        "--output-dir", default=None, help="landing directory (default: {AML_DATA_ROOT}/input)"
    )
    dl.set_defaults(func=download)

    tr = commands.add_parser("train", help="train the alert scorer, ranker and cluster scorer")
    tr.add_argument("--network", required=True)
    tr.add_argument("--start-date", required=True, type=_date)
    tr.add_argument("--end-date", required=True, type=_date)
    tr.add_argument(
        "--as-of",
        type=_date,
        default=None,
        help="only labels known on this date count (default: AML_LABELS_AS_OF or today)",
    )
    tr.add_argument(
        "--data-dir", default=None, help="landed batches (default: {AML_DATA_ROOT}/input)"
    )
    tr.add_argument("--output", default=None, help="also copy the alert scorer model here")
    tr.set_defaults(func=train)

    im = commands.add_parser(
        "import-transfers", help="build SOT batches from your own transfers (CSV or Parquet)"
    )
    im.add_argument("--transfers", required=True, help="CSV or Parquet transfers file")
    im.add_argument(
        "--labels",
        default=None,
        help="CSV or Parquet of illicit addresses (optional event date column)",
    )
    im.add_argument("--network", required=True)
    im.add_argument("--start-date", required=True, type=_date)
    im.add_argument("--end-date", required=True, type=_date)
    im.add_argument("--output-dir", required=True)
    im.add_argument("--window-days", type=int, default=7)
    im.add_argument("--label-delay-days", type=int, default=30)
    im.set_defaults(func=import_transfers_command)

    sc = commands.add_parser(
        "score", help="score, rank, explain and publish a date range (a backfill)"
    )
    sc.add_argument("--network", required=True)
    sc.add_argument("--start-date", required=True, type=_date)
    sc.add_argument("--end-date", required=True, type=_date)
    sc.add_argument(
        "--no-ingest",
        action="store_true",
        help="use the batches already landed instead of fetching them again",
    )
    sc.set_defaults(func=score)

    va = commands.add_parser(
        "validate", help="A/B test two models with the validators' tiers 1-3 (a report)"
    )
    va.add_argument("--model-a", required=True, help="baseline model file (LightGBM .txt)")
    va.add_argument("--model-b", required=True, help="challenger model file")
    va.add_argument(
        "--test-data", required=True, help="directory of {date}/ batches, e.g. data/input/NET"
    )
    va.add_argument("--start-date", required=True, type=_date)
    va.add_argument("--end-date", required=True, type=_date)
    va.add_argument("--ground-truth", required=True, help="Parquet/CSV with alert_id, is_sar_filed")
    va.add_argument("--output", required=True, help="comparison JSON; the report goes beside it")
    va.add_argument("--resamples", type=int, default=1000, help="paired bootstrap resamples")
    va.add_argument(
        "--budget",
        type=_positive,
        default=None,
        help="alerts the analysts work a day (default: the --network's alert_budget, else "
        "AML_ALERT_BUDGET, 100)",
    )
    va.add_argument(
        "--network",
        default=None,
        help="take the daily alert budget and the label maturity from its settings",
    )
    va.add_argument(
        "--label-maturity-days",
        type=int,
        default=None,
        help="days after which a test day's labels are complete enough to judge by (default: "
        "the --network's label_maturity_days, else estimated from the ground truth)",
    )
    va.add_argument("--seed", type=int, default=0)
    va.set_defaults(func=validate)

    pr = commands.add_parser("promote", help="make a model version the champion")
    pr.add_argument("--network", required=True)
    pr.add_argument(
        "--kind", required=True, choices=["alert_scorer", "alert_ranker", "cluster_scorer"]
    )
    pr.add_argument("--version", required=True, help="e.g. 1.1.0")
    pr.add_argument("--reason", default="", help="recorded with the promotion")
    pr.add_argument(
        "--override",
        default="",
        help="promote even if a gate fails; this reason is recorded in the registry",
    )
    pr.set_defaults(func=promote)

    se = commands.add_parser("serve", help="serve published results over HTTP (read-only)")
    se.add_argument("--host", default="127.0.0.1")
    se.add_argument("--port", type=int, default=8000)
    se.set_defaults(func=serve)

    sq = commands.add_parser(
        "sql", help="query every published and warehouse table with DuckDB SQL (read-only)"
    )
    sq.add_argument("--query", help="SQL to run (default: an interactive prompt)")
    sq.add_argument("--output", type=Path, help="write the result to a .csv or .parquet file")
    sq.add_argument(
        "--timeout",
        type=float,
        default=300.0,
        help="seconds after which a statement is stopped (Ctrl-C stops it too)",
    )
    sq.add_argument(
        "--catalog",
        type=Path,
        help="write a .duckdb file of the views for the DuckDB CLI or any DuckDB client",
    )
    sq.set_defaults(func=sql)

    dm = commands.add_parser("demo", help="run the pipeline on the last days of the source")
    dm.add_argument("--days", type=int, default=42, help="days to ingest, score and publish")
    dm.add_argument("--train-days", type=int, default=21, help="the oldest of them, to train on")
    dm.add_argument(
        "--end-date", type=_date, default=None, help="last day (default: yesterday, UTC)"
    )
    dm.set_defaults(func=demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``aml-pipeline`` console script."""
    args = build_parser().parse_args(argv)
    try:
        check_data_root(Settings.from_env().data_root)
        return args.func(args)
    except (SettingsError, StorageUnavailable) as exc:
        print(f"settings: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
