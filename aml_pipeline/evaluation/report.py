"""Write a model comparison (``compare_models`` result) as JSON, markdown and PNG curves.

Every file is written to a temporary file in the target directory and moved into place
with ``os.replace``, so readers never see a half-written report. Plots use matplotlib's
Agg canvas directly (no pyplot, no global backend switch).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from aml_pipeline.evaluation.budget import RECALL_METRIC
from aml_pipeline.evaluation.validator_utils import to_jsonable
from aml_pipeline.storage.objects import LocalStorage

MARKDOWN_NAME = "comparison_report.md"
ROC_PNG = "roc_curves.png"
PR_PNG = "pr_curves.png"
RELIABILITY_PNG = "reliability.png"


def _atomic_write(path: Path, write: Callable[[Path], object]) -> None:
    """Call ``write`` on a temporary file beside ``path``, then move it onto ``path``
    (the storage layer's fsync + rename)."""
    with LocalStorage(path.parent).writing(path.name) as tmp:
        write(tmp)


def _write_text(path: Path, text: str) -> None:
    _atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def _fmt(value: Any, digits: int = 4, signed: bool = False) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, bool) or not isinstance(value, float):
        return str(value)
    return f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"


def _table(header: list[str], rows: list[list[Any]], signed: bool = False) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_fmt(cell, signed=signed) for cell in row) + " |" for row in rows]
    return [*lines, ""]


