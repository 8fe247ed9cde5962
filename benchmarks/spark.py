"""`engine: spark` against the default engine, on the ingest benchmark's file.

For each size in ``--rows`` (default 1, 3 and 10 million rows), the ingest
benchmark's CSV (benchmarks/ingest.py: 20 columns, ~5% of rows breaking a
type, range, pattern or unique rule) is loaded by ``mlsd ingest`` twice per
engine, in this process:

* **unique**: the benchmark's own spec, with a ``unique`` key: a rule over the
  whole load, so on Spark the tasks read and validate the file's spans and the
  driver settles the batches (the spool, the repeats, the commit);
* **no-unique**: the same without the rule: on Spark the tasks also write the
  stored Parquet files, and the driver only commits them.

DuckDB (in-process, 2 threads: the default engine) against Spark ``local[2]``
on the same 2 cores; the Spark session is started, and one job run, before
any timing (its start is printed apart: a cluster's session outlives a load).
Both engines' stored rows are checked equal at the smallest size. Prints
rows/s per engine, size and variant; the last line is one JSON object.

``--features``: instead, after one ingest per engine, the stages after it up
to the features (the training table, the split, the feature analysis and
apply) on each engine, timed per stage from the run summary, on features of
every family (numbers, a one-hot, a hashed e-mail, hashed n-grams of a text,
time parts; target ``f0``); the matrices' widths and the models' inputs are
checked equal.

``--sample SPEC``: with ``--features``, the spec's ``sample:`` too (e.g.
``"{method: stratified, fraction: 0.1, by: c1}"``), its stage timed on each
engine and the two samples' sizes and effective sizes checked equal.

    python benchmarks/spark.py --rows 1000000,3000000,10000000
    python benchmarks/spark.py --features --rows 1000000,3000000
    python benchmarks/spark.py --features --rows 1000000 \
        --sample "{method: stratified, fraction: 0.1, by: c1}"

``--lake-url s3://bucket/prefix``: the ingest with each project's lake on that
store (both engines; credentials and endpoint from ``AWS_*``), e.g. against
moto's S3 server (``python -m moto.server -p 5000``, ``AWS_ENDPOINT_URL``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
import ingest as bench  # noqa: E402  (the ingest benchmark's file and spec)


def _project(folder: Path, csv: Path, engine: str, unique: bool,
             lake_url: str | None = None) -> Path:
    shutil.rmtree(folder, ignore_errors=True)
    if lake_url:
        from mlsd.lake._store import remove

        remove(f"{lake_url}/{folder.name}")
    (folder / "schemas").mkdir(parents=True)
    os.link(csv, folder / "data.csv")
    spec = json.loads(json.dumps(bench.SPEC))
    if not unique:
        spec["validate"]["unique"] = []
    spec["engine"] = engine
    if lake_url:  # the tables on the store, one prefix a project
        spec["lake"] = {"url": f"{lake_url}/{folder.name}"}
    (folder / "mlsd.yaml").write_text(yaml.safe_dump(spec))
    (folder / "schemas/big.yaml").write_text(yaml.safe_dump(bench.SCHEMA))
    return folder


FEATURES = [{"column": "i1"}, {"column": "f1"}, {"column": "c1", "encode": "onehot"},
            {"column": "e0", "encode": "hashing", "buckets": 1024},
            {"column": "s0", "encode": "hashed_ngrams", "buckets": 4096},
            {"column": "t0", "encode": ["hour", "weekday"]}]
STAGES = ("table", "split", "features")


def _features(work: Path, csv: Path, n: int, sample: str | None = None) -> dict:
    """The training table, split and features (and the sample, given one) on
    each engine (after one ingest, not timed): seconds per stage."""
    from mlsd.pipeline import run

    stages = ("table", "sample", "split", "features") if sample else STAGES
    row: dict = {}
    inputs, drawn = {}, {}
    for kind in ("duckdb", "spark"):
        folder = _project(work / f"{kind}-features", csv, kind, unique=False)
        doc = yaml.safe_load((folder / "mlsd.yaml").read_text())
        doc["features"] = FEATURES
        if sample:
            doc["sample"] = yaml.safe_load(sample)
        (folder / "mlsd.yaml").write_text(yaml.safe_dump(doc))
        run(folder, until="ingest")
        summary = run(folder, until="features")
        took = {e["stage"]: e["seconds"] for e in summary["stages"]
                if e["stage"] in stages}
        inputs[kind] = summary["features"]["inputs"]
        if sample:
            s = summary["sample"]
            drawn[kind] = (s["rows"], s["effective_size"], len(s["warnings"]))
            row[f"{kind}_sample_drawn_on"] = s["drawn_on"]
        for stage in stages:
            row[f"{kind}_{stage}_seconds"] = took.get(stage)
        row[f"{kind}_seconds"] = round(sum(v or 0 for v in took.values()), 2)
        shutil.rmtree(folder, ignore_errors=True)
    if inputs["duckdb"] != inputs["spark"]:
        raise SystemExit(f"{n} rows: the engines' matrices differ: {inputs}")
    if drawn and drawn["duckdb"] != drawn["spark"]:
        raise SystemExit(f"{n} rows: the engines' samples differ: {drawn}")
    row["spark_vs_duckdb"] = round(row["duckdb_seconds"] / row["spark_seconds"], 2)

    def each(kind: str) -> str:
        parts = ", ".join(f"{st} {row[kind + '_' + st + '_seconds']}" for st in stages)
        return f"{row[kind + '_seconds']:6.1f} s ({parts})"
    print(f"{n:>11,} rows, {'+'.join(stages)}: duckdb {each('duckdb')}, "
          f"spark local[2] {each('spark')}: {row['spark_vs_duckdb']:.2f}x",
          file=sys.stderr, flush=True)
    return row


def _ingest(folder: Path) -> tuple[float, dict]:
    from mlsd.pipeline import run

    t = time.perf_counter()
    summary = run(folder, until="ingest")
    return time.perf_counter() - t, summary["totals"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", default="1000000,3000000,10000000",
                    help="comma-separated sizes (rows)")
    ap.add_argument("--work", type=Path, default=None)
    ap.add_argument("--features", action="store_true",
                    help="time the training table, split and features instead")
    ap.add_argument("--sample", default=None,
                    help="with --features: a sample: section to draw and time too")
    ap.add_argument("--lake-url", default=None,
                    help="the ingest with each project's lake on object storage "
                         "(s3://bucket/prefix; credentials from AWS_*)")
    a = ap.parse_args()
    sizes = [int(x) for x in a.rows.split(",")]
    work = a.work or Path(tempfile.mkdtemp(prefix="mlsd-spark-bench-"))
    work.mkdir(parents=True, exist_ok=True)

    from mlsd.engine import SparkEngine
    from mlsd.spec import EngineSpec

    t = time.perf_counter()
    engine = SparkEngine(EngineSpec(kind="spark", master="local[2]"))
    engine.map_units([0], lambda u: iter([{"u": u}]),
                     __import__("pyarrow").schema([("u", "int64")]))
    started = time.perf_counter() - t
    print(f"Spark local[2]: session and a first job in {started:.1f} s (not "
          f"counted below)", file=sys.stderr, flush=True)
    results: dict = {"spark_session_seconds": round(started, 1), "sizes": {},
                     "lake_url": a.lake_url}
    for n in sizes:
        csv = work / f"data-{n}.csv"
        if not csv.exists():
            t = time.perf_counter()
            bench.generate(csv, n)
            print(f"{n:,} rows ({csv.stat().st_size / 2**20:,.0f} MiB) written in "
                  f"{time.perf_counter() - t:.0f} s", file=sys.stderr, flush=True)
        row: dict = {"mib": round(csv.stat().st_size / 2**20)}
        if a.features:
            results["sizes"][n] = {**row, **_features(work, csv, n, a.sample)}
            continue
        for unique in (True, False):
            variant = "unique" if unique else "no-unique"
            totals = {}
            for kind in ("duckdb", "spark"):
                folder = _project(work / f"{kind}-{variant}", csv, kind, unique,
                                  a.lake_url)
                seconds, totals[kind] = _ingest(folder)
                row[f"{kind}_{variant}_rows_per_s"] = round(n / seconds)
                row[f"{kind}_{variant}_seconds"] = round(seconds, 2)
            if totals["duckdb"] != totals["spark"]:
                raise SystemExit(f"{n} rows, {variant}: the engines disagree: "
                                 f"{totals}")
            if n == min(sizes):
                _same_rows(work / f"duckdb-{variant}", work / f"spark-{variant}")
            ratio = row[f"spark_{variant}_rows_per_s"] / \
                row[f"duckdb_{variant}_rows_per_s"]
            row[f"spark_vs_duckdb_{variant}"] = round(ratio, 2)
            print(f"{n:>11,} rows {variant:9s}: duckdb "
                  f"{row[f'duckdb_{variant}_rows_per_s']:>10,}/s "
                  f"({row[f'duckdb_{variant}_seconds']:6.1f} s), spark local[2] "
                  f"{row[f'spark_{variant}_rows_per_s']:>10,}/s "
                  f"({row[f'spark_{variant}_seconds']:6.1f} s): {ratio:.2f}x",
                  file=sys.stderr, flush=True)
            for kind in ("duckdb", "spark"):
                shutil.rmtree(work / f"{kind}-{variant}", ignore_errors=True)
                if a.lake_url:
                    from mlsd.lake._store import remove

                    remove(f"{a.lake_url}/{kind}-{variant}")
        results["sizes"][n] = row
    if a.work is None:
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(results))


def _same_rows(here: Path, there: Path) -> None:
    from mlsd.runtime import Project

    a, b = Project.of(here), Project.of(there)
    for area in ("sources", "quarantine"):
        x = a.lake.read(area, "big").sort_by([("_line", "ascending")])
        y = b.lake.read(area, "big").sort_by([("_line", "ascending")])
        if not x.equals(y):
            raise SystemExit(f"{area}: the engines stored different rows")


if __name__ == "__main__":
    main()
