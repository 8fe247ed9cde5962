"""Checks that fit a model: a probe on train, its importances, and ablation.

The probe is LightGBM on a seeded sample of TRAIN (numbers and times as they
are, categories as categories; ID-like and free-text columns are left out, the
ID checks deal with them). Its validation rows are carved out of the sample
(the newest 20% when a time column is declared): TEST is never used to fit or
to choose anything. From it come the model's own importance (gain),
permutation importance and SHAP values on the validation rows, and the ablation
check: refit without each suspect feature and see what is left of the score.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import lightgbm as lgb
import numpy as np
import pyarrow as pa

from .._threads import threads_for
from ..models import SHAP_ROWS, beeswarm, shap_magnitude, tree_shap
from ._data import Pair, codes_of, numeric
from ._leakage import Finding

PROBE_TREES = 100
PROBE_ROWS = 50_000  # of the train sample: the probe and its refits
PERMUTATION_ROWS = 5_000
ABLATE_TOP = 3  # besides the flagged features, the most important ones
# removing a feature multiplies the probe's error (1 - AUC, 1 - R2) by at least
# this, and lowers its score by at least ABLATION_DROP: medium
ABLATION_RATIO = 3.0
ABLATION_DROP = 0.05
ABLATION_FLOOR = 0.005  # errors below this count as this (no division by ~0)


@dataclass
class Probe:
    """The probe model and what it says."""

    score: float | None
    metric: str
    features: list[str]
    rows_fit: int
    rows_valid: int
    importance: list[dict[str, Any]] = field(default_factory=list)
    shap: dict[str, Any] = field(default_factory=dict)
    ablation: list[dict[str, Any]] = field(default_factory=list)


def _matrix(pair: Pair, idx: np.ndarray, cols: list[str]) -> np.ndarray:
    out = np.empty((len(idx), len(cols)), dtype=np.float64)
    take = pa.array(idx)
    for j, c in enumerate(cols):
        arr = pair.train.column(c).take(take)
        if pair.kinds[c] == "categorical":
            x = codes_of(arr)
            out[:, j] = np.where(x < 0, np.nan, x)
        else:
            out[:, j] = numeric(arr)
    return out


def _score(pair: Pair, y: np.ndarray, pred: np.ndarray) -> float | None:
    if pair.task == "regression":
        return score_predictions("regression", None, y, pred)
    return ovr_auc(y, pred[:, None] if pred.ndim == 1 else pred)


def ovr_auc(y: np.ndarray, proba: np.ndarray) -> float | None:
    """``roc_auc_score`` of class codes ``y`` against class probabilities
    (one column per class code; binary: P(1) may be the only column): the
    columns of the classes present renormalised, then one-vs-rest macro AUC;
    None with fewer than two classes present."""
    present = np.unique(y)
    if len(present) < 2:
        return None
    if proba.shape[1] == 1 or (proba.shape[1] == 2 and len(present) == 2
                               and present.tolist() == [0, 1]):
        return _auc(y == 1, proba[:, -1])
    sub = proba[:, present] / proba[:, present].sum(1, keepdims=True)
    if len(present) == 2:
        return _auc(y == present[1], sub[:, 1])
    return float(np.mean([_auc(y == c, sub[:, k]) for k, c in enumerate(present)]))


def _auc(positive: np.ndarray, score: np.ndarray) -> float:
    """ROC AUC as the Mann-Whitney U statistic, ties counted half: what
    ``roc_auc_score`` returns (NaN when one class is absent)."""
    from scipy.stats import rankdata

    n1 = int(positive.sum())
    n0 = len(positive) - n1
    if n1 == 0 or n0 == 0:
        return float("nan")
    ranks = rankdata(score)
    return float((ranks[positive].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def score_predictions(task: str, classes: np.ndarray | None, y: np.ndarray,
                      out: np.ndarray) -> float:
    """The probe's score of predictions: AUC (one-vs-rest macro for several
    classes) or R2. ``out`` is P(classes[1]) or the (n, k) class
    probabilities, or the predicted values.

    Written with numpy rather than with scikit-learn's metrics: permutation
    importance scores 3 repeats of every feature, and scikit-learn checks its
    inputs each time (about 12 ms a call, 1.6 s of a 1,000-row audit's 5 s);
    the numbers are the same (a test compares them).
    """
    if task == "regression":
        total = float(((y - y.mean()) ** 2).sum())
        return 1.0 - float(((y - out) ** 2).sum()) / total if total else 0.0
    if task == "binary":
        return _auc(y == classes[1], out[:, 1] if out.ndim == 2 else out)
    aucs = [_auc(y == c, out[:, k]) for k, c in enumerate(classes)]
    aucs = [a for a in aucs if np.isfinite(a)]
    return float(np.mean(aucs)) if aucs else float("nan")


def permutation_scorer(task: str):
    """:func:`score_predictions` as a scikit-learn scorer ``(model, X, y)``."""
    def score(model, X: np.ndarray, y: np.ndarray) -> float:
        out = model.predict(X) if task == "regression" else model.predict_proba(X)
        return score_predictions(task, getattr(model, "classes_", None), y, out)
    return score


def permutation_importances(model, X: np.ndarray, y: np.ndarray, task: str, *,
                            repeats: int, seed: int) -> np.ndarray:
    """Mean drop of the probe's score when each column is shuffled: the very
    numbers of scikit-learn's ``permutation_importance`` (same shuffles, a
    test compares them), from a few large predictions instead of one per
    column and repeat.

    Written by hand because scikit-learn predicts each shuffled copy on its
    own: 136 calls of LightGBM's wrapper for a 45-column probe, 0.4 s of a
    3 s audit; stacked, the same rows are scored in a handful of calls.
    """
    booster = model.booster_
    classes = getattr(model, "classes_", None)
    n, width = X.shape

    def predict(rows: np.ndarray) -> np.ndarray:
        return np.asarray(booster.predict(rows, num_threads=threads_for(len(rows))))

    baseline = score_predictions(task, classes, y, predict(X))
    # scikit-learn's shuffles: one seed drawn from RandomState(seed), the same
    # for every column; each repeat shuffles the previous repeat's column
    start = np.random.RandomState(seed).randint(np.iinfo(np.int32).max + 1)
    state = np.random.RandomState(start)
    order, where = np.arange(n), np.arange(n)
    moves = []
    for _ in range(repeats):
        state.shuffle(order)
        where = where[order]
        moves.append(where.copy())
    per_batch = max(1, int(40_000_000 // (8 * width * n * repeats)))  # ~40 MB
    drops = np.empty(width)
    for first in range(0, width, per_batch):
        cols = range(first, min(width, first + per_batch))
        block = np.tile(X, (len(cols) * repeats, 1))
        for b, j in enumerate(cols):
            for r, move in enumerate(moves):
                at = (b * repeats + r) * n
                block[at:at + n, j] = X[move, j]
        out = predict(block)
        for b, j in enumerate(cols):
            scores = [score_predictions(task, classes, y,
                                        out[(b * repeats + r) * n:
                                            (b * repeats + r + 1) * n])
                      for r in range(repeats)]
            drops[j] = float(np.mean(baseline - np.asarray(scores)))
    return drops


class _Probe:
    """A fitted probe: LightGBM's booster with scikit-learn's predict and
    predict_proba. LightGBM's native API rather than its scikit-learn
    wrapper, so the audit needs no scikit-learn (`mlsd audit` imports
    LightGBM without it: mlsd._lazy.import_lightgbm); the wrapper's model
    exactly (a test compares the predictions)."""

    def __init__(self, booster: lgb.Booster, classes: np.ndarray | None):
        self.booster_, self.classes_ = booster, classes

    def predict(self, X: np.ndarray) -> np.ndarray:
        return np.asarray(self.booster_.predict(
            X, num_threads=threads_for(len(X))))

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        p = self.predict(X)
        return np.column_stack([1 - p, p]) if p.ndim == 1 else p


def _fit(pair: Pair, X: np.ndarray, y: np.ndarray, fit: np.ndarray,
         valid: np.ndarray, categorical: list[int]):
    params = {"learning_rate": 0.15, "num_leaves": 31, "min_data_in_leaf": 20,
              "max_bin": 63, "verbosity": -1,
              # the same probe whatever the thread count or the machine's speed
              # (LightGBM otherwise times row- against column-wise histograms)
              "deterministic": True, "force_col_wise": True,
              # one thread for a small probe, else the cores nobody else uses
              "num_threads": threads_for(int(fit.sum())), "seed": pair.seed}
    classes = None
    label = y[fit]
    if pair.task == "regression":
        params["objective"] = "regression"
    else:  # codes 0..k-1 of the classes in the fitted rows, as the wrapper does
        classes = np.unique(label)
        label = np.searchsorted(classes, label)
        params["objective"] = "binary" if len(classes) <= 2 else "multiclass"
        if len(classes) > 2:
            params["num_class"] = len(classes)
    data = lgb.Dataset(X[fit], label, categorical_feature=categorical or "auto",
                       params={"verbosity": -1})
    model = _Probe(lgb.train(params, data, num_boost_round=PROBE_TREES), classes)
    pred = (model.predict(X[valid]) if pair.task == "regression"
            else model.predict_proba(X[valid]))
    if pair.task != "regression" and pred.shape[1] < len(pair.classes):
        full = np.zeros((len(pred), len(pair.classes)))
        full[:, model.classes_] = pred
        pred = full
    return model, _score(pair, y[valid], pred)


def probe(pair: Pair, sample_rows: int, suspects: list[str]) -> Probe | None:
    """Fit the probe, measure importances, and ablate the suspects and the most
    important features."""
    cols = [c for c in pair.features if pair.kinds[c] in
            ("numeric", "time", "categorical")]
    metric = "R2" if pair.task == "regression" else "AUC"
    if not cols:
        return None
    idx = pair.sample_index(min(sample_rows, PROBE_ROWS))
    if len(idx) < 50:
        return None
    X = _matrix(pair, idx, cols)
    y = pair.y_train[idx]
    n = len(idx)
    if pair.time:  # validate on the newest rows, as the split would
        t = numeric(pair.train.column(pair.time).take(pa.array(idx)))
        order = np.argsort(np.where(np.isfinite(t), t, -np.inf), kind="stable")
    else:
        order = np.random.default_rng(pair.seed).permutation(n)
    valid = np.zeros(n, dtype=bool)
    valid[order[int(n * 0.8):]] = True
    fit = ~valid
    if pair.task != "regression" and len(np.unique(y[fit])) < 2:
        return None
    categorical = [j for j, c in enumerate(cols) if pair.kinds[c] == "categorical"]
    model, score = _fit(pair, X, y, fit, valid, categorical)
    result = Probe(score=score, metric=metric, features=cols,
                   rows_fit=int(fit.sum()), rows_valid=int(valid.sum()))
    gain = model.booster_.feature_importance("gain")
    gain = gain / gain.sum() if gain.sum() > 0 else gain
    rows = np.flatnonzero(valid)[:PERMUTATION_ROWS]
    perm = permutation_importances(model, X[rows], y[rows], pair.task,
                                   repeats=3, seed=pair.seed)
    shap_mean = _shap(pair, model, X[valid], cols, result)
    result.importance = sorted(
        ({"feature": c, "gain": round(float(g), 5),
          "permutation": None if not np.isfinite(p) else round(float(p), 5),
          "shap": None if s is None else round(float(s), 5)}
         for c, g, p, s in zip(cols, gain, perm, shap_mean, strict=True)),
        key=lambda d: -d["gain"])
    top = [d["feature"] for d in result.importance[:ABLATE_TOP]]
    for c in dict.fromkeys([s for s in suspects if s in cols] + top):
        keep = [j for j, name in enumerate(cols) if name != c]
        if not keep:
            break  # the only feature: without it there is no model to score
        cat = [keep.index(j) for j in categorical if j in keep]
        _, ablated = _fit(pair, X[:, keep], y, fit, valid, cat)
        result.ablation.append({"feature": c, "score": ablated,
                                "suspect": c in suspects})
    return result


def _shap(pair: Pair, model, X: np.ndarray, cols: list[str], result: Probe
          ) -> list[float | None]:
    """Mean |SHAP value| per feature (LightGBM's TreeSHAP) on a few thousand
    validation rows, and the points of a beeswarm plot for the top features."""
    rows = X[:SHAP_ROWS]
    values = shap_magnitude(tree_shap(model.booster_, rows), len(cols))
    mean_abs = np.abs(values).mean(0)
    points = beeswarm(values, rows, cols)
    result.shap = {"rows_used": len(rows), "beeswarm": points}
    return mean_abs.tolist()


def ablation_findings(pair: Pair, p: Probe, suspects: list[str] | tuple = ()
                      ) -> list[Finding]:
    """A feature without which the probe's error is many times larger.

    Error is 1 - AUC (or 1 - R2). A strong honest feature raises it by a
    fraction when removed, since others carry part of its signal; a leak that
    holds the answer multiplies it. A dominant feature alone is no evidence of
    a leak (one strong legitimate feature does the same): the finding is
    medium only when another check points at the same column (``suspects``),
    low otherwise."""
    if p.score is None:
        return []
    out = []
    err_with = max(1 - p.score, ABLATION_FLOOR)
    for a in p.ablation:
        if a["score"] is None:
            continue
        err_without = 1 - a["score"]
        drop = p.score - a["score"]
        if err_without < ABLATION_RATIO * err_with or drop < ABLATION_DROP:
            continue
        other = a["feature"] in suspects
        out.append(Finding(
            check="ablation_drop", severity="medium" if other else "low",
            columns=[a["feature"]],
            message=(f"without {a['feature']} the probe model's validation "
                     f"{p.metric} falls from {p.score:.3f} to {a['score']:.3f}: its "
                     f"error is {err_without / err_with:.0f} times larger. The "
                     f"model leans on this one feature"
                     + ("; another check points at it too, so make sure it is "
                        "known at prediction time and is no proxy of the label."
                        if other else
                        ": no other check points at it, and one strong feature "
                        "is often legitimate; still, make sure it is known at "
                        "prediction time.")),
            evidence={"score_with": round(p.score, 4),
                      "score_without": round(a["score"], 4),
                      "error_ratio": round(err_without / err_with, 2),
                      "metric": p.metric, "rows_fit": p.rows_fit,
                      "rows_valid": p.rows_valid,
                      "rows_used": p.rows_fit + p.rows_valid,
                      "other_evidence": other}))
    return out
