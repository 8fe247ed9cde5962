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
