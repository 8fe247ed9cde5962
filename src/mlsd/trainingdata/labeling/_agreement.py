"""How far annotators agree: Cohen's kappa per pair (weighted for ordered
labels), Fleiss' kappa and Krippendorff's alpha for all, each annotator
against the others' consensus, which labels they confuse, and the items they
disagree on (the re-label queue).

Votes are a matrix ``M`` (items x annotators) of label codes, -1 where an
annotator did not label the item. Cohen's kappa is scikit-learn's, alpha the
``krippendorff`` package's; Fleiss' kappa is written here (a few lines; its
usual implementation, statsmodels', needs every item rated by as many
annotators, which hand labels seldom are).
"""

from __future__ import annotations

from typing import Any

import numpy as np

MAX_QUEUE = 500  # items listed in the re-label queue, the most disputed first


def vote_counts(M: np.ndarray, k: int) -> np.ndarray:
    """(items, labels): how many annotators gave each label to each item."""
    counts = np.zeros((M.shape[0], k))
    rows, cols = np.nonzero(M >= 0)
    np.add.at(counts, (rows, M[rows, cols]), 1)
    return counts


def cohen_kappa(a: np.ndarray, b: np.ndarray, *, weights: str | None = None,
                k: int | None = None) -> float | None:
    """Cohen's kappa of two annotators on the items both labelled (codes;
    ``weights`` linear or quadratic for ordered labels); None with fewer than
    two shared items or no variation to agree on."""
    from sklearn.metrics import cohen_kappa_score

    both = (a >= 0) & (b >= 0)
    if both.sum() < 2:
        return None
    x, y = a[both], b[both]
    if len(np.unique(np.r_[x, y])) < 2:
        return None  # one label throughout: chance agreement is 1
    labels = list(range(k)) if k else None
    return float(cohen_kappa_score(x, y, weights=weights, labels=labels))


def fleiss_kappa(counts: np.ndarray) -> float | None:
    """Fleiss' kappa of per-item label counts, the items with at least two
    ratings; the number of raters may vary by item (each item's agreement is
    the share of agreeing rater pairs among its own pairs, and chance comes
    from the pooled label shares). With as many raters for every item it is
    Fleiss (1971) exactly."""
    counts = np.asarray(counts, dtype=float)
    n = counts.sum(axis=1)
    use = n >= 2
    if use.sum() < 1:
        return None
    c, n = counts[use], n[use]
    p_item = ((c * (c - 1)).sum(axis=1)) / (n * (n - 1))
    shares = c.sum(axis=0) / c.sum()
    p_chance = float((shares ** 2).sum())
    if p_chance >= 1.0:
        return None
    return float((p_item.mean() - p_chance) / (1.0 - p_chance))


def krippendorff_alpha(M: np.ndarray, *, ordinal: bool = False) -> float | None:
    """Krippendorff's alpha (nominal, or ordinal when the codes are in
    order): missing ratings allowed, any number of annotators."""
    import krippendorff

    data = np.where(M >= 0, M, np.nan).T.astype(float)  # annotators x items
    pairable = (np.isfinite(data).sum(axis=0) >= 2)
    if pairable.sum() < 1 or len(np.unique(data[np.isfinite(data)])) < 2:
        return None
    return float(krippendorff.alpha(
        reliability_data=data[:, pairable],
        level_of_measurement="ordinal" if ordinal else "nominal"))


def _entropy(counts: np.ndarray) -> np.ndarray:
    p = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return -np.nansum(np.where(p > 0, p * np.log2(p), 0.0), axis=1)


def agreement(M: np.ndarray, *, items: list, annotators: list, labels: list,
              ordinal: bool = False) -> dict[str, Any]:
    """Every agreement figure of the vote matrix ``M`` (see the module)."""
    k = len(labels)
    weights = "quadratic" if ordinal else None
    counts = vote_counts(M, k)
    rated = (M >= 0).sum(axis=1)
    pairs = []
    for i in range(len(annotators)):
        for j in range(i + 1, len(annotators)):
            both = (M[:, i] >= 0) & (M[:, j] >= 0)
            if not both.any():
                continue
            pairs.append({"a": annotators[i], "b": annotators[j],
                          "items": int(both.sum()),
                          "agreement": round(float(np.mean(
                              M[both, i] == M[both, j])), 4),
                          "kappa": _round(cohen_kappa(M[:, i], M[:, j],
                                                      weights=weights, k=k))})
    per = []
    for a, name in enumerate(annotators):
        # the consensus of the others: the majority of the other annotators'
        # votes (an annotator is not compared with a consensus it shaped)
        others = counts.copy()
        mine = M[:, a] >= 0
        others[np.flatnonzero(mine), M[mine, a]] -= 1
        has = mine & (others.sum(axis=1) > 0)
        top = others.max(axis=1, keepdims=True)
        clear = has & ((others == top).sum(axis=1) == 1)  # no tie among the others
        consensus = np.where(clear, others.argmax(axis=1), -1)
        per.append({"annotator": name, "items": int(mine.sum()),
                    "compared": int(clear.sum()),
                    "agreement_with_others": _round(float(np.mean(
                        M[clear, a] == consensus[clear])) if clear.any() else None),
                    "kappa_with_others": _round(cohen_kappa(
                        np.where(clear, M[:, a], -1), consensus, weights=weights,
                        k=k))})
    # which labels annotators confuse: every ordered pair of votes on an item
    confusion = np.zeros((k, k))
    for c in range(k):
        confusion[c] = (counts[:, [c]] * (counts - np.eye(k)[c])).sum(axis=0)
    ent = _entropy(counts)
    disputed = np.flatnonzero((rated >= 2) & ((counts > 0).sum(axis=1) > 1))
    disputed = disputed[np.argsort(-ent[disputed], kind="stable")][:MAX_QUEUE]
    queue = [{"item": items[i], "votes": {str(labels[c]): int(counts[i, c])
                                          for c in np.flatnonzero(counts[i])},
              "entropy": round(float(ent[i]), 4)} for i in disputed]
    multi = rated >= 2
    return {
        "items": len(items), "annotators": len(annotators),
        "labels": [str(lb) for lb in labels],
        "ordinal": ordinal, "items_with_several_votes": int(multi.sum()),
        "votes": int((M >= 0).sum()),
        "raw_agreement": _round(float(np.mean(
            counts[multi].max(axis=1) == rated[multi])) if multi.any() else None),
        "fleiss_kappa": _round(fleiss_kappa(counts)),
        "krippendorff_alpha": _round(krippendorff_alpha(M, ordinal=ordinal)),
        "pairs": pairs, "per_annotator": per,
        "confusion": confusion.astype(int).tolist(),
        "disagreements": int(len(np.flatnonzero(
            multi & ((counts > 0).sum(axis=1) > 1)))),
        "queue": queue}


def _round(v: float | None) -> float | None:
    return None if v is None or not np.isfinite(v) else round(float(v), 4)
