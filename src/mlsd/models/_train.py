"""Training: encode the target, fit the learner and the baselines, choose the
threshold on validation, measure everything on validation and test."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.sparse as sp

from ..errors import ModelError
from ..spec import (
    AugmentSpec,
    EvaluationSpec,
    ImbalanceSpec,
    ModelSpec,
    ProblemSpec,
)
from ..trainingdata import parse_labels
from ._baselines import apply_rule, one_feature_rule, prior_baseline
from ._learners import LEARNERS, Learner, MultiLabelLearner
from ._metrics import (
    PRIMARY,
    choose_threshold,
    curves,
    label_thresholds,
    task_metrics,
)

RULE_KINDS = ("numeric", "time", "onehot", "bins", "ordinal", "frequency", "target",
              "periodic")


def encode_target(problem: ProblemSpec, train_values: list,
                  ) -> tuple[list, dict[Any, int] | None]:
    """The class list (binary: [negative, positive]; multilabel: every label
    seen in training, sorted) and value -> index map."""
    task = problem.task
    present = [v for v in train_values if v is not None]
    if task == "regression":
        return [], None
    if task == "multilabel":
        sets = [s for s in (parse_labels(v, problem.separator) for v in present)
                if s is not None]
        counts = Counter(label for s in sets for label in s)
        if len(counts) < 2:
            raise ModelError(
                f"problem.task is multilabel but the training rows of "
                f"{problem.target!r} hold {len(counts)} distinct label(s) "
                f"{sorted(counts)[:5]} (read as JSON lists or joined by "
                f"{problem.separator!r}, problem.separator); one label is task "
                f"binary")
        always = sorted(lb for lb, n in counts.items() if n == len(sets))
        if always:
            raise ModelError(
                f"multilabel target {problem.target!r}: label(s) "
                f"{', '.join(map(repr, always[:5]))} on every training row: "
                f"nothing to learn for them; drop them from the target")
        classes = sorted(counts)
        return classes, {c: i for i, c in enumerate(classes)}
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


def target_array(task: str, values: list, index: dict[Any, int] | None, *,
                 separator: str = "|") -> tuple[np.ndarray, np.ndarray]:
    """Encoded labels and a mask of usable rows (label present and known).
    Multilabel: a (rows, labels) 0/1 matrix; a label training never saw is
    left out of its row, the row kept."""
    if task == "regression":
        y = np.array([np.nan if v is None else float(v) for v in values])
        return y, ~np.isnan(y)
    if task == "multilabel":
        Y = np.zeros((len(values), len(index)), dtype=np.int64)
        keep = np.zeros(len(values), dtype=bool)
        for i, v in enumerate(values):
            labels = parse_labels(v, separator)
            if labels is None:
                continue
            keep[i] = True
            for label in labels:
                j = index.get(label)
                if j is not None:
                    Y[i, j] = 1
        return Y, keep
    y = np.array([index.get(v, -1) if v is not None else -1 for v in values])
    return y, y >= 0


def labels_of(problem: ProblemSpec, values: list, classes: list
              ) -> tuple[np.ndarray, np.ndarray]:
    """:func:`target_array` of a problem's target values, given its classes."""
    index = None if problem.task == "regression" else {
        c: i for i, c in enumerate(classes)}
    return target_array(problem.task, values, index, separator=problem.separator)


@dataclass
class TrainResult:
    learner: Learner
    classes: list
    threshold: float | list[float] | None  # multilabel: one per label
    metrics: dict[str, Any]
    curves: dict[str, Any]
    importance: list[dict[str, Any]] = field(default_factory=list)
    beats_baselines: bool | None = None
    balance: dict[str, Any] | None = None
    augmented: dict[str, int] | None = None
    intervals: Any = None  # regression: the fitted ._intervals.Intervals


