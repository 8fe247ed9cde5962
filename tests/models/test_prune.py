"""mlsd features prune: drop-one ablation on validation, a greedy pruned set."""

from __future__ import annotations

import json

import numpy as np
import scipy.sparse as sp
import yaml

from mlsd.features import Block
from mlsd.models import prune
from mlsd.spec import ModelSpec, ProblemSpec
from tests._helpers import run_cli


def _data(n=3000, seed=0):
    rng = np.random.default_rng(seed)
    a, b = rng.normal(size=n), rng.normal(size=n)
    noise = rng.normal(size=(n, 3))
    y = (1.5 * a + b + rng.logistic(size=n) > 0).astype(np.int64)
    X = sp.csr_matrix(np.column_stack([a, b, noise]))
    parts = {"train": slice(0, 2000), "valid": slice(2000, 3000)}
    blocks = [Block("a", "numeric", 0, 1, ("a",)), Block("b", "numeric", 1, 2, ("b",)),
              Block("noise", "bins", 2, 5, ("noise",))]
    return ({p: X[s] for p, s in parts.items()}, {p: y[s] for p, s in parts.items()},
            blocks)


def test_a_noise_feature_goes_and_the_signal_stays():
    X, y, blocks = _data()
    res = prune(ProblemSpec(task="binary", target="y", positive=1),
                ModelSpec(params={"n_estimators": 60}), X=X, y=y, classes=[0, 1],
                blocks=blocks, costs={"noise": 30.0, "a": 1.0, "b": 1.0},
                tolerance=0.01, budget_seconds=120, seed=0)
    verdicts = {r["feature"]: r for r in res["features"]}
    assert res["drop"] == ["noise"] and set(res["keep"]) == {"a", "b"}
    assert verdicts["a"]["loss"] > 0.05 and verdicts["b"]["loss"] > 0.01
    assert res["us_saved_per_row"] == 30.0
    assert res["valid_pruned"] >= res["valid_all"] * (1 - 0.01)
    assert res["metric"] == "pr_auc" and res["measured"] == 3


def test_the_time_budget_is_kept_and_unmeasured_features_stay():
    X, y, blocks = _data()
    res = prune(ProblemSpec(task="binary", target="y", positive=1), ModelSpec(),
                X=X, y=y, classes=[0, 1], blocks=blocks, budget_seconds=1e-9)
    assert res["measured"] == 0 and res["drop"] == []
    assert {r["verdict"] for r in res["features"]} == {"not measured (time budget)"}


def test_cli_prunes_and_writes_a_spec_that_runs(fresh_project):
    proc = run_cli("features", "prune", "--budget", "6", "--tolerance", "0.05",
                   "--write", "mlsd.pruned.yaml", "--json", cwd=fresh_project)
    res = json.loads(proc.stdout)
    assert res["of"] == 9 and 1 <= res["measured"] <= 9
    assert len(res["drop"]) + len(res["keep"]) == 9
    written = fresh_project / "mlsd.pruned.yaml"
    assert res["written"] == str(written)
    doc = yaml.safe_load(written.read_text())
    assert len(doc["features"]) == len(res["keep"])
    assert "features prune" in written.read_text().splitlines()[0]
    run_cli("spec", "check", "-c", str(written), cwd=fresh_project)
    bad = run_cli("features", "prune", "--write", "../outside.yaml",
                  cwd=fresh_project, check=False)
    assert bad.returncode == 2 and "escapes the project folder" in bad.stderr
    bad = run_cli("features", "prune", "--write", "sub/mlsd.yaml",
                  cwd=fresh_project, check=False)
    assert bad.returncode == 2 and "next to mlsd.yaml" in bad.stderr
    for args, words in ((["--tolerance", "-1"], "between 0 and 0.5"),
                        (["--budget", "0"], "seconds above 0")):
        bad = run_cli("features", "prune", *args, cwd=fresh_project, check=False)
        assert bad.returncode == 2 and words in bad.stderr, bad.stderr
        assert "Traceback" not in bad.stderr
