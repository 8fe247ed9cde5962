"""A dataset damaged outside mlsd is found by `mlsd lake check` and repaired
by `mlsd lake repair` (issue 11): the last intact version restored, a file
source loaded again, and each action said."""

from __future__ import annotations

import json

from tests._helpers import run_cli


def _parquet_files(folder):
    return sorted(p for p in folder.rglob("*.parquet") if "_delta_log" not in p.parts)


def test_a_removed_or_cut_file_is_found_and_repaired(fresh_project):
    run_cli("ingest", cwd=fresh_project)
    before = json.loads(run_cli("sql", "SELECT count(*) AS n FROM posts_log",
                                "--json", cwd=fresh_project).stdout)
    assert json.loads(run_cli("lake", "check", "--json", cwd=fresh_project).stdout)
    lake = fresh_project / ".mlsd" / "lake"
    [victim] = _parquet_files(lake / "sources" / "posts_log")[:1]
    victim.unlink()
    cut = _parquet_files(lake / "quarantine" / "posts_export")[0]
    cut.write_bytes(cut.read_bytes()[:100])
    proc = run_cli("lake", "check", "--json", cwd=fresh_project, check=False)
    assert proc.returncode == 1
    bad = {r["dataset"]: r["problems"] for r in json.loads(proc.stdout)
           if not r["ok"]}
    assert set(bad) == {"sources/posts_log", "quarantine/posts_export"}
    assert "missing" in bad["sources/posts_log"][0]
    assert "bytes, the log says" in bad["quarantine/posts_export"][0]
    res = {r["dataset"]: r for r in json.loads(run_cli(
        "lake", "repair", "--json", cwd=fresh_project).stdout)}
    assert "loaded again from its files" in res["sources/posts_log"]["action"]
    assert "loaded again from its files" in res["quarantine/posts_export"]["action"]
    run_cli("lake", "check", cwd=fresh_project)  # whole again: exit 0
    after = json.loads(run_cli("sql", "SELECT count(*) AS n FROM posts_log",
                               "--json", cwd=fresh_project).stdout)
    assert after == before


def test_a_damaged_append_dataset_goes_back_to_its_last_whole_version(tmp_path):
    """Rows of an append source may come from files long gone: the last
    intact version is restored instead, and the repair says so."""
    folder = tmp_path / "p"
    (folder / "data").mkdir(parents=True)
    (folder / "mlsd.yaml").write_text(
        "name: app\nproblem: {target: y, task: binary}\n"
        "sources:\n  s: {path: 'data/*.csv', key: id, load: append}\n"
        "features:\n  - {column: x}\n")
    (folder / "data" / "a.csv").write_text("id,x,y\n1,1,0\n2,2,1\n")
    run_cli("ingest", cwd=folder)
    (folder / "data" / "b.csv").write_text("id,x,y\n3,3,0\n")
    run_cli("ingest", cwd=folder)
    newest = max(_parquet_files(folder / ".mlsd/lake/sources/s"),
                 key=lambda p: p.stat().st_mtime_ns)
    newest.unlink()
    [res] = [r for r in json.loads(run_cli("lake", "repair", "--json",
                                           cwd=folder).stdout)
             if r["dataset"] == "sources/s"]
    assert res["action"].startswith("restored version 0")
    run_cli("lake", "check", cwd=folder)
    rows = json.loads(run_cli("sql", "SELECT count(*) AS n FROM s", "--json",
                              cwd=folder).stdout)
    assert rows == [{"n": 2}]
