"""The service's prediction log and feedback, written in the background.

Every prediction (request id, item key, model version, time, the raw inputs
and the outputs, as the labels issue's ``LOG_SCHEMA`` defines them) and every
feedback event is put on an in-memory queue; one writer thread appends what
has gathered to the lake (areas ``predictions`` and ``feedback``, one Delta
commit a batch) every ``flush_seconds`` or ``batch_rows`` rows, and once more
when the service stops. No request waits on disk. A crash (SIGKILL, power)
loses what was queued since the last commit: at most one batch.

Several workers (``mlsd serve --workers``) each run their own writer; their
commits take the dataset's lock in turn (``mlsd.lake._locks``, which also
serialises them with ``mlsd lake delete``), and a commit that still conflicts
is retried. The queue is bounded: if the disk stalls, the oldest rows are
dropped and counted (``dropped``, in ``/metrics``) rather than the service
running out of memory. A retention setting deletes logged predictions older
than it (the log holds raw inputs) when the writer starts and then hourly.
"""

from __future__ import annotations

import os
import threading
import time
from collections import deque
from datetime import UTC, datetime, timedelta
from typing import Any

import pyarrow as pa
from pydantic_core import to_json

from ..errors import LakeError

RETRIES = 5
RETENTION_EVERY = 3600.0  # seconds between two retention passes


def _commit_conflict(err: Exception) -> bool:
    name = type(err).__name__
    return "CommitFailed" in name or "Conflict" in name or "Transaction" in name


class LogWriter:
    """Rows queued by request handlers, appended to one lake dataset by one
    background thread (see the module). ``add`` never blocks on disk."""

    def __init__(self, lake, area: str, name: str, schema: pa.Schema, *,
                 batch_rows: int = 10_000, flush_seconds: float = 1.0,
                 max_pending: int = 100_000, retention_days: float | None = None,
                 time_column: str | None = None,
                 json_columns: tuple[str, ...] = ()):
        self.lake, self.area, self.name, self.schema = lake, area, name, schema
        self.batch_rows, self.flush_seconds = batch_rows, flush_seconds
        self.max_pending = max_pending
        self.retention_days, self.time_column = retention_days, time_column
        self.json_columns = json_columns  # encoded here, off the request path
        self.pending: deque[dict[str, Any]] = deque()
        self.written = self.dropped = self.commits = self.retries = 0
        self.failures = 0
        self.last_error: str | None = None
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._pruned_at = 0.0

    def start(self) -> LogWriter:
        self._thread = threading.Thread(target=self._run, name=f"mlsd-{self.area}-log",
                                        daemon=True)
        self._thread.start()
        return self

    def add(self, rows: list[dict[str, Any]]) -> None:
        with self._lock:
            self.pending.extend(rows)
            over = len(self.pending) - self.max_pending
            for _ in range(max(0, over)):
                self.pending.popleft()
            self.dropped += max(0, over)
        if len(self.pending) >= self.batch_rows:
            self._wake.set()

    def _take(self) -> list[dict[str, Any]]:
        with self._lock:
            rows = list(self.pending)
            self.pending.clear()
        return rows

    def flush(self) -> int:
        """Append what is queued now, as one commit (retried on a conflict);
        the rows appended."""
        rows = self._take()
        if not rows:
            return 0
        for c in self.json_columns:
            for r in rows:
                if not isinstance(r[c], str | None):
                    r[c] = json_text(r[c])
        table = pa.Table.from_pylist(rows, schema=self.schema)
        for attempt in range(RETRIES):
            try:
                self.lake.append(self.area, self.name, table, metadata={
                    "mlsd.writer": f"serve pid {os.getpid()}"})
                break
            except Exception as err:  # noqa: BLE001 - Delta's or the lock's
                if attempt + 1 < RETRIES and (_commit_conflict(err)
                                              or isinstance(err, LakeError)):
                    self.retries += 1
                    time.sleep(0.05 * 2 ** attempt)
                    continue
                self.failures += 1
                self.last_error = f"{type(err).__name__}: {err}"[:500]
                with self._lock:  # kept for the next try, within the bound
                    self.pending.extendleft(reversed(rows))
                    over = len(self.pending) - self.max_pending
                    for _ in range(max(0, over)):
                        self.pending.popleft()
                    self.dropped += max(0, over)
                return 0
        self.commits += 1
        self.written += len(rows)
        return len(rows)

    def prune(self) -> int | None:
        """Delete logged rows older than the retention (None: no retention)."""
        if self.retention_days is None or self.time_column is None:
            return None
        if not self.lake.exists(self.area, self.name):
            return 0
        cutoff = datetime.now(UTC) - timedelta(days=self.retention_days)
        return self.lake.delete_older(self.area, self.name, self.time_column, cutoff)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.flush_seconds)
            self._wake.clear()
            self.flush()
            if self.retention_days is not None and \
                    time.monotonic() - self._pruned_at > RETENTION_EVERY:
                self._pruned_at = time.monotonic()
                try:
                    self.prune()
                except Exception as err:  # noqa: BLE001 - kept, shown in /metrics
                    self.last_error = f"retention: {type(err).__name__}: {err}"[:500]
        self.flush()

    def close(self, timeout: float = 30.0) -> None:
        """Stop the thread after a last flush."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def stats(self) -> dict[str, Any]:
        return {"pending": len(self.pending), "written": self.written,
                "commits": self.commits, "dropped": self.dropped,
                "retries": self.retries, "failures": self.failures,
                "last_error": self.last_error}


def json_text(value: Any) -> str:
    """``value`` as compact JSON, anything JSON has no type for as its text
    (pydantic-core's Rust encoder: a fifth of ``json.dumps``'s time on a
    logged row, which the writer thread would otherwise hold the GIL for)."""
    return to_json(value, fallback=str).decode()


def log_row(request_id: str, item: str | None, model_version: str,
            inputs: dict[str, Any], outputs: dict[str, Any],
            at: datetime | None = None) -> dict[str, Any]:
    """One prediction as the log keeps it (``LOG_SCHEMA``; the inputs and
    outputs are made JSON by the writer, ``json_columns``)."""
    return {"request_id": request_id, "item": item, "model_version": model_version,
            "predicted_at": at or datetime.now(UTC), "inputs": inputs,
            "outputs": outputs}
