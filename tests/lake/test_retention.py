"""Erasure: one person's rows leave the dataset, the quarantine, and (once
vacuumed) every old version's files."""

from __future__ import annotations

import json

import pytest
from deltalake import DeltaTable

from mlsd.pipeline import Project, ingest
from tests._helpers import run_cli

pytestmark = pytest.mark.slow


def _files_holding(folder, needle: str) -> list:
    """Every data file of the lake, old versions' included, holding ``needle``."""
    import pyarrow.parquet as pq

    found = []
    for p in (folder / ".mlsd/lake").rglob("posts_log/*.parquet"):
        table = pq.read_table(p)
        for name in table.column_names:
            if table.schema.field(name).type == "string" and any(
                    v is not None and needle in v
                    for v in table.column(name).to_pylist()):
                found.append(p)
                break
    return found


def test_delete_one_author_then_vacuum(fresh_project):
    folder = fresh_project
    ingest(Project.find(start=folder))
    q = DeltaTable(str(folder / ".mlsd/lake/quarantine/posts_log")).to_pyarrow_table()
    # an author with a quarantined record whose values still parse
    raws = [json.loads(r) for r in q.column("raw").to_pylist()
            if r.endswith("}")]
    author = next(r["author_id"] for r in raws if r.get("author_id"))
    src = DeltaTable(str(folder / ".mlsd/lake/sources/posts_log"))
    before = src.to_pyarrow_table().column("author_id").to_pylist().count(author)
    export_rows = DeltaTable(str(folder / ".mlsd/lake/sources/posts_export")
                             ).to_pyarrow_table().num_rows
    assert before > 0

    res = json.loads(run_cli("lake", "delete", "posts_log", "--where",
                             f"author_id = '{author}'", "--json",
                             cwd=folder).stdout)
    assert res["dataset"]["deleted"] == before
    assert res["quarantine"]["deleted"] >= 1
    now = DeltaTable(str(folder / ".mlsd/lake/sources/posts_log")).to_pyarrow_table()
    assert author not in now.column("author_id").to_pylist()
    q_now = DeltaTable(str(folder / ".mlsd/lake/quarantine/posts_log")
                       ).to_pyarrow_table()
    assert not any(author in r for r in q_now.column("raw").to_pylist())
    old = DeltaTable(str(folder / ".mlsd/lake/sources/posts_log"), version=0)
    assert author in old.to_pyarrow_table().column("author_id").to_pylist()
    assert _files_holding(folder, author)  # old files still hold it

    out = json.loads(run_cli("lake", "vacuum", "--retention-hours", "0", "--json",
                             cwd=folder).stdout)
    assert sum(r["files_removed"] for r in out) >= 2
    assert _files_holding(folder, author) == []
    # the other source and the latest versions are intact
    assert DeltaTable(str(folder / ".mlsd/lake/sources/posts_export")
                      ).to_pyarrow_table().num_rows == export_rows


def test_delete_refuses_several_statements(fresh_project):
    ingest(Project.find(start=fresh_project))
    proc = run_cli("lake", "delete", "posts_log", "--where",
                   "1=1; DROP TABLE x", cwd=fresh_project, check=False)
    assert proc.returncode == 2 and "holds a ';'" in proc.stderr


def test_delete_reaches_the_training_table_and_its_split(fresh_project):
    """The training table copies the sources' rows: an erasure takes them out
    of it (and their split rows) at once, and a vacuum from every old file."""
    import mlsd
    from mlsd.errors import StageError

    folder = fresh_project
    mlsd.run(folder, until="split")
    train = DeltaTable(str(folder / ".mlsd/lake/training/forum-spam")
                       ).to_pyarrow_table()
    log_rows = [r for r in train.select(["author_id", "_source", "_row"]
                                        ).to_pylist()
                if r["_source"].endswith("posts_log.jsonl")]
    author = log_rows[0]["author_id"]
    gone = {r["_row"] for r in log_rows if r["author_id"] == author}
    kept_elsewhere = [r for r in train.select(["author_id", "_source"]).to_pylist()
                      if r["author_id"] == author
                      and not r["_source"].endswith("posts_log.jsonl")]
    res = json.loads(run_cli("lake", "delete", "posts_log", "--where",
                             f"author_id = '{author}'", "--json",
                             cwd=folder).stdout)
    assert res["training"]["deleted"] == len(gone)
    assert res["training"]["splits"]["deleted"] == len(gone)
    now = DeltaTable(str(folder / ".mlsd/lake/training/forum-spam")
                     ).to_pyarrow_table()
    left = [r for r in now.select(["author_id", "_source"]).to_pylist()
            if r["author_id"] == author]
    assert left == kept_elsewhere  # only posts_log's rows were erased
    split = DeltaTable(str(folder / ".mlsd/lake/splits/forum-spam")
                       ).to_pyarrow_table()
    assert not gone & set(split.column("_row").to_pylist())
    run_cli("lake", "vacuum", "--retention-hours", "0", cwd=folder)
    import pyarrow.parquet as pq

    for p in (folder / ".mlsd/lake/training").rglob("*.parquet"):
        if "_delta_log" in p.parts:
            continue
        t = pq.read_table(p, columns=["author_id", "_source"]).to_pylist()
        assert not [r for r in t if r["author_id"] == author
                    and r["_source"].endswith("posts_log.jsonl")], p
    # a run cannot start after the erasure on what it changed
    with pytest.raises(StageError, match=r"sources/posts_log@0 in run .*changed "
                                         r"since, outside a run \(version 1 "
                                         r"\(ERASE\)"):
        mlsd.run(folder, from_="table")
