"""One writer at a time (issue 11): two ingests racing in append mode store
each row once; a second writer waits, saying who holds the lake, or fails at
once with --no-wait; a reader never waits; a killed run leaves nothing behind
at the next start."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from mlsd.lake._locks import hold, lock_path
from tests._helpers import run_cli


def _append_project(tmp_path, rows: int = 4000):
    folder = tmp_path / "p"
    (folder / "data").mkdir(parents=True)
    lines = ["id,x,y"] + [f"{i},{i % 7},{i % 2}" for i in range(rows)]
    (folder / "data" / "a.csv").write_text("\n".join(lines) + "\n")
    (folder / "mlsd.yaml").write_text(
        "name: race\nproblem: {target: y, task: binary}\n"
        "sources:\n  s: {path: 'data/*.csv', key: id, load: append}\n"
        "features:\n  - {column: x}\n")
    return folder


def test_two_ingests_racing_store_every_row_once(tmp_path):
    """Append mode: a new file, two `mlsd ingest` at once. Unserialised, both
    saw the file as new and both appended it (4,994 rows for 3,995 keys)."""
    folder = _append_project(tmp_path, rows=20_000)
    run_cli("ingest", cwd=folder)
    for n, name in enumerate(("b", "c"), start=1):
        first = 20_000 * (n + 1)
        lines = ["id,x,y"] + [f"{i},{i % 7},{i % 2}" for i in range(first - 20_000,
                                                                   first)]
        (folder / "data" / f"{name}.csv").write_text("\n".join(lines) + "\n")
        procs = [subprocess.Popen([sys.executable, "-m", "mlsd", "ingest", "--json"],
                                  cwd=folder, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True)
                 for _ in range(2)]
        for p in procs:
            p.wait(timeout=120)
            assert p.returncode == 0, p.stderr.read()
        rows = json.loads(run_cli("sql", "SELECT count(*) AS n, count(DISTINCT id) "
                                  "AS k FROM s", "--json", cwd=folder).stdout)
        assert rows == [{"n": first, "k": first}]


def test_a_second_writer_waits_or_fails_and_a_reader_does_not(tmp_path):
    folder = _append_project(tmp_path, rows=50)
    run_cli("ingest", cwd=folder)
    lock = lock_path(folder / ".mlsd", "run")
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, time\nfrom pathlib import Path\n"
         "from mlsd.lake._locks import hold\n"
         f"with hold(Path({str(lock)!r}), 'x'):\n"
         "    print('held', flush=True); time.sleep(30)\n"],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        proc = run_cli("ingest", "--no-wait", cwd=folder, check=False)
        assert proc.returncode == 2, proc.stderr
        assert f"pid {holder.pid}" in proc.stderr and "busy" in proc.stderr
        started = time.monotonic()
        run_cli("sql", "SELECT count(*) FROM s", cwd=folder)  # readers never wait
        assert time.monotonic() - started < 25
        waiting = subprocess.Popen([sys.executable, "-m", "mlsd", "ingest"],
                                   cwd=folder, stderr=subprocess.PIPE, text=True)
        time.sleep(3)
        assert waiting.poll() is None  # it waits for the holder
        holder.send_signal(signal.SIGKILL)  # the kernel frees the lock
        holder.wait()
        _, err = waiting.communicate(timeout=60)
        assert waiting.returncode == 0 and "waiting for the project's lake" in err
    finally:
        holder.kill()


def test_a_lock_is_reentrant_in_one_process_and_refused_across(tmp_path):
    path = tmp_path / "l.lock"
    with hold(path, "it"), hold(path, "it"):
        code = ("from pathlib import Path\nfrom mlsd.lake._locks import hold\n"
                f"with hold(Path({str(path)!r}), 'it', wait=False): pass\n")
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True,
                              text=True)
        assert proc.returncode != 0 and "LockHeld" in proc.stderr
    with hold(path, "it", wait=False):  # free again once released
        pass


def test_a_killed_ingest_leaves_nothing_behind(tmp_path):
    folder = _append_project(tmp_path, rows=300_000)
    proc = subprocess.Popen([sys.executable, "-m", "mlsd", "ingest"], cwd=folder,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    tmp = folder / ".mlsd" / "tmp"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not (tmp.is_dir() and any(tmp.iterdir())):
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert tmp.is_dir() and any(tmp.iterdir()), "the load had started"
    from mlsd.runtime import Project

    runs = Project.find(start=folder).catalog.runs()
    assert runs[-1]["status"] == "running"
    run_cli("ingest", cwd=folder)
    runs = Project.find(start=folder).catalog.runs()
    assert runs[-2]["status"] == "killed" and runs[-1]["status"] == "done"
    assert not any(tmp.iterdir())


@pytest.mark.slow
def test_two_runs_at_once_one_after_the_other(fresh_project):
    """Two `mlsd run` at once: the second waits for the first, names it, then
    runs on what it left (nothing new to load, no extra version); it used to
    die with FileExistsError on the model's folder or add a version."""
    procs = [subprocess.Popen([sys.executable, "-m", "mlsd", "run", "--json",
                               "--until", "train"], cwd=fresh_project,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for _ in range(2)]
    outs = []
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
        outs.append((json.loads(out), err))
    assert any("waiting for the project's lake: pid" in err for _, err in outs)
    versions = [[s["version"] for s in doc["sources"]] for doc, _ in outs]
    assert versions[0] == versions[1] == [0, 0]
    models = {doc["model"]["model_id"] for doc, _ in outs}
    assert len(models) == 2
