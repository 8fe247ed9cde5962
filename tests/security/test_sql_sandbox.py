"""SQL someone typed, or read from an artifact, reaches only the rows it is
given: no file, no network, no extension, no setting (issue 11).

Each site that runs such SQL is attacked with a file read; `mlsd sql` also
with COPY over a lake file, ATTACH, INSTALL and SET.
"""

from __future__ import annotations

import hashlib
import json

import pyarrow as pa
import pytest

from mlsd.errors import ModelError, SpecError
from tests._helpers import erase_and_reexport, run_cli

READ_FILE = "(SELECT content FROM read_text('/etc/hostname'))"


def _digest(folder) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_mlsd_sql_reads_the_lake_and_nothing_else(fresh_project):
    run_cli("ingest", cwd=fresh_project)
    lake = fresh_project / ".mlsd" / "lake" / "sources" / "posts_log"
    target = next(lake.rglob("*.parquet"))
    before = _digest(lake)
    ok = json.loads(run_cli("sql", "SELECT count(*) AS n FROM posts_log", "--json",
                            cwd=fresh_project).stdout)
    assert ok[0]["n"] > 0
    attacks = [
        f"COPY (SELECT 1 AS x) TO '{target}' (FORMAT parquet)",
        "SELECT * FROM read_csv('/etc/passwd')",
        "SELECT * FROM glob('/root/*')",
        f"ATTACH '{fresh_project / 'x.duckdb'}'",
        "INSTALL httpfs",
        "LOAD httpfs",
        "SET enable_external_access = true",
        f"SELECT * FROM '{target}'",
    ]
    for attack in attacks:
        proc = run_cli("sql", attack, cwd=fresh_project, check=False)
        assert proc.returncode == 2, (attack, proc.stdout, proc.stderr)
        assert "is refused" in proc.stderr and "Traceback" not in proc.stderr
    assert _digest(lake) == before  # not one byte of the lake changed
    assert not (fresh_project / "x.duckdb").exists()
    assert "refused" in run_cli("sql", "--help", cwd=fresh_project).stdout


def test_a_validation_check_cannot_read_a_file():
    from mlsd.etl import DataSchema, Validator
    from mlsd.spec._models import ValidateSpec

    v = Validator(schema=DataSchema({"a": "int64"}),
                  rules=ValidateSpec(checks={"peek": f"length({READ_FILE}) > 0"}))
    with pytest.raises(SpecError, match="validate.checks.peek.*refused"):
        v.check_rules("src")


def test_a_derived_column_cannot_read_a_file_at_load():
    from mlsd.etl import DataSchema
    from mlsd.etl._transform import Transformer
    from mlsd.spec._models import TransformSpec

    t = Transformer(spec=TransformSpec(derive={"host": READ_FILE}),
                    schema=DataSchema({"a": "int64"}))
    with pytest.raises(SpecError, match="transform.derive.*refused"):
        t.derived_fields()


def test_a_derived_column_read_from_an_artifact_cannot_read_a_file():
    """Serving and batch scoring apply the artifact's derived columns: a
    doctored manifest gets no file either."""
    from mlsd.models._artifact import derive_columns

    table = pa.table({"a": [1, 2]})
    assert derive_columns(table, {"b": "a * 2"}).column("b").to_pylist() == [2, 4]
    with pytest.raises(ModelError, match="refused"):
        derive_columns(table, {"host": READ_FILE})


def test_an_erasure_predicate_cannot_read_a_file(fresh_project):
    run_cli("ingest", cwd=fresh_project)
    lake = fresh_project / ".mlsd" / "lake"
    before = _digest(lake)
    proc = run_cli("lake", "delete", "posts_log", "--where",
                   f"author_id IN {READ_FILE}", cwd=fresh_project, check=False)
    assert proc.returncode == 2, proc.stderr
    assert "refused" in proc.stderr and "Traceback" not in proc.stderr
    assert _digest(lake) == before