def loss_weights(problem: ProblemSpec, model: ModelSpec, classes: list
                 ) -> Callable[[np.ndarray], np.ndarray | None] | str:
    """How a row's class weighs in the loss, from ``model.class_weight``: a
    function of the encoded labels (``balanced`` stays the learner's own)."""
    from ..trainingdata import class_weights_for, cost_weights

    how = model.class_weight
    if problem.task in ("regression", "multilabel") or how in ("balanced", "none"):
        return how
    if how == "costs":
        return lambda y: cost_weights(y, problem.costs or {})
    n = max(len(classes), 2)
    return lambda y: class_weights_for(y, n, how, classes,
                                       beta=model.class_balanced_beta)


def make_learner(task: str, model: ModelSpec, n_classes: int, seed: int, *,
                 problem: ProblemSpec | None = None, classes: list | None = None
                 ) -> Learner:
    """The spec's learner, not yet fitted (its classes weighed as
    ``model.class_weight`` says, given the problem and the classes)."""
    weigh = model.class_weight
    if problem is not None and classes is not None:
        weigh = loss_weights(problem, model, classes)
    elif not isinstance(weigh, str):
        raise ModelError("make_learner: a class weight per class needs the "
                         "classes (pass problem= and classes=)")
    loss = None
    if model.loss == "focal":
        loss = {"kind": "focal", "gamma": model.focal_gamma,
                "alpha": model.focal_alpha}
    elif model.loss in ("absolute", "huber", "quantile"):
        loss = {"kind": model.loss, "delta": model.huber_delta,
                "quantile": model.quantile}
    if task == "multilabel":  # one binary learner per label, each balanced alone
        return MultiLabelLearner(base=model.kind, n_classes=n_classes,
                                 chain=model.chain, params=model.params,
                                 class_weight=model.class_weight, seed=seed,
                                 threads=model.threads, loss=loss)
    return LEARNERS[model.kind](task=task, n_classes=n_classes, params=model.params,
                               class_weight=weigh, seed=seed, threads=model.threads,
                               loss=loss)


