"""The invariants of DESIGN.md, held on the example end to end."""

from __future__ import annotations

import csv
import io
import json
import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from deltalake import DeltaTable

from mlsd.formats import read_csv
from tests._helpers import external_refs, run_cli

pytestmark = pytest.mark.slow

RULE_OF_KIND = {"bad_number": "type", "missing_required": "required",
                "out_of_range": "range", "broken_line": "parse"}


def _quarantine(folder: Path, source: str) -> list[dict]:
    return DeltaTable(str(folder / ".mlsd/lake/quarantine" / source)
                      ).to_pyarrow_table().to_pylist()


def test_quarantine_matches_the_defect_manifest_line_for_line(ran_project):
    folder, _ = ran_project
    manifest = json.loads((folder / "data/defects.json").read_text())
    planted = {(d["file"], d["line"]): d for d in manifest["defects"]}
    found = {}
    for source in ("posts_export", "posts_log"):
        for row in _quarantine(folder, source):
            found[(row["_source"], row["_line"])] = row
    assert sorted(found) == sorted(planted)
    for place, d in planted.items():
        row = found[place]
        rules = [(r["column"], r["rule"]) for r in row["reasons"]]
        expected_rule = RULE_OF_KIND[d["kind"]]
        assert expected_rule in [r for _, r in rules], (place, rules)
        if d["column"]:
            assert (d["column"], expected_rule) in rules, (place, rules)
        assert row["raw"], place  # the raw record is kept
        assert all(r["message"] for r in row["reasons"])


def test_quarantined_raw_record_is_the_line_as_read(ran_project):
    folder, _ = ran_project
    lines = (folder / "data/posts_log.jsonl").read_text(encoding="utf-8").split("\n")
    for row in _quarantine(folder, "posts_log"):
        assert row["raw"] == lines[row["_line"] - 1]


def test_counts_reconcile_per_source_and_in_the_catalog(ran_project):
    folder, s = ran_project
    manifest = json.loads((folder / "data/defects.json").read_text())
    for src in s["sources"]:
        path = src["files"][0]["path"]
        assert src["rows_in"] == manifest["rows"][path]
        stored = DeltaTable(str(folder / ".mlsd/lake/sources" / src["source"]))
        quarantined = _quarantine(folder, src["source"])
        assert stored.to_pyarrow_table().num_rows == src["rows_stored"]
        assert len(quarantined) == src["rows_quarantined"]
        assert src["rows_in"] == src["rows_stored"] + src["rows_quarantined"]
        # and stored + quarantined lines are exactly the records of the file
        lines = set(stored.to_pyarrow_table().column("_line").to_pylist())
        qlines = {r["_line"] for r in quarantined}
        assert not lines & qlines
        assert len(lines | qlines) == src["rows_in"]
    assert s["totals"]["rows_quarantined"] == len(manifest["defects"])


def test_rerun_on_unchanged_input_adds_no_dataset_version(ran_project, tmp_path):
    folder = tmp_path / "demo"
    shutil.copytree(ran_project[0], folder)
    before = {n: DeltaTable(str(folder / ".mlsd/lake" / n)).version()
              for n in ("sources/posts_export", "sources/posts_log",
                        "quarantine/posts_export", "splits/forum-spam")}
    s = json.loads(run_cli("run", "--json", cwd=folder).stdout)
    after = {n: DeltaTable(str(folder / ".mlsd/lake" / n)).version() for n in before}
    assert after == before
    assert all(src["skipped"] for src in s["sources"])
    # a changed file makes exactly one new version of its source only
    with (folder / "data/posts_log.jsonl").open("a", encoding="utf-8") as fh:
        fh.write(json.dumps({"post_id": "p9999999", "author_id": "u000001",
                             "created_at": "2024-12-31T10:00:00Z", "text": "hi",
                             "is_spam": False}) + "\n")
    s = json.loads(run_cli("run", "--json", cwd=folder).stdout)
    by = {x["source"]: x for x in s["sources"]}
    assert by["posts_export"]["skipped"] and not by["posts_log"]["skipped"]
    assert by["posts_log"]["version"] == before["sources/posts_log"] + 1
    rows = json.loads((folder / "data/defects.json").read_text())["rows"]
    assert by["posts_log"]["rows_in"] == rows["data/posts_log.jsonl"] + 1


