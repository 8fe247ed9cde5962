"""Simple baselines every training run fits: does ML beat them?"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor

from ._learners import class_weights
from ._metrics import PRIMARY, task_metrics


def prior_baseline(task: str, y_train: np.ndarray, n_rows: int, n_classes: int,
                   weights: np.ndarray | None = None) -> np.ndarray:
    """Majority class / class prior (classification) or the mean (regression),
    of the training rows as weighted."""
    if task == "regression":
        return np.full(n_rows, float(np.average(y_train, weights=weights)))
    if task == "multilabel":  # each label's rate
        return np.tile(np.average(y_train, axis=0, weights=weights), (n_rows, 1))
    counts = np.bincount(y_train.astype(int), weights=weights,
                         minlength=max(n_classes, 2))
    prior = counts / counts.sum()
    if task == "binary":
        return np.full(n_rows, prior[1])
    return np.tile(prior, (n_rows, 1))


def one_feature_rule(task: str, X_train, y_train, X_valid, y_valid,
                     candidates: list[tuple[int, str]], n_classes: int,
                     seed: int, max_depth: int = 2,
                     weights: np.ndarray | None = None) -> dict[str, Any] | None:
    """The best small tree on a single input column, chosen on validation.

    Returns the column, the fitted tree and its validation score, or None when
    there is no candidate column.
    """
    metric, higher = PRIMARY[task]
    best = None
    cw = None if task in ("regression", "multilabel") else class_weights(
        y_train.astype(int), max(n_classes, 2))
    if weights is not None:
        weights = weights if cw is None else cw * weights
    else:
        weights = cw
    for j, name in candidates:
        xt = X_train[:, j].toarray()
        xv = X_valid[:, j].toarray()
        if task == "regression":
            tree = DecisionTreeRegressor(max_depth=max_depth, random_state=seed)
            tree.fit(xt, y_train, sample_weight=weights)
            out = tree.predict(xv)
        elif task == "multilabel":  # one tree predicts every label
            tree = DecisionTreeClassifier(max_depth=max_depth, random_state=seed)
            tree.fit(xt, y_train.astype(int), sample_weight=weights)
            out = _label_proba(tree, xv)
        else:
            tree = DecisionTreeClassifier(max_depth=max_depth, random_state=seed)
            tree.fit(xt, y_train.astype(int), sample_weight=weights)
            out = _proba(tree, xv, task, n_classes)
        score = task_metrics(task, y_valid, out).get(metric)
        if score is None:
            continue
        if best is None or (score > best["valid_score"] if higher
                            else score < best["valid_score"]):
            best = {"column": j, "name": name, "tree": tree, "valid_score": score}
    return best


def _proba(tree, x, task: str, n_classes: int) -> np.ndarray:
    p = tree.predict_proba(x)
    full = np.zeros((x.shape[0], max(n_classes, 2)))
    full[:, tree.classes_.astype(int)] = p
    return full[:, 1] if task == "binary" else full


def _label_proba(tree, x) -> np.ndarray:
    """P(label) of a multi-output tree, a column per label."""
    p = tree.predict_proba(x)
    return np.column_stack([
        pj[:, list(c).index(1)] if 1 in c else np.zeros(x.shape[0])
        for pj, c in zip(p, tree.classes_, strict=True)])


def apply_rule(rule: dict[str, Any], task: str, X, n_classes: int) -> np.ndarray:
    x = X[:, rule["column"]].toarray()
    if task == "regression":
        return rule["tree"].predict(x)
    if task == "multilabel":
        return _label_proba(rule["tree"], x)
    return _proba(rule["tree"], x, task, n_classes)
