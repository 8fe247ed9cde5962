"""The feature analyzers on Spark (Ibis's PySpark backend) learn the state
they learn on DuckDB, from the same rows: quantiles, means, vocabularies,
category counts with ties and missing values, hashed n-gram reports,
out-of-fold target statistics."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import numpy as np
import pyarrow as pa
import pytest

from mlsd.engine import DuckDBEngine
from mlsd.features._base import Target
from mlsd.features._pipeline import FeaturePipeline, transform_for
from mlsd.spec import parse_spec
from tests.etl.test_load_spark import _close

pytestmark = pytest.mark.slow

FEATURES = [
    {"column": "n"},
    {"column": "n", "encode": "bins", "strategy": "quantile", "bins": 4},
    {"column": "m", "encode": "bins", "bins": 3, "output": "ordinal"},
    {"column": "c", "encode": "onehot", "max_categories": 3},
    {"column": "c", "encode": "frequency"},
    {"column": "c", "encode": "ordinal"},
    {"column": "c", "encode": "target", "folds": 3, "smoothing": 2},
    {"column": "c", "encode": "hashing", "buckets": 16},
    {"columns": ["c", "d"], "encode": "cross", "buckets": 32},
    {"columns": ["n", "c"], "encode": "cross", "bins": 3, "buckets": 32},
    {"columns": ["n", "m"], "encode": "cross"},
    {"columns": ["n", "m"], "encode": "fourier", "dim": 4},
    {"column": "at", "encode": "periodic", "period": "24h", "harmonics": 2},
    {"column": "at", "encode": ["hour", "weekday"]},
    {"column": "txt", "encode": "tfidf", "max_features": 30, "min_df": 2},
    {"column": "txt", "encode": "hashed_ngrams", "buckets": 64},
]


def _rows(n: int = 600) -> pa.Table:
    rng = np.random.default_rng(7)
    cats = ["a", "b", "c", "d", None]  # ties among the counts below, and missing
    words = ["free", "crypto", "offer", "meeting", "notes", "Ünïcode", "x"]
    start = datetime(2024, 1, 1, tzinfo=UTC)
    return pa.table({
        "_row": pa.array(np.arange(n), pa.int64()),
        "n": pa.array([None if i % 17 == 0 else float(rng.integers(0, 50))
                       for i in range(n)], pa.float64()),
        "m": pa.array(rng.normal(size=n)),
        "c": pa.array([cats[i % 5] if i % 7 else cats[i % 3] for i in range(n)]),
        "d": pa.array([("u", "v")[i % 2] for i in range(n)]),
        "at": pa.array([start + timedelta(minutes=37 * i) for i in range(n)],
                       pa.timestamp("us", tz="UTC")),
        "txt": pa.array([" ".join(rng.choice(words, size=rng.integers(0, 6)))
                         if i % 11 else None for i in range(n)]),
        "y": pa.array([bool(i % 3 == 0) for i in range(n)]),
    })


def _pipeline(features) -> FeaturePipeline:
    spec = parse_spec({"name": "t", "problem": {"task": "binary", "target": "y"},
                       "sources": {"s": {"path": "s.csv"}}, "features": features})
    return FeaturePipeline(transforms=[transform_for(f, None) for f in spec.features])


def _state(pipeline: FeaturePipeline) -> dict:
    return json.loads(pipeline.to_json())


def test_every_feature_kind_learns_the_same_state_on_spark(spark_engine):
    rows = _rows()
    target = Target(column="y", task="binary", positive=True)
    local = _pipeline(FEATURES)
    duck = DuckDBEngine()
    local.analyze(duck, duck.from_arrow(rows), target=target)
    there = _pipeline(FEATURES)
    ibis_spark = spark_engine.ibis
    table = ibis_spark.from_arrow(rows)
    there.analyze(ibis_spark, table, target=target)
    ibis_spark.forget(table)
    assert _close(_state(there), _state(local))
    # and so the same matrix, out-of-fold target values included
    a = local.apply(rows, training=True)
    b = there.apply(rows, training=True)
    assert a.shape == b.shape and abs(a - b).max() < 1e-9


def test_the_driver_fits_on_the_train_rows_its_memory_holds(
        spark_engine, example_dir, tmp_path, monkeypatch):
    """Before the driver reads the matrices Spark made, their size is weighed
    against the memory it has free. Past it, the model is fitted on a seeded
    random sample of the train split whose matrix fits (valid and test whole),
    every label and weight of the train rows read for those rows, and the run
    says so; with `engine.sample_to_fit: false`, or when valid and test alone
    do not fit, a clear error instead (not the kernel's silent kill). The
    tasks' files are removed all the same."""
    import shutil

    from mlsd import _memory
    from mlsd.errors import DataError
    from mlsd.features._stage import READ_FACTOR
    from mlsd.pipeline import run
    from mlsd.runtime import Project

    folder = tmp_path / "p"
    shutil.copytree(example_dir, folder)
    room = {"share": 0.7}

    def short() -> int:  # a share of what the tasks' files need once read
        files = list((Project.of(folder).lake.root / "tmp").glob("features-*/*.arrow"))
        if not files:  # the reads before the matrices (row numbers) fit
            return 1 << 40
        return int(room["share"] * READ_FACTOR * sum(f.stat().st_size for f in files))
    monkeypatch.setattr(_memory, "available_bytes", short)
    scratch = Project.of(folder).lake.root / "tmp"

    out = run(Project.of(folder), until="train", engine="spark")
    drawn = out["features"]["driver_sample"]
    assert drawn["method"] == "random" and 0 < drawn["rows_kept"] < drawn["of"]
    assert "once read; the driver has " in drawn["why"] and \
        drawn["why"].endswith("iB free")
    fit = out["fit"]
    assert fit["rows"] == drawn["rows_kept"] and fit["driver_sample"] == drawn
    assert fit["from"].startswith(f"a random sample of {drawn['rows_kept']:,} of the "
                                  f"train split's {drawn['of']:,} rows (seed ")
    assert drawn["of"] == out["split"]["sizes"]["train"]
    assert not list(scratch.glob("features-*"))

    with pytest.raises(DataError) as err:
        run(Project.of(folder).with_overrides(["engine.sample_to_fit=false"]),
            from_="features", until="features", engine="spark")
    text = str(err.value)
    assert text.startswith("features: the matrices Spark made for the ")
    assert "iB free: draw a sample of the train split to fit on, e.g. " \
        "`sample: {method: random, fraction: 0." in text
    room["share"] = 0.05  # valid and test alone are more than that
    with pytest.raises(DataError, match="the valid and test splits alone are more "
                                        "than it can hold"):
        run(Project.of(folder), from_="features", until="features", engine="spark")
    assert scratch.is_dir() and not list(scratch.glob("features-*"))
    # with the memory it needs, the same run goes through on every train row
    monkeypatch.setattr(_memory, "available_bytes", lambda: 1 << 40)
    out = run(Project.of(folder), from_="features", until="features", engine="spark")
    assert out["features"]["applied_on"] == "spark local[2]"
    assert out["features"]["driver_sample"] is None


def test_free_memory_is_the_smaller_of_the_machine_and_its_cgroup(tmp_path):
    from mlsd._memory import available_bytes, readable

    (tmp_path / "proc").mkdir()
    (tmp_path / "proc" / "meminfo").write_text(
        "MemTotal:       16000000 kB\nMemAvailable:    8000000 kB\n")
    assert available_bytes(tmp_path) == 8_000_000 * 1024
    v2 = tmp_path / "sys" / "fs" / "cgroup"
    v2.mkdir(parents=True)
    (v2 / "memory.max").write_text("max\n")  # no limit: the machine's
    assert available_bytes(tmp_path) == 8_000_000 * 1024
    (v2 / "memory.max").write_text(f"{2 * 2**30}\n")
    (v2 / "memory.current").write_text(f"{2**30}\n")
    assert available_bytes(tmp_path) == 2**30  # a container's room
    (v2 / "memory.max").unlink()
    (v2 / "memory").mkdir()
    (v2 / "memory" / "memory.limit_in_bytes").write_text(f"{3 * 2**30}\n")
    (v2 / "memory" / "memory.usage_in_bytes").write_text(f"{2**30}\n")
    assert available_bytes(tmp_path) == 2 * 2**30  # cgroup v1
    assert available_bytes(tmp_path / "nowhere") is None
    assert [readable(b) for b in (512, 3 * 2**20, 1.5 * 2**30)] == [
        "512 bytes", "3 MiB", "1.5 GiB"]
