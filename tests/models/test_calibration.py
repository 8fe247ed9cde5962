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
