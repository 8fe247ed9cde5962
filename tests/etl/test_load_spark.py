"""engine: spark reads and validates files as Spark tasks and stores what the
local engine stores: the same rows, the same quarantine, the same load ids."""

from __future__ import annotations

import shutil
from pathlib import Path

import pyarrow as pa
import pytest

from mlsd.errors import DataError
from mlsd.pipeline import run
from mlsd.runtime import Project

from .._helpers import big_csv_project

pytestmark = pytest.mark.slow


def _jobs(monkeypatch) -> list[int]:
    """The units of every Spark job the engine runs from now on, in order."""
    from mlsd.engine import SparkEngine

    jobs: list[int] = []
    real_map = SparkEngine.map_units
    monkeypatch.setattr(SparkEngine, "map_units", lambda self, units, fn, schema:
                        jobs.append(len(units)) or real_map(self, units, fn, schema))
    return jobs


def test_the_example_ingested_on_spark_is_stored_as_on_duckdb(
        spark_engine, example_dir, tmp_path, monkeypatch):
    """In spans: the JSONL log's (any line break cuts it), the CSV export's
    (its quoted line breaks send it back to one task)."""
    from mlsd.etl import _distributed

    monkeypatch.setattr(_distributed, "SPAN_BYTES", 150_000)
    jobs = _jobs(monkeypatch)
    here, there = tmp_path / "duckdb", tmp_path / "spark"
    shutil.copytree(example_dir, here)
    shutil.copytree(example_dir, there)
    local = run(here, until="ingest")
    spark = run(there, until="ingest", engine="spark")  # as `mlsd run --engine`
    on_spark = Project.of(there).with_overrides(["engine=spark"])

    assert local["engine"] == "duckdb" and spark["engine"] == "spark local[2]"
    assert spark["totals"] == local["totals"]
    assert spark["totals"]["rows_quarantined"] > 0  # the example's defects
    a, b = Project.of(here), Project.of(there)
    assert max(jobs) > 3  # the files were cut
    for area in ("sources", "quarantine"):
        for name in ("posts_export", "posts_log"):
            # the same rows in the same order
            assert b.lake.read(area, name).equals(a.lake.read(area, name)), \
                (area, name)
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


@pytest.mark.parametrize("rule", ["unique", "none", "dedupe"],
                         ids=["a-unique-key-ranked-by-a-spark-window",
                              "the-tasks-write-the-stored-files",
                              "a-dedupe-settles-on-the-driver"])
@pytest.mark.parametrize("quoted_break_at", [None, 7_000],
                         ids=["spans", "a-quoted-line-break-reads-the-file-whole"])
