"""`mlsd init DIR --from FILE --target COL`: real data sets that ship inside
packages, proposed as a careful engineer would, then run with no edit."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from tests._helpers import run_cli


def _init(tmp: Path, data: Path, *args: str) -> tuple[dict, dict, Path]:
    """init --json; the proposal, the written spec, and the project folder."""
    folder = tmp / "proj"
    proc = run_cli("init", str(folder), "--from", str(data), *args, "--json",
                   cwd=tmp)
    spec = yaml.safe_load((folder / "mlsd.yaml").read_text())
    return json.loads(proc.stdout), spec, folder


def _features(spec: dict) -> dict[str, dict]:
    return {f["column"]: f for f in spec["features"]}


def _left_out(proposal: dict) -> dict[str, str]:
    return {c["column"]: c["why"] for c in proposal["left_out"]}


def _run(folder: Path) -> dict:
    return json.loads(run_cli("run", "--json", cwd=folder).stdout)


def test_penguins_multiclass_with_missing_values_and_a_semicolon(tmp_path):
    from palmerpenguins import load_penguins

    data = tmp_path / "penguins.csv"
    load_penguins().to_csv(data, index=False, sep=";")
    proposal, spec, folder = _init(tmp_path, data, "--target", "species")
    assert spec["sources"] == {"penguins": {"path": "data/penguins.csv",
                                            "delimiter": ";"}}
    assert (folder / "data" / "penguins.csv").read_bytes() == data.read_bytes()
    assert spec["problem"]["task"] == "multiclass"
    assert "3 values" in proposal["task_why"]
    feats = _features(spec)
    assert feats["island"] == {"column": "island", "encode": "onehot",
                               "max_categories": 3}
    assert feats["sex"]["encode"] == "onehot"
    assert feats["bill_length_mm"] == {"column": "bill_length_mm"}
    why = {c["column"]: c["why"] for c in proposal["features"]}
    assert "missing indicator" in why["bill_length_mm"]
    assert spec["split"]["strategy"] == "stratified"
    assert (folder / "schemas" / "penguins.yaml").is_file()
    summary = _run(folder)
    assert summary["model"]["metrics"]["model"]["test"]["macro_f1"] > 0.9


def test_breast_cancer_binary_names_the_rarer_class_positive(tmp_path):
    from sklearn.datasets import load_breast_cancer

    frame = load_breast_cancer(as_frame=True).frame
    frame["target"] = frame["target"].map({0: "malignant", 1: "benign"})
    data = tmp_path / "cancer.csv"
    frame.to_csv(data, index=False)
    proposal, spec, folder = _init(tmp_path, data, "--target", "target")
    problem = spec["problem"]
    assert (problem["task"], problem["positive"]) == ("binary", "malignant")
    assert "rarer" in proposal["task_why"]
    assert problem["metrics"] == ["roc_auc", "f1", "accuracy"]  # 37% positive
    assert len(spec["features"]) == 30 and not proposal["left_out"]
    assert all(set(f) == {"column"} for f in spec["features"])
    summary = _run(folder)
    assert summary["model"]["metrics"]["model"]["test"]["roc_auc"] > 0.95


def test_diabetes_regression_with_a_random_split(tmp_path):
    from sklearn.datasets import load_diabetes

    data = tmp_path / "diabetes.csv"
    load_diabetes(as_frame=True, scaled=False).frame.to_csv(data, index=False)
    proposal, spec, folder = _init(tmp_path, data, "--target", "target")
    assert spec["problem"]["task"] == "regression"
    assert spec["problem"]["metrics"] == ["rmse", "mae", "r2"]
    assert spec["split"]["strategy"] == "random"
    assert len(spec["features"]) == 10
    summary = _run(folder)
    assert summary["model"]["metrics"]["model"]["test"]["r2"] > 0.2


def test_macrodata_timestamp_proposes_a_time_split(tmp_path):
    import statsmodels.api as sm

    frame = sm.datasets.macrodata.load_pandas().data
    frame.insert(0, "date", [f"{int(y)}-{3 * int(q) - 2:02d}-01" for y, q in
                             zip(frame.year, frame.quarter, strict=True)])
    data = tmp_path / "macro.csv"
    frame.to_csv(data, index=False)
    proposal, spec, folder = _init(tmp_path, data, "--target", "infl")
    assert spec["problem"]["task"] == "regression"
    assert spec["split"]["strategy"] == "time"
    assert spec["split"]["time"] == "date"
    # quarterly dates: the month recurs, a weekday of the 1st means nothing
    assert _features(spec)["date"]["encode"] == ["month"]
    summary = _run(folder)
    assert summary["split"]["strategy"] == "time"
    assert summary["model"]["metrics"]["model"]["test"]["rows"] > 0


def test_grunfeld_group_split_keeps_each_firm_in_one_split(tmp_path):
    import statsmodels.api as sm

    data = tmp_path / "grunfeld.csv"
    sm.datasets.grunfeld.load_pandas().data.to_csv(data, index=False)
    proposal, spec, _ = _init(tmp_path, data, "--target", "invest",
                              "--group", "firm")
    assert spec["split"] == {"strategy": "group", "group": "firm", "test": 0.2,
                             "valid": 0.1}
    assert "firm" in _left_out(proposal) and "firm" not in _features(spec)


def test_columns_that_cannot_generalise_are_left_out_with_the_reason(tmp_path):
    """A row counter, a code unique per row, a constant, a copy of the target
    and a function of it are left out; a measurement unique per row stays."""
    from sklearn.datasets import load_wine

    wine = load_wine(as_frame=True)
    frame = wine.frame
    rng = np.random.default_rng(0)
    n = len(frame)
    names = dict(enumerate(wine.target_names))
    frame.insert(0, "row_no", np.arange(1, n + 1))
    frame.insert(1, "sample_code", [f"W{i:05d}" for i in rng.permutation(n)])
    frame["lab"] = "north"
    frame["cultivar"] = frame["target"].map(names)
    frame["cultivar_code"] = frame["target"].map({0: 10, 1: 20, 2: 30})
    frame["reading"] = rng.normal(size=n)  # a measurement, unique per row
    frame = frame.drop(columns="target")
    data = tmp_path / "wine.csv"
    frame.to_csv(data, index=False)
    proposal, spec, folder = _init(tmp_path, data, "--target", "cultivar")
    out = _left_out(proposal)
    assert "counter" in out["row_no"]
    assert "identifier" in out["sample_code"]
    assert "constant" in out["lab"]
    assert "function of the target" in out["cultivar_code"]
    assert set(out) == {"row_no", "sample_code", "lab", "cultivar_code"}
    assert "reading" in _features(spec) and "alcohol" in _features(spec)
    assert spec["sources"]["wine"]["key"] == "row_no"
    text = (folder / "mlsd.yaml").read_text()
    assert "#   cultivar_code: near-deterministic function of the target" in text


def test_a_sqlite_table_is_referenced_not_copied(tmp_path):
    from palmerpenguins import load_penguins

    db = tmp_path / "zoo.db"
    with sqlite3.connect(db) as con:
        load_penguins().to_sql("penguins", con, index=False)
    folder = tmp_path / "proj"
    proc = run_cli("init", str(folder), "--from", f"sqlite:///{db}", "--table",
                   "penguins", "--target", "sex", "--json", cwd=tmp_path)
    proposal = json.loads(proc.stdout)
    spec = yaml.safe_load((folder / "mlsd.yaml").read_text())
    assert spec["sources"] == {"penguins": {"url": f"sqlite:///{db}",
                                            "table": "penguins"}}
    assert spec["problem"]["task"] == "binary"
    assert proposal["positive"] in ("female", "male")
    assert not (folder / "data").exists()


@pytest.mark.parametrize("args, message", [
    (["--target", "nope"], "--target 'nope' is not a column"),
    (["--target", "island", "--task", "regression"], "needs numbers"),
    (["--target", "species", "--example", "forum-spam"], "exclusive"),
    (["--target", "species", "--time", "island"], "a time split needs"),
    (["--target", "sex", "--positive", "Emu"], "not one of the target"),
    (["--target", "species", "--positive", "Adelie"], "applies to a binary"),
])
def test_init_from_mistakes_say_what_to_fix(tmp_path, args, message):
    from palmerpenguins import load_penguins

    data = tmp_path / "penguins.csv"
    load_penguins().to_csv(data, index=False)
    proc = run_cli("init", str(tmp_path / "p"), "--from", str(data), *args,
                   cwd=tmp_path, check=False)
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr and "Traceback" not in proc.stderr


def test_a_header_only_file_is_refused(tmp_path):
    data = tmp_path / "empty.csv"
    data.write_text("a,b,y\n")
    proc = run_cli("init", str(tmp_path / "p"), "--from", str(data), "--target",
                   "y", cwd=tmp_path, check=False)
    assert proc.returncode == 2 and "no data rows" in proc.stderr


def test_text_target_with_many_values_is_no_task(tmp_path):
    frame = pd.DataFrame({"x": range(200), "name": [f"n{i % 120}" for i in
                                                   range(200)]})
    data = tmp_path / "d.csv"
    frame.to_csv(data, index=False)
    proc = run_cli("init", str(tmp_path / "p"), "--from", str(data), "--target",
                   "name", cwd=tmp_path, check=False)
    assert proc.returncode == 2 and "too many classes" in proc.stderr


def test_text_time_and_a_recurring_author_are_detected(tmp_path, example_dir):
    """The forum posts: free text gets n-grams, the timestamp a time split, the
    author (detected, not named) is shared across it, and the post id keys rows
    and is left out."""
    data = example_dir / "data" / "posts_export.csv"
    proposal, spec, _ = _init(tmp_path, data, "--target", "is_spam")
    feats = _features(spec)
    assert spec["problem"]["positive"] is True
    assert feats["text"]["encode"] == "hashed_ngrams"
    assert feats["created_at"]["encode"] == ["hour", "weekday"]
    assert feats["author_country"]["encode"] == "onehot"
    assert feats["author_id"]["encode"] == "hashing"
    assert spec["split"]["strategy"] == "time" and spec["split"]["time"] == \
        "created_at"
    assert spec["audit"]["allow_shared"] == ["author_id"]
    import csv

    with data.open(newline="", encoding="utf-8") as fh:
        lacking = sum(1 for r in csv.DictReader(fh) if not r.get("created_at"))
    if lacking:  # the planted defects left some rows without a time
        assert spec["validate"]["required"] == ["created_at"]
    else:
        assert "created_at" not in (spec.get("validate") or {}).get("required", [])
    assert spec["sources"]["posts_export"]["key"] == "post_id"
    assert "post_id" in _left_out(proposal)
    assert spec["problem"]["metrics"][0] == "pr_auc"  # 3.5% spam


def test_a_long_tailed_count_is_read_on_a_log_scale(tmp_path):
    """Non-negative numbers spanning orders of magnitude get `scale: log1p`
    (with the evidence in the comment); ordinary measurements do not."""
    from sklearn.datasets import load_diabetes

    frame = load_diabetes(as_frame=True).frame
    rng = np.random.default_rng(0)
    frame["visits"] = np.floor(rng.lognormal(1.0, 2.5, size=len(frame)))
    frame["balance"] = rng.lognormal(1.0, 2.5, size=len(frame)) - 1  # negatives
    data = tmp_path / "diabetes.csv"
    frame.to_csv(data, index=False)
    proposal, spec, folder = _init(tmp_path, data, "--target", "target")
    feats = _features(spec)
    assert feats["visits"].get("scale") == "log1p"
    assert "scale" not in feats["bmi"] and "scale" not in feats["balance"]
    assert "long tail (median" in (folder / "mlsd.yaml").read_text()
    assert _run(folder)["model"]["metrics"]["model"]["test"]["rows"] > 0
