"""The lake's tables on object storage: every operation a local lake has,
against a real S3 endpoint on loopback (moto's server), credentials from the
environment as the cloud's own tools read them."""

from __future__ import annotations

import uuid

import pyarrow as pa
import pytest

from mlsd.errors import LakeError
from mlsd.lake import Lake
from mlsd.lake._delta import write_part
from mlsd.lake._store import check_url

pytest.importorskip("moto.server")


@pytest.fixture(scope="module")
def endpoint():
    """moto's S3 server in a process of its own: deltalake holds the GIL
    while some calls wait on the network (a table's history), so a server
    thread in this process would never answer them."""
    import socket
    import subprocess
    import sys
    import time
    import urllib.request

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1",
                             "-p", str(port)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                urllib.request.urlopen(f"{url}/moto-api/", timeout=1)
                break
            except OSError:
                time.sleep(0.1)
        else:
            raise RuntimeError("moto's S3 server did not start")
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.fixture
def lake(endpoint, tmp_path, monkeypatch):
    import boto3

    env = {"AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "mlsd",
           "AWS_SECRET_ACCESS_KEY": "mlsd", "AWS_REGION": "us-east-1",
           "AWS_DEFAULT_REGION": "us-east-1", "AWS_ALLOW_HTTP": "true"}
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    bucket = f"lake-{uuid.uuid4().hex[:12]}"
    boto3.client("s3").create_bucket(Bucket=bucket)
    return Lake(root=tmp_path / ".mlsd", url=f"s3://{bucket}/projects/p1/")


def _rows(n: int, start: int = 0) -> pa.Table:
    return pa.table({"id": pa.array(range(start, start + n), pa.int64()),
                     "who": pa.array([f"u{i % 7}" for i in range(start, start + n)])})


def test_writes_reads_and_versions_on_object_storage(lake):
    assert lake.location("sources", "posts").endswith("/projects/p1/sources/posts")
    assert not lake.exists("sources", "posts") and lake.version("sources", "posts") \
        is None
    assert lake.write("sources", "posts", _rows(50), write_id="a") == (0, True)
    assert lake.write("sources", "posts", _rows(50), write_id="a") == (0, False)
    assert lake.write("sources", "posts", _rows(20, 50), write_id="b",
                      mode="append") == (1, True)
    assert lake.read("sources", "posts").num_rows == 70
    assert lake.read("sources", "posts", version=0).num_rows == 50
    assert lake.dataset("sources", "posts").count_rows() == 70
    assert lake.last_write("sources", "posts")["mlsd.write_id"] == "b"
    schema, uris = lake.files("sources", "posts")
    assert schema.names == ["id", "who"] and all(u.startswith("s3://") for u in uris)
    assert lake.append("sources", "posts", _rows(5, 70)) == 2
    assert lake.read("sources", "posts").num_rows == 75
    assert lake.damage("sources", "posts") == []
    assert lake.list("sources") == ["posts"] and lake.list("training") == []


def test_parts_written_by_tasks_are_committed_as_one_transaction(lake):
    where = lake.location("training", "t")
    parts = [write_part(where, _rows(10, 10 * i)) for i in range(3)]
    assert write_part(where, _rows(0)) is None
    version, written = lake.commit_parts("training", "t", parts,
                                         schema=_rows(1).schema, write_id="w")
    assert (version, written) == (0, True)
    assert sorted(lake.read("training", "t").column("id").to_pylist()) == \
        list(range(30))
    # the same parts again: nothing new
    assert lake.commit_parts("training", "t", parts, schema=_rows(1).schema,
                             write_id="w") == (0, False)


def test_an_erasure_then_its_files_removed_leaves_no_copy_of_the_rows(lake):
    lake.write("sources", "people", _rows(40), write_id="load")
    done = lake.erase("sources", "people", ["who"], {("u3",)})
    assert done["deleted"] == 6 and done["superseded_files"]
    assert "u3" not in lake.read("sources", "people").column("who").to_pylist()
    assert "u3" in lake.stored_values("sources", "people", "who").to_pylist()
    assert lake.remove_files("sources", "people", done["superseded_files"]) == \
        len(done["superseded_files"])
    assert "u3" not in lake.stored_values("sources", "people", "who").to_pylist()
    lake.vacuum("sources", "people", retention_hours=0)
    assert lake.read("sources", "people").num_rows == 34


