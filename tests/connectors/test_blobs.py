from __future__ import annotations

import hashlib
import json
import struct
import zlib

import yaml
from deltalake import DeltaTable

from mlsd.connectors import image_size
from mlsd.pipeline import Project, ingest, sql, vacuum


def _png(w: int, h: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data)))
    raw = b"".join(b"\x00" + b"\x00\x00\x00" * w for _ in range(h))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2,
                                                              0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def _docs_project(tmp_path, **source):
    """A project whose one source is the folder docs/ (one row per file)."""
    spec = {"name": "p", "problem": {"task": "regression", "target": "size"},
            "sources": {"docs": {"folder": "docs", **source}},
            "features": [{"column": "media_type", "encode": "onehot"}]}
    (tmp_path / "mlsd.yaml").write_text(yaml.safe_dump(spec))
    return Project.find(start=tmp_path)


def test_image_headers():
    assert image_size(_png(7, 3)) == (7, 3)
    assert image_size(b"GIF89a" + struct.pack("<HH", 5, 9) + b"\x00" * 4) == (5, 9)
    jpeg = (b"\xff\xd8" + b"\xff\xe0" + struct.pack(">H", 4) + b"\x00\x00"
            + b"\xff\xc0" + struct.pack(">HBHH", 11, 8, 20, 30) + b"\x00" * 8)
    assert image_size(jpeg) == (30, 20)
    assert image_size(b"hello") is None


def test_a_folder_of_files_becomes_a_table_and_blobs(tmp_path):
    docs = tmp_path / "docs"
    (docs / "img").mkdir(parents=True)
    (docs / "a.txt").write_text("first line\nsecond line\n")
    (docs / "img/pic.png").write_bytes(_png(4, 2))
    (docs / "data.bin").write_bytes(bytes(range(256)))
    (docs / ".hidden").write_text("skipped")
    project = _docs_project(tmp_path)
    res = ingest(project)["sources"][0]
    assert (res["rows_in"], res["rows_stored"]) == (3, 3)
    rows = {r["path"]: r for r in DeltaTable(str(
        tmp_path / ".mlsd/lake/sources/docs")).to_pyarrow_table().to_pylist()}
    assert set(rows) == {"docs/a.txt", "docs/img/pic.png", "docs/data.bin"}
    assert json.loads(rows["docs/a.txt"]["metadata"]) == {
        "chars": 23, "encoding": "utf-8", "lines": 2}
    assert rows["docs/a.txt"]["media_type"] == "text/plain"
    assert json.loads(rows["docs/img/pic.png"]["metadata"]) == {"width": 4,
                                                               "height": 2}
    for path, row in rows.items():
        data = (tmp_path / path).read_bytes()
        assert row["sha256"] == hashlib.sha256(data).hexdigest()
        assert row["size"] == len(data)
        blob = tmp_path / ".mlsd/blobs" / row["sha256"][:2] / row["sha256"]
        assert blob.read_bytes() == data  # the bytes, by content hash
    assert ingest(project)["sources"][0]["skipped"]  # unchanged folder
    out = sql(project, "SELECT media_type, sum(size) AS bytes FROM docs "
                       "GROUP BY 1 ORDER BY 1").to_pylist()
    assert out[-1] == {"media_type": "text/plain", "bytes": 23}


def test_append_mode_adds_only_new_files(tmp_path):
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.txt").write_text("a\n")
    project = _docs_project(tmp_path, load="append")
    ingest(project)
    assert ingest(project)["sources"][0]["skipped"]  # nothing new
    (docs / "b.txt").write_text("bb\n")
    res = ingest(project)["sources"][0]
    assert res["rows_in"] == 1 and res["version"] == 1
    paths = DeltaTable(str(tmp_path / ".mlsd/lake/sources/docs")).to_pyarrow_table(
    ).column("path").to_pylist()
    assert sorted(paths) == ["docs/a.txt", "docs/b.txt"]


def test_vacuum_drops_blobs_no_readable_version_needs(tmp_path):
    """A file gone from the folder keeps its blob while an old version can
    still be read, and loses it once vacuum removes that version."""
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "keep.txt").write_text("kept\n")
    (docs / "gone.txt").write_text("removed later\n")
    project = _docs_project(tmp_path)
    ingest(project)
    sha = {p.name: hashlib.sha256(p.read_bytes()).hexdigest()
           for p in docs.iterdir()}
    blobs = tmp_path / ".mlsd/blobs"
    (docs / "gone.txt").unlink()
    ingest(project)  # overwrite: the latest version no longer has gone.txt
    assert (blobs / sha["gone.txt"][:2] / sha["gone.txt"]).exists()
    vacuum(project, retention_hours=24)  # version 0 is still within retention
    assert (blobs / sha["gone.txt"][:2] / sha["gone.txt"]).exists()
    out = vacuum(project, retention_hours=0)
    assert {"dataset": "blobs", "files_removed": 1, "retention_hours": 0} in out
    assert not (blobs / sha["gone.txt"][:2] / sha["gone.txt"]).exists()
    kept = blobs / sha["keep.txt"][:2] / sha["keep.txt"]
    assert kept.read_text() == "kept\n"
