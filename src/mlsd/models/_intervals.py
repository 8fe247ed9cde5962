"""Prediction intervals for regression: a quantile pair, split conformal, and
conformalised quantile regression (CQR), each measured on the test split.

* quantile: two models fitted with the pinball loss at (1 - c)/2 and
  (1 + c)/2. Nothing guarantees their coverage: a model that under-fits the
  tails covers less than it says.
* conformal (split conformal, Vovk et al.; Lei et al. 2018): the validation
  rows' absolute residuals ``|y - f(x)|``; ``q`` is their
  ``ceil((n + 1) c)``-th smallest, and ``f(x) +- q`` holds a new target with
  probability at least ``c`` when rows are exchangeable. One width for all.
* cqr (Romano, Patterson and Candes 2019): the quantile pair's validation
  errors ``max(lo(x) - y, y - hi(x))`` and their conformal quantile ``Q``;
  ``[lo(x) - Q, hi(x) + Q]`` keeps the guarantee with widths that follow the
  inputs.

The few lines of conformal arithmetic are written here: scikit-learn has no
conformal prediction, and MAPIE would be a dependency for ten lines. The
validation rows also stop the boosting early, a mild use of the calibration
rows; the test split, never touched, is where the coverage is measured.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ._learners import LEARNERS, Learner

METHODS = ("quantile", "conformal", "cqr")
LOWER, UPPER = "interval_lower", "interval_upper"
"""The folders of the quantile pair inside a model artifact."""


def conformal_quantile(scores: np.ndarray, coverage: float) -> float:
    """The ``ceil((n + 1) coverage)``-th smallest score (infinite when that
    rank exceeds n: too few rows for the coverage asked)."""
    s = np.sort(np.asarray(scores, dtype=float))
    k = math.ceil((len(s) + 1) * coverage)
    return float("inf") if k > len(s) or k < 1 else float(s[k - 1])


@dataclass
class Intervals:
    """The fitted intervals of a regression model: the quantile pair and the
    two conformal widths; ``method`` says which ones are served."""

    method: str
    coverage: float
    lower: Learner
    upper: Learner
    q_conformal: float
    q_cqr: float
    calibration_rows: int

    @property
    def quantiles(self) -> tuple[float, float]:
        a = round((1 - self.coverage) / 2, 12)
        return a, round(1 - a, 12)

    def bounds(self, X, value: np.ndarray, method: str | None = None
               ) -> tuple[np.ndarray, np.ndarray]:
        """The interval of each row (``value``: the model's own output)."""
        method = method or self.method
        if method == "conformal":
            return value - self.q_conformal, value + self.q_conformal
        lo, hi = self.lower.predict(X), self.upper.predict(X)
        lo, hi = np.minimum(lo, hi), np.maximum(lo, hi)  # quantiles may cross
        if method == "cqr":
            return lo - self.q_cqr, hi + self.q_cqr
        return lo, hi

    def meta(self) -> dict[str, Any]:
        return {"method": self.method, "coverage": self.coverage,
                "q_conformal": self.q_conformal, "q_cqr": self.q_cqr,
                "calibration_rows": self.calibration_rows,
                "kind": self.lower.kind,
                "lower": {"loss": self.lower.loss, **self.lower.meta()},
                "upper": {"loss": self.upper.loss, **self.upper.meta()}}

    def save(self, folder: Path) -> list[str]:
        """Write the quantile pair into ``folder``; return their files."""
        names = []
        for sub, learner in ((LOWER, self.lower), (UPPER, self.upper)):
            (folder / sub).mkdir()
            names.append(f"{sub}/{learner.save(folder / sub)}")
        return names

    @classmethod
    def load(cls, folder: Path, meta: dict[str, Any], threads: int | None
             ) -> Intervals:
        learners = [LEARNERS[meta["kind"]].load(folder / sub, {
            "task": "regression", "threads": threads, **meta[side]})
            for sub, side in ((LOWER, "lower"), (UPPER, "upper"))]
        return cls(method=meta["method"], coverage=float(meta["coverage"]),
                   lower=learners[0], upper=learners[1],
                   q_conformal=float(meta["q_conformal"]),
                   q_cqr=float(meta["q_cqr"]),
                   calibration_rows=int(meta["calibration_rows"]))


def tail_leaf_rows(q: float, n_train: int, given: int = 20) -> int:
    """The fewest rows a leaf of a tree estimating the q-quantile may hold:
    about 20 of them beyond the quantile (``20 / min(q, 1 - q)``: 400 for
    the 5% quantile), at most a tenth of the training rows, never fewer than
    ``given``. A leaf with 20 rows has one row beyond its 5% quantile: the
    trees fit their training tails and cover less on new rows (measured:
    10% of held-out targets below a 5% quantile with LightGBM's default 20,
    6-8% with 400)."""
    want = math.ceil(20 / min(q, 1 - q))
    return max(given, min(want, n_train // 10))


def band(intervals: Intervals, X, y: np.ndarray, value: np.ndarray,
         max_points: int = 300) -> dict[str, list[float]]:
    """The served intervals of up to ``max_points`` held-out rows, spread
    evenly over the rows sorted by value: what the report draws."""
    lo, hi = intervals.bounds(X, value)
    order = np.argsort(value, kind="stable")
    pick = order[np.unique(np.linspace(0, len(order) - 1,
                                       min(max_points, len(order))).astype(int))]
    return {k: np.round(np.asarray(v, float)[pick], 5).tolist()
            for k, v in (("value", value), ("lower", lo), ("upper", hi), ("y", y))}


def fit_intervals(method: str, coverage: float, main: Learner,
                  make: Callable[[float], Learner], X: dict, y: dict,
                  weights: np.ndarray | None = None) -> Intervals:
    """Fit the quantile pair on train (``make(q)``: a learner with the pinball
    loss at q) and the conformal widths on valid."""
    a = round((1 - coverage) / 2, 12)
    lower = make(a).fit(X["train"], y["train"], X["valid"], y["valid"],
                        sample_weight=weights)
    upper = make(1 - a).fit(X["train"], y["train"], X["valid"], y["valid"],
                            sample_weight=weights)
    yv = y["valid"]
    need = math.ceil(coverage / (1 - coverage))
    if len(yv) < need:
        from ..errors import ModelError

        raise ModelError(f"model.intervals: the validation split has {len(yv)} "
                         f"labelled rows; a {coverage:.0%} conformal interval needs "
                         f"at least {need} (more for a stable width): enlarge "
                         f"split.valid or lower the coverage")
    resid = np.abs(yv - main.predict(X["valid"]))
    lo, hi = lower.predict(X["valid"]), upper.predict(X["valid"])
    lo, hi = np.minimum(lo, hi), np.maximum(lo, hi)
    errors = np.maximum(lo - yv, yv - hi)
    return Intervals(method=method, coverage=coverage, lower=lower, upper=upper,
                     q_conformal=conformal_quantile(resid, coverage),
                     q_cqr=conformal_quantile(errors, coverage),
                     calibration_rows=len(yv))


def wilson(k: int, n: int, z: float = 1.959964) -> list[float] | None:
    """The Wilson score interval of a share k/n (95% by default)."""
    if n == 0:
        return None
    p = k / n
    den = 1 + z * z / n
    mid = (p + z * z / (2 * n)) / den
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    return [round(max(0.0, mid - half), 6), round(min(1.0, mid + half), 6)]


def pinball(y: np.ndarray, q_pred: np.ndarray, q: float) -> float:
    """The mean pinball (quantile) loss of predictions of the q-quantile."""
    d = y - q_pred
    return float(np.mean(np.maximum(q * d, (q - 1) * d)))


def measure(intervals: Intervals, X, y: np.ndarray, value: np.ndarray
            ) -> dict[str, Any]:
    """Each method's intervals on held-out rows: coverage (with its Wilson
    interval), mean and median width, and the interval (Winkler) score, which
    charges the width plus 2/alpha times each miss's distance; the quantile
    pair's pinball losses and the share of targets below and above each."""
    alpha = 1 - intervals.coverage
    n = len(y)
    out: dict[str, Any] = {"coverage": intervals.coverage, "served": intervals.method,
                           "rows": n, "calibration_rows": intervals.calibration_rows,
                           "methods": {}}
    for method in METHODS:
        lo, hi = intervals.bounds(X, value, method)
        inside = (y >= lo) & (y <= hi)
        width = hi - lo
        score = width + (2 / alpha) * (np.maximum(lo - y, 0) + np.maximum(y - hi, 0))
        k = int(inside.sum())
        out["methods"][method] = {
            "coverage": round(k / n, 6) if n else None,
            "coverage_interval": wilson(k, n),
            "mean_width": round(float(np.mean(width)), 6) if n else None,
            "median_width": round(float(np.median(width)), 6) if n else None,
            "interval_score": round(float(np.mean(score)), 6) if n else None,
            "below": round(float(np.mean(y < lo)), 6) if n else None,
            "above": round(float(np.mean(y > hi)), 6) if n else None}
    q_lo, q_hi = intervals.quantiles
    lo, hi = intervals.lower.predict(X), intervals.upper.predict(X)
    out["quantile_pair"] = {
        "quantiles": [q_lo, q_hi],
        "pinball": [round(pinball(y, lo, q_lo), 6), round(pinball(y, hi, q_hi), 6)],
        "share_below": [round(float(np.mean(y < lo)), 6),
                        round(float(np.mean(y < hi)), 6)]}
    out["q_conformal"] = round(intervals.q_conformal, 6)
    out["q_cqr"] = round(intervals.q_cqr, 6)
    return out
