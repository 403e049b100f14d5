"""Scoring a day with the champion models: alert scores with explanations, alert rankings
and cluster scores. Plain functions over feature frames; the scoring assets call them.

Scores of the two classifiers are calibrated probabilities (their registry calibration map
applied to the raw log-odds). Explanations are LightGBM's exact tree SHAP
(``pred_contrib``): per alert, the features with the largest absolute contributions (in
raw log-odds for the classifiers), their values and the base value, so ``base_value +
sum(all contributions)`` is the raw model output that the calibration map turns into the
score.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import pandas as pd

from aml_pipeline.models.registry import LoadedModel, check_compatible, check_schema

#: Alerts predicted (and timed) together; latency_ms is each block's time per alert.
BLOCK_SIZE = 2048
#: Features named in each explanation.
TOP_FEATURES = 5


def explain_json(
    model: LoadedModel,
    x: pd.DataFrame,
    contributions: np.ndarray,
    categories: Mapping[str, Sequence[str]],
    top: int = TOP_FEATURES,
) -> list[str]:
    """One JSON explanation per row from a ``pred_contrib`` matrix (features + base)."""
    features = model.features
    contrib, base = contributions[:, :-1], contributions[:, -1]
    k = min(top, len(features))
    order = np.argsort(-np.abs(contrib), axis=1, kind="stable")[:, :k]
    values = x[features].to_numpy(dtype="float64", na_value=np.nan)
    names = {i: categories[f] for i, f in enumerate(features) if f in categories}
    # The JSON is assembled from pre-encoded parts: the same text as json.dumps with
    # separators (",", ":") gives (floats are encoded by repr either way), at a fraction
    # of the time for days of 100,000 explained alerts.
    quoted = [json.dumps(f) for f in features]
    head = '{"model_version":' + json.dumps(model.version) + ',"base_value":'
    out = []
    for row, picks in enumerate(order):
        parts = []
        for i in picks:
            value = values[row, i]
            if np.isnan(value):
                shown = "null"
            elif i in names:
                shown = json.dumps(names[i][int(value)])
            else:
                shown = json.dumps(float(value))
            contribution = json.dumps(round(float(contrib[row, i]), 6))
            parts.append(f'{{"feature":{quoted[i]},"value":{shown},"contribution":{contribution}}}')
        base_value = json.dumps(round(float(base[row]), 6))
        out.append(f'{head}{base_value},"top_features":[{",".join(parts)}]}}')
    return out


def _timed_blocks(n: int, run: Callable[[int, int], None]) -> np.ndarray:
    """Call ``run(start, stop)`` per block of rows; each row's share of its block's time."""
    latency = np.empty(n)
    for start in range(0, n, BLOCK_SIZE):
        stop = min(n, start + BLOCK_SIZE)
        began = time.perf_counter()
        run(start, stop)
        latency[start:stop] = (time.perf_counter() - began) * 1000 / (stop - start)
    return latency


def explain_mask(scores: np.ndarray, coverage: int) -> np.ndarray:
    """Rows to explain: all when ``coverage`` < 0, none when 0, else the ``coverage``
    highest scores (ties by position)."""
    n = len(scores)
    if coverage < 0 or coverage >= n:
        return np.ones(n, dtype=bool)
    mask = np.zeros(n, dtype=bool)
    mask[np.argsort(-scores, kind="stable")[:coverage]] = True
    return mask


def score_frame(
    model: LoadedModel,
    features: pd.DataFrame,
    key: str,
    categories: Mapping[str, Sequence[str]],
    explain_coverage: int,
) -> pd.DataFrame:
    """``key``, score, model_version, latency_ms, explain_json for every row.

    Rows are scored in timed blocks, then the ``explain_coverage`` highest (all when
    negative) are explained in timed blocks; an explained row's latency includes both.
    """
    check_schema(model, list(features.columns))
    check_compatible(model, categories)
    x = features[model.features]
    n = len(x)
    scores = np.empty(n)

    def predict(start: int, stop: int) -> None:
        scores[start:stop] = model.predict(x.iloc[start:stop])

    latency = _timed_blocks(n, predict)
    rows = np.flatnonzero(explain_mask(scores, explain_coverage))
    explanations: list[str | None] = [None] * n

    def explain(start: int, stop: int) -> None:
        block = x.iloc[rows[start:stop]]
        contrib = np.asarray(model.booster.predict(block, pred_contrib=True))
        texts = explain_json(model, block, contrib, categories)
        for i, text in zip(rows[start:stop], texts, strict=True):
            explanations[i] = text

    latency[rows] += _timed_blocks(len(rows), explain)
    return pd.DataFrame(
        {
            key: features[key].to_numpy(),
            "score": scores,
            "model_version": model.version,
            "latency_ms": latency,
            "explain_json": pd.array(explanations, dtype="str"),
        }
    )


def rank_frame(
    model: LoadedModel, features: pd.DataFrame, categories: Mapping[str, Sequence[str]]
) -> pd.DataFrame:
    """alert_id, rank (1..N by the ranker's score, ties by alert_id), ranker_score (a
    ranking score, not a probability), model_version; ``categories`` are the code's
    vocabularies, which must be the model's."""
    check_schema(model, list(features.columns))
    check_compatible(model, categories)
    scores = model.predict(features[model.features]) if len(features) else np.empty(0)
    out = pd.DataFrame({"alert_id": features["alert_id"].to_numpy(), "ranker_score": scores})
    out = out.sort_values(["ranker_score", "alert_id"], ascending=[False, True], kind="stable")
    out.insert(1, "rank", np.arange(1, len(out) + 1, dtype="int32"))
    out["model_version"] = model.version
    return out.reset_index(drop=True)
