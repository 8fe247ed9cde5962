"""Several objectives (the course's feed ranked by quality and engagement):

* decoupled: one model per objective, combined at prediction time as
  ``sum_k w_k * (f_k(x) - m_k) / s_k``, each output standardised by its mean
  and spread on the train split, so that a weight is a share whatever the
  units (a rating in stars, a probability). The weights change per request
  without retraining.
* joint: one model of the weighted sum of the losses, its weights fixed when
  it is trained. When every objective is a regression with squared loss it
  is exact and small: ``sum_k w_k (z_k - f)^2`` is, up to a constant,
  ``(z_bar - f)^2`` with ``z_bar = sum_k w_k z_k`` (``z_k``: the standardised
  targets), so gradient boosting on ``z_bar`` is the joint model. Otherwise a
  small two-output network (scikit-learn's ``MLPRegressor``) fits
  ``sqrt(w_k) z_k`` with squared loss, so each objective's share of the loss
  is its weight; a binary objective's loss is then the squared error of its
  standardised label (Brier-like), not the log loss: the approximation the
  joint mode makes. Its weights are kept as JSON and applied with NumPy.

Both are measured on the test split over a grid of weights: for each
objective, how well the combined score ranks by it (Spearman correlation with
a rating, ROC-AUC for a click), and the time a move along the grid takes
(decoupled: recombining; joint: retraining).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ModelError
from ._learners import LEARNERS, Learner

FOLDER = "objectives"
"""Where an artifact keeps the models of its other objectives."""


def normalised(weights: dict[str, float]) -> dict[str, float]:
    total = float(sum(weights.values()))
    if total <= 0 or any(w < 0 for w in weights.values()):
        raise ModelError(f"objective weights must be >= 0 and not all 0: {weights}")
    return {k: float(w) / total for k, w in weights.items()}


def parse_weights(text: str, names: list[str]) -> dict[str, float]:
    """``quality:0.5,engagement:0.5`` (every objective named once)."""
    out: dict[str, float] = {}
    for part in text.split(","):
        name, sep, value = part.partition(":")
        name = name.strip()
        if not sep or name not in names:
            raise ModelError(f"weights {text!r}: expected NAME:WEIGHT pairs for "
                             f"{', '.join(names)}")
        try:
            out[name] = float(value)
        except ValueError:
            raise ModelError(f"weights {text!r}: {value!r} is not a number") from None
    missing = [n for n in names if n not in out]
    if missing:
        raise ModelError(f"weights {text!r}: no weight for {', '.join(missing)}")
    return normalised(out)


class JointNet:
    """A fitted one-hidden-layer network of several outputs, kept as plain
    weights (fitted by scikit-learn's ``MLPRegressor``; applied here)."""

    def __init__(self, coefs: list[np.ndarray], intercepts: list[np.ndarray]):
        self.coefs, self.intercepts = coefs, intercepts

    def predict(self, X) -> np.ndarray:
        h = X
        for i, (w, b) in enumerate(zip(self.coefs, self.intercepts, strict=True)):
            h = np.asarray(h @ w) + b
            if i < len(self.coefs) - 1:
                h = np.maximum(h, 0.0)  # relu
        return h

    def to_json(self) -> dict[str, Any]:
        return {"coefs": [c.tolist() for c in self.coefs],
                "intercepts": [b.tolist() for b in self.intercepts]}

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> JointNet:
        return cls([np.asarray(c, float) for c in doc["coefs"]],
                   [np.asarray(b, float) for b in doc["intercepts"]])


@dataclass
class Objective:
    name: str
    target: str
    task: str
    weight: float
    learner: Learner
    mean: float = 0.0  # of its output on train: the standardisation
    sd: float = 1.0


@dataclass
class JointModel:
    """The joint model: ``kind`` lightgbm (one output, the combined score) or
    mlp (one standardised output per objective)."""

    kind: str
    weights: dict[str, float]
    target_scale: dict[str, tuple[float, float]]  # target mean, sd (train)
    booster: Learner | None = None
    net: JointNet | None = None

    def predict(self, X) -> np.ndarray:
        """The combined score (standardised units)."""
        if self.booster is not None:
            return self.booster.predict(X)
        z = self.net.predict(X)
        w = np.array([self.weights[k] for k in self.target_scale])
        return (z / np.sqrt(np.maximum(w, 1e-12))) @ w


@dataclass
class ObjectiveModels:
    """The models of several objectives, and how the combined score is made."""

    mode: str
    objectives: list[Objective]
    joint: JointModel | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def names(self) -> list[str]:
        return [o.name for o in self.objectives]

    @property
    def weights(self) -> dict[str, float]:
        return normalised({o.name: o.weight for o in self.objectives})

    def outputs(self, X) -> dict[str, np.ndarray]:
        """Each objective's own prediction (a value, or a probability)."""
        return {o.name: o.learner.predict(X) for o in self.objectives}

    def combine(self, outputs: dict[str, np.ndarray],
                weights: dict[str, float] | None = None) -> np.ndarray:
        """``sum_k w_k (f_k - m_k) / s_k`` of the decoupled outputs."""
        w = normalised(weights) if weights is not None else self.weights
        return sum(w[o.name] * (outputs[o.name] - o.mean) / o.sd
                   for o in self.objectives)

    def score(self, X, weights: dict[str, float] | None = None) -> np.ndarray:
        """Rows of [combined score, each objective's output]."""
        out = self.outputs(X)
        if self.mode == "joint":
            if weights is not None and any(abs(weights[k] - v) > 1e-9 for k, v in
                                           self.joint.weights.items()):
                raise ModelError("this model combines its objectives jointly: its "
                                 "weights were fixed when it was trained "
                                 f"({self.joint.weights}); retrain to change them")
            combined = self.joint.predict(X)
        else:
            combined = self.combine(out, weights)
        return np.column_stack([combined, *[out[n] for n in self.names]])

    # saving ------------------------------------------------------------------
    def save(self, folder: Path, primary: str) -> list[str]:
        """Write the other objectives' models and the joint model under
        ``folder/objectives``; return the files."""
        root = folder / FOLDER
        root.mkdir()
        names = []
        for o in self.objectives:
            if o.name == primary:
                continue  # the artifact's own model
            (root / o.name).mkdir()
            names.append(f"{FOLDER}/{o.name}/{o.learner.save(root / o.name)}")
        if self.joint is not None:
            if self.joint.booster is not None:
                (root / "joint").mkdir()
                file = self.joint.booster.save(root / "joint")
                names.append(f"{FOLDER}/joint/{file}")
            else:
                (root / "joint.json").write_text(json.dumps(self.joint.net.to_json()))
                names.append(f"{FOLDER}/joint.json")
        return names

    def meta(self, primary: str) -> dict[str, Any]:
        return {"mode": self.mode, "primary": primary,
                "objectives": [{"name": o.name, "target": o.target, "task": o.task,
                                "weight": o.weight, "mean": o.mean, "sd": o.sd,
                                "kind": o.learner.kind, "loss": o.learner.loss,
                                **o.learner.meta()} for o in self.objectives],
                "joint": None if self.joint is None else {
                    "kind": self.joint.kind, "weights": self.joint.weights,
                    "target_scale": self.joint.target_scale}}

    @classmethod
    def load(cls, folder: Path, meta: dict[str, Any], main: Learner,
             threads: int | None) -> ObjectiveModels:
        objectives = []
        for o in meta["objectives"]:
            if o["name"] == meta["primary"]:
                learner = main
            else:
                learner = LEARNERS[o["kind"]].load(
                    folder / FOLDER / o["name"],
                    {**o, "task": o["task"], "n_classes": 2 if o["task"] == "binary"
                     else 1, "threads": threads})
            objectives.append(Objective(o["name"], o["target"], o["task"],
                                        o["weight"], learner, o["mean"], o["sd"]))
        joint = None
        j = meta.get("joint")
        if j is not None:
            scale = {k: tuple(v) for k, v in j["target_scale"].items()}
            joint = JointModel(kind=j["kind"], weights=j["weights"],
                               target_scale=scale)
            if j["kind"] == "lightgbm":
                joint.booster = LEARNERS["lightgbm"].load(
                    folder / FOLDER / "joint", {"task": "regression",
                                                "threads": threads})
            else:
                joint.net = JointNet.from_json(json.loads(
                    (folder / FOLDER / "joint.json").read_text()))
        return cls(mode=meta["mode"], objectives=objectives, joint=joint)


# fitting -------------------------------------------------------------------------

def _standardise(y: np.ndarray) -> tuple[float, float]:
    sd = float(np.std(y))
    return float(np.mean(y)), sd if sd > 1e-12 else 1.0


def fit_joint(objectives: list[Objective], weights: dict[str, float], X: dict,
              y: dict[str, dict[str, np.ndarray]], model, seed: int) -> JointModel:
    """The joint model of the weighted losses, on the train rows that carry
    every label (early stopping on the valid rows that do)."""
    from ._train import make_learner

    names = [o.name for o in objectives]
    keep = {p: np.all([np.isfinite(y[n][p]) for n in names], axis=0)
            for p in ("train", "valid")}
    scale = {n: _standardise(y[n]["train"][keep["train"]]) for n in names}
    z = {p: {n: (y[n][p][keep[p]] - scale[n][0]) / scale[n][1] for n in names}
         for p in ("train", "valid")}
    Xt, Xv = X["train"][keep["train"]], X["valid"][keep["valid"]]
    if all(o.task == "regression" for o in objectives):
        # exact: squared losses sum to one squared loss on the weighted mean
        zbar = {p: sum(weights[n] * z[p][n] for n in names) for p in z}
        spec = model.model_copy(update={"loss": "default", "search": None,
                                        "intervals": None})
        booster = make_learner("regression", spec, 1, seed).fit(
            Xt, zbar["train"], Xv, zbar["valid"])
        return JointModel("lightgbm", weights, scale, booster=booster)
    from sklearn.neural_network import MLPRegressor

    if hasattr(Xt, "data") and np.isnan(Xt.data).any() or (
            not hasattr(Xt, "data") and np.isnan(np.asarray(Xt)).any()):
        raise ModelError("problem.combine: the joint network cannot take missing "
                         "values: give every numeric feature an impute other than "
                         "none")
    T = np.column_stack([np.sqrt(weights[n]) * z["train"][n] for n in names])
    net = MLPRegressor(hidden_layer_sizes=(32,), alpha=1e-3, learning_rate_init=1e-3,
                       max_iter=60, early_stopping=True, n_iter_no_change=5,
                       random_state=seed)
    import warnings

    from sklearn.exceptions import ConvergenceWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        net.fit(Xt, T)
    return JointModel("mlp", weights, scale,
                      net=JointNet([np.asarray(c) for c in net.coefs_],
                                   [np.asarray(b) for b in net.intercepts_]))


def _rank_metric(task: str, y: np.ndarray, score: np.ndarray) -> float | None:
    """How well ``score`` ranks rows by an objective: Spearman correlation
    with a value, ROC-AUC for a binary label."""
    ok = np.isfinite(y)
    y, score = y[ok], score[ok]
    if len(y) < 3:
        return None
    if task == "binary":
        from sklearn.metrics import roc_auc_score

        return round(float(roc_auc_score(y, score)), 6) if len(set(y)) == 2 else None
    from scipy.stats import spearmanr

    rho = spearmanr(y, score).statistic
    return None if not np.isfinite(rho) else round(float(rho), 6)


def grid(names: list[str], base: dict[str, float], points: int
         ) -> list[dict[str, float]]:
    """Weights from all on the first objective to none on it, the others
    sharing the rest as their spec weights do."""
    rest = {n: base[n] for n in names[1:]}
    total = sum(rest.values())
    out = []
    for a in np.linspace(1.0, 0.0, points):
        w = {names[0]: float(a)}
        w.update({n: float((1 - a) * v / total) for n, v in rest.items()})
        out.append({k: round(v, 6) for k, v in w.items()})
    return out


def fit_objectives(problem, model, *, main: Learner, X: dict,
                   labels: dict[str, dict[str, np.ndarray]], seed: int,
                   weights: np.ndarray | None = None, grid_points: int = 11,
                   joint_points: int = 3) -> tuple[ObjectiveModels, dict[str, Any]]:
    """Fit a model per objective (the primary's is ``main``), the joint
    model at the spec's weights, and measure both along a grid of weights.

    ``labels[name][split]``: each objective's labels (NaN: none; binary as
    0/1).
    """
    from ._metrics import task_metrics
    from ._train import make_learner

    objectives = []
    for name, o in problem.objectives.items():
        if o.target == problem.target:
            learner = main
        else:
            yt = labels[name]["train"]
            ok = np.isfinite(yt)
            okv = np.isfinite(labels[name]["valid"])
            spec = model.model_copy(update={"search": None, "intervals": None,
                                            "loss": "default", "calibration": "none",
                                            "class_weight": "none"})
            learner = make_learner(o.task, spec, 2 if o.task == "binary" else 1,
                                   seed).fit(
                X["train"][ok], yt[ok].astype(int) if o.task == "binary" else yt[ok],
                X["valid"][okv], labels[name]["valid"][okv].astype(int)
                if o.task == "binary" else labels[name]["valid"][okv],
                sample_weight=None if weights is None else weights[ok])
        objectives.append(Objective(name, o.target, o.task, o.weight, learner))
    for obj in objectives:  # standardise each output by its train predictions
        obj.mean, obj.sd = _standardise(obj.learner.predict(X["train"]))
    models = ObjectiveModels(mode=problem.combine, objectives=objectives)
    base = models.weights
    names = models.names
    t0 = time.perf_counter()
    models.joint = fit_joint(objectives, base, X, labels, model, seed)
    joint_seconds = time.perf_counter() - t0

    test_out = models.outputs(X["test"])
    per_objective = {}
    for o in objectives:
        y = labels[o.name]["test"]
        ok = np.isfinite(y)
        m = task_metrics(o.task, y[ok].astype(int) if o.task == "binary" else y[ok],
                         test_out[o.name][ok], 0.5)
        per_objective[o.name] = {"target": o.target, "task": o.task,
                                 "weight": base[o.name],
                                 "metrics": {k: m.get(k) for k in (
                                     ("rmse", "mae", "r2") if o.task == "regression"
                                     else ("roc_auc", "pr_auc", "log_loss"))},
                                 "output_mean": round(o.mean, 6),
                                 "output_sd": round(o.sd, 6)}

    def measure(score: np.ndarray) -> dict[str, float | None]:
        return {o.name: _rank_metric(o.task, labels[o.name]["test"], score)
                for o in objectives}

    tradeoff: dict[str, Any] = {"decoupled": [], "joint": []}
    t0 = time.perf_counter()
    for w in grid(names, base, grid_points):
        tradeoff["decoupled"].append({"weights": w,
                                      **measure(models.combine(test_out, w))})
    decoupled_seconds = (time.perf_counter() - t0) / grid_points
    t0 = time.perf_counter()
    # the joint model is retrained for each move: interior points of the grid
    # (at an end, it is one objective's model)
    for w in grid(names, base, joint_points + 2)[1:-1]:
        jm = fit_joint(objectives, normalised(w), X, labels, model, seed)
        tradeoff["joint"].append({"weights": {k: round(v, 6) for k, v in w.items()},
                                  **measure(jm.predict(X["test"]))})
    joint_move = (time.perf_counter() - t0) / joint_points
    at_spec = {"decoupled": measure(models.combine(test_out)),
               "joint": measure(models.joint.predict(X["test"]))}
    summary = {
        "mode": problem.combine, "weights": base, "objectives": per_objective,
        "combined_at_spec_weights": at_spec,
        "rank_metric": {o.name: "roc_auc" if o.task == "binary" else "spearman"
                        for o in objectives},
        "joint_kind": models.joint.kind,
        "joint_note": ("exact: gradient boosting on the weighted mean of the "
                       "standardised targets" if models.joint.kind == "lightgbm"
                       else "approximate: a two-output network with squared loss on "
                       "the standardised targets (a binary objective's log loss "
                       "is replaced by the squared error of its label)"),
        "tradeoff": tradeoff,
        "seconds_per_move": {"decoupled": round(decoupled_seconds, 6),
                             "joint": round(joint_move, 3)},
        "how_weights_change": {"decoupled": "per request or config, no retraining",
                               "joint": "retraining"},
        "joint_fit_seconds": round(joint_seconds, 3)}
    return models, summary
