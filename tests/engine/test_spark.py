"""The Spark engine runs a function over units, one Spark task a unit."""

from __future__ import annotations

import os

import pyarrow as pa
import pytest

from mlsd.errors import SpecError
from mlsd.spec import EngineSpec, ProjectSpec


def test_every_unit_is_its_own_task_and_every_row_comes_back(spark_engine):
    schema = pa.schema([("unit", pa.int64()), ("square", pa.int64()),
                        ("pid", pa.int64())])

    def task(unit):
        for k in range(unit % 3):  # some units yield nothing, some several rows
            yield {"unit": unit, "square": unit * unit + k, "pid": os.getpid()}

    out = spark_engine.map_units(list(range(7)), task, schema)
    assert out.schema == schema
    got = sorted(zip(out.column("unit").to_pylist(), out.column("square").to_pylist(),
                     strict=True))
    assert got == sorted((u, u * u + k) for u in range(7) for k in range(u % 3))
    assert os.getpid() not in out.column("pid").to_pylist()  # in Spark's workers
    assert spark_engine.map_units([], task, schema).num_rows == 0


def test_an_mlsd_error_raised_in_a_task_reaches_the_driver_as_itself(spark_engine):
    """A task's LakeError (a store it cannot reach, say) comes back from
    PySpark wrapped in its worker's traceback; the driver raises it again as
    the LakeError it was, so the command says one line (exit 2)."""
    from mlsd.engine._spark import told_by_a_task
    from mlsd.errors import LakeError

    def task(unit):
        if unit == 1:
            raise LakeError(f"the lake's store s3://b cannot be reached (unit {unit})")
        yield {"unit": unit}

    with pytest.raises(Exception) as got:
        spark_engine.map_units([0, 1, 2], task, pa.schema([("unit", pa.int64())]))
    assert not isinstance(got.value, LakeError)  # as PySpark hands it back
    told = told_by_a_task(got.value)
    assert type(told) is LakeError
    assert str(told) == "the lake's store s3://b cannot be reached (unit 1)"
    assert told_by_a_task(ValueError("mlsd.errors.LakeError: not from Spark")) is None


def test_the_engine_is_a_spec_key_with_a_shorthand():
    assert EngineSpec.model_validate("spark") == EngineSpec(kind="spark")
    doc = {"name": "p", "problem": {"task": "binary", "target": "y"},
           "sources": {"s": {"path": "s.csv"}}, "features": [{"column": "x"}],
           "engine": {"kind": "spark", "master": "local[4]",
                      "conf": {"spark.executor.memory": "2g"}}}
    spec = ProjectSpec.model_validate(doc)
    assert (spec.engine.kind, spec.engine.master) == ("spark", "local[4]")
    default = ProjectSpec.model_validate({k: v for k, v in doc.items()
                                          if k != "engine"})
    assert default.engine.kind == "duckdb"
    with pytest.raises(ValueError, match="engine.kind"):
        ProjectSpec.model_validate({**doc, "engine": "sprak"})
    for master in ("local", "local[*]", "local[4, 2]", "spark://head:7077", "yarn",
                   "k8s://https://k8s:6443"):
        assert EngineSpec(kind="spark", master=master).master == master
    for master in ("local[two]", "nonsense", "local[0]"):
        with pytest.raises(ValueError, match="is not a Spark master"):
            ProjectSpec.model_validate({**doc, "engine": {"kind": "spark",
                                                          "master": master}})
    with pytest.raises(ValueError, match="starts with sc://"):
        EngineSpec(kind="spark", remote="http://host:15002")


def test_without_pyspark_the_error_says_what_to_install(monkeypatch):
    import sys

    from mlsd.engine import _spark

    monkeypatch.setitem(sys.modules, "pyspark.sql", None)  # import fails
    monkeypatch.setattr(_spark, "_sessions", {})
    with pytest.raises(SpecError, match=r"pip install 'mlsd\[spark\]'"):
        _spark.spark_session(EngineSpec(kind="spark", master="local[3]"))


def test_a_spark_connect_address_nobody_answers_is_said_at_once(monkeypatch):
    import socket
    import time

    from mlsd.engine import _spark

    with socket.socket() as s:  # a free port, closed again: nobody listens
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setattr(_spark, "_sessions", {})
    t = time.perf_counter()
    with pytest.raises(SpecError, match=f"no Spark Connect server answers at "
                                        f"127.0.0.1:{port}"):
        _spark.spark_session(EngineSpec(kind="spark",
                                        remote=f"sc://127.0.0.1:{port}"))
    assert time.perf_counter() - t < 10  # not the client's minutes of retries


def test_a_local_session_starts_without_spark_talking_about_its_log(spark_engine,
                                                                   tmp_path):
    """A laptop's session says nothing on stderr of its own logging (Spark
    printed "Setting default log level to WARN" and how to change it on every
    start of a PySpark process); only Java's one line about an incubator
    module is left, which Spark asks for."""
    import subprocess
    import sys

    code = ("from mlsd.engine._spark import spark_session\n"
            "from mlsd.spec import EngineSpec\n"
            "print(spark_session(EngineSpec(kind='spark')).range(3).count())\n")
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path,
                          capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0 and proc.stdout.strip() == "3", proc.stderr
    noise = [line for line in proc.stderr.splitlines()
             if line.strip() and "incubator modules" not in line]
    assert noise == []
