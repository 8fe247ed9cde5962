"""engine: spark reads and validates files as Spark tasks and stores what the
local engine stores: the same rows, the same quarantine, the same load ids."""

from __future__ import annotations

import shutil

import pyarrow as pa
import pytest

from mlsd.errors import DataError
from mlsd.pipeline import run
from mlsd.runtime import Project

pytestmark = pytest.mark.slow


def _stored(project: Project, area: str, name: str) -> pa.Table:
    t = project.lake.read(area, name)
    return t.sort_by([("_source", "ascending"), ("_line", "ascending")])


def test_the_example_ingested_on_spark_is_stored_as_on_duckdb(
        spark_engine, example_dir, tmp_path):
    here, there = tmp_path / "duckdb", tmp_path / "spark"
    shutil.copytree(example_dir, here)
    shutil.copytree(example_dir, there)
    local = run(here, until="ingest")
    on_spark = Project.of(there).with_overrides(["engine=spark"])
    spark = run(on_spark, until="ingest")

    assert local["engine"] == "duckdb" and spark["engine"] == "spark local[2]"
    assert spark["totals"] == local["totals"]
    assert spark["totals"]["rows_quarantined"] > 0  # the example's defects
    a, b = Project.of(here), Project.of(there)
    for area in ("sources", "quarantine"):
        for name in ("posts_export", "posts_log"):
            assert _stored(b, area, name).equals(_stored(a, area, name)), (area, name)
            assert b.lake.last_write(area, name)["mlsd.write_id"] == \
                a.lake.last_write(area, name)["mlsd.write_id"]
    for x, y in zip(local["sources"], spark["sources"], strict=True):
        assert (x["reasons"], x["files"]) == (y["reasons"], y["files"])
    # the scratch files the tasks wrote are gone once committed
    assert not list((there / ".mlsd").rglob("u000000-b*"))

    again = run(on_spark, until="ingest")  # unchanged files: no new version
    assert all(s["skipped"] for s in again["sources"])
    assert [s["version"] for s in again["sources"]] == \
        [s["version"] for s in spark["sources"]]


def test_a_file_a_spark_task_cannot_read_is_named_as_locally(
        spark_engine, fresh_project):
    bad = fresh_project / "data" / "posts_export.csv"
    lines = bad.read_text().splitlines(keepends=True)
    header = lines[0].rstrip("\n").split(",")
    bad.write_text(",".join([*header, header[0]]) + "\n" + "".join(lines[1:]))
    with pytest.raises(DataError) as local:
        run(fresh_project, until="ingest")
    with pytest.raises(DataError) as spark:
        run(Project.of(fresh_project).with_overrides(["engine=spark"]),
            until="ingest")
    assert "header repeats column(s)" in str(spark.value)
    assert str(spark.value) == str(local.value)


def _big_csv_project(folder, rows: int, *, quoted_break_at: int | None = None):
    """A project whose one CSV file holds ``rows`` rows, some breaking a rule
    (type, range, a repeated key), and optionally a quoted line break."""
    import yaml

    (folder / "schemas").mkdir(parents=True)
    lines = ["id,n,x,note"]
    for i in range(rows):
        key = i - 1 if i % 97 == 5 else i  # a repeated key now and then
        n = "12x" if i % 89 == 3 else ("-4" if i % 83 == 7 else str(i % 1000))
        note = f"plain {i}"
        if quoted_break_at is not None and i == quoted_break_at:
            note = '"two\nlines"'
        lines.append(f"{key},{n},{i / 7:.4f},{note}")
    (folder / "data.csv").write_text("\n".join(lines) + "\n")
    (folder / "mlsd.yaml").write_text(yaml.safe_dump({
        "name": "spans", "problem": {"task": "regression", "target": "x"},
        "sources": {"big": {"path": "data.csv", "key": "id"}},
        "validate": {"required": ["id"], "ranges": {"n": [0, None]},
                     "unique": ["id"]},
        "features": [{"column": "n"}]}))
    (folder / "schemas" / "big.yaml").write_text(yaml.safe_dump({"columns": {
        "id": "int64", "n": "int64", "x": "float64", "note": "string"}}))


@pytest.mark.parametrize("quoted_break_at", [None, 7_000],
                         ids=["spans", "a-quoted-line-break-reads-the-file-whole"])
def test_a_large_csv_read_in_spans_keeps_every_line_number(
        spark_engine, tmp_path, monkeypatch, quoted_break_at):
    """A CSV file over SPAN_BYTES is cut at line breaks and read by several
    tasks; each span's lines are numbered on from the span before, so rows,
    quarantine (with the repeats over the whole load) and load id are those
    of a local read. A quoted line break sends the file back to one task."""
    from mlsd.etl import _distributed

    monkeypatch.setattr(_distributed, "SPAN_BYTES", 40_000)  # ~13 spans
    spans = []
    real = _distributed._spans
    monkeypatch.setattr(_distributed, "_spans",
                        lambda c, info: spans.extend(real(c, info)) or real(c, info))
    from mlsd.engine import SparkEngine

    jobs = []
    real_map = SparkEngine.map_units
    monkeypatch.setattr(SparkEngine, "map_units", lambda self, units, fn, schema:
                        jobs.append(len(units)) or real_map(self, units, fn, schema))
    here, there = tmp_path / "duckdb", tmp_path / "spark"
    for f in (here, there):
        _big_csv_project(f, 20_000, quoted_break_at=quoted_break_at)
    local = run(here, until="ingest")
    spark = run(Project.of(there).with_overrides(["engine=spark"]), until="ingest")
    assert len(spans) > 5
    # the quoted line break: one more job, the file whole in one task
    assert jobs == ([len(spans)] if quoted_break_at is None else [len(spans), 1])
    assert spark["totals"] == local["totals"]
    a, b = Project.of(here), Project.of(there)
    for area in ("sources", "quarantine"):
        assert b.lake.read(area, "big").equals(a.lake.read(area, "big")), area
        assert b.lake.last_write(area, "big")["mlsd.write_id"] == \
            a.lake.last_write(area, "big")["mlsd.write_id"]
    q = b.lake.read("quarantine", "big").to_pylist()
    text = (there / "data.csv").read_text().split("\n")
    for row in q:  # the line number points at the very line of the file
        assert text[row["_line"] - 1] == row["raw"], row
    assert {r["reasons"][0]["rule"] for r in q} >= {"type", "range", "unique"}
    assert not list(there.rglob("j*-u*-b*.accepted"))