def test_a_lost_or_truncated_file_is_named_and_the_last_whole_version_found(lake):
    import boto3

    lake.write("sources", "events", _rows(10), write_id="one")
    lake.write("sources", "events", _rows(10, 10), write_id="two", mode="append")
    _, uris = lake.files("sources", "events")
    newest = [u for u in uris if u not in lake.files("sources", "events", 0)[1]][0]
    bucket, key = newest.removeprefix("s3://").split("/", 1)
    boto3.client("s3").put_object(Bucket=bucket, Key=key, Body=b"PAR1 cut short")
    damage = lake.damage("sources", "events")
    assert len(damage) == 1 and "bytes, the log says" in damage[0]
    boto3.client("s3").delete_object(Bucket=bucket, Key=key)
    assert lake.damage("sources", "events")[0].endswith(": missing")
    assert lake.last_intact("sources", "events") == 0
    lake.restore("sources", "events", 0)
    assert lake.read("sources", "events").num_rows == 10


def test_a_lake_url_is_checked_and_has_no_local_folder(tmp_path):
    for bad, why in [("http://x/y", "the scheme must be one of"),
                     ("s3:///prefix", "names no bucket"),
                     ("s3://b/p?secret=1", "no query or fragment"),
                     ("s3://b/../other", "is not a plain folder name")]:
        with pytest.raises(LakeError, match=why.replace("?", r"\?")):
            check_url(bad)
    assert check_url("s3://bucket/a/b/") == "s3://bucket/a/b"
    remote = Lake(root=tmp_path, url="s3://bucket/a")
    with pytest.raises(LakeError, match="on object storage"):
        remote.path("sources", "x")
    with pytest.raises(LakeError, match="invalid name"):
        remote.location("sources", "../x")


def test_the_example_runs_with_its_lake_on_object_storage(lake, example_dir,
                                                          tmp_path):
    """`lake.url` in mlsd.yaml: the whole run (ingest with its quarantine, the
    training table, the split, features, model, audit, report) keeps every
    table on the store and none in .mlsd/lake; a second run adds no version;
    the damage check works there."""
    import shutil

    from mlsd.pipeline import run
    from mlsd.runtime import Project

    folder = tmp_path / "p"
    shutil.copytree(example_dir, folder)
    with open(folder / "mlsd.yaml", "a") as f:
        f.write(f"\nlake:\n  url: {lake.url}\n")
    project = Project.of(folder)
    first = run(project)
    assert first["paths"]["model"] and first["split"]["sizes"]["train"] > 0
    remote = Project.of(folder).lake
    assert remote.url == lake.url
    stored = remote.list("sources")
    assert stored and remote.list("training") == [project.spec.name]
    assert remote.list("quarantine") and remote.list("splits")
    assert not (folder / ".mlsd" / "lake").exists() or not any(
        (folder / ".mlsd" / "lake").rglob("*.parquet"))
    versions = {n: remote.version("sources", n) for n in stored}
    again = run(Project.of(folder))
    assert {n: remote.version("sources", n) for n in stored} == versions
    assert again["split"]["sizes"] == first["split"]["sizes"]
    assert all(remote.damage("sources", n) == [] for n in stored)


def test_the_example_on_spark_with_its_lake_on_object_storage(
        lake, spark_engine, ran_project, tmp_path):
    """`engine: spark` with `lake.url`: Spark's tasks read and write the
    lake's files on the store through pyarrow (the driver's credentials given
    to the executors: the suite's session started before they were set), and
    the run is the local DuckDB run's: the same stored rows and quarantine,
    training table, split, feature inputs and model metrics. The tasks'
    scratch files on the store are gone; a second run adds no version."""
    import shutil

    import boto3

    from mlsd.pipeline import run
    from mlsd.runtime import Project

    folder, local = ran_project
    there = tmp_path / "spark"
    shutil.copytree(folder, there, ignore=shutil.ignore_patterns(".mlsd"))
    with open(there / "mlsd.yaml", "a") as f:
        f.write(f"\nlake:\n  url: {lake.url}\n")
    spark = run(there, engine="spark")
    assert spark["engine"] == "spark local[2]"
    assert spark["totals"] == local["totals"]
    assert spark["totals"]["rows_quarantined"] > 0
    mine, theirs = Project.of(there).lake, Project.of(folder).lake
    assert mine.url == lake.url
    for area in ("sources", "quarantine"):
        for name in ("posts_export", "posts_log"):
            assert mine.read(area, name).equals(theirs.read(area, name)), (area, name)
    name = spark["training"]["dataset"].split("/")[1]
    assert spark["training"]["engine"] == "spark local[2]"
    assert mine.read("training", name).equals(theirs.read("training", name))
    assert spark["split"] == local["split"]
    assert spark["features"]["applied_on"] == "spark local[2]"
    assert spark["features"]["inputs"] == local["features"]["inputs"]
    assert spark["model"]["metrics"] == local["model"]["metrics"]
    assert not (there / ".mlsd" / "lake").exists()
    bucket, prefix = lake.url.removeprefix("s3://").split("/", 1)
    left = boto3.client("s3").list_objects_v2(Bucket=bucket, Prefix=f"{prefix}/tmp/")
    assert [o["Key"] for o in left.get("Contents", [])
            if not o["Key"].endswith("/")] == []  # the tasks' files: removed
    versions = {n: mine.version("sources", n) for n in mine.list("sources")}
    again = run(there, until="ingest", engine="spark")
    assert all(s["skipped"] for s in again["sources"])
    assert {n: mine.version("sources", n) for n in mine.list("sources")} == versions


