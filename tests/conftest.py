"""Shared fixtures: the example project, run once per session."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from hypothesis import settings

from mlsd.examples import write
from tests._helpers import run_cli

# the commands' width is their own default (120 columns off a terminal), not
# the 80 that pytest-xdist's workers inherit in COLUMNS: the tests read lines
# the commands print (mlsd.cli makes its consoles at its import, after this)
for _name in ("COLUMNS", "LINES"):
    os.environ.pop(_name, None)

# Hypothesis: a lighter profile on CI (2 cores, 20 minutes for everything)
settings.register_profile("ci", max_examples=40, deadline=None)
settings.register_profile("dev", max_examples=150, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE",
                                     "ci" if os.environ.get("CI") else "dev"))

EXAMPLE_POSTS = 8_000
"""The example's size in tests: its generator's shape (defects, drift, spam
share) at 40% of the 20,000 posts `mlsd init --example` writes, so that the
dozens of whole runs in the suite stay within CI's time."""


@pytest.fixture(scope="session")
def example_dir(tmp_path_factory) -> Path:
    """A fresh copy of the forum-spam example, not yet run."""
    folder = tmp_path_factory.mktemp("example") / "demo"
    write("forum-spam", folder, n_posts=EXAMPLE_POSTS)
    return folder


@pytest.fixture(scope="session")
def ran_project(tmp_path_factory, example_dir) -> tuple[Path, dict]:
    """The example, after one `mlsd run --json` in a separate process."""
    folder = tmp_path_factory.mktemp("ran") / "demo"
    shutil.copytree(example_dir, folder)
    proc = run_cli("run", "--json", cwd=folder)
    return folder, json.loads(proc.stdout)


@pytest.fixture()
def fresh_project(tmp_path, example_dir) -> Path:
    """A private copy of the example (not run) that a test may change."""
    folder = tmp_path / "demo"
    shutil.copytree(example_dir, folder)
    return folder


def _need_spark() -> None:
    """Skip without PySpark or Java, or fail under MLSD_REQUIRE_SERVICES=1
    (CI installs the `spark` extra)."""
    import importlib.util

    missing = None
    if importlib.util.find_spec("pyspark") is None:
        missing = "PySpark is not installed (pip install 'mlsd[spark]')"
    elif shutil.which("java") is None:
        missing = "Java is not installed (Spark needs Java 17)"
    if missing:
        if os.environ.get("MLSD_REQUIRE_SERVICES") == "1":
            pytest.fail(f"{missing}, and MLSD_REQUIRE_SERVICES=1 asks for it")
        pytest.skip(missing)


@pytest.fixture(scope="session")
def spark_connect(tmp_path_factory):
    """A Spark Connect server (`local[2]` behind it) started from PySpark's
    own scripts for the tests that need one; its address (sc://...)."""
    import socket
    import subprocess
    import sys
    import time

    _need_spark()
    import pyspark

    home = Path(pyspark.__file__).parent
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    work = tmp_path_factory.mktemp("spark-connect")
    env = {**os.environ, "SPARK_HOME": str(home), "PYSPARK_PYTHON": sys.executable,
           "SPARK_LOG_DIR": str(work / "logs"), "SPARK_PID_DIR": str(work / "pids"),
           "SPARK_LOCAL_IP": "127.0.0.1"}
    subprocess.run(["bash", str(home / "sbin" / "start-connect-server.sh"),
                    "--master", "local[2]", "--conf", "spark.ui.enabled=false",
                    # as an operator sizes a server: Spark's default 200 shuffle
                    # pieces made this test's run 42 s instead of 19 s
                    "--conf", "spark.sql.shuffle.partitions=4",
                    "--conf", f"spark.connect.grpc.binding.port={port}"],
                   env=env, check=True, capture_output=True, timeout=60)
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    logs = "".join(p.read_text()[-2000:]
                                   for p in (work / "logs").glob("*.out"))
                    pytest.fail(f"the Spark Connect server did not start:\n{logs}")
                time.sleep(0.5)
        yield f"sc://127.0.0.1:{port}"
    finally:
        subprocess.run(["bash", str(home / "sbin" / "stop-connect-server.sh")],
                       env=env, capture_output=True, timeout=60)


@pytest.fixture(scope="session")
def spark_engine():
    """One Spark `local[2]` session for the whole suite (a JVM starts in
    ~5 s). Skips without PySpark or Java, or fails under
    MLSD_REQUIRE_SERVICES=1 (CI installs the `spark` extra)."""
    _need_spark()
    from mlsd.engine import SparkEngine
    from mlsd.spec import EngineSpec

    engine = SparkEngine(EngineSpec(kind="spark", master="local[2]"))
    assert engine.session is not None  # started once, here
    return engine
