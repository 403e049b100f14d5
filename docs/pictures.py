"""The README's two pictures (``make pictures``, after ``make demo`` and ``make ui-check``):
the asset graph of one network as the Dagster UI draws it (``make ui-check``'s screenshot,
scaled down), and the tier 3 AUC-ROC of each day the demo scored, from the published
evaluation of the model that scored the most days."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image

from aml_pipeline.settings import Settings
from aml_pipeline.storage import layout
from aml_pipeline.storage.objects import storage_at

ROOT = Path(__file__).resolve().parents[1]
IMAGES = ROOT / "docs" / "images"


def asset_graph(screenshots: Path) -> Path:
    """``make ui-check``'s screenshot of the asset graph at 60 % of its size."""
    shot = screenshots / "graph.png"
    if not shot.is_file():
        raise SystemExit(f"{shot} is missing: run make ui-check first")
    out = IMAGES / "asset-graph.png"
    with Image.open(shot) as image:
        image.thumbnail((int(image.width * 0.6), int(image.height * 0.6)))
        image.save(out, optimize=True)
    return out


def tier3_trend(data_root: str, network: str) -> Path:
    """Tier 3 AUC-ROC per day of the model version that scored the most days: in-sample
    days, held-out days whose labels are mature, and held-out days still waiting for
    theirs (judged on the labels known so far, which are mostly SARs)."""
    storage = storage_at(data_root)
    folder = layout.validation_folder(network)
    names = [n for n in storage.list_dir(folder) if n.endswith("_evaluation.json")]
    if not names:
        raise SystemExit(f"no model evaluation under {storage.url(folder)}: run make demo first")
    reports = [json.loads(storage.read_bytes(f"{folder}/{n}")) for n in names]
    report = max(reports, key=lambda r: len(r["days"]))
    groups: dict[str, tuple[list[int], list[float]]] = {
        "trained on": ([], []),
        "held out, labels mature": ([], []),
        "held out, labels still arriving": ([], []),
    }
    days = sorted(report["days"])
    for i, day in enumerate(days):
        record = report["days"][day]
        auc = (record["tier3"].get("metrics") or {}).get("auc_roc")
        if auc is None:
            continue
        if record["in_sample"]:
            group = "trained on"
        elif record["tier3"].get("labels_mature", True):
            group = "held out, labels mature"
        else:
            group = "held out, labels still arriving"
        groups[group][0].append(i)
        groups[group][1].append(auc)
    figure = Figure(figsize=(8, 3.2), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    styles = (("0.6", "s"), ("C0", "s"), ("C1", "o"))  # colour and marker of each group
    for (label, (x, y)), (color, marker) in zip(groups.items(), styles, strict=True):
        if x:  # a group with no day stays out of the legend
            axes.plot(x, y, linestyle="none", color=color, marker=marker, label=label)
    ticks = list(range(0, len(days), 7))
    axes.set_xticks(ticks, [days[i] for i in ticks], fontsize=8)
    lowest = min((min(y) for _, y in groups.values() if y), default=0.5)
    axes.set_ylim(min(0.5, lowest - 0.02), 1.01)
    axes.set_ylabel("tier 3 AUC-ROC")
    axes.set_title(
        f"{network} alert scorer v{report['model_version']}: tier 3 per day", fontsize=10
    )
    axes.legend(fontsize=8, loc="lower left")
    axes.grid(alpha=0.3)
    figure.tight_layout()
    out = IMAGES / "tier3-trend.png"
    figure.savefig(out, format="png")
    return out


def main() -> int:
    settings = Settings.from_env()
    IMAGES.mkdir(parents=True, exist_ok=True)
    for written in (
        asset_graph(ROOT / "data" / "ui-check"),
        tier3_trend(settings.data_root, settings.networks[0]),
    ):
        print(f"wrote {written.relative_to(ROOT)} ({written.stat().st_size // 1024} KB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
