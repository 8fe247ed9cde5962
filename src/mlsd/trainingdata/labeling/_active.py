"""Active learning: which unlabelled items to label next.

Uncertainty (least confidence, margin, entropy) of the current model's
probabilities, disagreement of a committee (vote entropy), and a diverse batch
(k-center greedy among the most uncertain, so a batch is not fifty copies of
the same doubt). :func:`simulate` replays a labelled set as if its labels
were unknown and draws each strategy's learning curve against random
picking.

Written here: scikit-learn has no query strategies, and modAL (which has)
pins old scikit-learn versions; each is a few lines of NumPy.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

STRATEGIES = ("least_confidence", "margin", "entropy", "committee", "random")


def _proba(P: np.ndarray) -> np.ndarray:
    P = np.asarray(P, dtype=float)
    return np.column_stack([1 - P, P]) if P.ndim == 1 else P


def uncertainty(P: np.ndarray, strategy: str) -> np.ndarray:
    """How informative each row's label would be (higher: more), from the
    model's class probabilities (binary: P(positive))."""
    P = _proba(P)
    if strategy == "least_confidence":
        return 1.0 - P.max(axis=1)
    if strategy == "margin":  # 1 - the gap between the two likeliest labels
        top2 = -np.sort(-P, axis=1)[:, :2]
        return 1.0 - (top2[:, 0] - top2[:, 1])
    if strategy == "entropy":
        with np.errstate(divide="ignore", invalid="ignore"):
            return -np.nansum(np.where(P > 0, P * np.log(P), 0.0), axis=1)
    raise ValueError(f"unknown uncertainty strategy {strategy!r}")


def vote_entropy(committee: list[np.ndarray]) -> np.ndarray:
    """Query by committee: the entropy of the members' votes on each row."""
    votes = np.stack([_proba(P).argmax(axis=1) for P in committee], axis=1)
    k = max(int(votes.max()) + 1, 2)
    shares = np.stack([(votes == c).mean(axis=1) for c in range(k)], axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return -np.nansum(np.where(shares > 0, shares * np.log(shares), 0.0),
                          axis=1)


def k_center_greedy(X, n: int, *, seed: int = 0) -> np.ndarray:
    """``n`` rows of ``X`` spread out: each next one the farthest from those
    already picked (Sener & Savarese 2018's greedy core set)."""
    from sklearn.metrics import pairwise_distances

    m = X.shape[0]
    if n >= m:
        return np.arange(m)
    first = int(np.random.default_rng(seed).integers(m))
    picked = [first]
    dist = pairwise_distances(X, X[first:first + 1]).ravel()
    for _ in range(n - 1):
        nxt = int(np.argmax(dist))
        picked.append(nxt)
        dist = np.minimum(dist, pairwise_distances(X, X[nxt:nxt + 1]).ravel())
    return np.asarray(picked)


def choose(scores: np.ndarray, n: int, *, X=None, diverse: bool = False,
           pool: int = 10, seed: int = 0) -> np.ndarray:
    """The ``n`` rows to label: the most informative by ``scores``; with
    ``diverse``, a k-center batch among the ``pool * n`` most informative."""
    order = np.argsort(-scores, kind="stable")
    if not diverse or X is None:
        return order[:n]
    top = order[:max(n, pool * n)]
    return top[k_center_greedy(X[top], n, seed=seed)]


def simulate(X, y: np.ndarray, *, fit: Callable[[Any, np.ndarray, int], Any],
             X_test, y_test: np.ndarray, score: Callable[[np.ndarray, Any], float],
             strategies: tuple[str, ...] = ("least_confidence", "margin",
                                            "entropy", "random"),
             start: int = 20, batch: int = 20, rounds: int = 10,
             committee: int = 5, diverse: bool = False, seed: int = 0
             ) -> dict[str, Any]:
    """Learning curves of each strategy on a labelled pool whose labels are
    revealed only when picked: every strategy starts from the same random
    ``start`` rows, then adds ``batch`` rows a round for ``rounds`` rounds,
    the model refitted (``fit(X, y, seed)`` returns an object with
    ``predict(X)`` giving probabilities) and scored on the held-out rows
    (``score(y_test, P)``). ``committee``: members of query by committee,
    each fitted on a bootstrap draw of the labelled rows."""
    rng = np.random.default_rng(seed)
    n = X.shape[0]
    first = rng.choice(n, size=min(start, n), replace=False)
    curves: dict[str, list[dict[str, float]]] = {}
    for strategy in strategies:
        picked = list(first)
        srng = np.random.default_rng(seed + 1)
        curve = []
        for r in range(rounds + 1):
            idx = np.asarray(picked)
            model = fit(X[idx], y[idx], seed)
            curve.append({"labels": len(idx), "score": float(score(
                y_test, model.predict(X_test)))})
            if r == rounds:
                break
            pool = np.setdiff1d(np.arange(n), idx)
            if len(pool) == 0:
                break
            k = min(batch, len(pool))
            if strategy == "random":
                new = srng.choice(pool, size=k, replace=False)
            elif strategy == "committee":
                members = []
                for c in range(committee):
                    draw = srng.choice(idx, size=len(idx), replace=True)
                    if len(np.unique(y[draw])) < 2:
                        draw = idx
                    members.append(fit(X[draw], y[draw], seed + c).predict(X[pool]))
                new = pool[choose(vote_entropy(members), k)]
            else:
                new = pool[choose(uncertainty(model.predict(X[pool]), strategy), k,
                                  X=X[pool], diverse=diverse, seed=seed)]
            picked.extend(int(i) for i in new)
        curves[strategy] = curve
    area = {s: float(np.mean([p["score"] for p in c])) for s, c in curves.items()}
    return {"curves": curves, "mean_score": {s: round(v, 4)
                                              for s, v in area.items()},
            "start": start, "batch": batch, "rounds": rounds, "pool": n,
            "test_rows": int(len(y_test))}