def test_a_large_csv_read_in_spans_keeps_every_line_number(
        spark_engine, tmp_path, monkeypatch, quoted_break_at, rule):
    """A CSV file over SPAN_BYTES is cut at line breaks and read by several
    tasks, each span numbered from the line breaks before it (counted by a
    first job), so rows (in the same order), quarantine and load id are those
    of a local read, whether the tasks write the stored Parquet files (a
    `unique` key's repeats found by a Spark window in between) or the driver
    settles the batches (a dedupe). A quoted line break sends the file back
    to one task."""
    from mlsd.etl import _distributed

    monkeypatch.setattr(_distributed, "SPAN_BYTES", 40_000)  # ~13 spans
    jobs = _jobs(monkeypatch)
    here, there = tmp_path / "duckdb", tmp_path / "spark"
    for f in (here, there):
        big_csv_project(f, 20_000, quoted_break_at=quoted_break_at, rule=rule)
    local = run(here, until="ingest")
    spark = run(Project.of(there).with_overrides(["engine=spark"]), until="ingest")
    # counting the spans' lines, reading them, the file again whole, and
    # (a unique key) writing each staged part without its repeats
    spans = jobs[1]
    assert spans > 5
    assert jobs[:len(jobs) - (rule == "unique")] == [spans - 1, spans] + (
        [] if quoted_break_at is None else [1])
    assert spark["totals"] == local["totals"]
    assert spark["sources"][0]["reasons"] == local["sources"][0]["reasons"]
    assert spark["sources"][0]["top_messages"] == local["sources"][0]["top_messages"]
    a, b = Project.of(here), Project.of(there)
    for area in ("sources", "quarantine"):
        assert b.lake.read(area, "big").equals(a.lake.read(area, "big")), area
        assert b.lake.last_write(area, "big")["mlsd.write_id"] == \
            a.lake.last_write(area, "big")["mlsd.write_id"]
    q = b.lake.read("quarantine", "big").to_pylist()
    text = (there / "data.csv").read_text().split("\n")
    for row in q:  # the line number points at the very line of the file
        assert text[row["_line"] - 1] == row["raw"], row
    scratch = b.lake.root / "tmp"  # the parts the tasks wrote, committed or gone
    assert scratch.is_dir() and not list(scratch.rglob("*.parquet"))
    rules = {r["reasons"][0]["rule"] for r in q}
    assert rules >= {"type", "range", *({rule} - {"none"})}
    assert not list(there.rglob("j*-u*-b*.accepted"))
    # every file in the tables' folders is in their versions: no spans' left
    for area in ("sources", "quarantine"):
        folder = b.lake.path(area, "big")
        files = {p.name for p in folder.glob("*.parquet")}
        actions = b.lake._table(area, "big").get_add_actions(flatten=True)
        assert files == {Path(f).name for f in pa.table(actions).column("path")
                         .to_pylist()}


def test_a_recorded_erasure_holds_for_rows_spark_tasks_store(spark_engine,
                                                             fresh_project):
    """The tasks that write the stored files drop what `mlsd lake delete`
    recorded: a re-export with the erased person's rows stores none of them,
    as a local load (tests/security/test_sql_sandbox.py) does."""
    import json

    from tests._helpers import erase_and_reexport

    on_spark = Project.of(fresh_project).with_overrides(["engine=spark"])
    run(on_spark, until="ingest")
    author = on_spark.lake.read("sources", "posts_log").column("author_id")[0].as_py()
    data = erase_and_reexport(fresh_project, author)
    out = run(Project.of(fresh_project).with_overrides(["engine=spark"]),
              until="ingest")
    log = next(s for s in out["sources"] if s["source"] == "posts_log")
    import hashlib

    # two files: hashed by a Spark job, one task each
    assert {(f["path"], f["sha256"]) for f in log["files"]} == {
        (f"data/{n}", hashlib.sha256((data / n).read_bytes()).hexdigest())
        for n in ("posts_log.jsonl", "posts_log_2.jsonl")}
    assert log["rows_erased"] >= 2
    assert log["rows_in"] == log["rows_stored"] + log["rows_quarantined"] + \
        log["rows_erased"]
    stored = on_spark.lake.read("sources", "posts_log").column("author_id")
    assert author not in stored.to_pylist()
    assert json.dumps(author) not in "".join(
        on_spark.lake.read("quarantine", "posts_log").column("raw").to_pylist())


def test_an_unknown_engine_is_named_before_anything_runs(fresh_project):
    from tests._helpers import run_cli

    proc = run_cli("run", "--engine", "sprak", cwd=fresh_project, check=False)
    assert proc.returncode == 2
    assert "engine.kind: Input should be 'duckdb' or 'spark'" in proc.stderr
    assert not (fresh_project / ".mlsd" / "lake").exists()


