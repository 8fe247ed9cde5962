"""Several objectives: decoupled models combined at prediction time with
weights that change without retraining, a joint model of the weighted
losses, the trade-off between them, served."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
from fastapi.testclient import TestClient
from pydantic import ValidationError

import mlsd
from mlsd.examples import write
from mlsd.models import ModelArtifact
from mlsd.models._objectives import Objective, fit_joint, grid, parse_weights
from mlsd.models._train import make_learner
from mlsd.pipeline import Project
from mlsd.serve import create_app
from mlsd.spec import ModelSpec, ProblemSpec

OBJ = {"quality": {"target": "rating", "task": "regression", "weight": 0.7},
       "engagement": {"target": "clicked", "task": "binary", "weight": 0.3}}


def test_objectives_in_the_spec():
    p = ProblemSpec(objectives=OBJ)
    assert (p.task, p.target, p.targets) == ("regression", "rating",
                                             ["rating", "clicked"])
    with pytest.raises(ValidationError, match="two or more"):
        ProblemSpec(objectives={"quality": OBJ["quality"]})
    with pytest.raises(ValidationError, match="share a target"):
        ProblemSpec(objectives={"a": OBJ["quality"], "b": OBJ["quality"]})
    with pytest.raises(ValidationError, match="must be one of the objectives"):
        ProblemSpec(task="binary", target="spam", objectives=OBJ)
    with pytest.raises(ValidationError, match="weight"):
        ProblemSpec(objectives={**OBJ, "quality": {**OBJ["quality"], "weight": 0}})
    assert parse_weights("quality:1,engagement:3", ["quality", "engagement"]) == {
        "quality": 0.25, "engagement": 0.75}
    for bad in ("quality:1", "quality:x,engagement:1", "q:1,engagement:1"):
        with pytest.raises(mlsd.errors.ModelError):
            parse_weights(bad, ["quality", "engagement"])


def test_the_joint_model_of_squared_losses_is_exact():
    """sum_k w_k (z_k - f)^2 = (z_bar - f)^2 + a constant: one regression on
    the weighted mean of the standardised targets minimises the joint loss."""
    rng = np.random.default_rng(0)
    z = rng.normal(size=(2, 50))
    w = np.array([0.7, 0.3])
    zbar = w @ z
    for f in rng.normal(size=(5, 50)):
        joint = (w[:, None] * (z - f) ** 2).sum(axis=0)
        assert np.allclose(joint - (zbar - f) ** 2, (w[:, None] * z ** 2).sum(0)
                           - zbar ** 2)
    # and the fitted joint model of two regression objectives is that booster
    x = rng.normal(size=(900, 3))
    X = {p: sp.csr_matrix(x[s]) for p, s in (("train", slice(0, 600)),
                                             ("valid", slice(600, 750)),
                                             ("test", slice(750, 900)))}
    ys = {"a": x[:, 0] * 10 + 50, "b": -x[:, 1]}
    labels = {k: {p: v[s] for p, s in (("train", slice(0, 600)),
                                       ("valid", slice(600, 750)),
                                       ("test", slice(750, 900)))}
              for k, v in ys.items()}
    model = ModelSpec(params={"n_estimators": 100})
    objs = [Objective(k, k, "regression", 1.0, make_learner("regression", model, 1, 0))
            for k in ys]
    jm = fit_joint(objs, {"a": 0.5, "b": 0.5}, X, labels, model, 0)
    assert jm.kind == "lightgbm"
    truth = 0.5 * (x[750:, 0] - 0) + 0.5 * (-x[750:, 1])  # standardised, about
    assert np.corrcoef(jm.predict(X["test"]), truth)[0, 1] > 0.9
    assert grid(["a", "b"], {"a": 0.5, "b": 0.5}, 3) == [
        {"a": 1.0, "b": 0.0}, {"a": 0.5, "b": 0.5}, {"a": 0.0, "b": 1.0}]


@pytest.fixture(scope="module")
def feed(tmp_path_factory) -> tuple[Path, dict]:
    folder = tmp_path_factory.mktemp("feed") / "feed"
    write("feed-ranking", folder, n_items=2500)
    return folder, mlsd.run(folder)


def test_the_feed_example_runs_both_modes_and_draws_the_tradeoff(feed):
    folder, s = feed
    ob = s["objectives"]
    assert ob["mode"] == "decoupled" and ob["weights"] == {"quality": 0.7,
                                                           "engagement": 0.3}
    assert ob["joint_kind"] == "mlp" and "approximate" in ob["joint_note"]
    assert ob["objectives"]["engagement"]["metrics"]["roc_auc"] > 0.6
    assert ob["objectives"]["quality"]["metrics"]["r2"] > 0.5
    d = ob["tradeoff"]["decoupled"]
    assert len(d) == 11 and len(ob["tradeoff"]["joint"]) == 3
    # the course's conflict: weight on engagement buys clicks and costs quality
    assert d[-1]["engagement"] > d[0]["engagement"] + 0.1
    assert d[0]["quality"] > d[-1]["quality"] + 0.3
    assert ob["seconds_per_move"]["decoupled"] < ob["seconds_per_move"]["joint"]
    html = (folder / s["paths"]["report"]).read_text()
    assert "Several objectives" in html and "tradeoff-plot" in html


def test_decoupled_weights_change_per_request_without_retraining(feed, tmp_path):
    folder, s = feed
    model_dir = folder / s["paths"]["model"]
    art = ModelArtifact.load(model_dir)
    files_before = {p: p.stat().st_mtime_ns for p in model_dir.rglob("*")}
    rows = [{"item_id": "x1", "shown_at": "2025-07-01T20:00:00Z",
             "category": "meme", "title": "shocking football this week",
             "words": 40, "has_image": True, "author_followers": 3000,
             "author_avg_rating": 2.4},
            {"item_id": "x2", "shown_at": "2025-07-01T09:00:00Z",
             "category": "howto", "title": "databases: deep dive in practice",
             "words": 2400, "has_image": False, "author_followers": 200,
             "author_avg_rating": 4.1}]
    with TestClient(create_app(model_dir)) as c:
        base = c.post("/predict", json=rows).json()
        tilted = c.post("/predict?weights=quality:0.1,engagement:0.9",
                        json=rows).json()
        bad = c.post("/predict?weights=quality:1", json=rows)
    assert base["weights"] == {"quality": 0.7, "engagement": 0.3}
    assert tilted["weights"] == {"quality": 0.1, "engagement": 0.9}
    objs = {o.name: o for o in art.objectives.objectives}
    for doc, w in ((base, base["weights"]), (tilted, tilted["weights"])):
        for p in doc["predictions"]:
            f = p["objectives"]
            want = sum(w[k] * (f[k] - objs[k].mean) / objs[k].sd for k in w)
            assert p["score"] == pytest.approx(want, abs=1e-9)
        # the same objective outputs: only the combination moved
    assert [p["objectives"] for p in base["predictions"]] == [
        p["objectives"] for p in tilted["predictions"]]
    # the bait post ranks first only once engagement weighs most
    b, t = base["predictions"], tilted["predictions"]
    assert b[1]["score"] > b[0]["score"] and t[0]["score"] > t[1]["score"]
    assert bad.status_code == 422 and "no weight for engagement" in bad.text
    assert {p: p.stat().st_mtime_ns for p in model_dir.rglob("*")} == files_before
    out = tmp_path / "ranked.csv"
    res = mlsd.pipeline.score_file(model_dir, folder / "data" / "new_items.csv", out)
    assert res["scored"] == 300
    assert out.read_text().splitlines()[0].split(",")[3:6] == [
        '"score"', '"quality"', '"engagement"']


def test_a_joint_model_refuses_other_weights(feed, tmp_path):
    folder, _ = feed
    s = mlsd.run(Project.of(folder).with_overrides(["problem.combine=joint"]))
    model_dir = folder / s["paths"]["model"]
    manifest = json.loads((model_dir / "manifest.json").read_text())
    assert manifest["objectives"]["mode"] == "joint"
    assert "objectives/joint.json" in manifest["files"]
    row = {"item_id": "x1", "shown_at": "2025-07-01T20:00:00Z", "category": "news",
           "title": "markets: analysis", "words": 300, "has_image": False,
           "author_followers": 100, "author_avg_rating": 3.0}
    with TestClient(create_app(model_dir)) as c:
        ok = c.post("/predict", json=row).json()
        refused = c.post("/predict?weights=quality:0.5,engagement:0.5", json=row)
        same = c.post("/predict?weights=quality:0.7,engagement:0.3", json=row)
    assert ok["combine"] == "joint"
    assert refused.status_code == 422 and "retrain" in refused.text
    assert same.status_code == 200