def test_lineage_reaches_source_file_hashes(ran_project):
    folder, s = ran_project
    model_id = s["model"]["model_id"]
    manifest = json.loads((folder / s["paths"]["model"] / "manifest.json").read_text())
    lineage = manifest["lineage"]
    assert [(d["dataset"], d["version"]) for d in lineage["datasets"]] == [
        (x["dataset"], x["version"]) for x in s["sources"]]
    assert lineage["spec_hash"] == s["spec_hash"] and lineage["code_version"]
    doc = json.loads(run_cli("lineage", model_id[:12], "--json", cwd=folder).stdout)
    hashes = {f["sha256"] for d in doc["datasets"] for ld in d["loads"]
              for f in ld["files"]}
    assert hashes == {x["files"][0]["sha256"] for x in s["sources"]}
    import hashlib

    for d in doc["datasets"]:
        for ld in d["loads"]:
            for f in ld["files"]:
                data = (folder / f["path"]).read_bytes()
                assert hashlib.sha256(data).hexdigest() == f["sha256"]
                assert f["rows"] == ld["rows_in"]
    nodes = {e["src"] for e in doc["edges"]}
    assert {f"file:{h}" for h in hashes} <= nodes
    text = run_cli("lineage", model_id, cwd=folder).stdout
    for h in hashes:
        assert h in text
    listed = json.loads(run_cli("models", "--json", cwd=folder).stdout)
    assert model_id in [m["model_id"] for m in listed]


def _feature_state(folder: Path, summary: dict) -> bytes:
    return (folder / summary["paths"]["feature_state"]).read_bytes()


def test_determinism_across_processes(ran_project, tmp_path):
    folder, first = ran_project
    other = tmp_path / "again"
    shutil.copytree(folder, other, ignore=shutil.ignore_patterns(".mlsd"))
    second = json.loads(run_cli("run", "--json", cwd=other).stdout)
    split_a = DeltaTable(str(folder / ".mlsd/lake/splits/forum-spam")
                         ).to_pyarrow_table().to_pylist()
    split_b = DeltaTable(str(other / ".mlsd/lake/splits/forum-spam")
                         ).to_pyarrow_table().to_pylist()
    assert split_a == split_b
    assert _feature_state(folder, first) == _feature_state(other, second)
    assert first["model"]["metrics"] == second["model"]["metrics"]
    assert first["model"]["threshold"] == second["model"]["threshold"]


def _poisoned_copy(folder: Path, dst: Path) -> Path:
    """A copy of a ran project whose validation and test rows are all extreme,
    with new categories and words (the training rows untouched)."""
    split = DeltaTable(str(folder / ".mlsd/lake/splits/forum-spam")
                       ).to_pyarrow_table().to_pylist()
    held_out = {r["post_id"] for r in split if r["_split"] != "train"}
    assert len(held_out) > 0.25 * len(split)  # valid and test: 30%
    shutil.copytree(folder, dst, ignore=shutil.ignore_patterns(".mlsd"))

    def poison(rec: dict) -> dict:
        return {**rec, "likes": 10**12, "dislikes": 10**12, "views": 10**12,
                "author_account_age_days": 10**9, "author_posts_before": 10**9,
                "author_country": "NEVER-SEEN", "author_id": "u-new",
                "text": "zzz unseen words qqq"}

    log = dst / "data/posts_log.jsonl"
    out = []
    for line in log.read_text(encoding="utf-8").split("\n"):
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            out.append(line)
            continue
        out.append(json.dumps(poison(rec) if rec.get("post_id") in held_out
                              else rec))
    log.write_text("\n".join(out), encoding="utf-8")
    export = dst / "data/posts_export.csv"
    lines = export.read_text(encoding="utf-8").split("\n")
    header = next(read_csv(export)).schema.names[:11]
    for batch in read_csv(export):
        for rec in batch.to_pylist():
            if rec["post_id"] in held_out and rec["_error"] is None:
                new = poison(rec)
                fields = ["" if new[c] is None else str(new[c]) for c in header]
                buf = io.StringIO()
                csv.writer(buf, lineterminator="").writerow(fields)
                assert "\n" not in rec["_raw"]
                lines[rec["_line"] - 1] = buf.getvalue()
    export.write_text("\n".join(lines), encoding="utf-8")
    return dst