def test_a_consumer_restarting_reads_its_recent_message_ids_from_the_store(lake):
    """`mlsd consume` drops redeliveries by the ids of the newest stored and
    quarantined rows, read back from the newest files: on the store too."""
    from mlsd.etl._consume import MESSAGE_ID, recent_ids

    for i in range(3):
        ids = [f"m{j}" for j in range(10 * i, 10 * i + 10)]
        lake.write("sources", "queue", _rows(10, 10 * i).append_column(
            MESSAGE_ID, pa.array(ids)), write_id=f"batch-{i}", mode="append")
    lake.write("quarantine", "queue", pa.table({MESSAGE_ID: ["bad-1"]}),
               write_id="q", mode="append")
    store = recent_ids(lake, "queue", 15)
    assert len(store) == 15 and "bad-1" in store
    assert all(f"m{j}" in store for j in range(16, 30))
    assert "m0" not in store  # the oldest file is past the bound: not read


def test_a_bucket_that_is_not_there_is_said_in_one_line(lake, tmp_path):
    missing = Lake(root=tmp_path, url="s3://no-such-bucket-mlsd/p")
    with pytest.raises(LakeError, match="the lake at s3://no-such-bucket-mlsd/p: the "
                                        "store has no bucket 'no-such-bucket-mlsd'"):
        missing.exists("sources", "x")


@pytest.mark.parametrize("rule", ["unique", "dedupe"])
def test_rules_over_a_whole_load_on_spark_with_the_lake_on_object_storage(
        lake, spark_engine, tmp_path, monkeypatch, rule):
    """A file read by several Spark tasks into a lake on the store, with a
    rule over the whole load: a `unique` key (the tasks stage their rows in
    the store's scratch, a Spark window ranks the keys, tasks write the rows
    kept) or a dedupe (the tasks hand their validated batches to the driver
    through files there). The stored rows and the quarantine are a local
    DuckDB load's, and the scratch files are gone."""
    import boto3

    from mlsd.etl import _distributed
    from mlsd.pipeline import run
    from mlsd.runtime import Project

    from .._helpers import big_csv_project

    monkeypatch.setattr(_distributed, "SPAN_BYTES", 40_000)
    here, there = tmp_path / "duckdb", tmp_path / "spark"
    for f in (here, there):
        big_csv_project(f, 6_000, rule=rule)
    with open(there / "mlsd.yaml", "a") as f:
        f.write(f"lake:\n  url: {lake.url}\n")
    local = run(here, until="ingest")
    spark = run(Project.of(there).with_overrides(["engine=spark"]), until="ingest")
    assert spark["totals"] == local["totals"]
    assert spark["sources"][0]["reasons"] == local["sources"][0]["reasons"]
    assert rule in {r.split(": ")[1] for r in spark["sources"][0]["reasons"]}
    a, b = Project.of(here).lake, Project.of(there).lake
    assert b.url == lake.url
    for area in ("sources", "quarantine"):
        assert b.read(area, "big").equals(a.read(area, "big")), area
    bucket, prefix = lake.url.removeprefix("s3://").split("/", 1)
    left = boto3.client("s3").list_objects_v2(Bucket=bucket, Prefix=f"{prefix}/tmp/")
    assert [o["Key"] for o in left.get("Contents", []) if not o["Key"].endswith("/")
            ] == []


def test_spark_reads_files_on_the_store_with_the_columns_it_is_given(lake,
                                                                     spark_engine):
    """Parquet files on the store read by Spark tasks (pyarrow): every row
    of every file, a column a file lacks as nulls, only the columns asked
    for, even none of which a file has."""
    import pyarrow.compute as pc

    from mlsd.engine import SparkEngine

    engine = SparkEngine(spark_engine.spec, store=lake.url)
    where = lake.location("sources", "parts")
    one = write_part(where, _rows(70_000))  # more than one batch of a task
    two = write_part(where, pa.table({"id": pa.array([7, 8], pa.int64())}))
    uris = [f"{where}/{p['path']}" for p in (one, two)]
    schema = pa.schema([("id", pa.int64()), ("who", pa.string())])
    got = engine.read_parquet(uris, schema).toArrow().sort_by("id")
    assert got.num_rows == 70_002
    assert got.filter(pc.is_null(got["who"]))["id"].to_pylist() == [7, 8]
    only = engine.read_parquet(uris, pa.schema([("who", pa.string())])).toArrow()
    assert only.column_names == ["who"] and only.num_rows == 70_002
    assert only["who"].null_count == 2
