"""The training-data chapter in one run of the example: imbalance handling,
augmentation and the robustness check, from the spec to the report."""

from __future__ import annotations

import json

import pytest
import yaml

import mlsd
from mlsd.runtime import Project

pytestmark = pytest.mark.slow


def test_resampling_weights_augmentation_and_robustness_from_the_spec(
        fresh_project):
    path = fresh_project / "mlsd.yaml"
    spec = yaml.safe_load(path.read_text())
    spec["model"]["params"] = {"n_estimators": 60}
    spec["model"]["class_weight"] = "effective"
    spec["imbalance"] = {"resample": "random_under", "ratio": 0.5,
                         "two_phase": True, "compare": ["tomek"]}
    spec["augment"] = {"noise": {"scale": 0.05, "columns": ["likes", "views"]},
                       "text": {"column": "text", "synonyms": 0.0, "swap": 0.1},
                       "mixup": {"alpha": 0.2, "share": 0.1}}
    spec["evaluation"] = {"slices": {"new_authors": "author_posts_before = 0",
                                     "old_accounts": "author_account_age_days > 1000"}}
    spec["model"]["calibration"] = "platt"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    s = mlsd.run(fresh_project)
    assert {r["slice"] for r in s["slices"]["slices"]} == {"new_authors",
                                                           "old_accounts"}
    assert s["slices"]["gap"]["metric"] == "pr_auc"
    cal = s["model"]["metrics"]["calibration"]
    assert cal["kind"] == "platt" and cal["brier_after"] < cal["brier_before"]
    assert s["model"]["metrics"]["bootstrap"]["method"] == "moving-block bootstrap"
    b = s["imbalance"]
    assert b["imbalanced"] and b["class_weight"] == "effective"
    r = b["resampled"]
    assert r["method"] == "random_under" and r["two_phase"]
    assert r["on"] == "feature matrix"
    assert r["counts"]["True"] * 2 == r["counts"]["False"]  # ratio 0.5
    assert [(c["method"], c["chosen"]) for c in b["comparison"]] == [
        ("none", False), ("random_under", True), ("tomek", False)]
    assert s["metric_names"][:3] == ["pr_auc", "recall", "f1"]
    assert "accuracy" not in s["metric_names"]
    assert b["accuracy"]["majority"] == "False"
    rows = s["augment"]["rows"]
    train_rows = s["split"]["sizes"]["train"]
    assert rows["noise"] == rows["text"] == train_rows and rows["mixup"] > 0
    rob = s["augment"]["robustness"]
    assert rob["rows"] == min(1000, s["split"]["sizes"]["test"])
    assert 0 <= rob["flip_rate"] < 0.2 and rob["text"] == "text"
    # the model says which rows it was fitted on
    folder = fresh_project / s["paths"]["model"]
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["training_rows"]["resampled"]["method"] == "random_under"
    assert manifest["training_rows"]["augmented"]["mixup"] == rows["mixup"]
    html = (fresh_project / s["paths"]["report"]).read_text()
    for part in ("Class balance", "resampling (on validation)",
                 "Augmentation and robustness", "balance-plot-0", "Slices",
                 "calibration-plot", "% interval"):
        assert part in html, part
    # and the run's other stages are as without: the same test rows measured
    assert Project.find(start=fresh_project).lake.exists("splits", "forum-spam")


def test_smotenc_and_augmentation_on_a_real_data_set_from_the_spec(tmp_path):
    """Palmer penguins (numbers and categories, missing values): SMOTENC on the
    raw rows, compared with SMOTE on the feature matrix; noise, mixup and SMOTE
    rows added; the robustness check."""
    from palmerpenguins import load_penguins

    from tests._helpers import run_cli

    data = tmp_path / "penguins.csv"
    load_penguins().to_csv(data, index=False)
    folder = tmp_path / "pg"
    run_cli("init", str(folder), "--from", str(data), "--target", "species",
            cwd=tmp_path)
    path = folder / "mlsd.yaml"
    spec = yaml.safe_load(path.read_text())
    spec["model"]["class_weight"] = "none"
    spec["imbalance"] = {"resample": "smotenc", "compare": ["smote"]}
    spec["augment"] = {"noise": {"scale": 0.05}, "mixup": {"share": 0.2},
                       "smote": {"share": 0.3}}
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    s = mlsd.run(folder)
    rows = s["augment"]["rows"]
    assert rows["noise"] == s["split"]["sizes"]["train"]
    assert rows["mixup"] > 0 and rows["smote"] > 0
    assert 0 <= s["augment"]["robustness"]["flip_rate"] < 0.2
    r = s["imbalance"]["resampled"]
    assert r["method"] == "smotenc" and r["synthetic"] > 0
    assert len(set(r["counts"].values())) == 1  # every class as large
    assert {c["method"] for c in s["imbalance"]["comparison"]} == {
        "none", "smotenc", "smote"}
    assert r["on"] == "raw inputs (SMOTENC)"
    assert s["model"]["metrics"]["model"]["test"]["macro_f1"] > 0.9
