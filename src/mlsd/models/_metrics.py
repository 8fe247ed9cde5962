"""Metrics fit for each task, the decision threshold, and curves for the report."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from sklearn import metrics as skm

PRIMARY = {"binary": ("pr_auc", True), "multiclass": ("macro_f1", True),
           "regression": ("rmse", False)}
"""The metric that ranks models and baselines per task: (name, higher is better)."""


def _clean(d: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for k, v in d.items():
        if isinstance(v, float | np.floating):
            v = float(v)
            out[k] = None if math.isnan(v) or math.isinf(v) else round(v, 6)
        elif isinstance(v, np.integer):
            out[k] = int(v)
        else:
            out[k] = v
    return out


def binary_metrics(y: np.ndarray, score: np.ndarray, threshold: float
                   ) -> dict[str, Any]:
    """PR-AUC, ROC-AUC, and precision/recall/F1 at the threshold, and more.

    On imbalanced data accuracy alone misleads (predicting "never spam" is 95%
    accurate), so the positive-class metrics come first.
    """
    y = np.asarray(y, dtype=int)
    score = np.clip(np.asarray(score, dtype=float), 1e-15, 1 - 1e-15)
    pred = (score >= threshold).astype(int)
    both = len(np.unique(y)) == 2
    tn, fp, fn, tp = skm.confusion_matrix(y, pred, labels=[0, 1]).ravel()
    return _clean({
        "pr_auc": skm.average_precision_score(y, score) if both else float("nan"),
        "roc_auc": skm.roc_auc_score(y, score) if both else float("nan"),
        "precision": skm.precision_score(y, pred, zero_division=0),
        "recall": skm.recall_score(y, pred, zero_division=0),
        "f1": skm.f1_score(y, pred, zero_division=0),
        "accuracy": skm.accuracy_score(y, pred),
        "balanced_accuracy": skm.balanced_accuracy_score(y, pred) if both
        else float("nan"),
        "log_loss": skm.log_loss(y, score, labels=[0, 1]),
        "brier": skm.brier_score_loss(y, score),
        "threshold": float(threshold),
        "rows": int(len(y)),
        "positives": int(y.sum()),
        "tp": int(tp), "fp": int(fp), "fn": int(fn), "tn": int(tn),
    })


def multiclass_metrics(y: np.ndarray, proba: np.ndarray) -> dict[str, Any]:
    y = np.asarray(y, dtype=int)
    k = proba.shape[1]
    pred = proba.argmax(axis=1)
    return _clean({
        "macro_f1": skm.f1_score(y, pred, average="macro", labels=range(k),
                                 zero_division=0),
        "accuracy": skm.accuracy_score(y, pred),
        "balanced_accuracy": skm.balanced_accuracy_score(y, pred),
        "log_loss": skm.log_loss(y, np.clip(proba, 1e-15, 1), labels=range(k)),
        "rows": int(len(y)),
    })


def regression_metrics(y: np.ndarray, pred: np.ndarray) -> dict[str, Any]:
    y = np.asarray(y, dtype=float)
    pred = np.asarray(pred, dtype=float)
    return _clean({
        "rmse": math.sqrt(skm.mean_squared_error(y, pred)),
        "mae": skm.mean_absolute_error(y, pred),
        "r2": skm.r2_score(y, pred) if len(y) > 1 else float("nan"),
        "rows": int(len(y)),
    })


def task_metrics(task: str, y: np.ndarray, out: np.ndarray,
                 threshold: float | None = None) -> dict[str, Any]:
    if task == "binary":
        return binary_metrics(y, out, 0.5 if threshold is None else threshold)
    if task == "multiclass":
        return multiclass_metrics(y, out)
    return regression_metrics(y, out)


def choose_threshold(y: np.ndarray, score: np.ndarray, *, objective: str = "f1",
                     costs: dict[str, float] | None = None) -> float:
    """The decision threshold, chosen on validation rows.

    ``f1`` maximises F1; ``cost`` minimises ``fp*FP + fn*FN + tp*TP + tn*TN``
    with the spec's cost matrix. Candidates are the observed scores, so the
    result does not depend on a grid.
    """
    y = np.asarray(y, dtype=int)
    score = np.asarray(score, dtype=float)
    order = np.argsort(-score, kind="stable")
    s, yy = score[order], y[order]
    tp = np.cumsum(yy)
    fp = np.cumsum(1 - yy)
    last = np.r_[np.flatnonzero(np.diff(s) != 0), len(s) - 1]  # distinct scores
    tp, fp, cand = tp[last], fp[last], s[last]
    pos = yy.sum()
    fn, tn = pos - tp, (len(yy) - pos) - fp
    if objective == "cost":
        c = {"fp": 1.0, "fn": 1.0, "tp": 0.0, "tn": 0.0, **(costs or {})}
        value = -(c["fp"] * fp + c["fn"] * fn + c["tp"] * tp + c["tn"] * tn)
    else:
        value = np.where(tp > 0, 2 * tp / np.maximum(2 * tp + fp + fn, 1), 0.0)
    if len(value) == 0:
        return 0.5
    best = int(np.argmax(value))
    return float(cand[best])


def curves(task: str, y: np.ndarray, out: np.ndarray, threshold: float | None,
           max_points: int = 200) -> dict[str, Any]:
    """Points of the PR and ROC curves and the confusion matrix, for plots."""
    if task == "binary":
        y = np.asarray(y, dtype=int)
        res: dict[str, Any] = {}
        if len(np.unique(y)) == 2:
            p, r, _ = skm.precision_recall_curve(y, out)
            fpr, tpr, _ = skm.roc_curve(y, out)
            pick = np.unique(np.linspace(0, len(p) - 1, min(max_points, len(p))
                                         ).astype(int))
            pick2 = np.unique(np.linspace(0, len(fpr) - 1,
                                          min(max_points, len(fpr))).astype(int))
            res["pr"] = {"precision": np.round(p[pick], 5).tolist(),
                         "recall": np.round(r[pick], 5).tolist()}
            res["roc"] = {"fpr": np.round(fpr[pick2], 5).tolist(),
                          "tpr": np.round(tpr[pick2], 5).tolist()}
        pred = (np.asarray(out) >= threshold).astype(int)
        res["confusion"] = skm.confusion_matrix(y, pred, labels=[0, 1]).tolist()
        return res
    if task == "multiclass":
        k = out.shape[1]
        return {"confusion": skm.confusion_matrix(y, out.argmax(axis=1),
                                                  labels=list(range(k))).tolist()}
    return {"residuals": {"y": np.round(np.asarray(y, float)[:2000], 5).tolist(),
                          "pred": np.round(np.asarray(out, float)[:2000], 5).tolist()}}
