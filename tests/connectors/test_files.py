from __future__ import annotations

from datetime import UTC, datetime

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from deltalake import DeltaTable

from mlsd.connectors import FileConnector
from mlsd.errors import DataError
from mlsd.pipeline import Project, ingest


def test_a_partitioned_folder_is_one_source(tmp_path):
    base = tmp_path / "data/events"
    for day, rows in (("2024-01-01", [1, 2]), ("2024-01-02", [3])):
        for kind in ("click", "buy"):
            folder = base / f"day={day}" / f"kind={kind}"
            folder.mkdir(parents=True)
            pq.write_table(pa.table({"id": [r * 10 + len(kind) for r in rows],
                                     "value": [float(r) for r in rows]}),
                           folder / "part-0.parquet")
    (base / "_SUCCESS").write_text("")  # markers and hidden files are skipped
    conn = FileConnector(path="data/events", root=tmp_path)
    assert conn.columns() == ["id", "value", "day", "kind"]
    assert len(conn.files()) == 4
    spec = {"name": "p", "problem": {"task": "regression", "target": "value"},
            "sources": {"events": {"path": "data/events", "key": "id"}},
            "features": [{"column": "day", "encode": "onehot"}]}
    (tmp_path / "mlsd.yaml").write_text(yaml.safe_dump(spec))
    res = ingest(Project.find(start=tmp_path))["sources"][0]
    assert (res["rows_in"], res["rows_quarantined"]) == (6, 0)
    t = DeltaTable(str(tmp_path / ".mlsd/lake/sources/events")).to_pyarrow_table()
    rows = sorted((r["day"], r["kind"], r["id"]) for r in t.to_pylist())
    # partition values are typed like any column: the vote made `day` a timestamp
    assert rows[0] == (datetime(2024, 1, 1, tzinfo=UTC), "buy", 13)
    assert {r["_source"] for r in t.to_pylist()} == {
        f"data/events/day={d}/kind={k}/part-0.parquet"
        for d in ("2024-01-01", "2024-01-02") for k in ("click", "buy")}


def test_a_partitioned_csv_folder(tmp_path):
    for region in ("eu", "us"):
        folder = tmp_path / "d" / f"region={region}"
        folder.mkdir(parents=True)
        (folder / "a.csv").write_text("id,x\n1,2\n")
    conn = FileConnector(path="d", root=tmp_path)
    rows = [r for _, b in conn.read(["id", "x", "region"]) for r in b.to_pylist()]
    assert [(r["region"], r["id"], r["_line"]) for r in rows] == [
        ("eu", "1", 2), ("us", "1", 2)]


def test_an_empty_folder_is_a_clear_error(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="holds no data file"):
        FileConnector(path="empty", root=tmp_path).files()
