"""Tier 1-3 validators and their shared helpers, on small hand-made submissions."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from aml_pipeline.contract.traps import PatternTrapsError, load_pattern_traps, parse_pattern_traps
from aml_pipeline.evaluation import (
    Tier1Validator,
    Tier2Validator,
    Tier3Validator,
    to_jsonable,
    total_score,
    validate_day,
)

IDS = [f"a{i}" for i in range(10)]


def _alerts(ids=IDS) -> pd.DataFrame:
    return pd.DataFrame({"alert_id": ids})


def _scores(ids=IDS, scores=None, latency=5.0) -> pd.DataFrame:
    scores = np.linspace(0.05, 0.95, len(ids)) if scores is None else scores
    return pd.DataFrame(
        {"alert_id": ids, "score": scores, "model_version": "v1", "latency_ms": latency}
    )


def _truth(ids=IDS, labels=None) -> pd.DataFrame:
    labels = [i >= len(ids) // 2 for i in range(len(ids))] if labels is None else labels
    return pd.DataFrame({"alert_id": ids, "is_sar_filed": labels})


def _json(result: dict) -> str:
    return json.dumps(result, allow_nan=False)


# --- Tier 1 -------------------------------------------------------------------------------


def test_tier1_correct_submission_gets_0_2():
    result = Tier1Validator().validate(_scores(), _alerts())
    assert result["passed"] and result["score"] == 0.2
    assert result["failed_checks"] == []
    assert result["checks"]["determinism"]["status"] == "not_run"
    assert {c["status"] for name, c in result["checks"].items() if name != "determinism"} == {
        "passed"
    }
    _json(result)


def test_tier1_empty_day_passes():
    empty = _scores(ids=[], scores=[])
    result = Tier1Validator().validate(empty, _alerts([]))
    assert result["passed"] and result["score"] == 0.2
    assert result["checks"]["completeness"]["details"]["n_alerts"] == 0


def test_tier1_duplicate_and_missing_ids_fail_even_with_equal_lengths():
    ids = [*IDS[:-1], "a0"]
    result = Tier1Validator().validate(_scores(ids), _alerts())
    completeness = result["checks"]["completeness"]
    assert completeness["status"] == "failed" and result["score"] == 0.0
    assert completeness["details"]["missing_examples"] == ["a9"]
    assert completeness["details"]["duplicated_examples"] == ["a0"]


def test_tier1_unknown_ids_fail():
    ids = [*IDS[:-1], "zz"]
    details = Tier1Validator().validate(_scores(ids), _alerts())["checks"]["completeness"]
    assert details["status"] == "failed"
    assert details["details"]["n_unknown"] == 1 and details["details"]["unknown_examples"] == ["zz"]


def test_tier1_examples_are_capped_at_five():
    details = Tier1Validator().validate(_scores(IDS[:2]), _alerts())["checks"]["completeness"]
    assert details["details"]["n_missing"] == 8
    assert details["details"]["missing_examples"] == IDS[2:7]


def test_tier1_reports_every_failing_check_not_only_the_first():
    scores = _scores(IDS[:-1], scores=[1.5, *np.linspace(0, 1, 8)], latency=250.0)
    result = Tier1Validator().validate(scores, _alerts())
    assert result["failed_checks"] == ["completeness", "score_range", "latency"]
    assert result["checks"]["schema"]["status"] == "passed"
    assert result["checks"]["latency"]["details"]["mean_latency_ms"] == 250.0


def test_tier1_schema_missing_column_and_non_numeric_score():
    scores = _scores().drop(columns="model_version").assign(score=lambda d: d["score"].astype(str))
    result = Tier1Validator().validate(scores, _alerts())
    schema = result["checks"]["schema"]["details"]
    assert schema["missing_columns"] == ["model_version"]
    assert list(schema["non_numeric_columns"]) == ["score"]
    assert result["checks"]["score_range"]["status"] == "not_run"
    assert not result["passed"]


def test_tier1_score_range_counts_nan_inf_and_out_of_range():
    values = [np.nan, np.inf, -0.1, 1.2, *np.linspace(0, 1, 6)]
    result = Tier1Validator().validate(_scores(scores=values), _alerts())
    details = result["checks"]["score_range"]["details"]
    assert result["checks"]["score_range"]["status"] == "failed"
    assert (details["n_nan"], details["n_inf"], details["n_out_of_range"]) == (1, 1, 2)
    assert details["offending_examples"] == ["a0", "a1", "a2", "a3"]
    _json(result)


@pytest.mark.parametrize(("latency", "ok"), [(99.9, True), (100.0, False), (np.nan, False)])
def test_tier1_latency_threshold(latency, ok):
    result = Tier1Validator().validate(_scores(latency=latency), _alerts())
    assert (result["checks"]["latency"]["status"] == "passed") is ok


def test_tier1_determinism_passes_for_identical_rescoring_in_other_order():
    rescored = _scores().iloc[::-1]
    result = Tier1Validator().validate(_scores(), _alerts(), rescored)
    assert result["checks"]["determinism"]["status"] == "passed"
    assert result["checks"]["determinism"]["details"]["n_compared"] == 10


@pytest.mark.parametrize(("noise", "ok"), [(1e-13, True), (1e-9, False)])
def test_tier1_determinism_tolerance(noise, ok):
    rescored = _scores()
    rescored.loc[3, "score"] += noise
    check = Tier1Validator().validate(_scores(), _alerts(), rescored)["checks"]["determinism"]
    assert (check["status"] == "passed") is ok
    if not ok:
        assert check["details"]["mismatch_examples"] == ["a3"]


def test_tier1_determinism_fails_when_rescoring_drops_an_alert():
    check = Tier1Validator().validate(_scores(), _alerts(), _scores().iloc[1:])["checks"]
    assert check["determinism"]["status"] == "failed"
    assert check["determinism"]["details"]["missing_in_rescore_examples"] == ["a0"]


def test_tier1_needs_alert_ids_in_input():
    with pytest.raises(ValueError, match="alert_id"):
        Tier1Validator().validate(_scores(), pd.DataFrame({"id": IDS}))


# --- Tier 2 -------------------------------------------------------------------------------


def test_tier2_clean_submission_gets_0_3():
    result = Tier2Validator().validate(_scores(), [{"alert_id": "a1", "expected_score": 0.9}])
    assert result["passed"] and result["score"] == 0.3
    assert result["counts"]["n_avoided"] == 1


def test_tier2_constant_scores_cost_0_1():
    result = Tier2Validator().validate(_scores(scores=[0.5] * 10), [])
    assert result["score"] == pytest.approx(0.2)
    assert result["traps_detected"] == ["constant_scores"] and not result["passed"]


def test_tier2_one_trap_hit_costs_0_05():
    trap = {"alert_id": "a3", "expected_score": 0.355}  # a3 scores 0.35
    result = Tier2Validator().validate(_scores(), [trap])
    assert result["score"] == pytest.approx(0.25)
    assert result["traps_detected"] == ["trap_a3"]
    assert result["details"]["traps"][0]["actual_score"] == pytest.approx(0.35)


def test_tier2_missing_trap_alert_counts_against_submission():
    result = Tier2Validator().validate(_scores(), [{"alert_id": "zz", "expected_score": 0.1}])
    assert result["score"] == pytest.approx(0.25)
    assert result["missing_traps"] == ["zz"] and result["traps_detected"] == []


def test_tier2_nan_scores_are_penalized_and_never_compared():
    values = [np.nan, np.inf, *np.linspace(0, 1, 8)]
    trap = {"alert_id": "a0", "expected_score": 0.5}
    result = Tier2Validator().validate(_scores(scores=values), [trap])
    assert result["invalid_traps"] == ["a0"]
    assert result["details"]["traps"][0]["actual_score"] is None
    assert result["counts"]["n_invalid_scores"] == 1  # a1 (inf); a0 is counted as a trap
    assert result["score"] == pytest.approx(0.2)
    _json(result)


def test_tier2_score_is_clipped_at_zero():
    traps = [{"alert_id": i, "expected_score": 0.5} for i in IDS]
    result = Tier2Validator().validate(_scores(scores=[0.5] * 10), traps)
    assert result["score"] == 0.0 and len(result["traps_detected"]) == 11


@pytest.mark.parametrize("n", [0, 1])
def test_tier2_variance_undefined_below_two_scores(n):
    result = Tier2Validator().validate(_scores(IDS[:n], scores=[0.5] * n), [])
    constant = result["details"]["constant_scores"]
    assert constant["constant"] is None and "undefined" in constant["reason"]
    assert result["score"] == 0.3


def test_tier2_accepts_traps_dict_and_integer_alert_ids():
    scores = _scores(ids=list(range(10)))
    traps = {"traps": [{"alert_id": "3", "expected_score": 0.35}]}
    assert Tier2Validator().validate(scores, traps)["traps_detected"] == ["trap_3"]


def test_tier2_rejects_malformed_traps():
    with pytest.raises(PatternTrapsError, match=r"finite number in \[0, 1\]: trap #0 \(missing\)"):
        Tier2Validator().validate(_scores(), [{"alert_id": "a1"}])


# --- Tier 3 -------------------------------------------------------------------------------


def test_tier3_perfect_ranking_gets_0_5():
    result = Tier3Validator().validate(_scores(), _truth())
    metrics = result["metrics"]
    assert result["score"] == pytest.approx(0.5) and result["reason"] is None
    assert (metrics["auc_roc"], metrics["auc_pr"], metrics["best_f1"]) == (1.0, 1.0, 1.0)
    assert metrics["best_f1_threshold"] == pytest.approx(0.55)
    assert (metrics["n_samples"], metrics["n_positive"], metrics["positive_rate"]) == (10, 5, 0.5)


def test_tier3_matches_sklearn_and_uses_inner_merge():
    rng = np.random.default_rng(0)
    ids = [f"x{i}" for i in range(200)]
    labels = rng.random(200) < 0.3
    scores = np.clip(labels * 0.3 + rng.random(200) * 0.7, 0, 1)
    truth = pd.concat([_truth(ids, labels), _truth(["extra"], [True])])
    result = Tier3Validator().validate(_scores(ids, scores), truth)
    roc, pr = roc_auc_score(labels, scores), average_precision_score(labels, scores)
    assert result["score"] == pytest.approx(0.3 * roc + 0.2 * pr)
    assert result["metrics"]["n_matched"] == 200 and result["metrics"]["n_labelled"] == 201


def test_tier3_single_class_has_no_score():
    result = Tier3Validator().validate(_scores(), _truth(labels=[False] * 10))
    assert result["score"] is None and "single class" in result["reason"]
    assert result["metrics"]["n_positive"] == 0


def test_tier3_no_overlap_has_no_score():
    result = Tier3Validator().validate(_scores(), _truth([f"z{i}" for i in range(10)]))
    assert result["score"] is None
    assert result["reason"] == "no scored alert has a ground-truth label"


def test_tier3_non_finite_scores_are_excluded_and_counted():
    values = [*np.linspace(0.05, 0.95, 9), np.nan]
    result = Tier3Validator().validate(_scores(scores=values), _truth())
    assert result["metrics"]["n_non_finite_excluded"] == 1
    assert result["metrics"]["n_samples"] == 9 and result["score"] == pytest.approx(0.5)
    _json(result)


def test_tier3_drops_missing_labels_and_validates_ground_truth():
    truth = _truth().astype({"is_sar_filed": "boolean"})
    truth.loc[0, "is_sar_filed"] = pd.NA
    assert Tier3Validator().validate(_scores(), truth)["metrics"]["n_labelled"] == 9
    with pytest.raises(ValueError, match="is_sar_filed"):
        Tier3Validator().validate(_scores(), truth.drop(columns="is_sar_filed"))


# --- helpers ------------------------------------------------------------------------------


def test_total_score_sums_tiers_and_treats_missing_tier3_as_zero():
    assert total_score(0.2, 0.3, 0.5) == 1.0
    assert total_score(0.2, 0.25, None) == pytest.approx(0.45)
    with pytest.raises(ValueError, match="tier2"):
        total_score(0.2, 0.4, 0.1)


def test_validate_day_runs_all_tiers():
    result = validate_day(_scores(), _alerts(), [], _truth(), rescored_df=_scores())
    assert result["total_score"] == pytest.approx(1.0)
    assert result["tier1"]["checks"]["determinism"]["status"] == "passed"
    without_labels = validate_day(_scores(), _alerts(), [])
    assert without_labels["tier3"]["score"] is None and without_labels["total_score"] == 0.5
    _json(result)


def test_load_pattern_traps_list_and_dict(tmp_path):
    traps = [{"alert_id": "a1", "expected_score": 0.2}]
    (tmp_path / "list.json").write_text(json.dumps(traps))
    (tmp_path / "dict.json").write_text(json.dumps({"traps": traps}))
    assert load_pattern_traps(tmp_path / "list.json") == traps
    assert load_pattern_traps(tmp_path / "dict.json") == traps


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("[{", "invalid JSON at line 1"),
        ('{"other": []}', "must be a list of traps"),
        ('[{"alert_id": "a", "expected_score": "x"}]', r"finite number in \[0, 1\]: trap #0"),
        (
            '[{"alert_id": "a", "expected_score": 0.1}, {"alert_id": "a", "expected_score": 1}]',
            "duplicate",
        ),
    ],
)
def test_load_pattern_traps_errors_name_file_and_problem(tmp_path, content, message):
    path = tmp_path / "pattern_traps.json"
    path.write_text(content)
    with pytest.raises(PatternTrapsError, match=message) as error:
        load_pattern_traps(path)
    assert str(path) in str(error.value)


def test_load_pattern_traps_missing_file(tmp_path):
    with pytest.raises(PatternTrapsError, match=r"pattern_traps\.json: cannot read"):
        load_pattern_traps(tmp_path / "pattern_traps.json")


def test_parse_pattern_traps_rejects_non_finite_expected_score():
    with pytest.raises(PatternTrapsError, match="finite"):
        parse_pattern_traps([{"alert_id": "a", "expected_score": float("nan")}])


def test_to_jsonable_converts_numpy_and_nan():
    data = {"a": np.float64(np.nan), "b": [np.int64(3), np.bool_(True)], 1: np.array([0.5])}
    assert to_jsonable(data) == {"a": None, "b": [3, True], "1": [0.5]}