def train(problem: ProblemSpec, model: ModelSpec, *, X: dict[str, sp.csr_matrix],
          y: dict[str, np.ndarray], classes: list, names: list[str],
          blocks: list, seed: int, weights: np.ndarray | None = None,
          imbalance: ImbalanceSpec | None = None,
          augment: AugmentSpec | None = None,
          extra: tuple[Any, np.ndarray, np.ndarray] | None = None,
          raw: dict[str, tuple[Any, np.ndarray]] | None = None,
          evaluation: EvaluationSpec | None = None,
          test_times: np.ndarray | None = None,
          progress: Callable[[int, float], None] | None = None) -> TrainResult:
    """Fit the learner and baselines on train; pick the threshold on valid.

    ``X``/``y`` hold the ``train``, ``valid`` and ``test`` rows. Test rows are used
    for measurement only. ``weights``: each training row's sample weight (a
    weighted or importance sample's), used by the learner and the baselines.
    ``imbalance``: how the training rows are resampled before the fit (and
    the strategies compared on validation); valid and test never are.
    ``augment``: mixup and SMOTE rows made from the train matrix; ``extra``:
    augmented raw rows, already applied (X, y, weights). Both join the fit
    only. ``raw``: the synthetic rows of a raw resampler (smotenc), already
    applied (X, y), by method. ``evaluation``: bootstrap intervals on the test
    metrics and on the model's margin over each baseline (paired; in moving
    blocks of time when ``test_times`` orders the test rows): the model beats
    the baselines only when every margin's interval lies above 0.
    ``model.search``: the learner's parameters are searched on train and valid
    first (``progress(trials, value)`` after each trial).
    """
    task = problem.task
    n_classes = len(classes) if task != "regression" else 1
    for part in ("train", "valid", "test"):
        if X[part].shape[0] == 0:
            raise ModelError(f"the {part} split is empty: cannot train and evaluate")
    imbalance = imbalance or ImbalanceSpec()
    evaluation = evaluation or EvaluationSpec()
    added = Augmented(augment, extra, raw)
    searched = None
    if model.search is not None:  # on train and valid only: see ._search
        from ._search import search

        params, searched = search(problem, model, X=X, y=y, classes=classes,
                                  seed=seed, weights=weights, imbalance=imbalance,
                                  added=added, progress=progress)
        model = model.model_copy(update={"params": params, "search": None})
    learner, resampled = fit_learner(problem, model, imbalance.resample, X=X, y=y,
                                     classes=classes, seed=seed, weights=weights,
                                     imbalance=imbalance, added=added)
    calibration = None
    if model.calibration != "none" and task != "regression":
        calibration = calibrate(learner, model.calibration, X, y, task)
    out = {p: learner.predict(X[p]) for p in ("valid", "test")}
    intervals = None
    if task == "regression" and model.intervals is not None:
        from ._intervals import fit_intervals

        def quantile_learner(q: float) -> Learner:
            params = dict(model.params)
            if model.kind == "lightgbm":
                from ._intervals import tail_leaf_rows

                params["min_data_in_leaf"] = tail_leaf_rows(
                    q, X["train"].shape[0], int(params.get("min_data_in_leaf", 20)))
            return make_learner(task, model.model_copy(
                update={"loss": "quantile", "quantile": q, "params": params}), 1,
                seed)

        intervals = fit_intervals(model.intervals.method, model.intervals.coverage,
                                  learner, quantile_learner, X, y, weights)

    threshold = choose_thresholds(problem, y["valid"], out["valid"])
    metrics: dict[str, Any] = {"model": {p: task_metrics(task, y[p], out[p],
                                                         threshold)
                                         for p in ("valid", "test")},
                               "baselines": {}}
    plots: dict[str, Any] = {"model": curves(task, y["test"], out["test"],
                                             threshold), "baselines": {}}

    def evaluate(out: dict[str, np.ndarray]) -> tuple[dict, float | None]:
        # a baseline gets its own threshold, chosen on validation like the model's
        thr = choose_thresholds(problem, y["valid"], out["valid"])
        return {p: task_metrics(task, y[p], out[p], thr) for p in ("valid",
                                                                  "test")}, thr

    # baseline 1: majority class / class prior / mean
    prior = {p: prior_baseline(task, y["train"], X[p].shape[0], n_classes, weights)
             for p in ("valid", "test")}
    prior_metrics, prior_thr = evaluate(prior)
    metrics["baselines"]["prior"] = {
        "description": {"regression": "training mean",
                        "multilabel": "each label's training rate"}.get(
                            task, "class prior (majority)"), **prior_metrics}
    test_outputs = {"model": out["test"], "prior": prior["test"]}
    test_thresholds = {"model": threshold, "prior": prior_thr}

    # baseline 2: the best small rule on one input column
    candidates = [(j, names[j]) for b in blocks if b.kind in RULE_KINDS
                  for j in range(b.start, b.stop)]
    rule = one_feature_rule(task, X["train"], y["train"], X["valid"], y["valid"],
                            candidates, n_classes, seed, weights=weights)
    if rule is not None:
        rule_out = {p: apply_rule(rule, task, X[p], n_classes)
                    for p in ("valid", "test")}
        rule_metrics, rule_thr = evaluate(rule_out)
        test_outputs["one_feature"] = rule_out["test"]
        test_thresholds["one_feature"] = rule_thr
        metrics["baselines"]["one_feature"] = {
            "description": f"depth-2 tree on {rule['name']}",
            "feature": rule["name"], **rule_metrics}
        if task == "binary":
            plots["baselines"]["one_feature"] = curves(task, y["test"],
                                                       rule_out["test"], rule_thr)

    if task == "multilabel":  # each label's row named, not numbered
        for part in [metrics["model"], *metrics["baselines"].values()]:
            for p in ("valid", "test"):
                for r in part[p].get("per_label", []):
                    r["label"] = str(classes[int(r["label"])])
    primary, higher = PRIMARY[task]
    model_score = metrics["model"]["test"].get(primary)
    base_scores = [b["test"].get(primary) for b in metrics["baselines"].values()]
    base_scores = [s for s in base_scores if s is not None]
    beats = point = None
    if model_score is not None and base_scores:
        best = max(base_scores) if higher else min(base_scores)
        beats = point = bool(model_score > best if higher else model_score < best)
    metrics["primary"] = primary
    if searched is not None:
        metrics["search"] = searched
    if intervals is not None:
        from ._intervals import band, measure

        metrics["intervals"] = measure(intervals, X["test"], y["test"], out["test"])
        plots["model"]["intervals"] = band(intervals, X["test"], y["test"],
                                           out["test"])
    if calibration is not None:
        metrics["calibration"] = calibration
    if evaluation is not None and evaluation.replicates > 0:
        from ._bootstrap import bootstrap_metrics

        names_ = [m for m in metrics["model"]["test"] if isinstance(
            metrics["model"]["test"][m], float) and m != "threshold"]
        boot = bootstrap_metrics(task, y["test"], test_outputs, test_thresholds,
                                 primary=primary, names=names_, seed=seed,
                                 replicates=evaluation.replicates,
                                 level=evaluation.level, time_order=test_times)
        metrics["bootstrap"] = boot
        margins = [m["beats"] for m in boot["margins"].values()]
        if point is not None and margins and None not in margins:
            # better on these rows is not enough: better beyond chance
            beats = bool(all(margins))
        metrics["beats_point"] = point

    imp = learner.importance()
    importance = []
    if imp is not None:
        order = np.argsort(-imp, kind="stable")[:25]
        importance = [{"feature": names[i], "importance": round(float(imp[i]), 6)}
                      for i in order if imp[i] > 0]
    balance = None
    if task == "multilabel":
        balance = label_balance(y["train"], classes)
    elif task != "regression":
        from ..trainingdata import class_balance

        balance = class_balance(y["train"], classes)
        balance["resampled"] = resampled
        balance["comparison"] = compare_resampling(
            problem, model, imbalance, X=X, y=y, classes=classes, seed=seed,
            weights=weights, chosen=(imbalance.resample, metrics["model"]["valid"]),
            added=added)
    return TrainResult(learner=learner, classes=classes, threshold=threshold,
                       metrics=metrics, curves=plots, importance=importance,
                       beats_baselines=beats, balance=balance,
                       augmented=added.counts or None, intervals=intervals)


