"""Semi-supervision: labels for unlabelled rows from the labelled ones.

Self-training refits the model on the labelled rows and the pseudo-labels it
is sure of, round after round; label spreading (scikit-learn's
``LabelSpreading`` on a k-nearest-neighbour graph of the feature rows)
propagates labels to neighbours. Consistency keeps a pseudo-label only when
perturbed copies of the row (noise on its numbers, swaps and deletions in its
text: the robustness check's perturbations) get the same prediction.
Pseudo-labels go to the label store as kind ``model``, their source the
method and the model artifact whose features they used, and never enter
validation or test (the split stage leaves such rows out of both).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import scipy.sparse as sp


def _proba(P: np.ndarray) -> np.ndarray:
    P = np.asarray(P, dtype=float)
    return np.column_stack([1 - P, P]) if P.ndim == 1 else P


def stack_rows(a, b):
    """Feature rows of ``a`` then ``b`` (sparse or dense)."""
    return sp.vstack([a, b]).tocsr() if sp.issparse(a) else np.vstack([a, b])


def self_training(fit: Callable[[Any, np.ndarray], Any], X_l, y_l: np.ndarray,
                  X_u, *, threshold: float = 0.9, rounds: int = 3
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Rows of ``X_u`` pseudo-labelled by self-training: each round fits
    ``fit(X, y)`` (an object whose ``predict`` gives probabilities) on the
    labelled rows and the pseudo-labels so far, and takes the remaining rows
    it predicts with at least ``threshold``. Returns their indices, labels
    (codes), confidences and rounds."""
    n = X_u.shape[0]
    label = np.full(n, -1)
    conf = np.zeros(n)
    when = np.zeros(n, dtype=int)
    for r in range(1, rounds + 1):
        taken = label >= 0
        X = stack_rows(X_l, X_u[taken])
        model = fit(X, np.concatenate([y_l, label[taken]]))
        left = np.flatnonzero(~taken)
        if not len(left):
            break
        P = _proba(model.predict(X_u[left]))
        sure = P.max(axis=1) >= threshold
        if not sure.any():
            break
        label[left[sure]] = P[sure].argmax(axis=1)
        conf[left[sure]] = P[sure].max(axis=1)
        when[left[sure]] = r
    idx = np.flatnonzero(label >= 0)
    return idx, label[idx], conf[idx], when[idx]


def label_spreading(X_l, y_l: np.ndarray, X_u, *, neighbours: int = 7,
                    alpha: float = 0.2, threshold: float = 0.9
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows of ``X_u`` labelled by spreading the labels of ``X_l`` over a
    ``neighbours``-nearest-neighbour graph (scikit-learn's LabelSpreading);
    the rows whose spread distribution gives one label at least
    ``threshold``: indices, labels (codes), confidences."""
    from sklearn.semi_supervised import LabelSpreading

    X = stack_rows(X_l, X_u)
    y = np.concatenate([y_l, np.full(X_u.shape[0], -1)])
    model = LabelSpreading(kernel="knn", n_neighbors=neighbours, alpha=alpha,
                           max_iter=100)
    model.fit(X, y)
    dist = model.label_distributions_[len(y_l):]
    dist = dist / np.maximum(dist.sum(axis=1, keepdims=True), 1e-12)
    conf = dist.max(axis=1)
    sure = conf >= threshold
    idx = np.flatnonzero(sure)
    classes = model.classes_
    return idx, classes[dist[sure].argmax(axis=1)].astype(int), conf[sure]


def consistent(predict: Callable[[Any], np.ndarray], copies: list, labels:
               np.ndarray) -> np.ndarray:
    """Which pseudo-labels every perturbed copy of their rows (``copies``:
    feature matrices, row for row) predicts too."""
    keep = np.ones(len(labels), dtype=bool)
    for X in copies:
        keep &= _proba(predict(X)).argmax(axis=1) == labels
    return keep
