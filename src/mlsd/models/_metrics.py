"""Metrics fit for each task, the decision threshold, and curves for the report."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from sklearn import metrics as skm

PRIMARY = {"binary": ("pr_auc", True), "multiclass": ("macro_f1", True),
           "multilabel": ("micro_pr_auc", True), "regression": ("rmse", False)}
"""The metric that ranks models and baselines per task: (name, higher is better).
A ranking metric where there are thresholds (binary, multilabel), so the
verdict does not hang on a threshold chosen on a small validation split."""


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


def _label_thresholds(threshold: Any, k: int) -> np.ndarray:
    """A multilabel model's threshold per label (0.5 each when not chosen)."""
    if threshold is None:
        return np.full(k, 0.5)
    return np.broadcast_to(np.asarray(threshold, dtype=float), (k,))


def multilabel_metrics(Y: np.ndarray, P: np.ndarray, threshold: Any = None,
                       labels: list | None = None) -> dict[str, Any]:
    """Micro and macro metrics of a label-set prediction, and each label's.

    Micro pools every (row, label) decision (micro PR-AUC ranks them all
    together, threshold-free: the primary metric), so frequent labels weigh most;
    macro averages the labels, each weighing the same, over the labels with a
    positive among these rows (a label absent from them has no F1 to speak
    of). ``threshold``: one per label (0.5 each by default). Hamming loss is
    the share of wrong (row, label) decisions, subset accuracy the share of
    rows whose whole set is right.
    """
    Y = np.asarray(Y, dtype=int)
    P = np.clip(np.asarray(P, dtype=float), 1e-15, 1 - 1e-15)
    n, k = Y.shape
    thr = _label_thresholds(threshold, k)
    pred = (P >= thr).astype(int)
    tp = (pred & Y).sum(axis=0)
    fp = (pred & (1 - Y)).sum(axis=0)
    fn = ((1 - pred) & Y).sum(axis=0)
    pos = Y.sum(axis=0)
    f1 = np.where(2 * tp + fp + fn > 0, 2 * tp / np.maximum(2 * tp + fp + fn, 1), 0.0)
    present = pos > 0
    both = present & (pos < n)
    per_label, pr_aucs, roc_aucs = [], [], []
    for j in range(k):
        pr = roc = float("nan")
        if both[j]:
            pr = skm.average_precision_score(Y[:, j], P[:, j])
            roc = skm.roc_auc_score(Y[:, j], P[:, j])
            pr_aucs.append(pr)
            roc_aucs.append(roc)
        per_label.append(_clean({
            "label": str(labels[j]) if labels is not None else j,
            "positives": int(pos[j]), "predicted": int(tp[j] + fp[j]),
            "precision": tp[j] / (tp[j] + fp[j]) if tp[j] + fp[j] else 0.0,
            "recall": tp[j] / pos[j] if pos[j] else float("nan"),
            "f1": f1[j] if present[j] else float("nan"), "pr_auc": pr,
            "roc_auc": roc, "threshold": float(thr[j])}))
    TP, FP, FN = int(tp.sum()), int(fp.sum()), int(fn.sum())
    ll = -(Y * np.log(P) + (1 - Y) * np.log(1 - P))
    pooled = 0 < Y.sum() < Y.size  # every (row, label) ranked together
    return {**_clean({
        "micro_pr_auc": skm.average_precision_score(Y.ravel(), P.ravel())
        if pooled else float("nan"),
        "micro_f1": 2 * TP / (2 * TP + FP + FN) if 2 * TP + FP + FN else 0.0,
        "macro_f1": float(f1[present].mean()) if present.any() else float("nan"),
        "micro_precision": TP / (TP + FP) if TP + FP else 0.0,
        "micro_recall": TP / (TP + FN) if TP + FN else float("nan"),
        "macro_pr_auc": float(np.mean(pr_aucs)) if pr_aucs else float("nan"),
        "macro_roc_auc": float(np.mean(roc_aucs)) if roc_aucs else float("nan"),
        "hamming_loss": float(np.mean(pred != Y)) if n else float("nan"),
        "subset_accuracy": float(np.mean((pred == Y).all(axis=1))) if n
        else float("nan"),
        "log_loss": float(ll.mean()) if n else float("nan"),
        "label_cardinality": float(pos.sum() / n) if n else float("nan"),
        "rows": n, "n_labels": k}), "per_label": per_label}


def label_thresholds(Y: np.ndarray, P: np.ndarray, *, objective: str = "f1"
                     ) -> list[float]:
    """Each label's decision threshold, chosen on validation rows to maximise
    its F1 (0.5 for a label with no positive among them: nothing to choose
    from)."""
    Y = np.asarray(Y, dtype=int)
    return [choose_threshold(Y[:, j], P[:, j], objective=objective)
            if Y[:, j].any() else 0.5 for j in range(Y.shape[1])]


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
    if task == "multilabel":
        return multilabel_metrics(y, out, threshold)
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
    if task == "multilabel":  # each label's PR curve
        Y, P = np.asarray(y, dtype=int), np.asarray(out, dtype=float)
        pr = {}
        for j in range(Y.shape[1]):
            if 0 < Y[:, j].sum() < len(Y):
                p, r, _ = skm.precision_recall_curve(Y[:, j], P[:, j])
                pick = np.unique(np.linspace(0, len(p) - 1, min(max_points, len(p))
                                             ).astype(int))
                pr[j] = {"precision": np.round(p[pick], 5).tolist(),
                         "recall": np.round(r[pick], 5).tolist()}
        return {"label_pr": pr}
    if task == "multiclass":
        k = out.shape[1]
        return {"confusion": skm.confusion_matrix(y, out.argmax(axis=1),
                                                  labels=list(range(k))).tolist()}
    return {"residuals": {"y": np.round(np.asarray(y, float)[:2000], 5).tolist(),
                          "pred": np.round(np.asarray(out, float)[:2000], 5).tolist()}}