def _plot(path: Path, result: Mapping[str, Any], kind: str) -> None:
    """ROC (``kind="roc"``) or precision-recall curves of both models into one PNG."""
    x_key, y_key, x_label, y_label = (
        ("fpr", "tpr", "False positive rate", "True positive rate")
        if kind == "roc"
        else ("recall", "precision", "Recall", "Precision")
    )
    figure = Figure(figsize=(6, 5), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    metric, short = ("auc_roc", "AUC") if kind == "roc" else ("auc_pr", "AP")
    for name, model_curves in result["curves"].items():
        value = result["aggregate"][name]["tier3"]["pooled"]["metrics"][metric]
        curve = model_curves[kind]
        axes.plot(curve[x_key], curve[y_key], label=f"{name} ({short} {value:.3f})")
    if kind == "roc":
        axes.plot([0, 1], [0, 1], linestyle="--", color="grey", label="chance")
    axes.set(xlabel=x_label, ylabel=y_label, xlim=(0, 1), ylim=(0, 1.02))
    axes.set_title("ROC curves" if kind == "roc" else "Precision-recall curves")
    axes.legend(loc="lower right" if kind == "roc" else "upper right")
    axes.grid(alpha=0.3)
    _atomic_write(path, lambda tmp: figure.savefig(tmp, format="png"))


def _summary(result: Mapping[str, Any]) -> list[str]:
    names = result["models"]
    boot = result["bootstrap"]
    return [
        "# Model comparison report",
        "",
        "## Summary",
        "",
        f"- Model A (baseline): **{names['a']}**; model B (candidate): **{names['b']}**",
        f"- Days: {len(result['days'])} ({', '.join(result['days'])})",
        f"- Paired labelled alerts: {result['pooled']['n_paired']}",
        f"- Winner (pooled AUC-ROC): **{result['winner'] or 'n/a'}**; "
        f"significant: **{'yes' if result['significant'] else 'no'}**",
        f"- Bootstrap: {boot['n_valid']} valid of {boot['n_resamples']} paired resamples of "
        f"whole {boot.get('blocks', 'alerts')} ({boot.get('n_blocks', 'n/a')} blocks), "
        f"seed {boot['seed']}",
        "",
        f"> {result['recommendation']}",
        "",
    ]


def _tier_tables(result: Mapping[str, Any]) -> list[str]:
    lines = ["## Tier scores (mean over days)", ""]
    rows = []
    for name, agg in result["aggregate"].items():
        n_days = agg["n_days"]
        rows.append(
            [
                name,
                agg["tier1"]["mean_score"],
                f"{agg['tier1']['days_passed']}/{n_days}",
                agg["tier2"]["mean_score"],
                f"{agg['tier2']['days_passed']}/{n_days}",
                agg["tier3"]["mean_score"],
                f"{agg['tier3']['days_scored']}/{n_days}",
                agg["total"]["mean_score"],
            ]
        )
    header = ["Model", "Tier 1", "T1 passed", "Tier 2", "T2 passed", "Tier 3", "T3 scored"]
    lines += _table([*header, "Total"], rows)
    lines += ["## Pooled Tier 3 (paired labelled alerts)", ""]
    metrics: tuple[str, ...] = ("n_samples", "n_positive", "auc_roc", "auc_pr", RECALL_METRIC)
    metrics += ("best_f1", "f1_at_model_threshold")
    daily = ("mean_precision_at_budget", "mean_recall_at_budget")
    rows = [
        [name, agg["tier3"]["pooled"]["score"]]
        + [agg["tier3"]["pooled"]["metrics"].get(m) for m in metrics]
        + [agg["tier3"].get(m) for m in daily]
        for name, agg in result["aggregate"].items()
    ]
    return lines + _table(["Model", "Tier 3 score", *metrics, *daily], rows)


def _per_day_tables(result: Mapping[str, Any]) -> list[str]:
    lines = ["## Per day", ""]
    header = ["Day", "Tier 1", "Tier 2", "Tier 3", "Total", "AUC-ROC", "AUC-PR", "P@budget"]
    header += ["R@budget", "Tier 3 note"]
    for name in result["models"].values():
        rows = []
        for day in result["days"]:
            run = result["per_day"][day]["models"][name]
            metrics = run["tier3"]["metrics"]
            rows.append(
                [
                    day,
                    *(run[tier]["score"] for tier in ("tier1", "tier2", "tier3")),
                    run["total_score"],
                    metrics.get("auc_roc"),
                    metrics.get("auc_pr"),
                    metrics.get("precision_at_budget"),
                    metrics.get("recall_at_budget"),
                    run["tier3"]["reason"] or "",
                ]
            )
        lines += [f"### {name}", "", *_table(header, rows)]
    delta_keys = ("tier1", "tier2", "tier3", "total", "auc_roc", "auc_pr")
    deltas = {day: result["per_day"][day]["delta"] for day in result["days"]}
    rows = [[day, *(delta[k] for k in delta_keys)] for day, delta in deltas.items()]
    return [*lines, "### Deltas (B - A)", "", *_table(["Day", *delta_keys], rows, signed=True)]


def _delta_section(result: Mapping[str, Any]) -> list[str]:
    boot = result["bootstrap"]
    level = f"{100 * boot['confidence']:g}%"
    lines = ["## Deltas (B - A) and confidence intervals", ""]
    lines += _table(["Quantity", "B - A"], [[k, v] for k, v in result["delta"].items()], True)
    rows = [
        [metric, d["estimate"], d["ci_low"], d["ci_high"], "yes" if d["significant"] else "no"]
        for metric, d in (("AUC-ROC", boot["auc_roc_diff"]), ("AUC-PR", boot["auc_pr_diff"]))
    ]
    header = ["Metric", "Difference", f"{level} CI low", f"{level} CI high", "Significant"]
    return lines + _table(header, rows, signed=True)


def _curve_section(result: Mapping[str, Any], directory: Path) -> list[str]:
    curves = result["curves"]
    lines = ["## Curves (pooled paired alerts)", ""]
    if any(model_curves is None for model_curves in curves.values()):
        return [*lines, "Curves unavailable: the pooled alerts hold a single class or none.", ""]
    _plot(directory / ROC_PNG, result, "roc")
    _plot(directory / PR_PNG, result, "pr")
    return [*lines, f"![ROC curves]({ROC_PNG})", "", f"![Precision-recall curves]({PR_PNG})", ""]


def plot_reliability(
    path: Path, calibration: Mapping[str, Any], title: str = "Reliability (pooled paired alerts)"
) -> None:
    """Reliability diagram of each model's ``reliability`` table (with its ``brier`` and
    ``ece``): per score bin, the SAR share against the mean score."""
    figure = Figure(figsize=(6, 5), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    for name, table in calibration.items():
        rows = table["reliability"]
        axes.plot(
            [r["mean_score"] for r in rows],
            [r["sar_rate"] for r in rows],
            marker="o",
            label=f"{name} (Brier {table['brier']:.4f}, ECE {table['ece']:.4f})",
        )
    axes.plot([0, 1], [0, 1], linestyle="--", color="grey", label="perfectly calibrated")
    axes.set(xlabel="Mean score in bin", ylabel="SAR share in bin", xlim=(0, 1), ylim=(0, 1.02))
    axes.set_title(title)
    axes.legend(loc="upper left")
    axes.grid(alpha=0.3)
    _atomic_write(path, lambda tmp: figure.savefig(tmp, format="png"))


def _calibration_section(result: Mapping[str, Any], directory: Path) -> list[str]:
    calibration = result.get("calibration") or {}
    lines = ["## Calibration (pooled paired alerts)", ""]
    if not calibration or any(table is None for table in calibration.values()):
        return [
            *lines,
            "Unavailable: a model's scores are not all in [0, 1], or one class only.",
            "",
        ]
    rows = [[name, table["brier"], table["ece"]] for name, table in calibration.items()]
    plot_reliability(directory / RELIABILITY_PNG, calibration)
    return [
        *lines,
        *_table(["Model", "Brier score", "Expected calibration error"], rows),
        f"![Reliability diagram]({RELIABILITY_PNG})",
        "",
    ]


def write_comparison_report(result: Mapping[str, Any], output_json: Path) -> Path:
    """Write ``result`` to ``output_json`` and ``comparison_report.md`` (+ PNGs) beside it.

    Returns the markdown path; its image links are relative to its directory.
    """
    output_json = Path(output_json)
    output_json.parent.mkdir(parents=True, exist_ok=True)
    result = to_jsonable(result)
    _write_text(output_json, json.dumps(result, indent=2, allow_nan=False) + "\n")
    lines = [
        *_summary(result),
        *_tier_tables(result),
        *_delta_section(result),
        *_per_day_tables(result),
        *_curve_section(result, output_json.parent),
        *_calibration_section(result, output_json.parent),
        f"Full results: [{output_json.name}]({output_json.name})",
    ]
    markdown = output_json.parent / MARKDOWN_NAME
    _write_text(markdown, "\n".join(lines) + "\n")
    return markdown
