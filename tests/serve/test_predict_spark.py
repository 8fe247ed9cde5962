"""`mlsd predict` on Spark: the input read, checked and scored by Spark tasks
(a large CSV file in spans) gives the output of a local scoring."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from mlsd.pipeline import score_file
from mlsd.runtime import Project

pytestmark = pytest.mark.slow


def test_batch_scoring_on_spark_writes_what_local_scoring_writes(
        spark_engine, ran_project, tmp_path, monkeypatch):
    from mlsd.etl import _distributed

    folder, summary = ran_project
    model = Project.of(folder).find_model(None)
    # an input with rows the service would refuse, written without quoted
    # line breaks (pyarrow quotes every text), cut into spans
    base = pacsv.read_csv(folder / "data" / "new_posts.csv")
    rows = base.to_pylist()
    rows[3]["likes"] = "many"  # not a number: rejected with its reason
    table = pa.Table.from_pylist([{k: (None if v is None else str(v).replace(
        "\n", " ")) for k, v in r.items()} for r in rows * 3])
    inp = tmp_path / "in.csv"
    pacsv.write_csv(table, inp)
    monkeypatch.setattr(_distributed, "SPAN_BYTES", inp.stat().st_size // 5)

    here = score_file(model, inp, tmp_path / "here.parquet")
    there = score_file(model, inp, tmp_path / "there.parquet", engine=spark_engine)
    assert here == {**there, "output": here["output"],
                    "rejected_output": here["rejected_output"]}
    assert here["rejected"] == 3 and here["scored"] == table.num_rows - 3
    assert pq.read_table(tmp_path / "there.parquet").equals(
        pq.read_table(tmp_path / "here.parquet"))
    assert pq.read_table(tmp_path / "there.rejected.parquet").equals(
        pq.read_table(tmp_path / "here.rejected.parquet"))
    assert not list(tmp_path.glob(".mlsd-score-*"))  # the tasks' parts are gone


def test_mlsd_predict_on_spark_from_the_command_line(
        spark_engine, ran_project, tmp_path, monkeypatch):
    """`mlsd predict --engine spark` scores as the local command does; a
    wrong engine name is refused. In process, so on the suite's Spark session
    (a command of its own would start a JVM: 15 s more; a fresh process's
    session is the Spark Connect test's, tests/etl/test_load_spark.py)."""
    import json

    from typer.testing import CliRunner

    from mlsd.cli import app

    folder, _ = ran_project
    monkeypatch.chdir(folder)
    inp = str(folder / "data" / "new_posts.csv")

    def predict(out: str, *more: str):
        return CliRunner().invoke(app, ["predict", "-i", inp, "-o",
                                        str(tmp_path / out), *more])

    here, there = predict("a.csv", "--json"), predict("b.csv", "--engine", "spark",
                                                      "--json")
    assert here.exit_code == 0 and there.exit_code == 0, here.output + there.output
    here, there = json.loads(here.stdout), json.loads(there.stdout)
    assert {k: v for k, v in there.items() if "output" not in k} == \
        {k: v for k, v in here.items() if "output" not in k}
    assert (tmp_path / "a.csv").read_text() == (tmp_path / "b.csv").read_text()
    bad = predict("c.csv", "--engine", "sprak")  # `mlsd` prints it, exit 2
    assert "--engine 'sprak': expected duckdb or spark" in str(bad.exception)
