"""`mlsd predict` streams any input in chunks: peak memory does not grow with
the input (10 times the rows, less than 20% more peak RSS)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pytest

pytestmark = pytest.mark.slow

PROBE = """
import resource, sys
from mlsd.pipeline import score_file
res = score_file(sys.argv[1], sys.argv[2], sys.argv[3], chunk_rows=5_000,
                 trust_unregistered=True)
print("RSS", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, res["scored"])
"""


def _input(folder: Path, rows: int, path: Path) -> Path:
    base = pacsv.read_csv(folder / "data" / "new_posts.csv")
    reps = -(-rows // base.num_rows)
    t = pa.concat_tables([base] * reps).slice(0, rows)
    ids = pc.binary_join_element_wise(t.column("post_id"), pa.array(
        [str(i) for i in range(rows)]), "-")
    t = t.set_column(t.column_names.index("post_id"), "post_id", ids)
    pacsv.write_csv(t, path)
    return path


def _peak(model: Path, inp: Path, out: Path) -> tuple[int, int]:
    proc = subprocess.run([sys.executable, "-c", PROBE, str(model), str(inp),
                           str(out)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    line = next(x for x in proc.stdout.splitlines() if x.startswith("RSS"))
    _, rss, scored = line.split()
    return int(rss), int(scored)


def test_peak_memory_does_not_grow_with_the_input(ran_project, tmp_path):
    folder, summary = ran_project
    model = Path(folder) / summary["paths"]["model"]
    small = _peak(model, _input(Path(folder), 20_000, tmp_path / "small.csv"),
                  tmp_path / "small.parquet")
    large = _peak(model, _input(Path(folder), 200_000, tmp_path / "large.csv"),
                  tmp_path / "large.parquet")
    assert small[1] > 19_000 and large[1] > 190_000  # (a few rows break rules)
    assert large[0] < small[0] * 1.2, (small, large)
