"""Hyper-parameter search: Optuna's TPE over the learner's parameters, each
trial fitted exactly as the final model is (resampling, weights, augmented
rows, early stopping on validation) and scored on the validation split.

The test split is never passed in: the search sees the train and valid
matrices only, and the test is read once, by the final model, after it.
The spec's own parameters are scored first and kept when no trial beats
them. ``trials`` bounds the count (the search is reproducible when the count,
not the clock, stops it), ``seconds`` the time.
"""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np

from ..errors import ModelError

SPACES: dict[tuple[str, str], dict[str, list]] = {
    ("lightgbm", "any"): {
        "num_leaves": [8, 128, "log"], "learning_rate": [0.01, 0.3, "log"],
        "min_data_in_leaf": [5, 100, "log"], "feature_fraction": [0.5, 1.0],
        "bagging_fraction": [0.5, 1.0], "lambda_l2": [0.001, 10.0, "log"]},
    ("linear", "classification"): {"C": [0.001, 100.0, "log"]},
    ("linear", "regression"): {"alpha": [0.001, 100.0, "log"]},
}
"""The default search space of each learner: ``[low, high]`` (integers when
both are), ``"log"`` for a log scale, or ``{"choices": [...]}``."""


def default_space(kind: str, task: str) -> dict[str, Any]:
    if kind == "lightgbm":
        return dict(SPACES[("lightgbm", "any")])
    return dict(SPACES[(kind, "regression" if task == "regression"
                        else "classification")])


def objective_metric(task: str, loss: str, quantile: float) -> tuple[str, bool]:
    """The validation metric a search optimises: the task's primary metric,
    or the one the loss estimates (absolute: MAE; quantile: pinball)."""
    from ._metrics import PRIMARY

    if task == "regression" and loss == "absolute":
        return "mae", False
    if task == "regression" and loss == "quantile":
        return f"pinball_{quantile:g}", False
    return PRIMARY[task]


def _suggest(trial, name: str, rng: Any):
    if isinstance(rng, dict):
        return trial.suggest_categorical(name, list(rng["choices"]))
    low, high = rng[0], rng[1]
    log = len(rng) > 2 and rng[2] == "log"
    if isinstance(low, int) and isinstance(high, int) and not isinstance(
            low, bool):
        return trial.suggest_int(name, low, high, log=log)
    return trial.suggest_float(name, float(low), float(high), log=log)


def search(problem, model, *, X: dict, y: dict, classes: list, seed: int,
           weights: np.ndarray | None, imbalance, added=None,
           progress=None) -> tuple[dict[str, Any], dict[str, Any]]:
    """The parameters to fit the final model with, and what the search did.

    ``X``/``y``: the train and valid rows (a ``test`` entry is ignored).
    ``progress(done, best)`` is called after each trial.
    """
    import optuna

    from ._metrics import task_metrics
    from ._train import fit_learner

    spec = model.search
    task = problem.task
    X = {"train": X["train"], "valid": X["valid"]}  # never the test split
    y = {"train": y["train"], "valid": y["valid"]}
    space = {**default_space(model.kind, task), **(spec.space or {})}
    if model.kind == "lightgbm" and "num_leaves" in space and "max_depth" in (
            model.params or {}):
        space.pop("num_leaves")  # the spec bounds the trees already
    metric, higher = objective_metric(task, model.loss, model.quantile)

    def score(params: dict[str, Any]) -> tuple[float, int | None]:
        p = {**(model.params or {}), **params}
        if p.get("bagging_fraction", 1.0) < 1.0:
            p.setdefault("bagging_freq", 1)  # LightGBM bags only with a frequency
        m = model.model_copy(update={"params": p, "search": None})
        learner, _ = fit_learner(problem, m, imbalance.resample, X=X, y=y,
                                 classes=classes, seed=seed, weights=weights,
                                 imbalance=imbalance, added=added)
        out = learner.predict(X["valid"])
        if metric.startswith("pinball_"):
            d = y["valid"] - out
            q = model.quantile
            value = float(np.mean(np.maximum(q * d, (q - 1) * d)))
        else:
            value = task_metrics(task, y["valid"], out, 0.5).get(metric)
        rounds = getattr(getattr(learner, "booster_", None), "best_iteration", None)
        if value is None or not math.isfinite(value):
            raise ModelError(f"model.search: the validation {metric} cannot be "
                             f"computed (too few rows of a class in valid?)")
        return float(value), rounds or None

    started = time.perf_counter()
    spec_value, spec_rounds = score({})
    history: list[dict[str, Any]] = []

    def objective(trial) -> float:
        params = {name: _suggest(trial, name, rng) for name, rng in space.items()}
        t0 = time.perf_counter()
        value, rounds = score(params)
        history.append({"trial": trial.number, "value": round(value, 6),
                        "params": {k: (round(v, 6) if isinstance(v, float) else v)
                                   for k, v in params.items()},
                        "rounds": rounds,
                        "seconds": round(time.perf_counter() - t0, 3)})
        if progress is not None:
            progress(len(history), value)
        return value

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize" if higher else "minimize",
                                sampler=optuna.samplers.TPESampler(seed=seed))
    left = None if spec.seconds is None else max(
        0.0, spec.seconds - (time.perf_counter() - started))
    try:
        study.optimize(objective, n_trials=spec.trials, timeout=left)
    except ModelError:
        raise
    except (ValueError, TypeError) as err:  # a bad range or parameter
        raise ModelError(f"model.search: {err}") from None
    done = [t for t in study.trials if t.value is not None]
    best_trial = study.best_trial if done else None
    better = best_trial is not None and (
        best_trial.value > spec_value if higher else best_trial.value < spec_value)
    chosen = dict(best_trial.params) if better else {}
    params = {**(model.params or {}), **chosen}
    if params.get("bagging_fraction", 1.0) < 1.0:
        params.setdefault("bagging_freq", 1)
    best_so_far, run = [], None
    for h in history:
        run = h["value"] if run is None else (max(run, h["value"]) if higher
                                              else min(run, h["value"]))
        best_so_far.append(run)
    for h, b in zip(history, best_so_far, strict=True):
        h["best"] = b
    report = {
        "metric": metric, "higher_is_better": higher, "on": "valid",
        "trials": len(history), "trials_asked": spec.trials,
        "seconds_asked": spec.seconds,
        "seconds": round(time.perf_counter() - started, 3),
        "stopped_by": "trials" if len(history) >= spec.trials else "time",
        "space": space, "spec_params_value": round(spec_value, 6),
        "spec_params_rounds": spec_rounds,
        "best_value": round(best_trial.value, 6) if best_trial else None,
        "chosen": "search" if better else "the spec's parameters",
        "params": params, "history": history,
        "sampler": f"TPE (seed {seed})"}
    return params, report
