"""The sample stage on Spark: random and stratified samples drawn by Spark
jobs (each row's unit computed by DuckDB in the tasks) are the rows, weights
and bias report a DuckDB run draws."""

from __future__ import annotations

import shutil

import pyarrow as pa
import pytest

from mlsd.pipeline import run
from mlsd.runtime import Project

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("sample, unkeyed", [
    ("{method: random, n: 700}", False),
    ("{method: random, fraction: 0.05}", True),  # rows known by file and line
    ("{method: stratified, fraction: 0.1, allocation: equal, reweight: true}", False),
    ("{method: stratified, n: 900, by: author_country, seed: 11}", False),
    ("{method: weighted, n: 500, weights: likes + 1}", False),
    # weights of 0 and missing ones (views is null on some rows), reweighted
    ("{method: weighted, fraction: 0.08, weights: 'greatest(views - 100, 0)', "
     "reweight: true}", True),
    ("{method: random, n: 600, replace: true}", False),
    ("{method: reservoir, n: 250}", True),
    ("{method: reservoir, n: 250, weights: 'likes'}", False),
    ("{method: weighted, n: 400, weights: 'likes + 1', replace: true}", False),
    ("{method: weighted, n: 300, weights: 'greatest(views - 150, 0)', replace: true, "
     "reweight: false}", True),
    ("{method: importance, n: 500, proposal: 'likes + 1', density: 'views'}", False),
    ("{method: convenience, n: 300, where: 'likes > 2 AND views < 400'}", True),
    # categories as DuckDB writes them (a timestamp's text differs in Spark's cast)
    ("{method: quota, per_category: 2, by: created_at, where: 'likes > 3'}", False),
    ("{method: quota, quota: {US: 50, FR: 20, XX: 5}, by: author_country}", False),
    ("{method: judgment, keys: [p0000002, p0000003, p0000004, p0000005, nope], "
     "chosen_by: moderators}", False),
    ("{method: judgment, where: \"author_country = 'FR' AND dislikes > 1\", "
     "chosen_by: moderators}", True)])
def test_a_sample_drawn_on_spark_is_the_one_drawn_on_duckdb(
        spark_engine, example_dir, tmp_path, sample, unkeyed):
    here, there = tmp_path / "duckdb", tmp_path / "spark"
    shutil.copytree(example_dir, here)
    shutil.copytree(example_dir, there)
    sets = [f"sample={sample}", *(["dataset.key=null"] if unkeyed else [])]
    local = run(Project.of(here).with_overrides(sets), until="sample")
    spark = run(Project.of(there).with_overrides(sets), until="sample",
                engine="spark")
    a, b = local["sample"], spark["sample"]
    assert a["drawn_on"] == "duckdb" and b["drawn_on"] == "spark local[2]"
    assert a["rows"] > 0
    # the same summary (sizes, weights, effective size, notes, bias report)
    drop = ("drawn_on",)
    assert {k: v for k, v in b.items() if k not in drop} == \
        {k: v for k, v in a.items() if k not in drop}
    name = a["dataset"].split("/")[1]
    mine, theirs = Project.of(there).lake, Project.of(here).lake
    assert mine.read("samples", name).equals(theirs.read("samples", name))
    assert mine.last_write("samples", name)["mlsd.write_id"] == \
        theirs.last_write("samples", name)["mlsd.write_id"]


def test_a_snowball_walks_the_same_links_on_spark(spark_engine, example_dir,
                                                 tmp_path):
    """Level by level, each level's rows found by key by Spark: the rows, the
    depths and the notes of the DuckDB walk (links from a lake dataset, some
    leading to keys that are not train rows)."""
    said = []
    for engine in ("duckdb", "spark"):
        there = tmp_path / engine
        shutil.copytree(example_dir, there)
        # the links: a lake dataset of their own, some leading out of train
        src = [f"p{i:07d}" for i in range(1, 3001) for _ in range(3)] + ["p0000002"]
        dst = [f"p{(i * m) % 3000 + 1:07d}" for i in range(1, 3001)
               for m in (37, 53, 71)] + ["nobody"]
        Project.of(there).lake.write("sources", "links", pa.table(
            {"src": src, "dst": dst}), write_id="links-1")
        with (there / "mlsd.yaml").open("a") as f:
            f.write("\nsample: {method: snowball, keys: [p0000002], n: 80, "
                    "edges: {dataset: sources/links, from: src, to: dst}}\n")
        said.append(run(Project.of(there), until="sample", engine=engine))
    a, b = said[0]["sample"], said[1]["sample"]
    assert a["drawn_on"] == "duckdb" and b["drawn_on"] == "spark local[2]"
    assert a["rows"] == 80 and any("links lead to keys" in n for n in a["notes"])
    drop = ("drawn_on",)
    assert {k: v for k, v in b.items() if k not in drop} == \
        {k: v for k, v in a.items() if k not in drop}
    name = a["dataset"].split("/")[1]
    assert Project.of(tmp_path / "spark").lake.read("samples", name).equals(
        Project.of(tmp_path / "duckdb").lake.read("samples", name))


