"""SHAP values of a fitted model: LightGBM's own TreeSHAP for its trees, shap's
LinearExplainer for linear models.

A few thousand rows are explained (never used to fit anything). The result
names, for each model input and for each source column (the sum of the SHAP
values of the inputs one column makes, which is that column's share of the
output, since SHAP values add up), the mean absolute SHAP value, and gives the
points of a beeswarm plot for the strongest inputs.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import scipy.sparse as sp

SHAP_ROWS = 2_000
BACKGROUND_ROWS = 1_000  # rows of train a linear explanation is measured from
BEESWARM_FEATURES = 10


def _dense(X, rows: np.ndarray) -> np.ndarray:
    part = X[rows]
    return np.asarray(part.toarray() if sp.issparse(part) else part, dtype=np.float64)


def tree_shap(booster, X: np.ndarray) -> np.ndarray:
    """Exact TreeSHAP values of a LightGBM booster, shaped as shap's
    TreeExplainer returns them: (rows, features), or (rows, features, classes).

    LightGBM computes them itself (``pred_contrib``), and shap's TreeExplainer
    calls that very method for LightGBM models (a test checks the values are
    equal); asking LightGBM directly saves importing shap and numba, about
    0.5 s of every run and audit.
    """
    contrib = np.asarray(booster.predict(X, pred_contrib=True), dtype=np.float64)
    n, width = contrib.shape
    features = X.shape[1]
    classes = width // (features + 1)
    if classes == 1:
        return contrib[:, :features]  # the last column is the expected value
    return contrib.reshape(n, classes, features + 1)[:, :, :features].transpose(0, 2, 1)


def shap_magnitude(values: Any, n_features: int) -> np.ndarray:
    """SHAP values as (rows, features): over classes, the mean magnitude."""
    if isinstance(values, list):  # older shap: one matrix per class
        values = np.stack([np.asarray(v) for v in values], axis=-1)
    values = np.asarray(values, dtype=np.float64)
    if values.ndim == 3:
        axis = 2 if values.shape[1] == n_features else 0
        values = np.abs(values).mean(axis=axis)
    return values


def beeswarm(values: np.ndarray, X: np.ndarray, names: list[str],
             top: int = BEESWARM_FEATURES) -> list[dict[str, Any]]:
    """Points of a beeswarm plot for the ``top`` features by mean |SHAP|: each
    row's SHAP value and its feature value scaled to [0, 1] (None if missing)."""
    order = np.argsort(-np.abs(values).mean(0), kind="stable")[:top]
    points = []
    for j in order:
        x = X[:, j]
        ok = np.isfinite(x)
        lo, hi = (np.nanmin(x), np.nanmax(x)) if ok.any() else (0.0, 1.0)
        scaled = np.where(ok, (x - lo) / (hi - lo if hi > lo else 1), np.nan)
        points.append({"feature": names[j],
                       "shap": np.round(values[:, j], 5).tolist(),
                       "value": [None if not np.isfinite(v) else round(float(v), 4)
                                 for v in scaled]})
    return points


SPLIT_RULE = ("a feature built from several columns (a cross, Fourier features) "
              "gives each of its columns an equal part of its SHAP share")


def shares_by_column(values: np.ndarray, blocks: list) -> list[dict[str, Any]]:
    """Mean |SHAP| per raw column: each feature's share is the mean absolute sum
    of its block's SHAP values (the block's inputs act together), and a feature
    that reads several columns splits its share equally between them
    (``SPLIT_RULE``), so the column shares add up to the feature shares."""
    acc: dict[str, dict[str, Any]] = {}
    for b in blocks:
        share = float(np.abs(values[:, b.start:b.stop].sum(axis=1)).mean())
        for col in b.inputs:
            d = acc.setdefault(col, {"column": col, "kind": b.kind, "shap": 0.0,
                                     "features": []})
            d["shap"] += share / len(b.inputs)
            d["features"].append(b.column)
            if d["kind"] != b.kind:
                d["kind"] = "several"
    out = [{**d, "shap": round(d["shap"], 6)} for d in acc.values()]
    out.sort(key=lambda d: -d["shap"])
    return out


