from __future__ import annotations

import json

import yaml
from deltalake import DeltaTable

from mlsd.pipeline import Project, ingest, replay_quarantine
from tests._helpers import run_cli


def _project(folder, ranges):
    spec = {"name": "p", "problem": {"task": "regression", "target": "id"},
            "sources": {"csv": {"path": "data/a.csv", "key": "id"},
                        "log": {"path": "data/b.jsonl", "key": "id"}},
            "validate": {"required": ["id"], "ranges": ranges},
            "features": [{"column": "v"}]}
    (folder / "mlsd.yaml").write_text(yaml.safe_dump(spec))
    return Project.find(start=folder)


def test_replay_after_the_rules_are_fixed(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data/a.csv").write_text(
        'id,v,note\n1,5,ok\n2,-3,"two\nlines"\n3,x,bad number\n')
    (tmp_path / "data/b.jsonl").write_text(
        '{"id": 1, "v": -1, "note": "neg"}\n{"id": 2, "v": 4, "note": null}\n')
    (tmp_path / "schemas").mkdir()
    for source in ("csv", "log"):  # declared: 3 rows are too few for a vote
        (tmp_path / f"schemas/{source}.yaml").write_text(
            "columns: {id: int64, v: int64, note: string}\n")
    p = _project(tmp_path, {"v": [0, None]})
    res = {s["source"]: s for s in ingest(p)["sources"]}
    assert res["csv"]["rows_quarantined"] == 2 and res["log"]["rows_quarantined"] == 1

    shown = json.loads(run_cli("quarantine", "show", "csv", "--json",
                               cwd=tmp_path).stdout)
    assert [(r["_line"], r["reasons"][0]["rule"]) for r in shown] == [
        (3, "range"), (5, "type")]
    assert shown[0]["raw"] == '2,-3,"two\nlines"'

    # the business says negative values are fine after all
    p = _project(tmp_path, {})
    out = replay_quarantine(p, "csv")
    assert (out["replayed"], out["accepted"], out["still_quarantined"]) == (3 - 1, 1, 1)
    rows = DeltaTable(str(tmp_path / ".mlsd/lake/sources/csv")).to_pyarrow_table()
    row = [r for r in rows.to_pylist() if r["id"] == 2][0]
    assert row["v"] == -3 and row["note"] == "two\nlines" and row["_line"] == 3
    left = DeltaTable(str(tmp_path / ".mlsd/lake/quarantine/csv")).to_pyarrow_table()
    assert left.column("_line").to_pylist() == [5]
    again = replay_quarantine(p, "csv")  # nothing new passes: no new version
    assert again["accepted"] == 0
    assert DeltaTable(str(tmp_path / ".mlsd/lake/quarantine/csv")).version() == \
        out["quarantine_version"]

    log = json.loads(run_cli("quarantine", "replay", "log", "--json",
                             cwd=tmp_path).stdout)
    assert log["accepted"] == 1 and log["still_quarantined"] == 0