def test_the_whole_example_on_spark_gives_the_same_split_features_and_model(
        spark_engine, ran_project, tmp_path, monkeypatch):
    """The forum-spam example run on Spark: the same stored rows (above), and
    so the same split, feature state and model metrics as the DuckDB run; the
    features and the model read only the training table's labels on the
    driver, never its raw inputs (Spark holds those)."""
    import json
    import traceback

    from mlsd.lake import Lake

    folder, local = ran_project
    there = tmp_path / "spark"
    shutil.copytree(folder, there, ignore=shutil.ignore_patterns(".mlsd"))
    read, reads = Lake.read, []

    def reading(self, area, name, version=None, columns=None):
        if area == "training":  # which stage read which columns on the driver
            files = {Path(f.filename).parent.name + "/" + Path(f.filename).name
                     for f in traceback.extract_stack()}
            stage = next((f for f in ("audit/_stage.py", "models/_stage.py",
                                      "features/_stage.py") if f in files), "other")
            reads.append((stage, columns))
        return read(self, area, name, version, columns)
    monkeypatch.setattr(Lake, "read", reading)
    spark = run(there, engine="spark")
    monkeypatch.setattr(Lake, "read", read)
    # no stage reads every column of the training table on the driver: the
    # features its row numbers, the model its labels (and the numbers the
    # robustness check scales by), the audit the columns it audits
    assert reads and all(columns is not None for _, columns in reads)
    by_stage = {stage: set(columns) for stage, columns in reads}
    assert by_stage["features/_stage.py"] == {"_row"}
    assert "text" not in by_stage["models/_stage.py"]
    assert {"text", "post_id"} <= by_stage["audit/_stage.py"]
    assert not {"_source", "_line"} & by_stage["audit/_stage.py"]
    assert spark["engine"] == "spark local[2]" and local["engine"] == "duckdb"
    assert spark["totals"] == local["totals"]
    # the training table built by Spark: the same rows in the same order
    assert spark["training"]["engine"] == "spark local[2]"
    assert local["training"]["engine"] == "duckdb"
    mine, theirs = Project.of(there).lake, Project.of(folder).lake
    name = spark["training"]["dataset"].split("/")[1]
    assert mine.read("training", name).equals(theirs.read("training", name))
    assert mine.last_write("training", name)["mlsd.write_id"] == \
        theirs.last_write("training", name)["mlsd.write_id"]
    assert spark["split"] == local["split"]
    # the features analysed by Spark (Ibis's PySpark backend) on the train split
    assert spark["features"]["analysed_on"] == "spark local[2]"
    assert local["features"]["analysed_on"] == "duckdb"
    # and applied by Spark tasks: the same matrices, so the same model
    assert spark["features"]["applied_on"] == "spark local[2]"
    assert spark["features"]["inputs"] == local["features"]["inputs"]
    # the tasks' files were read and removed
    scratch = Project.of(there).lake.root / "tmp"
    assert scratch.is_dir() and not list(scratch.glob("features-*"))
    assert spark["model"]["metrics"] == local["model"]["metrics"]
    # the robustness check read its 1,000 test rows alone on Spark's driver,
    # and perturbed the same rows the DuckDB run took from memory
    robust = spark["augment"]["robustness"]
    assert robust["rows"] == 1000 and robust == local["augment"]["robustness"]
    fit = spark["fit"]  # the run says where the model was fitted, on what
    assert (fit["on"], fit["engine"], fit["from"]) == (
        "driver", "spark", "the whole train split")
    assert fit["rows"] == spark["split"]["sizes"]["train"] and fit["matrix_mib"] > 0
    # the driver read the labels, the split's time and the numbers the
    # robustness check scales its noise by: not the text, ids or country
    assert sorted(fit["table_columns"]["read"]) == [
        "author_account_age_days", "author_posts_before", "created_at", "dislikes",
        "is_spam", "likes", "views"]
    assert fit["table_columns"]["of"] > len(fit["table_columns"]["read"])
    assert local["fit"]["table_columns"]["read"] == fit["table_columns"]["read"]
    report = (there / ".mlsd" / "reports").glob("*.html")
    html = max(report, key=lambda f: f.stat().st_mtime).read_text()
    assert "columns the driver read <code>" in html and "never the raw inputs" in html

    # a stage that still reads raw columns on the driver (the audit) first
    # weighs them against the memory the driver has free
    from mlsd import _memory

    monkeypatch.setattr(_memory, "available_bytes", lambda: 100_000)
    with pytest.raises(DataError) as err:
        run(there, from_="audit", engine="spark")
    assert str(err.value).startswith(f"{spark['training']['dataset']}@")
    # the audit reads the columns the model reads, the label, the key, the
    # split's time and the shared author: 11 of them here, not the provenance
    assert "reads 11 columns of every row of the training table (likes, dislikes, " \
        "views, author_account_age_days, author_posts_before, ...) on the driver, " \
        "about " in str(err.value)
    assert "iB once read, and the driver has 97.7 KiB free" in str(err.value)
    assert "run `mlsd run --until train`" in str(err.value)
    monkeypatch.setattr(_memory, "available_bytes", lambda: 1 << 40)

    def state(project_dir, summary) -> dict:
        model = Project.of(project_dir).find_model(summary["model"]["model_id"])
        return json.loads((model / "features.json").read_text())

    # equal but for the last bits of a float: DuckDB sums over threads in no
    # set order, on either engine's run
    assert _close(state(there, spark), state(folder, local))