def choose_thresholds(problem: ProblemSpec, y_valid: np.ndarray,
                      out_valid: np.ndarray) -> float | list[float] | None:
    """The decision threshold(s) chosen on validation: binary one (F1 or the
    cost matrix), multilabel one per label (F1), else None."""
    if problem.task == "binary":
        return choose_threshold(y_valid, out_valid, objective=problem.threshold,
                                costs=problem.costs)
    if problem.task == "multilabel":
        return label_thresholds(y_valid, out_valid)
    return None


def label_balance(Y: np.ndarray, labels: list) -> dict[str, Any]:
    """Each label's training rows and share, the rarest and the commonest, how
    many labels a row has: a multilabel target's balance (each label's model
    weighs its own two classes)."""
    from ..trainingdata._imbalance import IMBALANCED_SHARE

    Y = np.asarray(Y, dtype=int)
    n = max(len(Y), 1)
    counts = Y.sum(axis=0)
    low, high = int(np.argmin(counts)), int(np.argmax(counts))
    per_row = np.bincount(Y.sum(axis=1), minlength=1)
    return {"counts": {str(c): int(k) for c, k in zip(labels, counts, strict=True)},
            "shares": {str(c): round(float(k) / n, 4)
                       for c, k in zip(labels, counts, strict=True)},
            "minority": str(labels[low]), "majority": str(labels[high]),
            "ratio": round(float(counts[high] / max(counts[low], 1)), 2),
            "labels_per_row": {str(k): int(v) for k, v in enumerate(per_row) if v},
            # a label is a binary target: imbalanced as one would be
            "imbalanced": bool(counts[low] / n < IMBALANCED_SHARE),
            "comparison": [], "resampled": None}


