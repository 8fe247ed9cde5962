"""Nested JSON objects kept as typed structs (``nested: struct``)."""

from __future__ import annotations

import json

import pyarrow as pa
import yaml
from deltalake import DeltaTable

from mlsd.pipeline import Project, ingest, sql
from tests._helpers import run_cli

ROWS = [
    {"id": 1, "address": {"city": "Paris", "zip": "75001",
                          "geo": {"lat": 48.86, "lon": 2.35}}, "n": 3},
    {"id": 2, "address": {"city": "Lyon", "zip": 69001, "geo": None}, "n": 4},
    {"id": 3, "address": None, "n": 5},
    {"id": 4, "address": {"city": "Nice", "zip": "06000",
                          "geo": {"lat": 43.7, "lon": 7.27}}, "n": 6},
]
BAD = [
    {"id": 5, "address": {"city": "Metz", "zip": "not a number"}, "n": 7},
    {"id": 6, "address": {"city": "Brest", "zip": 29200, "floor": 2}, "n": 8},
    {"id": 7, "address": "just text", "n": 9},
]


def _write(tmp_path, rows):
    (tmp_path / "data").mkdir(exist_ok=True)
    with (tmp_path / "data/people.jsonl").open("w") as fh:
        for r in rows:
            fh.write(json.dumps(r) + "\n")


def _project(tmp_path, nested: str = "struct"):
    """The project, loaded once with good rows (which freezes the schema), and
    the file then extended with bad ones."""
    _write(tmp_path, ROWS * 5)
    spec = {"name": "p", "problem": {"task": "regression", "target": "n"},
            "sources": {"people": {"path": "data/people.jsonl", "nested": nested}},
            "validate": {"infer_threshold": 0.8},
            "features": [{"column": "id"}]}
    (tmp_path / "mlsd.yaml").write_text(yaml.safe_dump(spec))
    project = Project.find(start=tmp_path)
    ingest(project)
    _write(tmp_path, ROWS * 5 + BAD)
    return project


def test_struct_schema_is_inferred_frozen_and_validated(tmp_path):
    res = ingest(_project(tmp_path))["sources"][0]
    frozen = yaml.safe_load((tmp_path / "schemas/people.yaml").read_text())
    assert frozen["columns"]["address"] == {
        "city": "string", "zip": "int64", "geo": {"lat": "float64", "lon": "float64"}}
    assert (res["rows_in"], res["rows_stored"], res["rows_quarantined"]) == (23, 20, 3)
    stored = DeltaTable(str(tmp_path / ".mlsd/lake/sources/people")).to_pyarrow_table()
    address = stored.schema.field("address").type
    assert pa.types.is_struct(address)
    assert address.field("geo").type == pa.struct([("lat", pa.float64()),
                                                   ("lon", pa.float64())])
    first = stored.filter(pa.compute.equal(stored["id"], 1)).to_pylist()[0]
    assert first["address"] == {"city": "Paris", "zip": 75001,
                                "geo": {"lat": 48.86, "lon": 2.35}}
    # every bad nested value is quarantined with its reason and raw record
    rows = json.loads(run_cli("quarantine", "show", "people", "--json",
                              cwd=tmp_path).stdout)
    by_line = {r["_line"]: r for r in rows}
    assert set(by_line) == {21, 22, 23}
    for r in rows:
        assert r["reasons"][0]["rule"] == "type"
        assert r["reasons"][0]["column"] == "address"
        assert "struct{city: string, zip: int64" in r["reasons"][0]["message"]
    assert json.loads(by_line[22]["raw"])["address"]["floor"] == 2  # kept whole


def test_struct_fields_are_queryable_and_exportable(tmp_path):
    project = _project(tmp_path)
    ingest(project)
    out = sql(project, "SELECT address.city AS city, count(*) AS n FROM people "
                       "WHERE address.geo.lat > 45 GROUP BY 1").to_pylist()
    assert out == [{"city": "Paris", "n": 5}]
    for fmt in ("parquet", "jsonl", "avro", "csv"):
        res = json.loads(run_cli("export", "people", "--format", fmt, "--json",
                                 cwd=tmp_path).stdout)
        assert res["rows"] == 20, fmt


def test_json_text_stays_the_default(tmp_path):
    ingest(_project(tmp_path, nested="json"))
    frozen = yaml.safe_load((tmp_path / "schemas/people.yaml").read_text())
    assert frozen["columns"]["address"] == "string"


def test_a_struct_in_the_schema_file_is_checked(tmp_path):
    _project(tmp_path)
    (tmp_path / "schemas/people.yaml").write_text(
        "columns: {id: int64, n: int64, address: {city: string, zip: integer}}\n")
    proc = run_cli("ingest", cwd=tmp_path, check=False)
    assert proc.returncode == 2
    assert "columns.address.zip: unknown type 'integer'" in proc.stderr
