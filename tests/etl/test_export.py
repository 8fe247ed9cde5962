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
                   "output": str(out)}
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
    assert len(lines) == res["rows"] == 12
    assert json.loads(lines[0])["reasons"][0]["rule"]
