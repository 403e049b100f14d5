"""A/B model comparison: paired bootstrap, verdict and the written report."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from aml_pipeline.evaluation import compare_models, paired_bootstrap, write_comparison_report
from aml_pipeline.models.bootstrap import bootstrap_aucs

DAYS = ("2025-01-01", "2025-01-02", "2025-01-03")


def _scores(ids: list[str], values: np.ndarray, version: str) -> pd.DataFrame:
    return pd.DataFrame(
        {"alert_id": ids, "score": values, "model_version": version, "latency_ms": 4.0}
    )


def _inputs(signal_a: float, signal_b: float, n: int = 300, seed: int = 0):
    """Per-day scores of two models (more signal = better ranking), alerts and labels."""
    rng = np.random.default_rng(seed)
    scores: dict[str, dict[str, pd.DataFrame]] = {"A": {}, "B": {}}
    alerts, truth = {}, []
    for day in DAYS:
        ids = [f"{day}-{i}" for i in range(n)]
        labels = rng.random(n) < 0.2
        noise = rng.random(n)
        alerts[day] = pd.DataFrame({"alert_id": ids})
        for name, signal in (("A", signal_a), ("B", signal_b)):
            values = (signal * labels + (1 - signal) * noise).round(3)
            scores[name][day] = _scores(ids, values, name)
        truth.append(
            pd.DataFrame({"alert_id": ids, "is_sar_filed": labels, "processing_date": day})
        )
    return scores, alerts, pd.concat(truth, ignore_index=True)


@pytest.fixture(scope="module")
def better_b() -> dict:
    scores, alerts, truth = _inputs(0.2, 0.45)
    return compare_models(scores, alerts, truth, n_resamples=300)


def test_clearly_better_model_wins_significantly(better_b):
    roc = better_b["bootstrap"]["auc_roc_diff"]
    assert roc["ci_low"] > 0 and roc["significant"]
    assert better_b["winner"] == "B" and better_b["significant"]
    assert "significantly better" in better_b["recommendation"]
    assert "adopt B" in better_b["recommendation"]
    assert better_b["delta"]["pooled_auc_roc"] == pytest.approx(roc["estimate"])
    json.dumps(better_b, allow_nan=False)


def test_result_holds_tiers_per_day_and_aggregated(better_b):
    assert better_b["days"] == list(DAYS)
    day = better_b["per_day"][DAYS[0]]
    assert set(day["models"]) == {"A", "B"}
    assert day["models"]["A"]["tier1"]["score"] == 0.2
    assert day["delta"]["tier3"] > 0
    aggregate = better_b["aggregate"]["B"]
    assert aggregate["tier1"]["days_passed"] == 3 and aggregate["tier3"]["days_scored"] == 3
    assert aggregate["tier3"]["pooled"]["metrics"]["n_samples"] == better_b["pooled"]["n_paired"]
    assert better_b["pooled"]["n_paired"] == 900


def test_identical_models_are_not_significantly_different():
    scores, alerts, truth = _inputs(0.3, 0.3)
    result = compare_models(scores, alerts, truth, n_resamples=200)
    for metric in ("auc_roc_diff", "auc_pr_diff"):
        diff = result["bootstrap"][metric]
        assert (diff["estimate"], diff["ci_low"], diff["ci_high"]) == (0.0, 0.0, 0.0)
        assert not diff["significant"]
    assert result["winner"] == "tie" and not result["significant"]
    assert result["recommendation"].startswith("No significant difference")


def test_comparison_is_deterministic_given_the_seed():
    scores, alerts, truth = _inputs(0.25, 0.3)
    first = compare_models(scores, alerts, truth, n_resamples=100, seed=7)
    assert compare_models(scores, alerts, truth, n_resamples=100, seed=7) == first
    other = compare_models(scores, alerts, truth, n_resamples=100, seed=8)
    assert other["bootstrap"]["auc_roc_diff"] != first["bootstrap"]["auc_roc_diff"]


def test_bootstrap_estimates_match_sklearn_with_ties():
    rng = np.random.default_rng(3)
    y = rng.random(2000) < 0.1
    a = (y * 0.2 + rng.random(2000)).round(1)  # many ties
    b = y * 0.4 + rng.random(2000)
    result = paired_bootstrap(y, a, b, n_resamples=50)
    roc = roc_auc_score(y, b) - roc_auc_score(y, a)
    pr = average_precision_score(y, b) - average_precision_score(y, a)
    assert result["auc_roc_diff"]["estimate"] == pytest.approx(roc, abs=1e-12)
    assert result["auc_pr_diff"]["estimate"] == pytest.approx(pr, abs=1e-12)


def test_one_models_intervals_cover_its_figures_and_widen_with_address_blocks():
    rng = np.random.default_rng(4)
    address = np.repeat(np.arange(200), 10)  # ten alerts per address, one outcome each
    y = np.repeat(rng.random(200) < 0.2, 10)
    score = y * 0.5 + np.repeat(rng.random(200), 10) + 0.2 * rng.random(2000)
    by_row = bootstrap_aucs(y, score, n_resamples=300)
    by_address = bootstrap_aucs(y, score, groups=address, n_resamples=300)
    assert by_row["auc_roc"][0] == pytest.approx(roc_auc_score(y, score), abs=1e-12)
    assert by_row["auc_pr"][0] == pytest.approx(average_precision_score(y, score), abs=1e-12)
    for metric in ("auc_roc", "auc_pr"):
        estimate, low, high = by_address[metric]
        assert low <= estimate <= high
        assert high - low > 1.5 * (by_row[metric][2] - by_row[metric][1])
    assert bootstrap_aucs(np.zeros(5, bool), np.arange(5.0)) is None


def test_bootstrap_skips_single_class_resamples():
    y = np.array([True, False, False, False, False, False])
    result = paired_bootstrap(y, np.linspace(0, 1, 6), np.linspace(1, 0, 6), n_resamples=200)
    assert 0 < result["n_valid"] < 200


def test_pooled_single_class_gives_no_verdict(tmp_path):
    scores, alerts, truth = _inputs(0.2, 0.4)
    truth["is_sar_filed"] = False
    result = compare_models(scores, alerts, truth, n_resamples=50)
    assert result["winner"] is None and not result["significant"]
    assert result["recommendation"].startswith("No verdict: pooled labels hold a single class")
    assert result["curves"] == {"A": None, "B": None}
    markdown = write_comparison_report(result, tmp_path / "comparison.json")
    assert "Curves unavailable" in markdown.read_text()
    assert not list(tmp_path.glob("*.png"))


def test_labels_are_taken_from_their_own_processing_date():
    scores, alerts, truth = _inputs(0.2, 0.4)
    stray = truth.iloc[:5].assign(processing_date="2024-12-31")
    result = compare_models(scores, alerts, pd.concat([truth, stray]), n_resamples=20)
    assert result["pooled"]["n_labelled"] == 900


def test_traps_and_tier1_failures_show_in_deltas_and_recommendation():
    scores, alerts, truth = _inputs(0.2, 0.4)
    day = DAYS[0]
    trap_id = scores["B"][day]["alert_id"].iloc[0]
    trap_score = float(scores["B"][day]["score"].iloc[0])
    traps = {day: [{"alert_id": trap_id, "expected_score": trap_score}]}
    scores["B"][DAYS[1]] = scores["B"][DAYS[1]].iloc[1:]
    result = compare_models(scores, alerts, truth, traps, n_resamples=50)
    assert result["per_day"][day]["delta"]["tier2"] == pytest.approx(-0.05)
    assert result["per_day"][DAYS[1]]["delta"]["tier1"] == pytest.approx(-0.2)
    assert result["pooled"]["n_scored_by_one_model"] == 1
    assert "Warning: B failed Tier 1 on 1 of 3 day(s)" in result["recommendation"]


def test_a_submission_without_scores_does_not_crash_the_comparison():
    scores, alerts, truth = _inputs(0.2, 0.4)
    scores["B"][DAYS[0]] = scores["B"][DAYS[0]].drop(columns="score")
    result = compare_models(scores, alerts, truth, n_resamples=20)
    assert result["per_day"][DAYS[0]]["models"]["B"]["tier3"]["score"] is None
    assert result["pooled"]["n_scored_by_one_model"] == 300
    assert result["pooled"]["n_paired"] == 600


def test_inputs_must_cover_the_same_days_for_two_models():
    scores, alerts, truth = _inputs(0.2, 0.4)
    del scores["B"][DAYS[0]]
    with pytest.raises(ValueError, match="model 'B' scored days"):
        compare_models(scores, alerts, truth)
    with pytest.raises(ValueError, match="exactly 2 models"):
        compare_models({"A": scores["A"]}, alerts, truth)


def test_report_writes_json_markdown_and_two_linked_pngs(better_b, tmp_path):
    output = tmp_path / "reports" / "comparison.json"
    markdown = write_comparison_report(better_b, output)
    assert markdown == output.parent / "comparison_report.md"
    assert json.loads(output.read_text()) == better_b
    text = markdown.read_text()
    for png in ("roc_curves.png", "pr_curves.png", "reliability.png"):
        assert f"]({png})" in text
        assert (output.parent / png).read_bytes().startswith(b"\x89PNG")
    for heading in ("## Summary", "## Tier scores", "## Per day", "## Deltas (B - A)", "95% CI"):
        assert heading in text
    assert better_b["recommendation"] in text
    assert sorted(p.name for p in output.parent.iterdir()) == [
        "comparison.json",
        "comparison_report.md",
        "pr_curves.png",
        "reliability.png",
        "roc_curves.png",
    ]


def test_each_model_is_judged_at_its_own_threshold_and_the_budget():
    scores, alerts, truth = _inputs(0.2, 0.45)
    result = compare_models(scores, alerts, truth, thresholds={"A": 1.5, "B": 0.5}, n_resamples=50)
    pooled = {name: agg["tier3"]["pooled"]["metrics"] for name, agg in result["aggregate"].items()}
    assert pooled["A"]["model_threshold"] == 1.5 and pooled["B"]["model_threshold"] == 0.5
    assert pooled["A"]["f1_at_model_threshold"] == 0  # nothing scores 1.5
    y = truth["is_sar_filed"].to_numpy()
    b = np.concatenate([scores["B"][day]["score"].to_numpy() for day in DAYS])
    flagged = b >= 0.5
    precision, recall = y[flagged].mean(), flagged[y].mean()
    expected = 2 * precision * recall / (precision + recall)
    assert pooled["B"]["f1_at_model_threshold"] == pytest.approx(expected)
    for day in DAYS:
        tier3 = result["per_day"][day]["models"]["B"]["tier3"]["metrics"]
        assert tier3["model_threshold"] == 0.5 and tier3["alert_budget"] == 100
    assert 0 < result["aggregate"]["B"]["tier3"]["mean_precision_at_budget"] <= 1


def test_the_budget_is_the_networks_not_a_constant():
    scores, alerts, truth = _inputs(0.2, 0.45)
    result = compare_models(scores, alerts, truth, budget=3, n_resamples=50)
    y = truth.set_index("alert_id")["is_sar_filed"]
    for day in DAYS:
        tier3 = result["per_day"][day]["models"]["B"]["tier3"]["metrics"]
        assert tier3["alert_budget"] == 3
        top = scores["B"][day].sort_values("score", ascending=False)["alert_id"].head(3)
        assert tier3["precision_at_budget"] == pytest.approx(y[top].mean())


def test_the_verdict_rests_on_the_mature_days_or_says_it_could_not():
    scores, alerts, truth = _inputs(0.2, 0.45)
    everything = compare_models(scores, alerts, truth, n_resamples=50)
    first = compare_models(scores, alerts, truth, judged_days=DAYS[:1], n_resamples=50)
    assert first["judged_days"] == list(DAYS[:1]) and first["days"] == list(DAYS)
    assert first["pooled"]["n_paired"] < everything["pooled"]["n_paired"]
    assert f"Judged on the 1 of {len(DAYS)} day(s)" in first["recommendation"]
    assert set(first["per_day"]) == set(DAYS)  # every day's tiers are still reported
    none = compare_models(scores, alerts, truth, judged_days=[], n_resamples=50)
    assert none["winner"] is None and not none["significant"]
    assert "no test day's labels are mature yet" in none["recommendation"]
