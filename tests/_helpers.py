"""Helpers the tests share: run the CLI in a separate process, copy projects."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_cli(*args: str, cwd: Path, check: bool = True, env: dict | None = None,
            timeout: float = 300) -> subprocess.CompletedProcess:
    """Run ``python -m mlsd ARGS`` in a separate process."""
    proc = subprocess.run(
        [sys.executable, "-m", "mlsd", *args], cwd=cwd, capture_output=True,
        text=True, timeout=timeout, env={**os.environ, "NO_COLOR": "1", **(env or {})})
    if check and proc.returncode != 0:
        raise AssertionError(f"mlsd {' '.join(args)} exited {proc.returncode}\n"
                             f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}")
    return proc


def copy_project(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns(".mlsd"))
    return dst


def require_service(name: str, port: int, host: str = "127.0.0.1") -> None:
    """Skip when a server is not answering, or fail under MLSD_REQUIRE_SERVICES=1."""
    import socket

    import pytest

    try:
        with socket.create_connection((host, port), timeout=2):
            return
    except OSError as err:
        reason = f"{name} is not answering on {host}:{port} ({err})"
    if os.environ.get("MLSD_REQUIRE_SERVICES") == "1":
        pytest.fail(f"{reason}, and MLSD_REQUIRE_SERVICES=1 asks for it")
    pytest.skip(reason)
