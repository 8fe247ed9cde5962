"""Hyper-parameter search: on validation only, reproducible by its trial
count, time-boxed, and never worse on validation than the spec's own
parameters; reachable from the spec, `mlsd tune` and Python."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
import yaml
from pydantic import ValidationError
from sklearn.datasets import load_breast_cancer

import mlsd
from mlsd.models import search
from mlsd.pipeline import Project
from mlsd.spec import ImbalanceSpec, ModelSpec, ProblemSpec, SearchSpec
from tests._helpers import diabetes_project, run_cli


class NoTest(dict):
    """Matrices whose test entry fails the test if anything reads it."""

    def __getitem__(self, key):
        if key == "test":
            raise AssertionError("the search read the test split")
        return super().__getitem__(key)


def _cancer():
    X, y = load_breast_cancer(return_X_y=True)
    rng = np.random.default_rng(0)
    order = rng.permutation(len(y))
    X, y = sp.csr_matrix(X[order]), y[order]
    parts = {"train": slice(0, 350), "valid": slice(350, 460), "test": slice(460, None)}
    return (NoTest({k: X[v] for k, v in parts.items()}),
            NoTest({k: y[v] for k, v in parts.items()}))


PROBLEM = ProblemSpec(task="binary", target="y", positive=1)


def _search(model: ModelSpec):
    X, y = _cancer()
    return search(PROBLEM, model, X=X, y=y, classes=[0, 1], seed=7, weights=None,
                  imbalance=ImbalanceSpec())


def test_the_search_never_reads_the_test_split_and_repeats_itself():
    model = ModelSpec(params={"n_estimators": 60}, search=SearchSpec(trials=6))
    params, report = _search(model)
    assert report["trials"] == 6 and report["stopped_by"] == "trials"
    assert report["metric"] == "pr_auc" and report["on"] == "valid"
    assert [h["trial"] for h in report["history"]] == list(range(6))
    best = max(h["value"] for h in report["history"])
    assert report["best_value"] == best
    assert report["history"][-1]["best"] == best
    if report["chosen"] == "search":
        assert best > report["spec_params_value"]
        top = max(report["history"], key=lambda h: h["value"])["params"]
        assert params["num_leaves"] == top["num_leaves"]
    again = _search(model)[1]
    assert [h["value"] for h in again["history"]] == [
        h["value"] for h in report["history"]]


def test_the_spec_parameters_stay_when_no_trial_beats_them():
    model = ModelSpec(kind="linear", params={"C": 1.0, "max_iter": 5000},
                      search=SearchSpec(trials=3, space={"C": {"choices": [1e-6]}}))
    params, report = _search(model)
    assert report["chosen"] == "the spec's parameters"
    assert params == {"C": 1.0, "max_iter": 5000}
    assert report["best_value"] < report["spec_params_value"]


def test_the_time_box_stops_the_search():
    model = ModelSpec(params={"n_estimators": 60},
                      search=SearchSpec(trials=10_000, seconds=1.5))
    _, report = _search(model)
    assert report["stopped_by"] == "time" and 1 <= report["trials"] < 10_000
    assert report["seconds"] < 1.5 + 5  # the last trial finishes


@pytest.mark.parametrize("space, message", [
    ({"num_leaves": [64, 8]}, "must be below"),
    ({"learning_rate": [0, 1, "log"]}, "log scale needs low above 0"),
    ({"num_leaves": [8, 64, "ln"]}, "expected \\[low, high\\]"),
    ({"boosting": {"choices": []}}, "at least one value")])
def test_search_spaces_that_cannot_be_searched_are_refused(space, message):
    with pytest.raises(ValidationError, match=message):
        SearchSpec(space=space)


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    return diabetes_project(tmp_path_factory.mktemp("search"))


def test_a_run_searches_then_fits_with_what_it_chose(project):
    s = mlsd.run(Project.of(project).with_overrides(
        ["model.search={trials: 5, space: {num_leaves: [4, 16]}}"]))
    found = s["model"]["metrics"]["search"]
    assert found["trials"] == 5 and found["metric"] == "rmse"
    manifest = json.loads((project / s["paths"]["model"] / "manifest.json"
                           ).read_text())
    assert manifest["params"] == found["params"]
    html = (project / s["paths"]["report"]).read_text()
    assert "Hyper-parameter search" in html and "search-plot" in html


def test_tune_writes_a_spec_with_the_chosen_parameters(project):
    proc = run_cli("tune", "--trials", "4", "--write", "mlsd.tuned.yaml", "--json",
                   cwd=project)
    found = json.loads(proc.stdout)
    doc = yaml.safe_load((project / "mlsd.tuned.yaml").read_text())
    assert doc["model"]["params"] == found["params"]
    assert "search" not in doc["model"]
    assert "valid rmse" in (project / "mlsd.tuned.yaml").read_text().splitlines()[0]
    proc = run_cli("tune", "--write", "../elsewhere.yaml", cwd=project, check=False)
    assert proc.returncode == 2 and "escapes the project folder" in proc.stderr
    proc = run_cli("tune", "--write", "sub/t.yaml", cwd=project, check=False)
    assert proc.returncode == 2 and "next to mlsd.yaml" in proc.stderr
