"""One writer at a time: OS file locks on the lake.

Two kinds of lock, both ``fcntl.flock`` on a file under ``.mlsd/locks/``:

* ``run``: held for a whole run (``mlsd run``, ``mlsd ingest``), a quarantine
  replay, an erasure, a vacuum. Two runs at once would both decide the same
  files are new, or number the same versions.
* ``dataset-AREA-NAME``: held around every write of one lake dataset. A
  long-running writer of its own dataset (a prediction log, a broker
  consumer) takes only that, and does not stop a run.

The kernel frees a lock when its holder dies, however it dies (SIGKILL
included), so a crash never leaves the lake locked. The holder writes its pid,
its command and when it took the lock into the lock file, for the message a
second writer shows while it waits (or fails with ``wait=False``). Readers
(``mlsd sql``, ``serve``, ``predict``) take no lock: Delta versions are
immutable, and a reader sees the last committed one.

A process holds each lock once, however many times it asks (re-entrant), so
a run's own writes do not wait on the run. Written by hand: ``fcntl`` is the
whole mechanism; the libraries that wrap it (filelock, portalocker) would
add a dependency for these few lines and still need the holder's record.
"""

from __future__ import annotations

import fcntl
import json
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from ..errors import LakeError

_held: dict[str, tuple[int, int]] = {}  # lock path -> (fd, depth), this process
_guard = threading.Lock()
POLL_SECONDS = 0.2
# the process's policy (the CLI's --no-wait and its message on stderr)
_policy: dict = {"wait": True, "on_wait": None}


def configure(*, wait: bool = True,
              on_wait: Callable[[str], None] | None = None) -> None:
    """Whether this process waits for a busy lock, and what it says then."""
    _policy.update(wait=wait, on_wait=on_wait)


class LockHeld(LakeError):
    """Another process holds a lock this one needs, and it chose not to wait."""


def holder(path: Path) -> dict | None:
    """Who holds (or last held) the lock at ``path``, as its holder wrote it."""
    try:
        text = path.read_text(encoding="utf-8")
        return json.loads(text) if text.strip() else None
    except (OSError, ValueError):
        return None


def _describe(info: dict | None) -> str:
    if not info:
        return "another mlsd process"
    return (f"pid {info.get('pid')} ({info.get('command', 'mlsd')}, since "
            f"{info.get('since', '?')})")


@contextmanager
def hold(path: Path, what: str, *, wait: bool | None = None,
         on_wait: Callable[[str], None] | None = None,
         timeout: float | None = None) -> Iterator[None]:
    """Hold the lock file ``path`` (``what`` names it in messages).

    Blocks until the lock is free, calling ``on_wait`` once with the holder's
    description; with ``wait=False`` (or once ``timeout`` seconds passed)
    raises :class:`LockHeld` naming the holder instead.
    """
    wait = _policy["wait"] if wait is None else wait
    on_wait = on_wait or _policy["on_wait"]
    key = str(path)
    with _guard:
        if key in _held:
            fd, depth = _held[key]
            _held[key] = (fd, depth + 1)
            reentered = True
        else:
            reentered = False
    if reentered:
        try:
            yield
        finally:
            with _guard:
                fd, depth = _held[key]
                _held[key] = (fd, depth - 1)
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        started = time.monotonic()
        told = False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                info = holder(path)
                who = _describe(info)
                if not wait or (timeout is not None
                                and time.monotonic() - started > timeout):
                    raise LockHeld(f"{what} is busy: {who} is writing it; wait for "
                                   f"it to finish (or run again without "
                                   f"--no-wait)") from None
                # the holder writes its pid just after it takes the lock: give
                # it a moment, so the message can name it
                if on_wait is not None and not told and (
                        info or time.monotonic() - started > 1.0):
                    on_wait(f"waiting for {what}: {who} is writing it")
                    told = True
                time.sleep(POLL_SECONDS)
        program = Path(sys.argv[0]).name if sys.argv else "mlsd"
        if program in ("__main__.py", "mlsd"):
            program = "mlsd " + " ".join(sys.argv[1:2])
        record = {"pid": os.getpid(), "command": program.strip(),
            "since": datetime.now(UTC).isoformat(timespec="seconds")}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(record).encode(), 0)
        with _guard:
            _held[key] = (fd, 1)
        try:
            yield
        finally:
            with _guard:
                _held.pop(key, None)
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def lock_path(root: Path, *parts: str) -> Path:
    """The lock file of ``parts`` (``"run"``, or ``"dataset", area, name``)."""
    return root / "locks" / ("-".join(parts) + ".lock")