def _close(a, b) -> bool:
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(
            _close(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return isinstance(b, list) and len(a) == len(b) and all(
            _close(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) and isinstance(b, float):
        return a == pytest.approx(b, rel=1e-12, abs=1e-300)
    return a == b


@pytest.mark.parametrize("split", [
    "{strategy: stratified, test: 0.2, valid: 0.1}",  # random: the same hashes
    "{strategy: group, group: author_id, test: 0.2}"])
def test_hash_splits_computed_on_spark_place_every_row_as_locally(
        spark_engine, example_dir, tmp_path, split):
    """The split's per-row hashes (of the key, or of the group) computed by
    Spark tasks and its duplicate leaders by a Spark window: every row in the
    same split, the same duplicates placed together, the same cuts."""
    import csv
    import io

    here, there = tmp_path / "duckdb", tmp_path / "spark"
    shutil.copytree(example_dir, here)
    path = here / "data" / "posts_export.csv"
    records = list(csv.reader(io.StringIO(path.read_text())))
    copies = [[f"{r[0]}-again", *r[1:]] for r in records[1:41]]  # all but the key
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows(copies)
    with path.open("a") as fh:
        fh.write(out.getvalue())
    shutil.copytree(here, there)
    local = run(Project.of(here).with_overrides([f"split={split}"]), until="split")
    spark = run(Project.of(there).with_overrides([f"split={split}"]),
                until="split", engine="spark")
    assert spark["split"] == local["split"]
    if "group" not in split:
        assert local["split"]["duplicates_placed_together"] > 0  # the example's
    name = local["split"]["dataset"].split("/")[1]
    a, b = Project.of(here).lake, Project.of(there).lake
    assert b.read("splits", name).equals(a.read("splits", name))
    assert b.last_write("splits", name)["mlsd.split_cuts"] == \
        a.last_write("splits", name)["mlsd.split_cuts"]


def test_the_same_run_through_a_spark_connect_server(spark_connect, example_dir,
                                                      tmp_path):
    """`engine.remote: sc://...`: ingest, training table, a stratified sample
    and a hash split run through a Spark Connect server, and store what a
    local run stores."""
    here, there = tmp_path / "duckdb", tmp_path / "connect"
    shutil.copytree(example_dir, here)
    shutil.copytree(example_dir, there)
    import json

    from tests._helpers import run_cli

    split = "split={strategy: stratified, test: 0.2}"
    sample = "sample={method: stratified, fraction: 0.3, by: author_country}"
    local = run(Project.of(here).with_overrides([split, sample]), until="split")
    # a process of its own: PySpark allows no Connect session beside the
    # suite's local one
    remote = json.loads(run_cli(
        "run", "--until", "split", "--json", "--set", split, "--set", sample,
        "--set", f"engine={{kind: spark, remote: '{spark_connect}'}}",
        cwd=there).stdout)
    assert remote["engine"] == f"spark {spark_connect}"
    assert remote["totals"] == local["totals"] and remote["split"] == local["split"]
    assert remote["sample"]["drawn_on"] == f"spark {spark_connect}"
    assert remote["sample"]["bias"] == local["sample"]["bias"]
    a, b = Project.of(here).lake, Project.of(there).lake
    name = local["split"]["dataset"].split("/")[1]
    for area, dataset in (("sources", "posts_export"), ("quarantine", "posts_log"),
                          ("training", name), ("samples", name), ("splits", name)):
        assert b.read(area, dataset).equals(a.read(area, dataset)), area


def test_a_large_parquet_file_is_read_in_runs_of_row_groups(spark_engine, tmp_path,
                                                            monkeypatch):
    """A Parquet file over SPAN_BYTES is read by a task per run of row groups,
    each numbered from its footer (no counting job): the same rows, order,
    record numbers and quarantine as a local read."""
    import pyarrow.parquet as pq
    import yaml

    from mlsd.etl import _distributed

    jobs = _jobs(monkeypatch)
    n = 30_000
    table = pa.table({"id": pa.array(range(n), pa.int64()),
                      "n": pa.array([-4 if i % 83 == 7 else i % 1000
                                     for i in range(n)], pa.int64()),
                      "x": pa.array([i / 7 for i in range(n)])})
    for folder in (tmp_path / "duckdb", tmp_path / "spark"):
        (folder / "schemas").mkdir(parents=True)
        pq.write_table(table, folder / "data.parquet", row_group_size=1_000)
        (folder / "mlsd.yaml").write_text(yaml.safe_dump({
            "name": "groups", "problem": {"task": "regression", "target": "x"},
            "sources": {"big": {"path": "data.parquet"}},
            "validate": {"ranges": {"n": [0, None]}},
            "features": [{"column": "n"}]}))
    size = (tmp_path / "spark" / "data.parquet").stat().st_size
    monkeypatch.setattr(_distributed, "SPAN_BYTES", size // 6)
    local = run(tmp_path / "duckdb", until="ingest")
    spark = run(tmp_path / "spark", until="ingest", engine="spark")
    assert len(jobs) == 1 and jobs[0] >= 5  # one job, a task a run of groups
    assert spark["totals"] == local["totals"]
    assert spark["totals"]["rows_quarantined"] == len(range(7, n, 83))
    a, b = Project.of(tmp_path / "duckdb").lake, Project.of(tmp_path / "spark").lake
    for area in ("sources", "quarantine"):
        assert b.read(area, "big").equals(a.read(area, "big")), area
    lines = b.read("sources", "big").column("_line").to_pylist()
    assert lines[:2] == [1, 2] and lines[-1] == n  # records numbered from 1


def test_without_a_key_the_training_table_is_ordered_by_file_and_line(
        spark_engine, example_dir, tmp_path):
    """No key: the training table is in file and line order across its
    sources (not in union order), on Spark as locally."""
    sets = ["dataset={union: [posts_log, posts_export]}",  # union order != paths
            "sources.posts_export.key=null", "sources.posts_log.key=null"]
    here, there = tmp_path / "duckdb", tmp_path / "spark"
    shutil.copytree(example_dir, here)
    shutil.copytree(example_dir, there)
    local = run(Project.of(here).with_overrides(sets), until="table")
    spark = run(Project.of(there).with_overrides(sets), until="table", engine="spark")
    assert spark["training"]["engine"] == "spark local[2]"
    name = local["training"]["dataset"].split("/")[1]
    mine = Project.of(there).lake.read("training", name)
    assert mine.equals(Project.of(here).lake.read("training", name))
    assert mine.column("_source")[0].as_py().endswith("posts_export.csv")
