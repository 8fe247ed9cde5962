"""The catalog: a small SQLite database of runs, loads, dataset versions,
artifacts and the lineage edges between them.

Lineage nodes are strings: ``file:<sha256>``, ``dataset:<area>/<name>@<version>``,
``model:<id>``, ``report:<id>``; an edge says ``src`` was used to make ``dst``.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY, started_at TEXT NOT NULL, finished_at TEXT,
    status TEXT NOT NULL, spec_hash TEXT, code_version TEXT, summary TEXT);
CREATE TABLE IF NOT EXISTS files (
    sha256 TEXT NOT NULL, path TEXT NOT NULL, size INTEGER NOT NULL,
    first_seen TEXT NOT NULL, PRIMARY KEY (sha256, path));
CREATE TABLE IF NOT EXISTS loads (
    load_id TEXT PRIMARY KEY, source TEXT NOT NULL, dataset TEXT NOT NULL,
    version INTEGER NOT NULL, quarantine_version INTEGER,
    rows_in INTEGER NOT NULL, rows_stored INTEGER NOT NULL,
    rows_quarantined INTEGER NOT NULL, reasons TEXT, files TEXT,
    run_id TEXT, created_at TEXT NOT NULL, watermark TEXT);
CREATE TABLE IF NOT EXISTS dataset_versions (
    dataset TEXT NOT NULL, version INTEGER NOT NULL, write_id TEXT,
    rows INTEGER, run_id TEXT, created_at TEXT NOT NULL,
    PRIMARY KEY (dataset, version));
CREATE TABLE IF NOT EXISTS artifacts (
    artifact_id TEXT PRIMARY KEY, kind TEXT NOT NULL, path TEXT NOT NULL,
    run_id TEXT, created_at TEXT NOT NULL, metadata TEXT);
CREATE TABLE IF NOT EXISTS stage_runs (
    run_id TEXT NOT NULL, stage TEXT NOT NULL, status TEXT NOT NULL,
    started_at TEXT NOT NULL, seconds REAL, settings TEXT, code_version TEXT,
    reads TEXT, outputs TEXT, summary TEXT, error TEXT,
    PRIMARY KEY (run_id, stage));
CREATE TABLE IF NOT EXISTS erasures (
    erasure_id TEXT PRIMARY KEY, source TEXT NOT NULL, predicate TEXT NOT NULL,
    created_at TEXT NOT NULL, result TEXT);
CREATE TABLE IF NOT EXISTS alias_events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, alias TEXT NOT NULL,
    artifact_id TEXT NOT NULL, action TEXT NOT NULL, at TEXT NOT NULL,
    reason TEXT, undone INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS edges (
    src TEXT NOT NULL, dst TEXT NOT NULL, relation TEXT NOT NULL, run_id TEXT,
    PRIMARY KEY (src, dst, relation));
"""


CHAMPION = "champion"
"""The alias of the model served when none is named."""


def now() -> str:
    """UTC time as ISO 8601 text, the catalog's time format."""
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def _stage_row(row: sqlite3.Row) -> dict[str, Any]:
    out = dict(row)
    for k in ("settings", "outputs", "summary"):
        out[k] = json.loads(out[k] or "{}")
    out["reads"] = json.loads(out["reads"] or "[]")
    return out


def dataset_node(area: str, name: str, version: int) -> str:
    return f"dataset:{area}/{name}@{version}"


