"""ONNX export of the learner: the same scores as native scoring on the same
float32 inputs, for every learner and task; refused where the learner alone
does not make the scores."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.datasets import load_breast_cancer, load_diabetes, load_wine

import mlsd
from mlsd.errors import ModelError
from mlsd.models import LightGBMLearner, LinearLearner, ModelArtifact
from mlsd.models._onnx import learner_to_onnx, parity
from mlsd.pipeline import Project
from tests._helpers import diabetes_project, run_cli

pytest.importorskip("onnxruntime")

CASES = [("binary", load_breast_cancer, 2), ("multiclass", load_wine, 3),
         ("regression", load_diabetes, 1)]


@pytest.mark.parametrize("cls", [LightGBMLearner, LinearLearner])
@pytest.mark.parametrize("task, loader, k", CASES)
def test_onnx_scores_as_the_learner_does(cls, task, loader, k):
    X, y = loader(return_X_y=True)
    X = (X - X.mean(0)) / X.std(0)  # a linear model wants scaled inputs
    learner = cls(task=task, n_classes=k, params={"n_estimators": 60}
                  if cls is LightGBMLearner else {}).fit(sp.csr_matrix(X), y)
    model = learner_to_onnx(learner, X.shape[1])
    p = parity(learner, model, sp.csr_matrix(X))
    assert p["ok"], p
    assert p["max_gap_float32"] < 1e-5 * max(1.0, float(np.abs(y).max()))


def test_float32_splits_decide_as_lightgbms_float64_ones():
    """cos(2 pi h / 24) gives twins a bit apart (hours 11 and 13); LightGBM
    splits between them, at a float64 threshold that the converter rounds to
    the nearest float32: on float32 inputs ONNX then went the other way
    (a gap of 5.3 hours before the thresholds were rounded down)."""
    rng = np.random.default_rng(0)
    h = rng.integers(0, 24, 6000).astype(float)
    x = sp.csr_matrix(np.column_stack([np.cos(2 * np.pi * h / 24),
                                       rng.normal(size=len(h))]))
    learner = LightGBMLearner(task="regression", params={
        "n_estimators": 50, "min_data_in_leaf": 5}).fit(x, h)
    p = parity(learner, learner_to_onnx(learner, 2), x)
    assert p["ok"] and p["max_gap_float32"] < 1e-4, p
    # the twins themselves cannot survive float32: mlsd's own features
    # round their waves so that they are equal (see the export test below)
    assert p["rows_moved"] > 0


def test_models_whose_scores_need_more_than_the_learner_are_refused():
    X, y = load_breast_cancer(return_X_y=True)
    learner = LightGBMLearner(task="binary", n_classes=2,
                              params={"n_estimators": 20}).fit(sp.csr_matrix(X), y)
    learner.calibration_ = {"kind": "platt", "a": 1.0, "b": 0.0}
    with pytest.raises(ModelError, match="calibration map"):
        learner_to_onnx(learner, X.shape[1])
    learner.calibration_ = None
    with pytest.raises(ModelError, match="prediction intervals"):
        learner_to_onnx(learner, X.shape[1], {"intervals": {"method": "cqr"}})


def test_export_of_the_example_model_matches_mlsd_on_its_test_rows(
        ran_project, tmp_path):
    folder, summary = ran_project
    out = tmp_path / "spam.onnx"
    res = json.loads(run_cli("models", "export", summary["model"]["model_id"],
                             "-o", str(out), "--json", cwd=folder).stdout)
    p = res["parity"]
    assert p["ok"] and p["rows"] > 1000
    # periodic features are rounded, so float32 inputs split as float64 ones
    assert p["rows_moved"] == 0, p
    side = json.loads(Path(f"{out}.json").read_text())
    assert side["input"] == "features" and len(side["features"]) == res["n_features"]
    proc = run_cli("models", "export", summary["model"]["model_id"], "-o",
                   str(tmp_path / "spam.bin"), cwd=folder, check=False)
    assert proc.returncode == 2 and "must end in .onnx" in proc.stderr


def test_the_spec_saves_a_checked_onnx_copy_in_the_artifact(tmp_path):
    folder = diabetes_project(tmp_path)
    s = mlsd.run(Project.of(folder).with_overrides(["model.onnx=true"]))
    model_dir = folder / s["paths"]["model"]
    manifest = json.loads((model_dir / "manifest.json").read_text())
    assert {"model.onnx", "model.onnx.json"} <= set(manifest["files"])
    assert manifest["onnx"]["parity"]["ok"]
    ModelArtifact.load(model_dir)  # hashed with the rest
    (model_dir / "model.onnx").write_bytes(b"x")
    with pytest.raises(ModelError, match="changed since"):
        ModelArtifact.load(model_dir)
