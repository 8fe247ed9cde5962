"""The model registry: aliases, promotions and rollbacks that change what
`mlsd serve` answers with, and two models compared on the same rows."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pytest
from fastapi.testclient import TestClient
from sklearn.datasets import load_breast_cancer

import mlsd
from mlsd.errors import ModelError
from mlsd.models import ModelArtifact, compare, model_parts
from mlsd.pipeline import Project, compare_models, promote_model, rollback_model
from mlsd.serve import create_app
from tests._helpers import run_cli

WEAK = ["model.params.n_estimators=1", "model.params.num_leaves=2"]


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """A small binary project (breast cancer, 569 rows) with two models: a
    weak one (one tree of two leaves), then the default."""
    tmp = tmp_path_factory.mktemp("registry")
    frame = load_breast_cancer(as_frame=True).frame
    frame.columns = [c.replace(" ", "_") for c in frame.columns]
    data = tmp / "cancer.csv"
    frame.to_csv(data, index=False)
    folder = tmp / "proj"
    mlsd.init(folder, str(data), target="target")
    mlsd.run(Project.of(folder).with_overrides(WEAK))
    mlsd.run(folder)
    return folder


def _models(folder: Path) -> list[str]:
    return [a["artifact_id"] for a in Project.of(folder).catalog.artifacts("model")]


def _served(folder: Path) -> str:
    """The model id the service answers with, chosen as `mlsd serve` does."""
    proj = Project.of(folder)
    path, _ = proj.which_model(None)
    with TestClient(create_app(path, proj.spec.serve)) as c:
        return c.get("/model").json()["model_id"]


def test_promotion_and_rollback_change_what_serve_answers_with(project):
    weak, strong = _models(project)[:2]
    assert Project.of(project).which_model(None)[1] == "the latest model"
    assert _served(project) == strong
    assert promote_model(project, weak)["changed"]  # champion: the weak one
    assert _served(project) == weak  # the champion, not the latest
    assert Project.of(project).which_model(None) == (
        Project.of(project).find_model(weak), "alias champion")
    res = promote_model(project, strong, reason="better")
    assert res == {"alias": "champion", "model_id": strong, "previous": weak,
                   "changed": True}
    assert _served(project) == strong
    assert not promote_model(project, "champion")["changed"]  # no event
    assert rollback_model(project, reason="alerts") == {
        "alias": "champion", "from": strong, "model_id": weak}
    assert _served(project) == weak
    with pytest.raises(ModelError, match="no earlier one"):
        rollback_model(project)
    assert _served(project) == weak  # a refused rollback changes nothing
    history = Project.of(project).catalog.alias_history("champion")
    assert [(e["action"], e["artifact_id"], e["undone"]) for e in history] == [
        ("promote", weak, 0), ("promote", strong, 1), ("rollback", weak, 0)]
    assert history[2]["reason"] == "alerts"
    # the CLI, and the spec's serve.model naming an alias
    proc = run_cli("models", "promote", strong, "--alias", "challenger",
                   "--json", cwd=project)
    assert json.loads(proc.stdout)["model_id"] == strong
    listed = json.loads(run_cli("models", "--json", cwd=project).stdout)
    assert {r["model_id"]: r["aliases"] for r in listed}[strong] == ["challenger"]
    proj = Project.of(project).with_overrides(["serve.model=challenger"])
    assert proj.which_model(None) == (proj.find_model(strong),
                                      "serve.model in the spec: alias challenger")
    aliases = json.loads(run_cli("models", "aliases", "--json", cwd=project).stdout)
    assert [a["alias"] for a in aliases] == ["challenger", "champion"]
    walked = json.loads(run_cli("lineage", "challenger", "--json", cwd=project).stdout)
    assert walked["model_id"] == strong


@pytest.mark.parametrize("name, message", [
    ("Champion", "lower-case"), ("2nd", "starting with a letter"),
    ("m2", "start of model id")])
def test_alias_names_that_would_mislead_are_refused(project, name, message):
    with pytest.raises(ModelError, match=message):
        promote_model(project, _models(project)[0], name)


def test_compare_scores_both_models_on_the_same_rows(project):
    weak, strong = _models(project)[:2]
    res = compare_models(project, weak, strong, replicates=300)
    proj = Project.of(project)
    own = {m: ModelArtifact.load(proj.find_model(m)).manifest["metrics"]["model"][
        "test"] for m in (weak, strong)}
    # both share the split: the rows are B's test rows, nothing left out, and
    # each model's figures are its own test metrics
    assert res["excluded_seen_by_a"] == 0
    assert res["rows"] == own[strong]["rows"]
    for name, m in res["metrics"].items():
        assert m["a"] == own[weak][name], name
        assert m["b"] == own[strong][name], name
        for side in ("a", "b"):
            lo, hi = m[f"{side}_interval"]
            assert lo - 1e-9 <= m[side] <= hi + 1e-9, (name, side)
    assert res["margin"]["b_over_a"] > 0
    assert res["margin"]["interval"][0] > 0
    assert res["verdict"] == f"{strong} is better"
    same = compare_models(project, strong, strong, replicates=300)
    assert same["margin"]["interval"] == [0.0, 0.0]
    assert same["verdict"] == "no difference the rows can show"


def test_compare_leaves_out_rows_the_first_model_saw(project):
    weak, strong = _models(project)[:2]
    proj = Project.of(project)
    a, b = (ModelArtifact.load(proj.find_model(m)) for m in (weak, strong))
    parts = model_parts(proj.lake, b.manifest)
    rows = pa.concat_tables([parts["test"], parts["train"].slice(0, 40)])
    res = compare(a=a, b=b, rows=rows, seen_by_a=parts["train"], replicates=200)
    assert res["excluded_seen_by_a"] == 40
    assert res["rows"] == parts["test"].num_rows


def test_compare_on_a_labelled_file_counts_rows_that_do_not_fit(project, tmp_path):
    weak, strong = _models(project)[:2]
    src = next((project / "data").glob("*.csv"))
    lines = src.read_text().splitlines()
    bad = lines[1].split(",")
    bad[0] = "not a number"
    holdout = tmp_path / "holdout.csv"
    holdout.write_text("\n".join([lines[0], *lines[1:120], ",".join(bad)]) + "\n")
    proc = run_cli("models", "compare", weak, strong, "--on", str(holdout),
                   "--json", cwd=project)
    res = json.loads(proc.stdout)
    assert res["rows"] == 119 and res["rejected"] == 1
    assert res["rejected_rows"][0]["line"] == 121
    unlabelled = tmp_path / "unlabelled.csv"
    unlabelled.write_text("\n".join(",".join(line.split(",")[:-1])
                                    for line in lines[:50]) + "\n")
    proc = run_cli("models", "compare", weak, strong, "--on", str(unlabelled),
                   cwd=project, check=False)
    assert proc.returncode == 2
    assert "no 'target' column" in proc.stderr


def test_a_run_compares_with_the_champion_and_promotes_only_when_better(project):
    weak = _models(project)[0]
    promote_model(project, weak, "champion", reason="start from the weak one")
    s = mlsd.run(Project.of(project).with_overrides(
        ["registry.promote_if_better=true", "registry.alias=challenger"]))
    new = s["model"]["model_id"]
    c = s["registry"]["compared"]
    assert (c["alias"], c["a"], c["b"]) == ("champion", weak, new)
    assert c["margin"]["interval"][0] > 0
    assert s["registry"]["promotion_note"] == "promoted to champion"
    catalog = Project.of(project).catalog
    assert catalog.alias("champion") == new and catalog.alias("challenger") == new
    # a weak run does not take the alias from a better champion
    s = mlsd.run(Project.of(project).with_overrides(
        [*WEAK, "registry.promote_if_better=true"]))
    assert s["registry"]["compared"]["a"] == new
    assert s["registry"]["promotion_note"].startswith("not promoted to champion")
    assert catalog.alias("champion") == new
    html = (project / s["paths"]["report"]).read_text()
    assert "Against the champion" in html and "not promoted to champion" in html