@pytest.mark.parametrize("sample", [
    "{method: convenience, n: 30, where: 'nosuch > 1'}",
    "{method: weighted, n: 30, weights: 'likes + text'}",
    "{method: importance, n: 30, proposal: 'likes + 1', density: 'nosuch'}"])
def test_a_bad_expression_is_the_same_error_on_both_engines(
        spark_engine, example_dir, tmp_path, sample):
    """Bound on the driver first: DuckDB's own words, not a failed Spark task."""
    from mlsd.errors import SpecError

    said = []
    for engine in ("duckdb", "spark"):
        there = tmp_path / engine
        shutil.copytree(example_dir, there)
        with pytest.raises(SpecError) as err:
            run(Project.of(there).with_overrides([f"sample={sample}"]),
                until="sample", engine=engine)
        said.append(str(err.value))
    assert said[0] == said[1] and said[0].startswith(
        ("sample.where: ", "sample.weights: ", "sample.density: "))


def test_a_bad_weight_on_spark_names_its_row(spark_engine, example_dir, tmp_path):
    from mlsd.errors import DataError

    there = tmp_path / "spark"
    shutil.copytree(example_dir, there)
    with pytest.raises(DataError) as err:
        run(Project.of(there).with_overrides(
            ["sample={method: weighted, n: 300, weights: likes - 3}"]),
            until="sample", engine="spark")
    text = str(err.value)
    assert text.startswith("sample.weights: the weight of the row {'post_id': 'p")
    assert text.endswith(" is -3.0; weights must be finite and >= 0") or \
        text.endswith(" is -2.0; weights must be finite and >= 0") or \
        text.endswith(" is -1.0; weights must be finite and >= 0")


def test_the_command_says_where_the_sample_was_drawn(spark_engine, example_dir,
                                                    tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from mlsd.cli import app

    there = tmp_path / "spark"
    shutil.copytree(example_dir, there)
    monkeypatch.chdir(there)
    r = CliRunner().invoke(app, ["run", "--until", "sample", "--engine", "spark",
                                 "--set", "sample={method: random, fraction: 0.05}"])
    assert r.exit_code == 0, r.output
    assert "Sample (random, drawn on spark local[2]): " in r.output


def test_a_draw_that_needs_every_row_on_the_driver_weighs_its_memory_first(
        spark_engine, example_dir, tmp_path, monkeypatch):
    """A draw with replacement brings one number a row to the driver: past the
    memory it has free, a clear error (not the kernel's silent kill) saying
    which draws Spark ranks itself."""
    from mlsd import _memory
    from mlsd.errors import DataError

    there = tmp_path / "spark"
    shutil.copytree(example_dir, there)
    run(Project.of(there), until="table", engine="spark")
    monkeypatch.setattr(_memory, "available_bytes", lambda: 50_000)
    with pytest.raises(DataError) as err:
        run(Project.of(there).with_overrides(
            ["sample={method: importance, n: 300, density: 'likes + 1'}"]),
            from_="sample", until="sample", engine="spark")
    text = str(err.value)
    assert text.startswith("sample (importance): this draw needs the row number and "
                           "2 weights of every train row on the driver, 5,589 rows, "
                           "about ")
    assert "48.8 KiB free: draw without replacement (random, stratified" in text


def test_a_snowball_follows_a_link_column_on_spark_as_on_duckdb(spark_engine):
    """Links in a column of the rows (a list of keys too), some dangling."""
    from mlsd.spec import SampleSpec
    from mlsd.trainingdata import draw
    from mlsd.trainingdata._sampling_spark import draw_on_spark

    n = 300
    table = pa.table({
        "_row": pa.array(range(n), pa.int64()),
        "id": [f"k{i:03d}" for i in range(n)],
        "next": [[f"k{(i * 7) % n:03d}", f"k{(i * 11 + 1) % n:03d}"]
                 + (["gone"] if i % 9 == 0 else []) for i in range(n)],
        "x": [float(i % 13) for i in range(n)]})
    frame = spark_engine.session.createDataFrame(table.to_pandas())
    for settings in ({"n": 40, "keys": ["k001"], "link": "next"},
                     {"where": "x = 12", "link": "next", "max_depth": 1}):
        spec = SampleSpec(method="snowball", **settings)
        local = draw(table, spec, seed=3, key="id", order=["_row"],
                     report_columns=["x"])
        there = draw_on_spark(frame, spec, seed=3, key="id", target=None,
                              order=["_row"], schema=table.schema,
                              report_columns=["x"])
        assert there.rows.equals(local.rows) and there.notes == local.notes
        assert local.rows.num_rows > 1