def test_fitting_sees_training_rows_only(ran_project, tmp_path):
    """Make every validation and test row extreme, with new categories: the
    feature state must not move by one byte."""
    folder, first = ran_project
    other = _poisoned_copy(folder, tmp_path / "poisoned")
    second = json.loads(run_cli("run", "--json", cwd=other).stdout)
    assert second["split"]["sizes"] == first["split"]["sizes"]
    assert _feature_state(folder, first) == _feature_state(other, second)
    # the poison did reach the held-out rows: their metrics changed
    assert second["model"]["metrics"]["model"]["test"] != first["model"]["metrics"][
        "model"]["test"]


CHAPTER_FEATURES = [
    {"column": "likes", "impute": "constant", "fill_value": 0, "scale": "log1p"},
    {"column": "dislikes", "impute": "mean", "scale": "robust"},
    {"column": "views", "encode": "bins", "strategy": "quantile", "bins": 10},
    {"column": "author_account_age_days", "scale": "quantile"},
    {"column": "author_posts_before", "impute": "most_frequent", "scale": "maxabs"},
    {"column": "author_country", "encode": "frequency"},
    {"column": "author_id", "encode": "target", "folds": 5},
    {"columns": ["author_country", "views"], "encode": "cross", "bins": 4,
     "buckets": 256},
    {"columns": ["likes", "dislikes"], "encode": "fourier", "dim": 16},
    {"column": "created_at", "encode": "periodic", "period": "7d", "harmonics": 2},
    {"column": "text", "encode": "tfidf", "max_features": 2000, "min_df": 3},
]


def test_every_chapter_feature_fits_on_training_rows_only(fresh_project, tmp_path):
    """The chapter's transforms in one run: it trains, serves the same scores
    row by row, and poisoning every held-out row leaves the state unchanged."""
    import yaml

    spec = yaml.safe_load((fresh_project / "mlsd.yaml").read_text())
    spec["features"] = CHAPTER_FEATURES
    spec["feature_policy"] = {"drop_missing_above": 0.99}
    (fresh_project / "mlsd.yaml").write_text(yaml.safe_dump(spec))
    first = json.loads(run_cli("run", "--json", cwd=fresh_project).stdout)
    assert first["model"]["beats_baselines"] is True
    feats = first["features"]
    assert feats["dropped"] == [] and feats["missing_share"]["author_country"] > 0
    country = feats["missing_by_split"]
    assert set(country) == {"train", "valid", "test"}
    assert all(0.03 < country[p]["author_country"] < 0.15 for p in country)
    row = next(r for r in feats["table"] if r["feature"] == "author_country")
    assert row["missing_by_split"]["train"] == row["missing"]
    assert 0 < feats["notes"]["author_country*views"]["collision_rate"] < 1
    assert 50 < feats["notes"]["text"]["vocabulary"] <= 2000
    cols = {c["column"]: c for c in first["shap"]["by_column"]}
    assert "author_country*views" in cols["views"]["features"]
    assert "equal part" in first["shap"]["split_rule"]
    # a later run from the audit re-derives the out-of-fold encodings (they are
    # not saved) and checks they belong to the saved state
    again = json.loads(run_cli("run", "--json", "--from", "audit", "--until",
                               "audit", cwd=fresh_project).stdout)
    assert again["shap"]["by_column"] == first["shap"]["by_column"]
    other = _poisoned_copy(fresh_project, tmp_path / "poisoned")
    second = json.loads(run_cli("run", "--json", "--until", "train",
                                cwd=other).stdout)
    assert _feature_state(fresh_project, first) == _feature_state(other, second)

    # the saved model scores one row as the batch did
    from mlsd.models import ModelArtifact

    art = ModelArtifact.load(fresh_project / first["paths"]["model"],
                             trust_unregistered=True)
    rows = DeltaTable(str(fresh_project / ".mlsd/lake/training/forum-spam")
                      ).to_pyarrow_table().slice(0, 60)
    table = rows.select(art.pipeline.columns)
    batch = art.pipeline.apply(table).toarray()
    for i, row in enumerate(table.to_pylist()):
        assert (art.pipeline.apply_one(row).toarray()[0] == batch[i]).all()