def _brier(task: str, y: np.ndarray, p: np.ndarray) -> float:
    if task in ("binary", "multilabel"):  # multilabel: over every (row, label)
        return round(float(np.mean((p - y) ** 2)), 6)
    onehot = np.eye(p.shape[1])[y.astype(int)]
    return round(float(np.mean(np.sum((p - onehot) ** 2, axis=1))), 6)


def calibrate(learner: Learner, kind: str, X: dict, y: dict, task: str
              ) -> dict[str, Any]:
    """Fit ``kind`` calibration on the validation split into ``learner``;
    return the test Brier score and reliability curve before and after."""
    from ._calibration import fit_calibration, reliability

    raw = {p: learner.predict(X[p]) for p in ("valid", "test")}
    learner.calibration_ = fit_calibration(kind, raw["valid"], y["valid"], task)
    after = learner.predict(X["test"])
    info: dict[str, Any] = {"kind": kind, "fitted_on": "valid",
                            "brier_before": _brier(task, y["test"], raw["test"]),
                            "brier_after": _brier(task, y["test"], after)}
    if task in ("binary", "multilabel"):  # multilabel: every (row, label) pooled
        info["reliability_before"] = reliability(np.ravel(y["test"]),
                                                 np.ravel(raw["test"]))
        info["reliability_after"] = reliability(np.ravel(y["test"]), np.ravel(after))
    return info


class Augmented:
    """The rows augmentation adds to a fit: ``extra`` raw rows (already
    applied) and the mixup and SMOTE rows ``spec`` makes from the train matrix,
    made once and counted by method."""

    def __init__(self, spec: AugmentSpec | None,
                 extra: tuple[Any, np.ndarray, np.ndarray] | None,
                 raw: dict[str, tuple[Any, np.ndarray]] | None = None):
        self.spec, self.extra = spec, extra
        self.raw = raw or {}  # method -> synthetic rows of a raw resampler
        self.counts: dict[str, int] = {}
        self._rows: tuple | None = None

    def rows(self, X_train, y_train, task: str, n_classes: int, seed: int
             ) -> tuple | None:
        """(X, y, weights) of every added row, or None."""
        if self._rows is not None:
            return self._rows
        from ..trainingdata import TrainRows, mixup, smote_rows

        parts = []
        if self.extra is not None and self.extra[0].shape[0]:
            parts.append(self.extra)
        spec = self.spec
        if spec is not None and spec.mixup is not None:
            n = max(1, round(spec.mixup.share * len(y_train)))
            Xm, ym, wm = mixup(TrainRows(X_train, y_train), alpha=spec.mixup.alpha,
                               n=n, task=task, n_classes=n_classes, seed=seed)
            parts.append((Xm, ym, wm))
            self.counts["mixup"] = n
        if spec is not None and spec.smote is not None:
            Xs, ys = smote_rows(TrainRows(X_train, y_train), share=spec.smote.share,
                                k_neighbors=spec.smote.k_neighbors, seed=seed)
            parts.append((Xs, ys, np.ones(len(ys))))
            self.counts["smote"] = int(len(ys))
        if not parts:
            return None
        self._rows = (sp.vstack([sp.csr_matrix(p[0]) for p in parts]).tocsr(),
                      np.concatenate([p[1] for p in parts]),
                      np.concatenate([p[2] for p in parts]))
        return self._rows


