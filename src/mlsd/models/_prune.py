"""Which features could go: drop-one ablation of the spec's features on the
validation split, within a time budget.

Why limit features (the course): each one is a leakage risk, an overfitting
risk, compute, serving latency and code to maintain. A feature whose removal
does not lower the validation metric beyond a tolerance is a candidate; the
candidates are then removed one by one (the least useful first), refitting
each time, as long as the metric of the smaller set stays within the tolerance
of the full set's (features that stand in for each other are not all dropped).
The test split is never used: what it says stays an honest estimate.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import scipy.sparse as sp

from ..spec import ModelSpec, ProblemSpec
from ._metrics import PRIMARY, choose_threshold, task_metrics
from ._train import make_learner


def _columns(X: sp.csr_matrix, blocks: list, keep: list[str]) -> sp.csr_matrix:
    idx = np.concatenate([np.arange(b.start, b.stop) for b in blocks
                          if b.column in keep] or [np.zeros(0, dtype=np.int64)])
    return X[:, idx]


class _Scorer:
    """Fits the spec's learner on train with some features, scores valid."""

    def __init__(self, problem: ProblemSpec, model: ModelSpec, X, y, classes,
                 blocks, seed: int, weights=None):
        self.problem, self.model, self.X, self.y = problem, model, X, y
        self.weights, self.classes = weights, classes
        self.blocks, self.seed = blocks, seed
        self.n_classes = len(classes) if problem.task != "regression" else 1
        self.metric, self.higher = PRIMARY[problem.task]
        self.fits = 0

    def fit(self, keep: list[str]):
        task = self.problem.task
        learner = make_learner(task, self.model, self.n_classes, self.seed,
                               problem=self.problem, classes=self.classes)
        Xt = _columns(self.X["train"], self.blocks, keep)
        Xv = _columns(self.X["valid"], self.blocks, keep)
        learner.fit(Xt, self.y["train"], Xv, self.y["valid"],
                    sample_weight=self.weights)
        out = learner.predict(Xv)
        thr = None
        if task == "binary":
            thr = choose_threshold(self.y["valid"], out,
                                   objective=self.problem.threshold,
                                   costs=self.problem.costs)
        self.fits += 1
        return learner, float(task_metrics(task, self.y["valid"], out, thr)
                              [self.metric])

    def loss(self, base: float, score: float) -> float:
        """How much worse ``score`` is than ``base``, relative to ``base``
        (positive: worse)."""
        worse = base - score if self.higher else score - base
        return worse / max(abs(base), 1e-12)


def prune(problem: ProblemSpec, model: ModelSpec, *, X: dict[str, sp.csr_matrix],
          y: dict[str, np.ndarray], classes: list, blocks: list,
          costs: dict[str, float] | None = None, tolerance: float = 0.005,
          budget_seconds: float = 300.0, seed: int = 0,
          weights: np.ndarray | None = None) -> dict[str, Any]:
    """Drop-one ablation of every feature on validation, then a greedy pruned
    set; see the module docstring. ``costs``: online microseconds per row of
    each feature (from the run's feature table), to prefer dropping the
    costly among equals. ``weights``: the training rows' sample weights.
    """
    started = time.perf_counter()
    costs = costs or {}
    s = _Scorer(problem, model, X, y, classes, blocks, seed, weights)
    labels = [b.column for b in blocks]
    learner, base = s.fit(labels)
    gain = _block_gain(learner, blocks)
    # least important first: the likeliest candidates are measured first
    order = sorted(labels, key=lambda f: (gain.get(f, 0.0), -costs.get(f, 0.0)))
    rows: dict[str, dict[str, Any]] = {}
    for f in order:
        if time.perf_counter() - started > budget_seconds:
            break
        if len(labels) == 1:
            break
        _, score = s.fit([x for x in labels if x != f])
        rows[f] = {"valid_without": round(score, 6),
                   "loss": round(s.loss(base, score), 6)}
    candidates = sorted((f for f, r in rows.items() if r["loss"] <= tolerance),
                        key=lambda f: (rows[f]["loss"], -costs.get(f, 0.0)))
    kept, dropped, current = list(labels), [], base
    for f in candidates:
        if time.perf_counter() - started > budget_seconds or len(kept) == 1:
            break
        trial = [x for x in kept if x != f]
        _, score = s.fit(trial)
        if s.loss(base, score) <= tolerance:
            kept, current = trial, score
            dropped.append(f)
    table = []
    for b in blocks:
        r = rows.get(b.column)
        table.append({
            "feature": b.column, "kind": b.kind, "columns": list(b.inputs),
            "width": b.stop - b.start, "gain_share": round(gain.get(b.column, 0.0), 6),
            "us_per_row": costs.get(b.column),
            "valid_without": r["valid_without"] if r else None,
            "loss": r["loss"] if r else None,
            "verdict": ("drop" if b.column in dropped else
                        "keep" if r else "not measured (time budget)")})
    return {"metric": s.metric, "higher_is_better": s.higher,
            "valid_all": round(base, 6), "valid_pruned": round(current, 6),
            "tolerance": tolerance, "drop": dropped, "keep": kept,
            "features": table, "fits": s.fits,
            "measured": len(rows), "of": len(labels),
            "seconds": round(time.perf_counter() - started, 2),
            "budget_seconds": budget_seconds,
            "us_saved_per_row": round(sum(costs.get(f, 0.0) for f in dropped), 1)}


def _block_gain(learner, blocks: list) -> dict[str, float]:
    """Each feature's share of the model's own importance (LightGBM's total
    gain, a linear model's |coefficients|), for the order of the ablation."""
    imp = np.asarray(learner.importance(), dtype=np.float64)
    total = imp.sum() or 1.0
    return {b.column: float(imp[b.start:b.stop].sum() / total) for b in blocks}
