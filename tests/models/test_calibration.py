"""Calibration on validation lowers the Brier score of a miscalibrated model."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from mlsd.features import Block
from mlsd.models import LightGBMLearner, train
from mlsd.models._calibration import apply_calibration, fit_calibration
from mlsd.spec import ModelSpec, ProblemSpec


def _data(n=9000, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 3))
    p = 1 / (1 + np.exp(-(x[:, 0] * 1.5 - 3.5)))  # about 7% positive
    y = (rng.random(n) < p).astype(int)
    X = sp.csr_matrix(x)
    parts = {"train": slice(0, 5000), "valid": slice(5000, 7000),
             "test": slice(7000, n)}
    return ({k: X[v] for k, v in parts.items()}, {k: y[v] for k, v in parts.items()})


@pytest.mark.parametrize("kind", ["isotonic", "platt"])
def test_calibration_lowers_the_brier_score_of_a_weighted_model(kind, tmp_path):
    X, y = _data()
    kw = {"X": X, "y": y, "classes": [0, 1], "names": ["a", "b", "c"],
          "blocks": [Block("x", "numeric", 0, 3, ("x",))], "seed": 0}
    problem = ProblemSpec(task="binary", target="y", positive=1)
    # balanced class weights push the scores of a rare class far too high
    model = ModelSpec(params={"n_estimators": 80}, class_weight="balanced",
                      calibration=kind)
    res = train(problem, model, **kw)
    c = res.metrics["calibration"]
    assert c["brier_after"] < 0.7 * c["brier_before"]
    assert res.metrics["model"]["test"]["brier"] == pytest.approx(c["brier_after"],
                                                                  abs=1e-6)
    rel = c["reliability_after"]
    gaps = np.abs(np.array(rel["predicted"]) - np.array(rel["observed"]))
    assert np.average(gaps, weights=rel["rows"]) < 0.05
    # kept with the model: loaded, it scores the same
    res.learner.save(tmp_path)
    again = LightGBMLearner.load(tmp_path, {"task": "binary", "n_classes": 2,
                                            **res.learner.meta()})
    assert np.allclose(again.predict(X["test"]), res.learner.predict(X["test"]))


def test_several_classes_are_calibrated_one_against_the_rest():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 3, 3000)
    raw = rng.dirichlet([1, 1, 1], 3000) * 0.5 + np.eye(3)[y] * 0.5
    cal = fit_calibration("isotonic", raw, y, "multiclass")
    out = apply_calibration(cal, raw)
    assert np.allclose(out.sum(axis=1), 1.0) and out.shape == raw.shape
    assert (out.argmax(1) == y).mean() >= (raw.argmax(1) == y).mean() - 0.01


def _regression(n=6000, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.uniform(-2, 2, size=(n, 2))
    noise = rng.normal(size=n) * (0.5 + 0.5 * np.abs(x[:, 0]))  # heteroscedastic
    return sp.csr_matrix(x), 2 * x[:, 0] + x[:, 1] + noise


@pytest.mark.parametrize("kind", ["lightgbm", "linear"])
@pytest.mark.parametrize("q", [0.1, 0.5, 0.9])
def test_quantile_losses_cover_their_nominal_rate_on_held_out_rows(kind, q):
    from mlsd.models._learners import LEARNERS

    X, y = _regression()
    params = {"n_estimators": 150} if kind == "lightgbm" else {}
    m = LEARNERS[kind](task="regression", params=params, seed=0,
                       loss={"kind": "quantile", "quantile": q})
    m.fit(X[:4000], y[:4000], X[4000:5000], y[4000:5000])
    covered = float(np.mean(y[5000:] <= m.predict(X[5000:])))
    assert abs(covered - q) < 0.05, (kind, q, covered)


@pytest.mark.parametrize("kind", ["lightgbm", "linear"])
def test_absolute_and_huber_losses_shrug_off_outliers(kind):
    from mlsd.models._learners import LEARNERS

    X, y = _regression(seed=1)
    clean = y.copy()
    bad = np.random.default_rng(2).random(len(y)) < 0.05
    y = np.where(bad, y + 60.0, y)  # 5% of the targets far too high
    params = {"n_estimators": 150} if kind == "lightgbm" else {}
    errors = {}
    for loss in ("default", "absolute", "huber"):
        m = LEARNERS[kind](task="regression", params=params, seed=0,
                           loss={"kind": loss, "delta": 1.0, "quantile": 0.5})
        m.fit(X[:4000], y[:4000], X[4000:5000], y[4000:5000])
        errors[loss] = float(np.median(np.abs(m.predict(X[5000:]) - clean[5000:])))
    assert errors["absolute"] < errors["default"] and errors["huber"] < errors[
        "default"], errors


def test_a_linear_model_refuses_parameters_it_does_not_have():
    from mlsd.errors import ModelError
    from mlsd.models._learners import LinearLearner

    X, y = _regression(200)
    with pytest.raises(ModelError, match="n_estimators is not a parameter of the "
                                         "linear model .Ridge."):
        LinearLearner(task="regression", params={"n_estimators": 5}).fit(X, y)
