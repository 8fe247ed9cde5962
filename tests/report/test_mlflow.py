"""Runs logged to MLflow (a SQLite store in the project): parameters,
metrics, mlsd's ids and artifacts; a tracker that fails is a warning."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import mlsd
from mlsd.pipeline import Project
from tests._helpers import diabetes_project, run_cli

pytest.importorskip("mlflow")


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    return diabetes_project(tmp_path_factory.mktemp("mlflow"))


def test_a_run_is_logged_with_its_metrics_ids_and_report(project):
    from mlflow.tracking import MlflowClient

    s = mlsd.run(Project.of(project).with_overrides(
        ["tracking.mlflow_uri=sqlite:///mlflow.db", "tracking.experiment=diab"]))
    res = s["tracking"]
    assert res["experiment"] == "diab" and (project / "mlflow.db").is_file()
    client = MlflowClient(tracking_uri=f"sqlite:///{project / 'mlflow.db'}")
    run = client.get_run(res["mlflow_run_id"])
    test = s["model"]["metrics"]["model"]["test"]
    assert run.data.metrics["test_rmse"] == pytest.approx(test["rmse"])
    low, high = s["model"]["metrics"]["bootstrap"]["intervals"]["model"]["rmse"]
    assert run.data.metrics["test_rmse_low"] == pytest.approx(low)
    assert run.data.params["problem.target"] == "target"
    assert run.data.tags["mlsd.run_id"] == s["run_id"]
    assert run.data.tags["mlsd.model_id"] == s["model"]["model_id"]
    names = {a.path for a in client.list_artifacts(res["mlflow_run_id"])}
    assert names == {f"{s['run_id']}.html", "manifest.json"}
    assert (project / "mlruns").is_dir()  # next to the database, in the project
    # the same run again, by command, into another experiment
    proc = run_cli("track", s["run_id"], "--uri", "sqlite:///mlflow.db",
                   "--experiment", "again", "--json", cwd=project)
    again = json.loads(proc.stdout)
    assert again["experiment"] == "again" and again["metrics"] == res["metrics"]


def test_a_tracker_that_fails_is_a_warning_and_the_run_stands(project, tmp_path):
    s = mlsd.run(Project.of(project).with_overrides(
        ["tracking.mlflow_uri=http://127.0.0.1:9"]))
    assert s["model"]["model_id"]
    assert "not logged to MLflow at http://127.0.0.1:9" in s["tracking"]["warning"]
    proc = run_cli("track", cwd=project, check=False)
    assert proc.returncode == 2 and "no MLflow tracking URI" in proc.stderr