def test_an_erasure_is_one_expression_evaluated_before_anything_is_deleted(
        fresh_project):
    """`1=1) OR (1=1` does not escape into deleting everything; a predicate
    that fails on the quarantine deletes nothing anywhere; a subquery gives
    one line, not a Rust panic; after an erasure the strings are still
    strings, and the same file loaded again does not bring the rows back."""
    import mlsd
    from mlsd.runtime import Project

    mlsd.run(fresh_project, until="split")
    lake = fresh_project / ".mlsd" / "lake"
    before = _digest(lake)
    for where, why in (("1=1) OR (1=1", "closes a parenthesis"),
                       ("author_id = 'x' -- ", "comment")):
        proc = run_cli("lake", "delete", "posts_log", "--where", where,
                       cwd=fresh_project, check=False)
        assert proc.returncode == 2 and why in proc.stderr, proc.stderr
    # a column the quarantine's parsed rows lack: caught before any deletion
    proc = run_cli("lake", "delete", "posts_log", "--where",
                   "_load_id IS NOT NULL AND author_id = 'u000001'",
                   cwd=fresh_project, check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert _digest(lake) == before
    project = Project.find(start=fresh_project)
    author = project.lake.read("sources", "posts_log").column(
        "author_id")[0].as_py()
    res = json.loads(run_cli(
        "lake", "delete", "posts_log", "--where",
        f"author_id IN (SELECT author_id FROM dataset WHERE author_id = '{author}')",
        "--json", cwd=fresh_project).stdout)
    assert res["dataset"]["deleted"] >= 1
    after = project.lake.read("sources", "posts_log")
    assert pa.types.is_string(after.schema.field("author_id").type)
    left = json.loads(run_cli("sql", f"SELECT count(*) AS n FROM posts_log WHERE "
                              f"author_id = '{author}'", "--json",
                              cwd=fresh_project).stdout)
    assert left == [{"n": 0}]
    rows = after.num_rows
    run_cli("ingest", cwd=fresh_project)  # the source file is unchanged
    assert project.lake.read("sources", "posts_log").num_rows == rows


def test_an_erasure_holds_for_new_files_and_vacuum_removes_what_it_replaced(
        fresh_project):
    """The erasure is kept: a new file with the erased person's rows loads
    without them; `lake erasures` lists it; `lake vacuum` removes the files it
    replaced whatever the retention, and the versions before it say so."""
    import shutil

    import pyarrow.parquet as pq

    from mlsd.runtime import Project

    run_cli("ingest", cwd=fresh_project)
    project = Project.find(start=fresh_project)
    author = project.lake.read("sources", "posts_log").column(
        "author_id")[0].as_py()
    res = json.loads(run_cli("lake", "delete", "posts_log", "--where",
                             f"author_id = '{author}'", "--json",
                             cwd=fresh_project).stdout)
    assert res["erasure_id"] and res["dataset"]["deleted"] >= 1
    listed = json.loads(run_cli("lake", "erasures", "--json",
                                cwd=fresh_project).stdout)
    assert [e["where"] for e in listed] == [f"author_id = '{author}'"]
    # a re-export: the same rows in a new file (the spec reads a glob now)
    data = fresh_project / "data"
    shutil.copy(data / "posts_log.jsonl", data / "posts_log_2.jsonl")
    spec = fresh_project / "mlsd.yaml"
    spec.write_text(spec.read_text().replace("path: data/posts_log.jsonl",
                                             "path: 'data/posts_log*.jsonl'"))
    out = json.loads(run_cli("ingest", "--json", cwd=fresh_project).stdout)
    log = next(s for s in out["sources"] if s["source"] == "posts_log")
    assert log["rows_erased"] >= 2 * res["dataset"]["deleted"] - 1
    assert log["rows_in"] == log["rows_stored"] + log["rows_quarantined"] + \
        log["rows_erased"]
    n = json.loads(run_cli("sql", f"SELECT count(*) AS n FROM posts_log WHERE "
                           f"author_id = '{author}'", "--json",
                           cwd=fresh_project).stdout)
    assert n == [{"n": 0}]
    # the lake's retention is a week: the erasure's old files go anyway
    vac = json.loads(run_cli("lake", "vacuum", "--json", cwd=fresh_project).stdout)
    assert sum(v.get("erased_files_removed", 0) for v in vac) >= 1
    left = [p for p in (fresh_project / ".mlsd/lake/sources/posts_log").rglob(
        "*.parquet") if "_delta_log" not in p.parts and author in pq.read_table(
            p, columns=["author_id"]).column("author_id").to_pylist()]
    assert left == []
    proc = run_cli("export", "posts_log", "-f", "csv", "--version", "0",
                   cwd=fresh_project, check=False)
    assert proc.returncode == 2 and "can no longer be read" in proc.stderr


def test_lineage_says_which_versions_held_erased_rows(ran_project, tmp_path):
    import shutil

    folder, summary = ran_project
    copy = tmp_path / "demo"
    shutil.copytree(folder, copy)
    from mlsd.runtime import Project

    author = Project.find(start=copy).lake.read("sources", "posts_log").column(
        "author_id")[0].as_py()
    run_cli("lake", "delete", "posts_log", "--where", f"author_id = '{author}'",
            cwd=copy)
    model = summary["model"]["model_id"]
    doc = json.loads(run_cli("lineage", model, "--json", cwd=copy).stdout)
    log = next(d for d in doc["datasets"] if d["dataset"] == "sources/posts_log")
    [e] = log["erased_since"]
    assert e["where"] == f"author_id = '{author}'" and e["deleted"] >= 1
    text = run_cli("lineage", model, cwd=copy).stdout
    assert "rows erased since" in text


def test_an_erasure_also_keeps_new_quarantined_records_out(fresh_project):
    """A record of the erased person that fails validation in a later load is
    not kept in the quarantine either."""

    from mlsd.runtime import Project

    run_cli("ingest", cwd=fresh_project)
    project = Project.find(start=fresh_project)
    authors = []
    for r in project.lake.read("quarantine", "posts_log").to_pylist():
        try:
            authors.append(json.loads(r["raw"])["author_id"])
        except (ValueError, KeyError, TypeError):
            continue  # a record that is not JSON, or has no author
    author = authors[0]
    erase_and_reexport(fresh_project, author)
    run_cli("ingest", cwd=fresh_project)
    left = [r for r in project.lake.read("quarantine", "posts_log").to_pylist()
            if author in r["raw"]]
    assert left == []


def test_a_quarantine_predicate_cannot_read_a_file(tmp_path):
    """The quarantine's records are parsed again and matched in the locked
    connection too."""
    from mlsd.errors import LakeError
    from mlsd.etl import DataSchema
    from mlsd.etl._quarantine import rejected_matching
    from mlsd.spec._models import SourceSpec

    rows = [{"_source": "x.jsonl", "raw": '{"a": "1"}'}]
    spec = SourceSpec(path="x.jsonl")
    schema = DataSchema({"a": "string"})
    assert rejected_matching(rows, spec, schema, "a = '1'", root=tmp_path,
                             null_values=[]) == [True]
    with pytest.raises(LakeError, match="refused"):
        rejected_matching(rows, spec, schema, f"a IN {READ_FILE}", root=tmp_path,
                          null_values=[])