def fit_learner(problem: ProblemSpec, model: ModelSpec, method: str, *,
                X: dict[str, sp.csr_matrix], y: dict[str, np.ndarray],
                classes: list, seed: int, weights: np.ndarray | None,
                imbalance: ImbalanceSpec, added: Augmented | None = None
                ) -> tuple[Learner, dict[str, Any] | None]:
    """The learner fitted on the train rows, resampled by ``method`` first
    (the train split only: :class:`~mlsd.trainingdata.TrainRows`), with the
    augmented rows ``added``, and fine-tuned on the original rows when
    ``imbalance.two_phase``. Returns the learner and what resampling did
    (None without it)."""
    task = problem.task
    n_classes = len(classes) if task != "regression" else 1
    learner = make_learner(task, model, n_classes, seed, problem=problem,
                           classes=classes)
    extra = None if added is None else added.rows(X["train"], y["train"], task,
                                                  n_classes, seed)
    res = None
    if method == "none" or task == "regression":
        Xf, yf, wf = X["train"], y["train"], weights
    else:
        from ..trainingdata import RAW_RESAMPLERS, Resampled, TrainRows, resample

        if method in RAW_RESAMPLERS or (added and method in added.raw):
            # synthetic raw rows (SMOTENC), applied already
            if not added or method not in added.raw:
                raise ModelError(f"imbalance: {method} needs the raw training rows "
                                 f"(train through the run's train stage)")
            Xs, ys = added.raw[method]
            n = X["train"].shape[0]
            res = Resampled(sp.vstack([X["train"], Xs]).tocsr(),
                            np.concatenate([y["train"], ys]),
                            np.concatenate([np.arange(n), np.full(len(ys), -1)]),
                            method)
        else:
            res = resample(TrainRows(X["train"], y["train"]), method, seed=seed,
                           ratio=imbalance.ratio,
                           k_neighbors=imbalance.k_neighbors)
        Xf, yf, wf = res.X, res.y, None
        if weights is not None:  # a drawn row's weight follows its copies
            wf = np.where(res.origin >= 0, weights[np.maximum(res.origin, 0)], 1.0)
    if extra is not None:
        n = len(yf)
        Xf = sp.vstack([sp.csr_matrix(Xf), extra[0]]).tocsr()
        yf = np.concatenate([yf, extra[1]])
        wf = np.concatenate([np.ones(n) if wf is None else wf, extra[2]])
    learner.fit(Xf, yf, X["valid"], y["valid"], sample_weight=wf)
    if res is None:
        return learner, None
    if imbalance.two_phase:
        learner.fine_tune(X["train"], y["train"], X["valid"], y["valid"],
                          sample_weight=weights, share=imbalance.fine_tune)
    raw_rows = added is not None and method in added.raw
    return learner, {**res.summary(classes), "two_phase": imbalance.two_phase,
                     "train_rows": int(X["train"].shape[0]),
                     "on": "raw inputs (SMOTENC)" if raw_rows else "feature matrix"}


def compare_resampling(problem: ProblemSpec, model: ModelSpec,
                       imbalance: ImbalanceSpec, *, X, y, classes: list, seed: int,
                       weights: np.ndarray | None,
                       chosen: tuple[str, dict[str, Any]],
                       added: Augmented | None = None) -> list[dict[str, Any]]:
    """Validation metrics of no resampling, the chosen strategy and every one
    in ``imbalance.compare``, each fitted the same way (empty when nothing is
    to compare)."""
    methods = list(dict.fromkeys(["none", chosen[0], *imbalance.compare]))
    if len(methods) < 2:
        return []
    task = problem.task
    keys = (("pr_auc", "recall", "precision", "f1") if task == "binary"
            else ("macro_f1", "balanced_accuracy", "log_loss"))
    rows = []
    for m in methods:
        if m == chosen[0]:
            valid, res = chosen[1], None
        else:
            learner, res = fit_learner(problem, model, m, X=X, y=y, classes=classes,
                                       seed=seed, weights=weights,
                                       imbalance=imbalance, added=added)
            out = learner.predict(X["valid"])
            valid = task_metrics(task, y["valid"], out,
                                 choose_thresholds(problem, y["valid"], out))
        rows.append({"method": m, "chosen": m == chosen[0],
                     **{k: valid.get(k) for k in keys}})
    return rows
