"""Prediction intervals: the quantile pair covers its nominal rates, split
conformal and CQR cover the level asked on held-out rows, and the intervals
are saved, checked, served and scored with the model."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import scipy.sparse as sp
from fastapi.testclient import TestClient
from pydantic import ValidationError

import mlsd
from mlsd.models import LinearLearner, ModelArtifact
from mlsd.models._intervals import (
    conformal_quantile,
    fit_intervals,
    measure,
    tail_leaf_rows,
    wilson,
)
from mlsd.models._train import make_learner
from mlsd.pipeline import Project
from mlsd.serve import create_app
from mlsd.spec import ModelSpec
from tests._helpers import diabetes_project


def _hetero(n: int, seed: int) -> tuple[sp.csr_matrix, np.ndarray, np.ndarray]:
    """y = 2 x1 + noise whose spread grows with |x2|."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 3))
    scale = 0.2 + np.abs(x[:, 1])
    y = 2 * x[:, 0] + rng.normal(size=n) * scale
    return sp.csr_matrix(x), y, scale


def _parts(n: int, seed: int):
    X, y, scale = _hetero(n, seed)
    cut = [int(n * 0.6), int(n * 0.8)]
    idx = {"train": slice(0, cut[0]), "valid": slice(cut[0], cut[1]),
           "test": slice(cut[1], n)}
    return ({k: X[v] for k, v in idx.items()}, {k: y[v] for k, v in idx.items()},
            scale[idx["test"]])


def test_conformal_quantile_is_the_right_order_statistic():
    scores = np.arange(1, 20, dtype=float)  # n = 19
    assert conformal_quantile(scores, 0.9) == 18.0  # ceil(20 * 0.9) = 18th
    assert conformal_quantile(scores, 0.5) == 10.0
    assert math.isinf(conformal_quantile(scores[:5], 0.9))  # rank 6 of 5
    lo, hi = wilson(90, 100)
    assert lo < 0.9 < hi and round(hi - lo, 2) == 0.12


def test_every_method_covers_the_level_on_held_out_rows():
    X, y, scale = _parts(6000, seed=3)
    model = ModelSpec(params={"n_estimators": 200})
    main = make_learner("regression", model, 1, 0).fit(X["train"], y["train"],
                                                       X["valid"], y["valid"])

    def quantile(q):  # as train() makes them
        params = {**model.params, "min_data_in_leaf": tail_leaf_rows(q, 3600)}
        return make_learner("regression", model.model_copy(
            update={"loss": "quantile", "quantile": q, "params": params}), 1, 0)

    iv = fit_intervals("cqr", 0.9, main, quantile, X, y)
    res = measure(iv, X["test"], y["test"], main.predict(X["test"]))
    m = res["methods"]
    for method in ("conformal", "cqr"):
        assert 0.87 <= m[method]["coverage"] <= 0.94, (method, m[method])
    # the quantile models cover their own nominal rates within tolerance
    # (trees fit their training tails: out of sample they cover a little less,
    # which is what CQR corrects)
    below = res["quantile_pair"]["share_below"]
    assert abs(below[0] - 0.05) < 0.03 and abs(below[1] - 0.95) < 0.03, below
    assert tail_leaf_rows(0.05, 3600) == 360 and tail_leaf_rows(0.5, 3600) == 40
    # CQR's widths follow the noise; split conformal's are one width
    lo, hi = iv.bounds(X["test"], main.predict(X["test"]), "cqr")
    assert np.corrcoef(hi - lo, scale)[0, 1] > 0.6
    lo, hi = iv.bounds(X["test"], main.predict(X["test"]), "conformal")
    assert np.ptp(hi - lo) < 1e-9
    # on this noise, following it pays: a better interval score
    assert m["cqr"]["interval_score"] < m["conformal"]["interval_score"]


