"""The serving tests' project: a private copy of the run example."""

from __future__ import annotations

import shutil
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import pytest

from mlsd.pipeline import Project


def served_copy(src: Path, dst: Path) -> Project:
    """A copy of a run project, without the prediction log and feedback
    another test's service may have written into it."""
    shutil.copytree(src, dst)
    for area in ("predictions", "feedback"):
        shutil.rmtree(dst / ".mlsd" / "lake" / area, ignore_errors=True)
    return Project.of(dst)


@pytest.fixture()
def project(ran_project, tmp_path) -> Project:
    """A private copy of the run example: tests here write its logs."""
    return served_copy(Path(ran_project[0]), tmp_path / "demo")


@contextmanager
def running(app):
    """The app served by uvicorn on a free loopback port, in a thread: its
    base URL."""
    import socket

    import uvicorn

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port,
                                           log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


def promote_under_load(project: Project, base: str, row: dict, model: str
                       ) -> tuple[list[str], list[int]]:
    """Promote ``model`` while four clients post ``row`` without pause, until
    the service answers with it: the versions seen, and the failed statuses."""
    import httpx

    from mlsd.pipeline import promote_model

    seen: list[str] = []
    failures: list[int] = []
    stop = threading.Event()

    def load():
        with httpx.Client(base_url=base) as client:
            while not stop.is_set():
                r = client.post("/predict", json=row)
                if r.status_code != 200:
                    failures.append(r.status_code)
                else:
                    seen.append(r.json()["model_version"])

    clients = [threading.Thread(target=load) for _ in range(4)]
    for t in clients:
        t.start()
    time.sleep(0.5)
    promote_model(project, model)  # another process would do the same
    deadline = time.time() + 10
    while (not seen or seen[-1] != model) and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)
    stop.set()
    for t in clients:
        t.join()
    return seen, failures
