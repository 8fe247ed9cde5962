"""A load killed with SIGKILL at random moments, then run again: the dataset is
readable and no row is lost or stored twice."""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time

import pyarrow as pa
import pyarrow.compute  # noqa: F401
import pytest
import yaml
from deltalake import DeltaTable

from mlsd.pipeline import Project, ingest

pytestmark = pytest.mark.slow
ROWS = 40_000
BAD = {7, 1234, 39_999}  # rows with a bad number, quarantined


def _lines(start: int, n: int, note: str = "") -> list[str]:
    return [f"{i},{'oops' if i in BAD else i * 0.5},{i % 7},row {i}{note}"
            for i in range(start, start + n)]


def _project(folder, load):
    spec = {"name": "p", "problem": {"task": "regression", "target": "v"},
            "sources": {"s": {"path": "data/*.csv", "key": "id", "load": load}},
            "validate": {"required": ["id"]},
            "features": [{"column": "x"}]}
    (folder / "data").mkdir(parents=True)
    (folder / "schemas").mkdir()
    (folder / "schemas/s.yaml").write_text(
        "columns: {id: int64, x: float64, v: float64, note: string}\n")
    lines = ["id,x,v,note", *_lines(0, ROWS)]
    (folder / "data/s.csv").write_text("\n".join(lines) + "\n")
    (folder / "mlsd.yaml").write_text(yaml.safe_dump(spec))


def _check(folder, expected_ids: set[int]):
    table = DeltaTable(str(folder / ".mlsd/lake/sources/s")).to_pyarrow_table()
    ids = table.column("id").to_pylist()
    assert len(ids) == len(set(ids)), "a row was stored twice"
    assert set(ids) == expected_ids - BAD, "a row was lost"
    q = DeltaTable(str(folder / ".mlsd/lake/quarantine/s")).to_pyarrow_table()
    assert sorted(q.column("_line").to_pylist()) == sorted(i + 2 for i in BAD)
    return table


CHILD = "import mlsd.pipeline as p; p.ingest(p.Project.find())"


@pytest.mark.parametrize("load", ["overwrite", "append"])
def test_sigkill_then_rerun(tmp_path, load):
    rng = random.Random(1234 if load == "overwrite" else 4321)
    folder = tmp_path / "p"
    _project(folder, load)
    # how long a whole load takes here, to aim the kills across all of it
    start = time.monotonic()
    subprocess.run([sys.executable, "-c", CHILD], cwd=folder, check=True)
    whole = time.monotonic() - start
    expected = set(range(ROWS))
    _check(folder, expected)
    for trial in range(10):
        # new input, so the next load has real work to do: overwrite mode gets
        # a changed file, append mode a new one
        if load == "overwrite":
            lines = ["id,x,v,note", *_lines(0, ROWS, f" trial {trial}")]
            (folder / "data/s.csv").write_text("\n".join(lines) + "\n")
        else:
            first = ROWS * (trial + 1) + 10
            lines = ["id,x,v,note", *_lines(first, 20_000)]
            (folder / f"data/t{trial}.csv").write_text("\n".join(lines) + "\n")
            expected |= set(range(first, first + 20_000))
        proc = subprocess.Popen([sys.executable, "-c", CHILD], cwd=folder,
                                stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0.3, whole))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        ingest(Project.find(start=folder))
        table = _check(folder, expected)
        if load == "overwrite":
            note = table.filter(pa.compute.equal(table.column("id"), 0))
            assert note.column("note")[0].as_py() == f"row 0 trial {trial}"
