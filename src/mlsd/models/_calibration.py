"""Probability calibration on the validation split, and reliability curves.

A model's scores rank rows well and may still say 0.9 where 0.6 of such rows
are positive (boosting with class weights does). ``isotonic`` fits a
non-decreasing step function from score to observed rate (scikit-learn's
``IsotonicRegression``), ``platt`` a logistic curve on the score's log-odds;
both on the validation split, never on test. The fitted map is plain numbers
(the isotonic breakpoints, or Platt's two coefficients) kept in the model's
manifest, so serving applies it without scikit-learn. Several classes are
calibrated one against the rest, then renormalised.
"""

from __future__ import annotations

from typing import Any

import numpy as np

_EPS = 1e-6


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, _EPS, 1 - _EPS)
    return np.log(p / (1 - p))


def _fit_one(kind: str, score: np.ndarray, y: np.ndarray) -> dict[str, Any]:
    if kind == "isotonic":
        from sklearn.isotonic import IsotonicRegression

        iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip")
        iso.fit(score, y)
        return {"x": [float(v) for v in iso.X_thresholds_],
                "y": [float(v) for v in iso.y_thresholds_]}
    from sklearn.linear_model import LogisticRegression

    lr = LogisticRegression(C=1e6, max_iter=1000)
    lr.fit(_logit(score)[:, None], y)
    return {"a": float(lr.coef_[0, 0]), "b": float(lr.intercept_[0])}


def _apply_one(kind: str, m: dict[str, Any], score: np.ndarray) -> np.ndarray:
    if kind == "isotonic":
        return np.interp(score, m["x"], m["y"])
    return 1.0 / (1.0 + np.exp(-(m["a"] * _logit(score) + m["b"])))


def fit_calibration(kind: str, scores: np.ndarray, y: np.ndarray, task: str
                    ) -> dict[str, Any]:
    """The calibration map of ``kind`` fitted on validation ``scores``
    (binary: P(positive); multiclass: one column per class; multilabel: one
    column per label, each calibrated on its own) and labels."""
    y = np.asarray(y, dtype=int)
    if task == "binary":
        return {"kind": kind, "maps": [_fit_one(kind, np.asarray(scores), y)]}
    scores = np.asarray(scores)
    if task == "multilabel":  # each label on its own: no renormalising
        return {"kind": kind, "independent": True,
                "maps": [_fit_one(kind, scores[:, c], y[:, c])
                         for c in range(scores.shape[1])]}
    return {"kind": kind, "maps": [_fit_one(kind, scores[:, c], (y == c).astype(int))
                                   for c in range(scores.shape[1])]}


def apply_calibration(cal: dict[str, Any] | None, scores: np.ndarray) -> np.ndarray:
    """``scores`` through the calibration map (unchanged without one)."""
    if not cal:
        return scores
    kind, maps = cal["kind"], cal["maps"]
    if len(maps) == 1 and np.ndim(scores) == 1:
        return _apply_one(kind, maps[0], np.asarray(scores, dtype=float))
    out = np.column_stack([_apply_one(kind, m, np.asarray(scores)[:, c])
                           for c, m in enumerate(maps)])
    if cal.get("independent"):
        return out
    total = out.sum(axis=1, keepdims=True)
    return np.where(total > 0, out / np.where(total > 0, total, 1.0),
                    1.0 / out.shape[1])


def reliability(y: np.ndarray, score: np.ndarray, bins: int = 10
                ) -> dict[str, list]:
    """Mean predicted probability against the observed positive rate, in
    ``bins`` bins of equal width (the bins that hold rows)."""
    y = np.asarray(y, dtype=float)
    score = np.asarray(score, dtype=float)
    edges = np.linspace(0, 1, bins + 1)
    which = np.clip(np.digitize(score, edges[1:-1]), 0, bins - 1)
    pred, seen, rows = [], [], []
    for b in range(bins):
        m = which == b
        if m.any():
            pred.append(round(float(score[m].mean()), 4))
            seen.append(round(float(y[m].mean()), 4))
            rows.append(int(m.sum()))
    return {"predicted": pred, "observed": seen, "rows": rows}