def shares_by_feature(values: np.ndarray, blocks: list) -> list[dict[str, Any]]:
    """Mean |SHAP| per feature (the mean absolute sum over its block)."""
    out = [{"feature": b.column, "kind": b.kind, "shap": round(float(np.abs(
        values[:, b.start:b.stop].sum(axis=1)).mean()), 6)} for b in blocks]
    return sorted(out, key=lambda d: -d["shap"])


def _values(learner, X: np.ndarray, back: np.ndarray | None
            ) -> tuple[str, np.ndarray] | None:
    """The explainer's name and SHAP values of one learner on ``X``
    (``back``: the rows a linear explanation is measured from)."""
    if hasattr(learner, "booster_"):
        return "TreeExplainer", tree_shap(learner.booster_, X)
    if not hasattr(learner, "coef_"):
        return None
    import shap

    coef = np.asarray(learner.coef_, dtype=np.float64)
    intercept = np.asarray(learner.intercept_, dtype=np.float64)
    outputs = []
    for k in range(coef.shape[0] if coef.ndim == 2 else 1):
        c = coef[k] if coef.ndim == 2 else coef
        b = intercept[k] if intercept.ndim and intercept.size > k else \
            float(np.ravel(intercept)[0])
        outputs.append(shap.LinearExplainer(
            (c, b), shap.maskers.Independent(back, max_samples=len(back))
        ).shap_values(X))
    return "LinearExplainer", (outputs[0] if len(outputs) == 1
                               else np.stack(outputs, -1))


def explain(learner, X_rows, X_background, names: list[str],
            blocks: list, *, seed: int = 0
            ) -> dict[str, Any] | None:
    """SHAP values of ``learner`` on up to SHAP_ROWS of ``X_rows``.

    Returns None when the model kind has no explainer here, or shap cannot
    read the model (the run goes on without the section).
    """
    rng = np.random.default_rng(seed)
    n = X_rows.shape[0]
    if n == 0:
        return None
    rows = np.sort(rng.choice(n, size=min(n, SHAP_ROWS), replace=False))
    X = _dense(X_rows, rows)
    kind = getattr(learner, "kind", "")
    back = None
    if not hasattr(learner, "booster_") and not (
            hasattr(learner, "models_") and hasattr(learner.models_[0], "booster_")):
        # a linear explanation is measured from train rows; trees need none
        m = X_background.shape[0]
        back = _dense(X_background, np.sort(rng.choice(
            m, size=min(m, BACKGROUND_ROWS), replace=False)))
    try:
        with warnings.catch_warnings():  # shap's notes on formats and versions
            warnings.simplefilter("ignore")
            if hasattr(learner, "label_inputs"):
                # a label set: each label's model explained, |SHAP| averaged over
                # the labels (a chain's inputs from earlier labels left out)
                backs = ([None] * len(learner.models_) if back is None else
                         [B for _, B in learner.label_inputs(back)])
                per = [_values(m_, Xj, B) for (m_, Xj), B in
                       zip(learner.label_inputs(X), backs, strict=True)]
                if any(v is None for v in per):
                    return None
                explainer_name = per[0][0]
                values = np.stack([v[1][:, :X.shape[1]] for v in per], axis=-1)
            else:
                one = _values(learner, X, back)
                if one is None:
                    return None
                explainer_name, values = one
    except Exception:  # shap raises plain errors for models it cannot read
        return None
    values = shap_magnitude(values, X.shape[1])
    mean_abs = np.abs(values).mean(0)
    order = np.argsort(-mean_abs, kind="stable")
    by_column = shares_by_column(values, blocks)
    return {
        "explainer": explainer_name, "model": kind, "rows_used": len(rows),
        "background_rows": (min(X_background.shape[0], BACKGROUND_ROWS)
                            if explainer_name == "LinearExplainer" else None),
        "by_feature": [{"feature": names[j], "shap": round(float(mean_abs[j]), 6)}
                       for j in order[:25] if mean_abs[j] > 0],
        "by_column": by_column,
        "by_block": shares_by_feature(values, blocks),
        "split_rule": SPLIT_RULE,
        "beeswarm": beeswarm(values, X, names),
    }
