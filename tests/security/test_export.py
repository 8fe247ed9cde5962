"""`mlsd export --output` cannot overwrite the project: not inside .mlsd/, not
the spec, a schema or a source's file, not an existing file without --force
(issue 11)."""

from __future__ import annotations

import hashlib

import pyarrow.parquet as pq

from tests._helpers import run_cli


def _sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_export_never_overwrites_what_the_project_needs(fresh_project):
    run_cli("ingest", cwd=fresh_project)
    data = fresh_project / "data" / "posts_log.jsonl"
    precious = [fresh_project / ".mlsd" / "catalog.db", fresh_project / "mlsd.yaml",
                fresh_project / "schemas" / "posts_log.yaml", data]
    before = {p: _sha(p) for p in precious}
    for target, why in ((precious[0], "inside"), (precious[1], "the project's spec"),
                        (precious[2], "a schema file"),
                        (precious[3], "a file of source"),
                        (fresh_project / ".mlsd" / "new.csv", "inside")):
        proc = run_cli("export", "posts_log", "-f", "csv", "-o", str(target),
                       "--force", cwd=fresh_project, check=False)
        assert proc.returncode == 2 and why in proc.stderr, (target, proc.stderr)
        assert "Traceback" not in proc.stderr
    assert {p: _sha(p) for p in precious} == before
    assert not (fresh_project / ".mlsd" / "new.csv").exists()


def test_an_existing_file_needs_force_and_a_folder_is_one_line(fresh_project,
                                                               tmp_path):
    run_cli("ingest", cwd=fresh_project)
    out = tmp_path / "posts.parquet"
    run_cli("export", "posts_log", "-f", "parquet", "-o", str(out),
            cwd=fresh_project)
    rows = pq.read_metadata(out).num_rows
    proc = run_cli("export", "posts_export", "-f", "parquet", "-o", str(out),
                   cwd=fresh_project, check=False)
    assert proc.returncode == 2 and "exists: pass --force" in proc.stderr
    assert pq.read_metadata(out).num_rows == rows  # untouched
    run_cli("export", "posts_export", "-f", "parquet", "-o", str(out), "--force",
            cwd=fresh_project)
    assert pq.read_metadata(out).num_rows != rows
    assert not [p for p in tmp_path.iterdir() if "mlsd-partial" in p.name]
    proc = run_cli("export", "posts_log", "-f", "csv", "-o", str(tmp_path),
                   cwd=fresh_project, check=False)
    assert proc.returncode == 2 and "is a folder" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