class Catalog:
    """Metadata of a project, in ``.mlsd/catalog.db``.

    Parameters
    ----------
    path : Path
        The SQLite file; created with its tables on first use.
    """

    def __init__(self, *, path: Path):
        self.path = Path(path)

    @contextmanager
    def _db(self) -> Iterator[sqlite3.Connection]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        con = sqlite3.connect(self.path, timeout=30)
        con.row_factory = sqlite3.Row
        try:
            con.executescript(_SCHEMA)
            cols = {r[1] for r in con.execute("PRAGMA table_info(loads)")}
            if "watermark" not in cols:  # catalogs made before watermarks
                con.execute("ALTER TABLE loads ADD COLUMN watermark TEXT")
            with con:
                yield con
        finally:
            con.close()

    # runs ---------------------------------------------------------------------
    def start_run(self, run_id: str, *, spec_hash: str, code_version: str) -> None:
        with self._db() as con:
            con.execute(
                "INSERT INTO runs (run_id, started_at, status, spec_hash, code_version)"
                " VALUES (?, ?, 'running', ?, ?)",
                (run_id, now(), spec_hash, code_version),
            )

    def finish_run(self, run_id: str, *, status: str, summary: dict | None) -> None:
        with self._db() as con:
            con.execute(
                "UPDATE runs SET finished_at = ?, status = ?, summary = ? "
                "WHERE run_id = ?",
                (now(), status, json.dumps(summary, default=str), run_id),
            )

    def mark_killed(self) -> list[str]:
        """Runs recorded as running, whose process is gone (the caller holds
        the run lock, so no run is live): marked ``killed``; their ids."""
        with self._db() as con:
            rows = con.execute("SELECT run_id FROM runs WHERE status = 'running'"
                               ).fetchall()
            con.execute("UPDATE runs SET status = 'killed', finished_at = ? "
                        "WHERE status = 'running'", (now(),))
        return [r["run_id"] for r in rows]

    # erasures ---------------------------------------------------------------
    def add_erasure(self, erasure_id: str, *, source: str, predicate: str,
                    result: dict[str, Any]) -> None:
        """Record an erasure: every later load of ``source`` applies it again."""
        with self._db() as con:
            con.execute("INSERT INTO erasures VALUES (?, ?, ?, ?, ?)",
                        (erasure_id, source, predicate, now(),
                         json.dumps(result, default=str)))

    def erasures(self, source: str | None = None) -> list[dict[str, Any]]:
        """The erasures recorded (of one source, or all), oldest first."""
        sql, args = "SELECT * FROM erasures", ()
        if source is not None:
            sql, args = sql + " WHERE source = ?", (source,)
        with self._db() as con:
            rows = con.execute(sql + " ORDER BY created_at, rowid", args).fetchall()
        return [{**dict(r), "result": json.loads(r["result"] or "{}")} for r in rows]

    def runs(self) -> list[dict[str, Any]]:
        with self._db() as con:
            rows = con.execute("SELECT * FROM runs ORDER BY started_at").fetchall()
        return [dict(r) for r in rows]

    # stages of runs ------------------------------------------------------------
    def add_stage_run(self, *, run_id: str, stage: str, status: str,
                      started_at: str, seconds: float, settings: dict[str, Any],
                      code_version: str, reads: list[str],
                      outputs: dict[str, Any], summary: dict[str, Any],
                      error: str | None = None) -> None:
        """Record one stage of a run: its time, what it read, the persisted
        outputs it wrote (as refs) and its summary entries."""
        with self._db() as con:
            con.execute(
                "INSERT OR REPLACE INTO stage_runs VALUES "
                "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (run_id, stage, status, started_at, seconds,
                 json.dumps(settings, sort_keys=True, default=str), code_version,
                 json.dumps(reads), json.dumps(outputs, default=str),
                 json.dumps(summary, default=str), error))

    def stage_runs(self, run_id: str | None = None) -> list[dict[str, Any]]:
        """Stage records, oldest first (of one run, or of all)."""
        sql, args = "SELECT * FROM stage_runs", ()
        if run_id:
            sql, args = sql + " WHERE run_id = ?", (run_id,)
        with self._db() as con:
            rows = con.execute(sql + " ORDER BY started_at, rowid", args).fetchall()
        return [_stage_row(r) for r in rows]

    def last_stage_run(self, stage: str) -> dict[str, Any] | None:
        """The latest record of ``stage`` that completed, if any."""
        with self._db() as con:
            row = con.execute(
                "SELECT * FROM stage_runs WHERE stage = ? AND status = 'done' "
                "ORDER BY started_at DESC, rowid DESC LIMIT 1", (stage,)).fetchone()
        return None if row is None else _stage_row(row)

    # files, loads, dataset versions -----------------------------------------
    def add_file(self, *, sha256: str, path: str, size: int) -> str:
        with self._db() as con:
            con.execute(
                "INSERT OR IGNORE INTO files VALUES (?, ?, ?, ?)",
                (sha256, path, size, now()),
            )
        return f"file:{sha256}"

    def add_dataset_version(self, area: str, name: str, version: int, *,
                            write_id: str, rows: int | None, run_id: str) -> str:
        with self._db() as con:
            con.execute(
                "INSERT OR IGNORE INTO dataset_versions VALUES (?, ?, ?, ?, ?, ?)",
                (f"{area}/{name}", version, write_id, rows, run_id, now()),
            )
        return dataset_node(area, name, version)

    def dataset_versions(self, dataset: str | None = None) -> list[dict[str, Any]]:
        sql, args = "SELECT * FROM dataset_versions", ()
        if dataset:
            sql, args = sql + " WHERE dataset = ?", (dataset,)
        with self._db() as con:
            rows = con.execute(sql + " ORDER BY dataset, version", args).fetchall()
        return [dict(r) for r in rows]

    def add_load(self, *, load_id: str, source: str, dataset: str, version: int,
                 quarantine_version: int | None, rows_in: int, rows_stored: int,
                 rows_quarantined: int, reasons: dict[str, int],
                 files: list[dict[str, Any]], run_id: str,
                 watermark: str | None = None) -> None:
        with self._db() as con:
            con.execute(
                "INSERT OR IGNORE INTO loads VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (load_id, source, dataset, version, quarantine_version, rows_in,
                 rows_stored, rows_quarantined, json.dumps(reasons),
                 json.dumps(files), run_id, now(), watermark),
            )

    def load_ids(self, source: str) -> list[str]:
        """The id of every load of ``source`` (its rows carry it as ``_load_id``)."""
        with self._db() as con:
            rows = con.execute("SELECT load_id FROM loads WHERE source = ? "
                               "ORDER BY created_at, rowid", (source,)).fetchall()
        return [r["load_id"] for r in rows]

    def loaded_files(self, source: str) -> set[tuple[str, str]]:
        """(path, sha256) of every file some load of ``source`` committed."""
        with self._db() as con:
            rows = con.execute("SELECT files FROM loads WHERE source = ?",
                               (source,)).fetchall()
        return {(f["path"], f["sha256"]) for r in rows
                for f in json.loads(r["files"] or "[]")}

    def last_watermark(self, source: str) -> str | None:
        """The watermark of the source's latest load (JSON text), if any."""
        with self._db() as con:
            row = con.execute(
                "SELECT watermark FROM loads WHERE source = ? AND watermark IS NOT "
                "NULL ORDER BY created_at DESC, rowid DESC LIMIT 1",
                (source,)).fetchone()
        return row["watermark"] if row else None

    def load(self, load_id: str) -> dict[str, Any] | None:
        with self._db() as con:
            row = con.execute("SELECT * FROM loads WHERE load_id = ?",
                              (load_id,)).fetchone()
        if row is None:
            return None
        out = dict(row)
        out["reasons"] = json.loads(out["reasons"] or "{}")
        out["files"] = json.loads(out["files"] or "[]")
        return out

    def loads_for(self, dataset: str, version: int) -> list[dict[str, Any]]:
        with self._db() as con:
            rows = con.execute(
                "SELECT load_id FROM loads WHERE dataset = ? AND version <= ? "
            "AND (version = ? OR watermark IS NOT NULL) ORDER BY version",
                (dataset, version, version)).fetchall()
        return [self.load(r["load_id"]) for r in rows]

    # artifacts ----------------------------------------------------------------
    def add_artifact(self, artifact_id: str, *, kind: str, path: str, run_id: str,
                     metadata: dict[str, Any]) -> str:
        with self._db() as con:
            con.execute(
                "INSERT INTO artifacts VALUES (?, ?, ?, ?, ?, ?)",
                (artifact_id, kind, path, run_id, now(),
                 json.dumps(metadata, default=str)),
            )
        return f"{kind}:{artifact_id}"

    def artifacts(self, kind: str | None = None) -> list[dict[str, Any]]:
        sql, args = "SELECT * FROM artifacts", ()
        if kind:
            sql, args = sql + " WHERE kind = ?", (kind,)
        with self._db() as con:
            rows = con.execute(sql + " ORDER BY created_at, rowid", args).fetchall()
        out = []
        for r in rows:
            d = dict(r)
            d["metadata"] = json.loads(d["metadata"] or "{}")
            out.append(d)
        return out

    def artifact(self, artifact_id: str) -> dict[str, Any] | None:
        with self._db() as con:
            rows = con.execute(
                "SELECT artifact_id FROM artifacts WHERE artifact_id = ? "
                "OR artifact_id LIKE ? ORDER BY created_at",
                (artifact_id, f"{artifact_id}%")).fetchall()
        if len(rows) != 1:
            return None
        return next(a for a in self.artifacts()
                    if a["artifact_id"] == rows[0]["artifact_id"])

    # aliases (the model registry) ----------------------------------------------
    # Each alias is a stack: a promotion pushes a model, a rollback undoes the
    # last promotion still in force; every event stays, for the history.
    def aliases(self) -> dict[str, dict[str, Any]]:
        """Every alias and the promotion in force: alias -> {artifact_id, at,
        reason, seq}."""
        with self._db() as con:
            rows = con.execute(
                "SELECT alias, artifact_id, at, reason, seq FROM alias_events "
                "WHERE action = 'promote' AND undone = 0 ORDER BY seq").fetchall()
        return {r["alias"]: {k: r[k] for k in ("artifact_id", "at", "reason", "seq")}
                for r in rows}  # the last promotion in force wins

    def alias(self, name: str) -> str | None:
        """The model id alias ``name`` points at (None: no such alias)."""
        entry = self.aliases().get(name)
        return None if entry is None else entry["artifact_id"]

    def alias_history(self, alias: str | None = None) -> list[dict[str, Any]]:
        """The promotions and rollbacks, oldest first (of one alias or all)."""
        sql, args = "SELECT * FROM alias_events", ()
        if alias is not None:
            sql, args = sql + " WHERE alias = ?", (alias,)
        with self._db() as con:
            return [dict(r) for r in con.execute(sql + " ORDER BY seq", args)]

    def push_alias(self, alias: str, artifact_id: str, *, reason: str | None
                   ) -> str | None:
        """Point ``alias`` at ``artifact_id``; returns the model it pointed at
        before (None: a new alias). Pointing it where it points is no event."""
        with self._db() as con:
            con.execute("BEGIN IMMEDIATE")  # read and write as one step
            cur = con.execute(
                "SELECT artifact_id FROM alias_events WHERE alias = ? AND action = "
                "'promote' AND undone = 0 ORDER BY seq DESC LIMIT 1",
                (alias,)).fetchone()
            before = cur["artifact_id"] if cur else None
            if before != artifact_id:
                con.execute(
                    "INSERT INTO alias_events (alias, artifact_id, action, at, "
                    "reason) VALUES (?, ?, 'promote', ?, ?)",
                    (alias, artifact_id, now(), reason))
        return before

    def pop_alias(self, alias: str, *, reason: str | None
                  ) -> tuple[str, str] | None:
        """Undo the last promotion of ``alias`` still in force: it points at
        the model it pointed at before. Returns (from, to), or None when there
        is no earlier promotion to go back to (nothing changes then)."""
        with self._db() as con:
            con.execute("BEGIN IMMEDIATE")
            live = con.execute(
                "SELECT seq, artifact_id FROM alias_events WHERE alias = ? AND "
                "action = 'promote' AND undone = 0 ORDER BY seq DESC LIMIT 2",
                (alias,)).fetchall()
            if len(live) < 2:
                return None
            cur, prev = live
            con.execute("UPDATE alias_events SET undone = 1 WHERE seq = ?",
                        (cur["seq"],))
            con.execute(
                "INSERT INTO alias_events (alias, artifact_id, action, at, reason) "
                "VALUES (?, ?, 'rollback', ?, ?)",
                (alias, prev["artifact_id"], now(), reason))
        return cur["artifact_id"], prev["artifact_id"]

    # lineage --------------------------------------------------------------------
    def add_edge(self, src: str, dst: str, relation: str, run_id: str) -> None:
        with self._db() as con:
            con.execute("INSERT OR IGNORE INTO edges VALUES (?, ?, ?, ?)",
                        (src, dst, relation, run_id))

    def upstream(self, node: str) -> list[dict[str, Any]]:
        """Every edge reachable backwards from ``node`` (breadth first)."""
        seen, out, frontier = {node}, [], [node]
        with self._db() as con:
            while frontier:
                nxt = []
                for n in frontier:
                    for r in con.execute(
                        "SELECT * FROM edges WHERE dst = ? ORDER BY src", (n,)
                    ).fetchall():
                        out.append(dict(r))
                        if r["src"] not in seen:
                            seen.add(r["src"])
                            nxt.append(r["src"])
                frontier = nxt
        return out
