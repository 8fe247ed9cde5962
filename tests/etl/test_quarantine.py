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


def test_replay_keeps_out_a_key_already_stored(tmp_path):
    """A quarantined row replayed after a fix does not bring in a second row for
    a unique key that a later load stored meanwhile, nor two rows for one key
    from two files; it stays quarantined with the rule unique."""
    (tmp_path / "data").mkdir()
    (tmp_path / "data/a.csv").write_text("id,v\n1,5\n2,-3\n3,-4\n")
    (tmp_path / "data/b.csv").write_text("id,v\n2,7\n4,-8\n5,1\n")
    (tmp_path / "data/c.csv").write_text("id,v\n4,-9\n")
    (tmp_path / "schemas").mkdir()
    (tmp_path / "schemas/csv.yaml").write_text("columns: {id: int64, v: int64}\n")

    def project(ranges):
        spec = {"name": "p", "problem": {"task": "regression", "target": "id"},
                "sources": {"csv": {"path": "data/*.csv"}},
                "validate": {"unique": ["id"], "ranges": ranges},
                "features": [{"column": "v"}]}
        (tmp_path / "mlsd.yaml").write_text(yaml.safe_dump(spec))
        return Project.find(start=tmp_path)

    res = ingest(project({"v": [0, None]}))["sources"][0]
    # stored: 1, 2 (from b.csv), 5; quarantined: 2 and 3 (a.csv), 4 (b), 4 (c)
    assert (res["rows_stored"], res["rows_quarantined"]) == (3, 4)
    out = replay_quarantine(project({}), "csv")
    assert (out["accepted"], out["still_quarantined"]) == (2, 2)
    stored = DeltaTable(str(tmp_path / ".mlsd/lake/sources/csv")).to_pyarrow_table()
    ids = sorted(stored.column("id").to_pylist())
    assert ids == [1, 2, 3, 4, 5]  # one row per key
    left = DeltaTable(str(tmp_path / ".mlsd/lake/quarantine/csv")).to_pyarrow_table()
    reasons = {(r["_source"], r["_line"]): r["reasons"][0] for r in left.to_pylist()}
    assert set(reasons) == {("data/a.csv", 3), ("data/c.csv", 2)}
    assert reasons[("data/a.csv", 3)]["rule"] == "unique"
    assert "already stored" in reasons[("data/a.csv", 3)]["message"]
    assert reasons[("data/c.csv", 2)]["rule"] == "unique"  # 4 came from b.csv


def test_a_repeated_key_keeps_its_csv_line_and_replays_as_a_repeat(tmp_path):
    """A row moved out for a repeated key keeps its line as it was in the file
    (a record over two lines included), so replay parses it as CSV again and
    keeps it out for the same reason, not for unreadable values."""
    (tmp_path / "data").mkdir()
    (tmp_path / "data/a.csv").write_text(
        'id,v,note\n1,5,ok\n1,6,"two\nlines"\n2,7,x\n1,8,"a ""q"" b"\n')
    (tmp_path / "schemas").mkdir()
    (tmp_path / "schemas/csv.yaml").write_text(
        "columns: {id: int64, v: int64, note: string}\n")
    spec = {"name": "p", "problem": {"task": "regression", "target": "id"},
            "sources": {"csv": {"path": "data/a.csv"}},
            "validate": {"unique": ["id"]}, "features": [{"column": "v"}]}
    (tmp_path / "mlsd.yaml").write_text(yaml.safe_dump(spec))
    res = ingest(Project.find(start=tmp_path))["sources"][0]
    assert (res["rows_stored"], res["rows_quarantined"]) == (2, 2)
    shown = json.loads(run_cli("quarantine", "show", "csv", "--json",
                               cwd=tmp_path).stdout)
    assert [(r["_line"], r["raw"]) for r in shown] == [
        (3, '1,6,"two\nlines"'), (6, '1,8,"a ""q"" b"')]
    out = replay_quarantine(Project.find(start=tmp_path), "csv")
    assert (out["accepted"], out["still_quarantined"]) == (0, 2)
    left = DeltaTable(str(tmp_path / ".mlsd/lake/quarantine/csv")).to_pyarrow_table()
    for r in left.to_pylist():  # repeats, not unreadable values
        assert [(x["column"], x["rule"]) for x in r["reasons"]] == [("id", "unique")]
        assert r["reasons"][0]["message"].startswith("id: 1 repeats a row already")
