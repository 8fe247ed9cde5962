from __future__ import annotations

import pytest
import yaml
from deltalake import DeltaTable

from mlsd.errors import SpecError
from mlsd.pipeline import Project, ingest


def _project(folder, **source):
    spec = {"name": "p", "problem": {"task": "regression", "target": "v"},
            "sources": {"s": {"path": "data/s.csv", "key": "id", **source}},
            "validate": {"required": ["id"]},
            "features": [{"column": "x"}]}
    (folder / "data").mkdir(parents=True, exist_ok=True)
    (folder / "mlsd.yaml").write_text(yaml.safe_dump(spec))
    return Project.find(start=folder)


def _rows(folder):
    t = DeltaTable(str(folder / ".mlsd/lake/sources/s")).to_pyarrow_table()
    return sorted((r["id"], r["v"]) for r in t.select(["id", "v"]).to_pylist())


def test_upsert_merges_on_the_key(tmp_path):
    p = _project(tmp_path, load="upsert")
    (tmp_path / "data/s.csv").write_text("id,x,v\n1,1,a\n2,2,b\n3,3,c\n")
    ingest(p)
    (tmp_path / "data/s.csv").write_text("id,x,v\n2,2,B\n4,4,d\n4,5,dup\n")
    res = ingest(p)["sources"][0]
    assert (res["rows_in"], res["rows_stored"], res["rows_quarantined"]) == (3, 2, 1)
    assert res["reasons"] == {"id: unique": 1}
    assert _rows(tmp_path) == [(1, "a"), (2, "B"), (3, "c"), (4, "d")]
    assert ingest(p)["sources"][0]["skipped"]  # unchanged file: nothing new
    assert DeltaTable(str(tmp_path / ".mlsd/lake/sources/s")).version() == 1


def test_append_adds_each_new_file_version(tmp_path):
    p = _project(tmp_path, load="append")
    (tmp_path / "data/s.csv").write_text("id,x,v\n1,1,a\n")
    ingest(p)
    (tmp_path / "data/s.csv").write_text("id,x,v\n2,2,b\n")
    ingest(p)
    assert _rows(tmp_path) == [(1, "a"), (2, "b")]


def test_overwrite_is_the_default(tmp_path):
    p = _project(tmp_path)
    (tmp_path / "data/s.csv").write_text("id,x,v\n1,1,a\n")
    ingest(p)
    (tmp_path / "data/s.csv").write_text("id,x,v\n2,2,b\n")
    ingest(p)
    assert _rows(tmp_path) == [(2, "b")]


def test_upsert_needs_a_key(tmp_path):
    with pytest.raises(SpecError, match="needs `key`"):
        _project(tmp_path, load="upsert", key=None)