def test_split_conformal_holds_its_guarantee_over_many_draws():
    """Over 60 draws of small data, mean coverage >= the level (the split
    conformal guarantee is marginal: on average over calibration sets)."""
    covered = []
    for seed in range(60):
        X, y, _ = _parts(400, seed)
        main = LinearLearner(task="regression").fit(X["train"], y["train"])

        def quantile(q):
            return LinearLearner(task="regression",
                                 loss={"kind": "quantile", "quantile": q})

        iv = fit_intervals("conformal", 0.8, main, quantile, X, y)
        res = measure(iv, X["test"], y["test"], main.predict(X["test"]))
        covered.append(res["methods"]["conformal"]["coverage"])
    assert np.mean(covered) >= 0.8 - 0.01, np.mean(covered)
    assert np.mean(covered) <= 0.8 + 0.06  # and not by making it huge


def test_too_few_validation_rows_for_the_coverage_is_said():
    X, y, _ = _parts(60, 0)
    X["valid"], y["valid"] = X["valid"][:5], y["valid"][:5]
    main = LinearLearner(task="regression").fit(X["train"], y["train"])
    with pytest.raises(mlsd.errors.ModelError, match="at least 19"):
        fit_intervals("conformal", 0.95, main, lambda q: LinearLearner(
            task="regression", loss={"kind": "quantile", "quantile": q}), X, y)


@pytest.mark.parametrize("change, message", [
    ({"problem": {"task": "binary", "target": "y", "positive": 1}},
     "intervals are for regression"),
    ({"model": {"loss": "quantile", "intervals": {}}}, "already predicts one"),
    ({"model": {"intervals": {"coverage": 1.2}}}, "coverage")])
def test_intervals_where_they_make_no_sense_are_refused(change, message):
    from mlsd.spec import ProjectSpec

    doc = {"name": "p", "problem": {"task": "regression", "target": "y"},
           "sources": {"s": {"path": "data/s.csv"}}, "features": [{"column": "x"}],
           "model": {"intervals": {}}}
    for k, v in change.items():
        doc[k] = {**doc[k], **v} if k == "model" else v
    with pytest.raises(ValidationError, match=message):
        ProjectSpec.model_validate(doc)


@pytest.fixture(scope="module")
def ran(tmp_path_factory) -> tuple[Path, dict]:
    folder = diabetes_project(tmp_path_factory.mktemp("intervals"))
    s = mlsd.run(Project.of(folder).with_overrides(
        ["model.intervals={coverage: 0.8, method: cqr}"]))
    return folder, s


def test_a_run_measures_saves_and_serves_the_intervals(ran, tmp_path):
    folder, s = ran
    iv = s["model"]["metrics"]["intervals"]
    assert iv["served"] == "cqr" and iv["coverage"] == 0.8
    assert set(iv["methods"]) == {"quantile", "conformal", "cqr"}
    assert iv["quantile_pair"]["quantiles"] == [0.1, 0.9]
    html = (folder / s["paths"]["report"]).read_text()
    assert "Prediction intervals (80% asked)" in html and "interval-plot" in html
    model_dir = folder / s["paths"]["model"]
    art = ModelArtifact.load(model_dir)
    manifest = json.loads((model_dir / "manifest.json").read_text())
    assert {"interval_lower/model.lgb.txt",
            "interval_upper/model.lgb.txt"} <= set(manifest["files"])
    with TestClient(create_app(model_dir)) as c:
        row = {"age": 0.03, "sex": 0.05, "bmi": 0.06, "bp": 0.02, "s1": -0.04,
               "s2": -0.03, "s3": -0.04, "s4": 0.0, "s5": 0.02, "s6": -0.02}
        got = c.post("/predict", json=row).json()["predictions"][0]
    assert got["lower"] < got["upper"]
    X = art.pipeline.apply(pa.Table.from_pylist([row]))
    lo, hi = art.intervals.bounds(X, art.learner.predict(X))
    assert (got["lower"], got["upper"]) == pytest.approx((lo[0], hi[0]))
    # tampering with the quantile pair is caught at load
    (model_dir / "interval_upper" / "model.lgb.txt").write_text("tree\n")
    with pytest.raises(mlsd.errors.ModelError, match="changed since"):
        ModelArtifact.load(model_dir)
