"""Training: encode the target, fit the learner and the baselines, choose the
threshold on validation, measure everything on validation and test."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.sparse as sp

from ..errors import ModelError
from ..spec import ModelSpec, ProblemSpec
from ._baselines import apply_rule, one_feature_rule, prior_baseline
from ._learners import LEARNERS, Learner
from ._metrics import PRIMARY, choose_threshold, curves, task_metrics

RULE_KINDS = ("numeric", "time", "onehot", "bins", "ordinal", "frequency", "target",
              "periodic")


def encode_target(problem: ProblemSpec, train_values: list,
                  ) -> tuple[list, dict[Any, int] | None]:
    """The class list (binary: [negative, positive]) and value -> index map."""
    task = problem.task
    present = [v for v in train_values if v is not None]
    if task == "regression":
        return [], None
    seen = sorted(set(present), key=lambda v: (str(type(v)), v))
    if task == "binary":
        pos = problem.positive
        others = [v for v in seen if v != pos]
        if pos not in seen:
            raise ModelError(
                f"problem.positive: the positive class {pos!r} never occurs in the "
                f"training rows of {problem.target!r} (values: {seen[:10]})")
        if len(others) != 1:
            raise ModelError(
                f"problem.task is binary but {problem.target!r} has "
                f"{len(seen)} distinct values in training: {seen[:10]}")
        classes = [others[0], pos]
    else:
        if len(seen) < 2:
            raise ModelError(f"multiclass target {problem.target!r} has only "
                             f"{len(seen)} class in training")
        classes = seen
    return classes, {c: i for i, c in enumerate(classes)}


def target_array(task: str, values: list, index: dict[Any, int] | None
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Encoded labels and a mask of usable rows (label present and known)."""
    if task == "regression":
        y = np.array([np.nan if v is None else float(v) for v in values])
        return y, ~np.isnan(y)
    y = np.array([index.get(v, -1) if v is not None else -1 for v in values])
    return y, y >= 0


@dataclass
class TrainResult:
    learner: Learner
    classes: list
    threshold: float | None
    metrics: dict[str, Any]
    curves: dict[str, Any]
    importance: list[dict[str, Any]] = field(default_factory=list)
    beats_baselines: bool | None = None


def make_learner(task: str, model: ModelSpec, n_classes: int, seed: int) -> Learner:
    """The spec's learner, not yet fitted."""
    return LEARNERS[model.kind](task=task, n_classes=n_classes, params=model.params,
                               class_weight=model.class_weight, seed=seed,
                               threads=model.threads)


def train(problem: ProblemSpec, model: ModelSpec, *, X: dict[str, sp.csr_matrix],
          y: dict[str, np.ndarray], classes: list, names: list[str],
          blocks: list, seed: int, weights: np.ndarray | None = None
          ) -> TrainResult:
    """Fit the learner and baselines on train; pick the threshold on valid.

    ``X``/``y`` hold the ``train``, ``valid`` and ``test`` rows. Test rows are used
    for measurement only. ``weights``: each training row's sample weight (a
    weighted or importance sample's), used by the learner and the baselines.
    """
    task = problem.task
    n_classes = len(classes) if task != "regression" else 1
    for part in ("train", "valid", "test"):
        if X[part].shape[0] == 0:
            raise ModelError(f"the {part} split is empty: cannot train and evaluate")
    learner = make_learner(task, model, n_classes, seed)
    learner.fit(X["train"], y["train"], X["valid"], y["valid"],
                sample_weight=weights)
    out = {p: learner.predict(X[p]) for p in ("valid", "test")}

    threshold = None
    if task == "binary":
        threshold = choose_threshold(y["valid"], out["valid"],
                                     objective=problem.threshold,
                                     costs=problem.costs)
    metrics: dict[str, Any] = {"model": {p: task_metrics(task, y[p], out[p],
                                                         threshold)
                                         for p in ("valid", "test")},
                               "baselines": {}}
    plots: dict[str, Any] = {"model": curves(task, y["test"], out["test"],
                                             threshold), "baselines": {}}

    def evaluate(out: dict[str, np.ndarray]) -> tuple[dict, float | None]:
        # a baseline gets its own threshold, chosen on validation like the model's
        thr = None
        if task == "binary":
            thr = choose_threshold(y["valid"], out["valid"],
                                   objective=problem.threshold, costs=problem.costs)
        return {p: task_metrics(task, y[p], out[p], thr) for p in ("valid",
                                                                  "test")}, thr

    # baseline 1: majority class / class prior / mean
    prior = {p: prior_baseline(task, y["train"], X[p].shape[0], n_classes, weights)
             for p in ("valid", "test")}
    metrics["baselines"]["prior"] = {
        "description": "class prior (majority)" if task != "regression"
        else "training mean", **evaluate(prior)[0]}

    # baseline 2: the best small rule on one input column
    candidates = [(j, names[j]) for b in blocks if b.kind in RULE_KINDS
                  for j in range(b.start, b.stop)]
    rule = one_feature_rule(task, X["train"], y["train"], X["valid"], y["valid"],
                            candidates, n_classes, seed, weights=weights)
    if rule is not None:
        rule_out = {p: apply_rule(rule, task, X[p], n_classes)
                    for p in ("valid", "test")}
        rule_metrics, rule_thr = evaluate(rule_out)
        metrics["baselines"]["one_feature"] = {
            "description": f"depth-2 tree on {rule['name']}",
            "feature": rule["name"], **rule_metrics}
        if task == "binary":
            plots["baselines"]["one_feature"] = curves(task, y["test"],
                                                       rule_out["test"], rule_thr)

    primary, higher = PRIMARY[task]
    model_score = metrics["model"]["test"].get(primary)
    base_scores = [b["test"].get(primary) for b in metrics["baselines"].values()]
    base_scores = [s for s in base_scores if s is not None]
    beats = None
    if model_score is not None and base_scores:
        best = max(base_scores) if higher else min(base_scores)
        beats = bool(model_score > best if higher else model_score < best)
    metrics["primary"] = primary

    imp = learner.importance()
    importance = []
    if imp is not None:
        order = np.argsort(-imp, kind="stable")[:25]
        importance = [{"feature": names[i], "importance": round(float(imp[i]), 6)}
                      for i in order if imp[i] > 0]
    return TrainResult(learner=learner, classes=classes, threshold=threshold,
                       metrics=metrics, curves=plots, importance=importance,
                       beats_baselines=beats)
