from __future__ import annotations

import json

import pyarrow as pa
import pytest

from mlsd.connectors import FileConnector
from mlsd.errors import LakeError
from mlsd.etl import EXTENSIONS, DataSchema, Validator, export_dataset
from mlsd.formats import FORMAT_CLASSES, FormatOptions
from mlsd.lake import Lake
from mlsd.spec import ValidateSpec
from tests._helpers import run_cli


@pytest.mark.parametrize("fmt", sorted(FORMAT_CLASSES))
def test_export_then_ingest_gives_the_same_rows(tmp_path, fmt):
    lake = Lake(root=tmp_path / ".mlsd")
    schema = DataSchema({"id": "string", "n": "int64", "x": "float64"})
    table = pa.Table.from_pylist([{"id": "a", "n": 1, "x": 0.5},
                                  {"id": "b", "n": None, "x": -2.0}],
                                 schema=schema.arrow())
    lake.write("sources", "t", table, write_id="w")
    out = tmp_path / f"out{EXTENSIONS[fmt]}"
    res = export_dataset(lake, "t", fmt, out)
    assert res == {"dataset": "sources/t", "version": 0, "format": fmt, "rows": 2,
                   "output": str(out), "renamed": {}}
    conn = FileConnector(path=out.name, root=tmp_path,
                         options=FormatOptions(trusted=True))
    v = Validator(schema=schema, rules=ValidateSpec())
    rows = []
    for info, raw in conn.read(list(schema.columns)):
        rows += v.validate(raw, source=info.path, sha256=info.sha256, load_id="x"
                           ).accepted.select(list(schema.columns)).to_pylist()
    assert rows == table.to_pylist()


def test_export_refuses_unknown_areas(tmp_path):
    with pytest.raises(LakeError, match="unknown lake area"):
        export_dataset(Lake(root=tmp_path), "etc/passwd", "csv", tmp_path / "x.csv")


def test_cli_export_of_the_quarantine(ran_project):
    folder, _ = ran_project
    res = json.loads(run_cli("export", "quarantine/posts_log", "--format", "jsonl",
                             "--json", cwd=folder).stdout)
    lines = (folder / res["output"]).read_text().splitlines()
    planted = json.loads((folder / "data/defects.json").read_text())["defects"]
    assert len(lines) == res["rows"] == sum(
        d["file"] == "data/posts_log.jsonl" for d in planted)
    assert json.loads(lines[0])["reasons"][0]["rule"]


KINDS = ("sources/posts_export", "quarantine/posts_log", "training/forum-spam",
         "splits/forum-spam")


@pytest.mark.parametrize("fmt", sorted(FORMAT_CLASSES))
def test_every_kind_of_dataset_round_trips_in_every_format(ran_project, tmp_path,
                                                           fmt):
    """What `mlsd export` writes reads back as a source and as an audit input:
    mlsd's own columns come out as mlsd_source, mlsd_line, ... (they used to
    clash with the provenance a read adds: duplicated _line, an Arrow error)."""
    from mlsd.etl import infer_schema, read_table
    from mlsd.formats import RESERVED

    folder, _ = ran_project
    lake = Lake(root=folder / ".mlsd")
    for dataset in KINDS:
        area, name = dataset.split("/")
        out = tmp_path / f"{area}{EXTENSIONS[fmt]}"
        res = export_dataset(lake, dataset, fmt, out)
        original = lake.read(area, name)
        assert res["renamed"] == {c: f"mlsd{c}" for c in original.column_names
                                  if c in RESERVED}
        conn = FileConnector(path=out.name, root=tmp_path,
                             options=FormatOptions(trusted=True))
        schema = infer_schema(conn, null_values=[""], threshold=0.95)
        assert list(schema.columns) == [res["renamed"].get(c, c)
                                        for c in original.column_names], dataset
        if fmt == "pickle":
            continue  # an audit input is never unpickled (not marked trusted)
        back = read_table(out).table
        assert back.num_rows == original.num_rows, dataset
        if "_line" in original.column_names:
            assert back.column("mlsd_line").to_pylist() == \
                original.column("_line").to_pylist()


def test_a_file_with_mlsd_column_names_is_refused_not_a_traceback(tmp_path):
    path = tmp_path / "x.csv"
    path.write_text("a,_line\n1,2\n")
    proc = run_cli("audit", "--data", str(path), "--split", "random", "--target",
                   "a", cwd=tmp_path, check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "['_line'] are names mlsd gives its own provenance columns" in \
        proc.stderr and "mlsd_line" in proc.stderr
