"""Learners, each saved in a safe format (no pickle is ever loaded).

LightGBM is saved in its own text format. Linear models are saved as their
coefficients in JSON and predict with a few lines of NumPy, which also makes
one-row serving fast.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, ClassVar

import lightgbm as lgb
import numpy as np
import scipy.sparse as sp
from sklearn.linear_model import LogisticRegression, Ridge

from .._threads import threads_for
from ..errors import ModelError, NotFittedError


def class_weights(y: np.ndarray, n_classes: int) -> np.ndarray:
    """Per-row weights n / (k * n_c): every class weighs the same in the loss."""
    counts = np.bincount(y, minlength=n_classes).astype(float)
    w = len(y) / (n_classes * np.maximum(counts, 1.0))
    return w[y]


class Learner(ABC):
    """A model for one task: ``fit``, ``predict`` (scores), ``save``, ``load``."""

    kind: ClassVar[str] = ""

    def __init__(self, *, task: str, n_classes: int = 1,
                 params: dict[str, Any] | None = None, class_weight: str = "none",
                 seed: int = 0, threads: int | None = None,
                 loss: dict[str, Any] | None = None):
        self.task = task
        self.n_classes = n_classes
        self.params = dict(params or {})
        self.class_weight = class_weight
        self.seed = seed
        self.threads = threads
        self.loss = dict(loss or {"kind": "default"})
        if self.focal and task != "binary":
            raise ModelError("model.loss: focal is for binary tasks")
        self.calibration_: dict[str, Any] | None = None

    @property
    def focal(self) -> bool:
        return self.loss.get("kind") == "focal"

    def meta(self) -> dict[str, Any]:
        """What :meth:`load` needs besides the model file (kept in the
        model's manifest): the loss, where a custom loss's scores start, the
        calibration map."""
        out: dict[str, Any] = {"loss": self.loss} if self.loss.get(
            "kind", "default") != "default" else {}
        if self.calibration_:
            out["calibration"] = self.calibration_
        return out

    def _calibrated(self, out: np.ndarray) -> np.ndarray:
        if not self.calibration_ or self.task == "regression":
            return out
        from ._calibration import apply_calibration

        return apply_calibration(self.calibration_, out)

    def _weights(self, y: np.ndarray, sample_weight: np.ndarray | None = None
                 ) -> np.ndarray | None:
        """Each row's weight in the loss: its class weight (``balanced``, or
        ``class_weight(y)`` when it is a function) times its sample weight (a
        weighted or importance sample's)."""
        w = None
        if self.task != "regression" and callable(self.class_weight):
            w = self.class_weight(y)
        elif self.task != "regression" and self.class_weight == "balanced":
            w = class_weights(y.astype(int), max(self.n_classes, 2))
        if sample_weight is not None:
            sw = np.asarray(sample_weight, dtype=float)
            w = sw if w is None else w * sw
        return w

    @abstractmethod
    def fit(self, X, y, X_valid=None, y_valid=None, sample_weight=None) -> Learner:
        """Fit on training rows, each weighing ``sample_weight`` (default 1);
        validation rows may stop training early."""

    @abstractmethod
    def predict(self, X) -> np.ndarray:
        """Binary: P(positive) (n,); multiclass: (n, k); regression: (n,)."""

    @abstractmethod
    def save(self, folder: Path) -> str:
        """Write the fitted model into ``folder``; return the file name."""

    @classmethod
    @abstractmethod
    def load(cls, folder: Path, meta: dict[str, Any]) -> Learner:
        """Read a model written by :meth:`save`."""

    def importance(self) -> np.ndarray | None:
        return None

    def predict_rows(self, rows: list, n_features: int) -> np.ndarray | None:
        """:meth:`predict` of a few rows given as sparse entries (indices,
        values), without building a matrix (the online path; ``._fast``);
        None when this learner has no such path."""
        return None


class LightGBMLearner(Learner):
    """Gradient-boosted trees (LightGBM), deterministic whatever the thread
    count: each fit and prediction takes the free cores, at most ``threads``
    (:func:`mlsd._threads.threads_for`)."""

    kind = "lightgbm"
    FILE = "model.lgb.txt"

    def _lgb_params(self) -> tuple[dict[str, Any], int]:
        p = dict(self.params)
        rounds = int(p.pop("n_estimators", p.pop("num_boost_round", 300)))
        objective = {"binary": "binary", "multiclass": "multiclass",
                     "regression": "regression"}[self.task]
        kind = self.loss.get("kind")
        extra: dict[str, Any] = {}
        if kind == "absolute":
            objective = "regression_l1"
        elif kind == "huber":  # without a delta, fit sets one from the target
            objective = "huber"
            if self.loss.get("delta"):
                extra = {"alpha": float(self.loss["delta"])}
        elif kind == "quantile":
            objective, extra = "quantile", {"alpha": float(self.loss["quantile"]),
                                            "metric": "quantile"}
        base = {"objective": objective, "learning_rate": 0.05, "num_leaves": 31,
                "min_data_in_leaf": 20, "feature_pre_filter": False,
                "verbosity": -1, "deterministic": True, "force_col_wise": True,
                "seed": self.seed, **extra}
        if self.task == "multiclass":
            base["num_class"] = self.n_classes
        base.update(p)
        return base, rounds

    def fit(self, X, y, X_valid=None, y_valid=None, sample_weight=None):
        return self._train(X, y, X_valid, y_valid, sample_weight, share=None)

    def _train(self, X, y, X_valid, y_valid, sample_weight, *,
               share: float | None) -> LightGBMLearner:
        """Boost on (X, y): from scratch, or ``share`` of the rounds more from
        the fitted model. A focal loss is a custom objective: LightGBM then
        starts every score at 0 and weighs no row itself, so the scores start
        at the prior's log-odds and the gradients carry the row weights."""
        params, rounds = self._lgb_params()
        params.setdefault("num_threads", threads_for(X.shape[0], self.threads))
        if self.loss.get("kind") == "huber" and not self.loss.get("delta"):
            # 1.345 robust standard deviations (1.4826 MAD) of the target
            med = float(np.median(y))
            self.loss["delta"] = max(1.345 * 1.4826 * float(np.median(
                np.abs(np.asarray(y) - med))), 1e-6)
            params["alpha"] = self.loss["delta"]
        w = self._weights(y, sample_weight)
        init = None
        feval = None
        if self.focal:
            from ._losses import focal_grad, focal_hess, prior_score

            if share is None:
                self.init_score_ = prior_score(y, w)
            gamma, alpha = self.loss["gamma"], self.loss.get("alpha")

            def objective(raw, data):
                label = data.get_label()
                rw = data.get_weight()
                rw = np.ones(len(label)) if rw is None else rw
                return (rw * focal_grad(raw, label, gamma, alpha),
                        rw * focal_hess(raw, label, gamma, alpha))

            def focal_metric(raw, data):
                from ._losses import focal_loss

                label = data.get_label()
                rw = data.get_weight()
                value = np.average(focal_loss(raw, label, gamma, alpha), weights=rw)
                return "focal", float(value), False

            params.update(objective=objective, metric="None")
            feval = focal_metric
            init = np.full(len(y), self.init_score_)
        train = lgb.Dataset(X, label=y, weight=w, init_score=init,
                            free_raw_data=False)
        valid_sets, callbacks = [], []
        if X_valid is not None and X_valid.shape[0] > 0:
            valid_sets = [lgb.Dataset(
                X_valid, label=y_valid, reference=train,
                weight=self._weights(y_valid),
                init_score=None if init is None else np.full(
                    X_valid.shape[0], self.init_score_))]
            callbacks = [lgb.early_stopping(50, verbose=False)]
        more = {} if share is None else {"init_model": self.booster_,
                                         "keep_training_booster": True}
        self.booster_ = lgb.train(
            params, train, valid_sets=valid_sets, callbacks=callbacks, feval=feval,
            num_boost_round=rounds if share is None else max(1, int(rounds * share)),
            **more)
        return self

    def predict(self, X):
        if not hasattr(self, "booster_"):
            raise NotFittedError("LightGBMLearner: call fit() or load() first")
        out = np.asarray(self.booster_.predict(
            X, num_threads=threads_for(X.shape[0], self.threads)))
        if self.focal:  # a custom objective's output is the raw score
            from ._losses import _sigmoid

            out = _sigmoid(out + self.init_score_)
        return self._calibrated(out)

    def __getstate__(self) -> dict[str, Any]:
        # the single-row predictor holds C pointers: made again after a copy
        return {k: v for k, v in self.__dict__.items() if k != "_fast"}

    def predict_rows(self, rows: list, n_features: int) -> np.ndarray | None:
        if not hasattr(self, "booster_"):
            raise NotFittedError("LightGBMLearner: call fit() or load() first")
        fast = self.__dict__.get("_fast")
        if fast is None or fast.n_features != n_features:
            from ._fast import LightGBMRows

            fast = self._fast = LightGBMRows(self.booster_, n_features)
        out = fast.predict(rows)
        if self.focal:
            from ._losses import _sigmoid

            out = _sigmoid(out + self.init_score_)
        return self._calibrated(out)

    def meta(self) -> dict[str, Any]:
        out = super().meta()
        if self.focal:
            out["init_score"] = self.init_score_
        return out

    def save(self, folder: Path) -> str:
        self.booster_.save_model(str(folder / self.FILE))
        return self.FILE

    @classmethod
    def load(cls, folder: Path, meta: dict[str, Any]) -> LightGBMLearner:
        obj = cls(task=meta["task"], n_classes=meta.get("n_classes", 1),
                  threads=meta.get("threads"), loss=meta.get("loss"))
        obj.booster_ = lgb.Booster(model_file=str(folder / cls.FILE))
        if obj.focal:
            obj.init_score_ = float(meta["init_score"])
        obj.calibration_ = meta.get("calibration")
        return obj

    def importance(self):
        return self.booster_.feature_importance(importance_type="gain")

    def fine_tune(self, X, y, X_valid=None, y_valid=None, sample_weight=None, *,
                  share: float = 0.25) -> LightGBMLearner:
        """More rounds (``share`` of the model's) from the fitted model, on
        other rows: the second phase of two-phase learning."""
        return self._train(X, y, X_valid, y_valid, sample_weight, share=share)


class LinearLearner(Learner):
    """Logistic regression (classification) or ridge (regression).

    Fitted with scikit-learn, stored and applied as plain coefficients.
    """

    kind = "linear"
    FILE = "model.linear.json"

    def fit(self, X, y, X_valid=None, y_valid=None, sample_weight=None):
        if sp.issparse(X) and np.isnan(X.data).any():
            raise ModelError("a linear model cannot take missing values: give every "
                             "numeric feature an `impute` other than none")
        p = self._checked_params()
        kind = self.loss.get("kind")
        if self.task == "regression" and kind in ("absolute", "quantile"):
            from sklearn.linear_model import QuantileRegressor

            q = 0.5 if kind == "absolute" else float(self.loss["quantile"])
            est = QuantileRegressor(quantile=q, alpha=float(p.pop("alpha", 0.0)),
                                    solver="highs", **p)
            est.fit(X, y, sample_weight=self._weights(y, sample_weight))
            self.coef_ = np.atleast_2d(est.coef_)
            self.intercept_ = np.atleast_1d(est.intercept_).astype(float)
        elif self.task == "regression" and kind == "huber":
            from sklearn.linear_model import HuberRegressor

            # HuberRegressor's epsilon is in units of its estimated scale
            est = HuberRegressor(epsilon=max(1.0, float(p.pop("epsilon", 1.35))),
                                 alpha=float(p.pop("alpha", 1e-4)),
                                 max_iter=int(p.pop("max_iter", 1000)), **p)
            est.fit(X, y, sample_weight=self._weights(y, sample_weight))
            self.coef_ = np.atleast_2d(est.coef_)
            self.intercept_ = np.atleast_1d(est.intercept_).astype(float)
        elif self.task == "regression":
            est = Ridge(alpha=float(p.pop("alpha", 1.0)), **p)
            est.fit(X, y, sample_weight=self._weights(y, sample_weight))
            self.coef_ = np.atleast_2d(est.coef_)
            self.intercept_ = np.atleast_1d(est.intercept_).astype(float)
        elif self.focal:  # scikit-learn takes no custom loss: L-BFGS on it
            from ._losses import fit_focal_linear

            coef, b, self.n_iter_ = fit_focal_linear(
                X, y, gamma=self.loss["gamma"], alpha=self.loss.get("alpha"),
                C=float(p.pop("C", 1.0)), max_iter=int(p.pop("max_iter", 2000)),
                sample_weight=self._weights(y, sample_weight))
            self.coef_, self.intercept_ = coef[None, :], np.array([b])
        else:
            est = LogisticRegression(C=float(p.pop("C", 1.0)),
                                     max_iter=int(p.pop("max_iter", 2000)),
                                     random_state=self.seed, **p)
            est.fit(X, y, sample_weight=self._weights(y, sample_weight))
            self.coef_ = np.asarray(est.coef_, dtype=float)
            self.intercept_ = np.asarray(est.intercept_, dtype=float)
            self.n_iter_ = int(np.max(est.n_iter_))
        return self

    def _estimator(self):
        """The scikit-learn estimator this task and loss fit with."""
        from sklearn.linear_model import HuberRegressor, QuantileRegressor

        kind = self.loss.get("kind")
        if self.task != "regression":
            return LogisticRegression
        return {"absolute": QuantileRegressor, "quantile": QuantileRegressor,
                "huber": HuberRegressor}.get(kind, Ridge)

    def _checked_params(self) -> dict[str, Any]:
        """``model.params``, refused at once when one is not a parameter of
        the estimator (a LightGBM setting left after switching ``kind``)."""
        p = dict(self.params)
        est = self._estimator()
        known = set(est().get_params()) if not self.focal else {"C", "max_iter"}
        unknown = sorted(k for k in p if k not in known)
        if unknown:
            raise ModelError(
                f"model.params: {', '.join(unknown)} "
                f"{'is not a parameter' if len(unknown) == 1 else 'are not parameters'}"
                f" of the linear model ({est.__name__}); its parameters: "
                f"{', '.join(sorted(known))}")
        return p

    def predict(self, X):
        if not hasattr(self, "coef_"):
            raise NotFittedError("LinearLearner: call fit() or load() first")
        return self._link(np.asarray(X @ self.coef_.T) + self.intercept_)

    def predict_rows(self, rows: list, n_features: int) -> np.ndarray | None:
        if not hasattr(self, "coef_"):
            raise NotFittedError("LinearLearner: call fit() or load() first")
        from ._fast import linear_scores

        return self._link(linear_scores(self.coef_, self.intercept_, rows))

    def _link(self, z: np.ndarray) -> np.ndarray:
        """Decision values to outputs: the value, a probability, or each
        class's (softmax)."""
        if self.task == "regression":
            return z[:, 0]
        if self.task == "binary":
            return self._calibrated(1.0 / (1.0 + np.exp(-z[:, 0])))
        z = z - z.max(axis=1, keepdims=True)
        e = np.exp(z)
        return self._calibrated(e / e.sum(axis=1, keepdims=True))

    def save(self, folder: Path) -> str:
        doc = {"coef": self.coef_.tolist(), "intercept": self.intercept_.tolist()}
        (folder / self.FILE).write_text(json.dumps(doc))
        return self.FILE

    @classmethod
    def load(cls, folder: Path, meta: dict[str, Any]) -> LinearLearner:
        doc = json.loads((folder / cls.FILE).read_text())
        obj = cls(task=meta["task"], n_classes=meta.get("n_classes", 1),
                  loss=meta.get("loss"))
        obj.calibration_ = meta.get("calibration")
        obj.coef_ = np.asarray(doc["coef"], dtype=float)
        obj.intercept_ = np.asarray(doc["intercept"], dtype=float)
        return obj

    def importance(self):
        return np.abs(self.coef_).sum(axis=0)

    def fine_tune(self, X, y, X_valid=None, y_valid=None, sample_weight=None, *,
                  share: float = 0.25) -> LinearLearner:
        """Solver iterations on other rows, from the fitted coefficients: the
        second phase of two-phase learning, ``share`` of the iterations the
        first fit took. (Run to convergence, it would equal a fit on those rows
        alone: the loss is convex.)"""
        import warnings

        from sklearn.exceptions import ConvergenceWarning

        if self.task == "regression":
            return self
        p = dict(self.params)
        p.pop("max_iter", None)
        iters = max(1, round(getattr(self, "n_iter_", 100) * share))
        if self.focal:
            from ._losses import fit_focal_linear

            coef, b, _ = fit_focal_linear(
                X, y, gamma=self.loss["gamma"], alpha=self.loss.get("alpha"),
                C=float(p.pop("C", 1.0)), max_iter=iters,
                sample_weight=self._weights(y, sample_weight),
                init=(self.coef_[0], float(self.intercept_[0])))
            self.coef_, self.intercept_ = coef[None, :], np.array([b])
            return self
        est = LogisticRegression(C=float(p.pop("C", 1.0)), max_iter=iters,
                                 warm_start=True, random_state=self.seed, **p)
        est.coef_ = self.coef_.copy()
        est.intercept_ = self.intercept_.copy()
        est.classes_ = np.arange(max(self.n_classes, 2))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            est.fit(X, y, sample_weight=self._weights(y, sample_weight))
        self.coef_ = np.asarray(est.coef_, dtype=float)
        self.intercept_ = np.asarray(est.intercept_, dtype=float)
        return self


LEARNERS: dict[str, type[Learner]] = {c.kind: c for c in (LightGBMLearner,
                                                          LinearLearner)}


class MultiLabelLearner(Learner):
    """A label set: one binary learner of ``base`` kind per label (binary
    relevance), or a classifier chain (``chain``): label j's learner also
    reads labels 0..j-1, the true ones when fitting and the predicted ones
    (at 0.5) when scoring, as scikit-learn's ``ClassifierChain`` does.

    Written here rather than with scikit-learn's ``MultiOutputClassifier`` or
    ``ClassifierChain`` because each label's learner is an mlsd learner
    (early stopping on its validation column, class weights, a safe file
    format, no pickle); the chain's order is the labels' (sorted) order.

    ``predict`` gives a (rows, labels) matrix of probabilities, each label
    calibrated on its own (``calibration_``: one map per label)."""

    INDEX = "model.multilabel.json"

    def __init__(self, *, base: str, n_classes: int, chain: bool = False,
                 params: dict[str, Any] | None = None, class_weight: Any = "none",
                 seed: int = 0, threads: int | None = None,
                 loss: dict[str, Any] | None = None):
        super().__init__(task="multilabel", n_classes=n_classes, params=params,
                         class_weight=class_weight, seed=seed, threads=threads,
                         loss=loss)
        if base not in LEARNERS:
            raise ModelError(f"unknown model kind {base!r}")
        self.kind = base  # the manifest's kind: the learners' own
        self.chain = chain

    def _one(self) -> Learner:
        return LEARNERS[self.kind](task="binary", n_classes=2, params=self.params,
                                   class_weight=self.class_weight, seed=self.seed,
                                   threads=self.threads, loss=self.loss)

    def _inputs(self, X, labels: np.ndarray, j: int):
        """Label j's inputs: ``X``, with labels 0..j-1 after it in a chain."""
        if not self.chain or j == 0:
            return X
        if sp.issparse(X):
            return sp.hstack([X, sp.csr_matrix(labels[:, :j].astype(np.float64))]
                             ).tocsr()
        return np.hstack([np.asarray(X, dtype=np.float64),
                          labels[:, :j].astype(np.float64)])

    def fit(self, X, y, X_valid=None, y_valid=None, sample_weight=None):
        Y = np.asarray(y, dtype=int)
        if Y.ndim != 2 or Y.shape[1] != self.n_classes:
            raise ModelError(f"a multilabel learner needs a (rows, "
                             f"{self.n_classes}) label matrix, got {Y.shape}")
        valid = X_valid is not None and X_valid.shape[0] > 0
        Yv = np.asarray(y_valid, dtype=int) if valid else None
        self.n_features_ = X.shape[1]
        self.models_ = []
        for j in range(self.n_classes):
            self.models_.append(self._one().fit(
                self._inputs(X, Y, j), Y[:, j],
                self._inputs(X_valid, Yv, j) if valid else None,
                Yv[:, j] if valid else None, sample_weight=sample_weight))
        return self

    def _walk(self, X, *, scores: bool):
        """Each label's learner, the inputs it scores ``X`` with (in a chain,
        with the labels decided before it) and, when ``scores`` or a chain
        needs them, its scores."""
        if not hasattr(self, "models_"):
            raise NotFittedError("MultiLabelLearner: call fit() or load() first")
        decided = np.zeros((X.shape[0], self.n_classes))
        for j, m in enumerate(self.models_):
            Xj = self._inputs(X, decided, j)
            p = m.predict(Xj) if scores or self.chain else None
            if self.chain:
                decided[:, j] = p >= 0.5
            yield m, Xj, p

    def label_inputs(self, X) -> list[tuple[Learner, Any]]:
        """Each label's learner and the inputs it scores ``X`` with: what SHAP
        explains."""
        return [(m, Xj) for m, Xj, _ in self._walk(X, scores=False)]

    def predict(self, X):
        out = [p for _, _, p in self._walk(X, scores=True)]
        return self._calibrated(np.column_stack(out) if out
                                else np.zeros((X.shape[0], 0)))

    def meta(self) -> dict[str, Any]:
        out = super().meta()
        out["chain"] = self.chain
        return out

    def save(self, folder: Path) -> str:
        """Each label's model in ``labels/NNN/``, listed with its sha256 in
        ``model.multilabel.json`` (itself hashed in the manifest)."""
        from ._artifact import _sha

        entries = []
        for j, m in enumerate(self.models_):
            sub = folder / "labels" / f"{j:03d}"
            sub.mkdir(parents=True)
            name = m.save(sub)
            entries.append({"path": f"labels/{j:03d}/{name}",
                            "sha256": _sha(sub / name), "meta": m.meta()})
        doc = {"chain": self.chain, "n_features": self.n_features_,
               "models": entries}
        (folder / self.INDEX).write_text(json.dumps(doc, sort_keys=True))
        return self.INDEX

    @classmethod
    def load(cls, folder: Path, meta: dict[str, Any]) -> MultiLabelLearner:
        from ._artifact import _sha

        doc = json.loads((folder / cls.INDEX).read_text())
        obj = cls(base=meta["kind"], n_classes=meta["n_classes"],
                  chain=bool(doc["chain"]), threads=meta.get("threads"),
                  loss=meta.get("loss"))
        obj.calibration_ = meta.get("calibration")
        obj.n_features_ = int(doc["n_features"])
        obj.models_ = []
        base = LEARNERS[obj.kind]
        inside = Path(folder).resolve()
        for e in doc["models"]:
            path = folder / e["path"]
            if not path.resolve().is_relative_to(inside):
                raise ModelError(f"{cls.INDEX}: {e['path']!r} is outside the model's "
                                 f"folder; refused")
            if not path.is_file() or _sha(path) != e["sha256"]:
                raise ModelError(f"{path}: missing or changed since the model was "
                                 f"saved (sha256 mismatch)")
            obj.models_.append(base.load(path.parent, {
                **e["meta"], "task": "binary", "n_classes": 2,
                "threads": meta.get("threads")}))
        return obj

    def importance(self):
        parts = [m.importance() for m in self.models_]
        if any(p is None for p in parts):
            return None
        return np.sum([np.asarray(p)[:self.n_features_] for p in parts], axis=0)


def learner_class(manifest: dict[str, Any]) -> type[Learner]:
    """The class that loads a model of this manifest."""
    if manifest.get("task") == "multilabel":
        return MultiLabelLearner
    kind = manifest.get("kind")
    if kind not in LEARNERS:
        raise ModelError(f"unknown model kind {kind!r}")
    return LEARNERS[kind]
