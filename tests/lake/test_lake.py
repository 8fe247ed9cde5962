from __future__ import annotations

import pyarrow as pa
import pytest

from mlsd.errors import LakeError
from mlsd.lake import Catalog, Lake, check_name, inside


def test_write_is_versioned_and_idempotent(tmp_path):
    lake = Lake(root=tmp_path)
    t1 = pa.table({"a": [1, 2]})
    assert lake.write("sources", "x", t1, write_id="one") == (0, True)
    assert lake.write("sources", "x", t1, write_id="one") == (0, False)
    assert lake.write("sources", "x", pa.table({"a": [3]}), write_id="two") == (1,
                                                                                True)
    assert lake.read("sources", "x").column("a").to_pylist() == [3]
    assert lake.read("sources", "x", version=0).column("a").to_pylist() == [1, 2]
    assert lake.last_write("sources", "x")["mlsd.write_id"] == "two"
    assert lake.list("sources") == ["x"]
    with pytest.raises(LakeError, match="no version 9"):
        lake.read("sources", "x", version=9)
    with pytest.raises(LakeError, match="no dataset"):
        lake.read("sources", "y")


def test_streamed_batches_are_one_commit(tmp_path):
    lake = Lake(root=tmp_path)
    schema = pa.schema([("a", pa.int64())])
    batches = (pa.record_batch([pa.array([i])], schema=schema) for i in range(5))
    version, _ = lake.write("sources", "s", batches, schema=schema, write_id="w")
    assert version == 0 and lake.read("sources", "s").num_rows == 5


@pytest.mark.parametrize("name", ["../x", "/etc/passwd", "a/b", "..", ".hidden",
                                  "a\x00b", "", "x" * 200, "-rf"])
def test_names_cannot_escape(name):
    with pytest.raises(LakeError):
        check_name(name)


def test_inside_refuses_escape(tmp_path):
    assert inside(tmp_path, "a", "b") == (tmp_path / "a/b").resolve()
    with pytest.raises(LakeError):
        inside(tmp_path, "..", "x")
    with pytest.raises(LakeError):
        Lake(root=tmp_path).path("nope", "x")


def test_catalog_lineage_walk(tmp_path):
    cat = Catalog(path=tmp_path / "c.db")
    f = cat.add_file(sha256="abc", path="data/x.csv", size=3)
    d = cat.add_dataset_version("sources", "x", 0, write_id="w", rows=2, run_id="r")
    cat.add_edge(f, d, "loaded_into", "r")
    m = cat.add_artifact("m1", kind="model", path="p", run_id="r", metadata={"k": 1})
    cat.add_edge(d, m, "trained_on", "r")
    up = cat.upstream(m)
    assert [(e["src"], e["dst"]) for e in up] == [(d, m), (f, d)]
    assert cat.artifact("m")["metadata"] == {"k": 1}
    assert cat.artifact("zzz") is None
    cat.start_run("r", spec_hash="s", code_version="v")
    cat.finish_run("r", status="done", summary={"rows": 2})
    [run] = cat.runs()
    assert (run["run_id"], run["status"], run["summary"]) == ("r", "done",
                                                             '{"rows": 2}')


def test_a_vacuum_is_not_a_write(tmp_path):
    """After a vacuum (whose commits keep the rows), the same write is still
    "nothing new", and the last write's metadata (a split's recorded cuts)
    is still found."""
    lake = Lake(root=tmp_path)
    lake.write("splits", "x", pa.table({"a": [1]}), write_id="w1",
               metadata={"mlsd.split_cuts": "first"})
    lake.write("splits", "x", pa.table({"a": [1, 2]}), write_id="w2",
               metadata={"mlsd.split_cuts": "second"})
    assert lake.vacuum("splits", "x", retention_hours=0)  # it removed a file
    assert lake.last_write("splits", "x")["mlsd.split_cuts"] == "second"
    version = lake.version("splits", "x")
    assert lake.write("splits", "x", pa.table({"a": [1, 2]}), write_id="w2") == (
        version, False)
    assert lake.version("splits", "x") == version