def test_a_feature_left_out_for_missing_values_is_reported(fresh_project):
    import yaml

    spec = yaml.safe_load((fresh_project / "mlsd.yaml").read_text())
    spec["feature_policy"] = {"drop_missing_above": 0.001}
    (fresh_project / "mlsd.yaml").write_text(yaml.safe_dump(spec))
    s = json.loads(run_cli("run", "--json", "--until", "features",
                           cwd=fresh_project).stdout)
    dropped = {d["feature"]: d for d in s["features"]["dropped"]}
    assert "drop_missing_above: 0.001" in dropped["author_country"]["why"]
    assert dropped["author_country"]["missing"] == pytest.approx(0.07, abs=0.01)
    assert "likes" not in dropped  # no training row lacks it


def test_report_is_self_contained(ran_project):
    folder, s = ran_project
    html = (folder / s["paths"]["report"]).read_text(encoding="utf-8")
    assert "Plotly.newPlot" in html  # charts are drawn by embedded code
    assert external_refs(html) == []  # no script, style or image from elsewhere
    for plot in ("Precision-recall curve", "Confusion matrix"):
        assert plot in html
    assert s["model"]["model_id"] in html


def test_the_example_audit_raises_no_medium_or_high_finding(ran_project):
    """The example is clean by construction (its author is declared shared):
    an attribute of the author (author_posts_before) is no undeclared group."""
    _, s = ran_project
    strong = [(f["check"], f["columns"]) for f in s["audit"]
              if f["severity"] in ("medium", "high")]
    assert strong == []


def test_report_checklist_and_findings_table_agree(ran_project):
    """The leakage checklist said "quiet" for checks the findings table listed
    (it read the probe's findings only, not the split's)."""
    import re

    folder, s = ran_project
    html = (folder / s["paths"]["report"]).read_text(encoding="utf-8")
    checklist = dict(re.findall(
        r"<tr><td><code>(\w+)</code></td><td[^>]*>(?:<span class=\"sev-\w+\">)?"
        r"(\w+)", html))
    assert checklist
    for f in s["audit"]:
        if f["check"] in checklist:
            assert checklist[f["check"]] != "quiet", f["check"]
    assert "Design review, on the test split: " in html


def test_scored_output_is_parquet_with_key(ran_project, tmp_path):
    folder, _ = ran_project
    out = tmp_path / "s.parquet"
    run_cli("predict", "-i", "data/new_posts.csv", "-o", str(out), cwd=folder)
    assert pq.read_table(out).column("post_id").to_pylist()[0].startswith("p")


def test_run_report_renders_in_chromium(ran_project):
    """The run's report opens in headless Chromium without a script error and
    draws every chart it holds."""
    from tests._helpers import render_in_chromium

    folder, s = ran_project
    shown = render_in_chromium(folder / s["paths"]["report"])
    assert shown["errors"] == [] and shown["console_errors"] == []
    assert shown["charts"] == shown["chart_divs"] >= 4
    html = (folder / s["paths"]["report"]).read_text()
    assert 'id="shap-plot-0"' in html and 'id="shap-plot-1"' in html
    assert s["shap"]["explainer"] == "TreeExplainer"
    assert s["shap"]["rows_used"] == min(2000, s["split"]["sizes"]["valid"])


def test_a_linear_model_is_explained_by_linear_shap(fresh_project):
    """The run's own model is what SHAP explains: with `kind: linear`, shap's
    LinearExplainer, and the text column (thousands of hashed terms, summed)
    among the columns that matter."""
    import yaml

    spec = yaml.safe_load((fresh_project / "mlsd.yaml").read_text())
    spec["model"] = {"kind": "linear", "class_weight": "balanced"}
    (fresh_project / "mlsd.yaml").write_text(yaml.safe_dump(spec))
    s = json.loads(run_cli("run", "--json", cwd=fresh_project).stdout)
    assert s["model"]["kind"] == "linear"
    assert s["shap"]["explainer"] == "LinearExplainer"
    assert s["shap"]["background_rows"] == 1000
    cols = [c["column"] for c in s["shap"]["by_column"]]
    assert set(cols) == {f["column"] for f in spec["features"]}
    assert "text" in cols[:3]
