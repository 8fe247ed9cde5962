"""Report retention (`report.keep`) and `mlsd gc`."""

from __future__ import annotations

import json
import shutil

from mlsd.report import prune_reports
from tests._helpers import run_cli


class _Catalog:
    def __init__(self, paths):
        self.paths = paths

    def artifacts(self, kind=None):
        assert kind == "report"
        return [{"path": p} for p in self.paths]  # oldest first, as the catalog


def test_the_last_runs_reports_stay_and_the_one_being_written_counts(tmp_path):
    home = tmp_path / ".mlsd"
    (home / "reports").mkdir(parents=True)
    names = [f"r{i}.html" for i in range(5)]
    for n in names:
        (home / "reports" / n).write_text("x" * 10)
    (home / "reports" / "copy.html").write_text("stray")  # no run wrote it
    catalog = _Catalog([f".mlsd/reports/{n}" for n in names[:4]])
    current = home / "reports" / "r4.html"
    gone = prune_reports(home, catalog, 2, current=current, dry_run=True)
    assert sorted(g["path"] for g in gone) == [
        ".mlsd/reports/copy.html", ".mlsd/reports/r0.html", ".mlsd/reports/r1.html",
        ".mlsd/reports/r2.html"]
    assert len(list((home / "reports").glob("*.html"))) == 6  # dry run
    prune_reports(home, catalog, 2, current=current)
    assert sorted(p.name for p in (home / "reports").iterdir()) == ["r3.html",
                                                                   "r4.html"]


def test_gc_removes_old_reports_and_unrecorded_artifacts_only(ran_project,
                                                              tmp_path):
    src, summary = ran_project
    folder = tmp_path / "demo"
    shutil.copytree(src, folder)
    orphan = folder / ".mlsd" / "artifacts" / "models" / "m-crashed"
    orphan.mkdir()
    (orphan / "model.txt").write_text("half written")
    old = folder / ".mlsd" / "reports" / "r19990101T000000.html"
    old.write_text("an old report")
    res = json.loads(run_cli("gc", "--json", cwd=folder).stdout)
    assert [r["path"] for r in res["reports_removed"]] == [
        ".mlsd/reports/r19990101T000000.html"]
    assert [a["path"] for a in res["artifacts_removed"]] == [
        ".mlsd/artifacts/models/m-crashed"]
    assert not orphan.exists() and not old.exists()
    assert (folder / summary["paths"]["report"]).is_file()
    assert (folder / summary["paths"]["model"]).is_dir()
    run_cli("models", "show", summary["model"]["model_id"], cwd=folder)


def test_a_run_keeps_the_reports_of_the_last_runs_only(tmp_path):
    import numpy as np
    import yaml

    folder = tmp_path / "p"
    (folder / "data").mkdir(parents=True)
    rng = np.random.default_rng(0)
    lines = [f"{a:.4f},{b:.4f},{int(a + b > 0)}" for a, b in
             zip(rng.normal(size=120), rng.normal(size=120), strict=True)]
    (folder / "data" / "m.csv").write_text("x,z,y\n" + "\n".join(lines) + "\n")
    (folder / "mlsd.yaml").write_text(yaml.safe_dump({
        "name": "mini", "problem": {"task": "binary", "target": "y", "positive": 1},
        "sources": {"m": {"path": "data/m.csv"}}, "report": {"keep": 1},
        "features": [{"column": "x"}, {"column": "z"}]}))
    first = json.loads(run_cli("run", "--json", cwd=folder).stdout)
    second = json.loads(run_cli("run", "--from", "audit", "--json",
                                cwd=folder).stdout)
    reports = sorted(p.name for p in (folder / ".mlsd" / "reports").iterdir())
    assert reports == [second["paths"]["report"].rsplit("/", 1)[1]]
    assert second["reports_removed"] == 1
    assert first["paths"]["report"] != second["paths"]["report"]
