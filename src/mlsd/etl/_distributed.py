"""Reading, validating and storing a file source as Spark tasks (``engine:
spark``).

Spark's own readers cannot keep mlsd's promises (its CSV reader gives no line
numbers, its permissive mode keeps no reason per row), so each task runs
mlsd's reader and :class:`Validator` on one unit: a file, or a span of a large
file: a CSV or JSONL file's lines (about ``SPAN_BYTES`` each, cut at line
breaks, numbered from the line breaks before them, which a first, cheap job
counts), a Parquet file's row groups (numbered by its footer).

Two ways to store what the tasks validated:

* :func:`store_on_spark`, for a load with no rule over the whole load: each
  task drops what a recorded erasure covers and writes its accepted rows as
  Parquet files in the dataset's folder and its rejected rows in the
  quarantine's, and returns their names and its counts; the driver commits
  each side as one Delta transaction. No row passes through the driver.
* :func:`validated_on_spark`, when a rule needs every row at once (``unique``,
  ``transform.dedupe``, an upsert's key): each task writes its validated
  batches as Arrow IPC files in the load's scratch folder, and the driver takes
  them in read order and settles them exactly as a local load does (the spool,
  the repeats, one commit each).

Either way the stored rows, the quarantine and the load id are those of a
local load. A span is read by mlsd's fast CSV path alone: where a local read
would switch to the ``csv`` module (a quoted line break, bytes that are not
UTF-8), a span cannot know how the lines before it were parsed, so its file
is read again whole, as one task, and the spans' output is dropped. The
scratch folder and the lake must be on storage every node sees.
"""

from __future__ import annotations

import itertools
import json
import math
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa

from ..errors import DataError
from ..formats import format_for, get_format
from ..formats._csv import CsvSpanUnsafe, count_lines, csv_spans, line_spans
from ..lake._store import locate, make_dirs, remove
from ._validate import QUARANTINE_SCHEMA, Validated

SPAN_BYTES = 64 << 20  # a CSV file larger than this is read in spans this large
MESSAGES = 10_000  # distinct quarantine messages counted, as a local load does

_jobs = itertools.count()


def _path(connector, info) -> Path:
    p = Path(info.path)
    return p if p.is_absolute() else connector.root / p


def file_hashes(engine) -> Callable[[list[Path]], list[str]]:
    """For :meth:`FileConnector.files`: the files' sha256, one task a file."""
    def hashes(paths: list[Path]) -> list[str]:
        from ..connectors._files import sha256_file

        schema = pa.schema([("i", pa.int64()), ("sha256", pa.string())])
        got = engine.map_units(list(enumerate(paths)), lambda u: iter([
            {"i": u[0], "sha256": sha256_file(u[1])}]), schema).to_pylist()
        found = {r["i"]: r["sha256"] for r in got}
        return [found[i] for i in range(len(paths))]
    return hashes


def plan_units(engine, connector, infos: list) -> list[tuple[int, Any, tuple | None]]:
    """``(unit, file, span)`` in read order: a file whole, or a large CSV
    file's spans, each with its first line's number."""
    o = connector.options
    cut: list[tuple[int, list]] = []
    firsts: dict[int, int] = {}
    ready: dict[int, list] = {}  # spans numbered already (Parquet row groups)
    for i, info in enumerate(infos):
        path = _path(connector, info)
        kind = format_for(path, connector.format)
        if info.size <= SPAN_BYTES or kind not in ("csv", "jsonl", "parquet"):
            continue
        if kind == "parquet":  # runs of row groups, numbered by the footer
            groups = get_format("parquet").spans(path, SPAN_BYTES)
            if len(groups) > 1:
                ready[i] = groups
            continue
        n = math.ceil(info.size / SPAN_BYTES)
        if kind == "csv":
            spans = csv_spans(path, n, delimiter=o.delimiter, quotechar=o.quotechar,
                              encoding=o.encoding, header=o.header)
            firsts[i] = 2  # the header is line 1 (csv_spans cuts no other file)
        elif o.encoding.replace("-", "").lower() in ("utf8", "ascii", "latin1"):
            spans = line_spans(path, n)  # a byte 10 is a line break there
            firsts[i] = 1
        else:
            continue
        if len(spans) > 1:
            cut.append((i, spans))
    counts: dict[tuple[int, int | None], int] = {}
    if cut:  # the line breaks in every span, counted by a job of their own
        pieces = [(i, start, end) for i, spans in cut for start, end in spans
                  if end != spans[-1][1]]
        schema = pa.schema([("file", pa.int64()), ("start", pa.int64()),
                            ("lines", pa.int64())])
        got = engine.map_units(pieces, lambda p: iter([{
            "file": p[0], "start": -1 if p[1] is None else p[1],
            "lines": count_lines(_path(connector, infos[p[0]]), p[1], p[2])}]),
            schema).to_pylist()
        counts = {(r["file"], None if r["start"] < 0 else r["start"]): r["lines"]
                  for r in got}
    spans_of = dict(cut)
    units = []
    for i, info in enumerate(infos):
        if i in ready:
            units += [(len(units) + k, info, span) for k, span in enumerate(ready[i])]
            continue
        if i not in spans_of:
            units.append((len(units), info, None))
            continue
        first = firsts[i]
        for start, end in spans_of[i]:
            units.append((len(units), info, (start, end, first)))
            first += counts.get((i, start), 0)
    return units


def run_units(engine, units: list, task: Callable, schema: pa.Schema
         ) -> tuple[list[dict], list]:
    """The tasks' rows over ``units``; the files of a span that proved
    unsafe read again whole (their spans' files removed). Raises the first
    file's error, in read order, as a local load would."""
    done = engine.map_units(units, task, schema).to_pylist()
    unsafe = {units[r["unit"]][1].path for r in done if r["unsafe"]}
    if unsafe:
        for r in done:
            if units[r["unit"]][1].path in unsafe:
                for f in json.loads(r["files"] or "[]"):
                    remove(f)
        again, seen = [], set()
        for _, info, _ in units:
            if info.path in unsafe and info.path not in seen:
                seen.add(info.path)
                again.append((len(units) + len(again), info, None))
        done = [r for r in done if units[r["unit"]][1].path not in unsafe]
        done += engine.map_units(again, task, schema).to_pylist()
        units = units + again
    order: dict[str, int] = {}
    for _, info, _ in units:
        order.setdefault(info.path, len(order))
    failed = sorted((r for r in done if r["error"]),
                    key=lambda r: (order[units[r["unit"]][1].path], r["unit"]))
    if failed:
        for r in done:  # what the other tasks wrote is in no version: gone
            for f in json.loads(r["files"] or "[]"):
                remove(f)
        raise DataError(failed[0]["error"])
    key = {u: (order[info.path], span is not None, (span or (0,))[0] or 0)
           for u, info, span in units}
    done.sort(key=lambda r: (key[r["unit"]], r["batch"]))
    return done, units


def guarded(work: Callable[[Any], Iterator[dict]], empty: dict
             ) -> Callable[[Any], Iterator[dict]]:
    """A task that reports an unsafe span or an mlsd error as a row (said on
    the driver as a local load says it) instead of failing the job."""
    def task(unit):
        written: list[str] = []
        try:
            yield from work(unit, written)
        except CsvSpanUnsafe:
            yield {**empty, "unit": unit[0], "batch": 1 << 40, "unsafe": True,
                   "files": json.dumps(written)}
        except DataError as err:
            yield {**empty, "unit": unit[0], "batch": 1 << 40, "error": str(err),
                   "files": json.dumps(written)}
    return task


# -- the driver settles every batch (a rule over the whole load) -------------

SCRATCH = pa.schema([("unit", pa.int64()), ("batch", pa.int64()),
                     ("rows", pa.int64()), ("accepted", pa.string()),
                     ("rejected", pa.string()), ("files", pa.string()),
                     ("unsafe", pa.bool_()), ("error", pa.string())])


def _write_ipc(path: str, batch: pa.RecordBatch) -> None:
    fs, where = locate(path)
    with fs.open_output_stream(where) as sink, \
            pa.ipc.new_file(sink, batch.schema) as w:
        w.write_batch(batch)


def _read_ipc(path: str) -> pa.RecordBatch:
    fs, where = locate(path)
    with fs.open_input_file(where) as source:
        reader = pa.ipc.open_file(source)
        batch = reader.get_batch(0) if reader.num_record_batches else \
            pa.RecordBatch.from_pylist([], schema=reader.schema)
    remove(path)
    return batch


def validated_on_spark(engine, connector, infos: list, columns: list[str],
                       validator, *, chunk_rows: int, load_id: str,
                       folder: str | Path) -> Iterator[tuple[Any, int, Validated]]:
    """``(file, rows read, validated batch)`` for every batch of ``infos``'
    files, read and validated by Spark tasks, in read order (through files
    in ``folder``, a folder or a store's URL every node reaches)."""
    folder = str(folder)
    make_dirs(folder)
    job = next(_jobs)
    empty = {"rows": 0, "accepted": None, "rejected": None, "files": None,
             "unsafe": False, "error": None}

    def work(unit, written: list[str]) -> Iterator[dict[str, Any]]:
        u, info, span = unit
        for b, (_, raw) in enumerate(connector.read(
                columns, chunk_rows=chunk_rows, only=[info], span=span)):
            out = validator.validate(raw, source=info.path, sha256=info.sha256,
                                     load_id=load_id)
            name = f"j{job}-u{u:06d}-b{b:06d}"
            mine = [f"{name}.accepted"] + (
                [f"{name}.rejected"] if out.rejected.num_rows else [])
            _write_ipc(f"{folder}/{mine[0]}", out.accepted)
            if out.rejected.num_rows:
                _write_ipc(f"{folder}/{mine[1]}", out.rejected)
            written += [f"{folder}/{f}" for f in mine]
            yield {**empty, "unit": u, "batch": b, "rows": raw.num_rows,
                   "accepted": mine[0], "rejected": mine[1] if len(mine) > 1
                   else None, "files": json.dumps([f"{folder}/{f}" for f in mine])}

    done, units = run_units(engine, plan_units(engine, connector, infos),
                       guarded(work, empty), SCRATCH)
    for r in done:
        accepted = _read_ipc(f"{folder}/{r['accepted']}")
        rejected = (_read_ipc(f"{folder}/{r['rejected']}") if r["rejected"]
                    else pa.RecordBatch.from_pylist([], schema=QUARANTINE_SCHEMA))
        yield units[r["unit"]][1], r["rows"], Validated(accepted, rejected)


# -- the tasks store their rows (no rule over the whole load) ----------------

STORED = pa.schema([("unit", pa.int64()), ("batch", pa.int64()),
                    ("rows", pa.int64()), ("erased", pa.int64()),
                    ("accepted", pa.string()), ("rejected", pa.string()),
                    ("reasons", pa.string()), ("files", pa.string()),
                    ("unsafe", pa.bool_()), ("error", pa.string())])


@dataclass
class Stored:
    """What the tasks of :func:`store_on_spark` wrote and counted."""

    rows_in: int = 0
    rows_ok: int = 0
    rows_bad: int = 0
    rows_erased: int = 0
    per_file: Counter = field(default_factory=Counter)
    reasons: Counter = field(default_factory=Counter)
    messages: Counter = field(default_factory=Counter)
    accepted: list[dict] = field(default_factory=list)  # Parquet parts, in order
    rejected: list[dict] = field(default_factory=list)


def store_on_spark(engine, connector, infos: list, columns: list[str], validator,
                   settle: Callable, *, chunk_rows: int, load_id: str,
                   data_folder: str, quarantine_folder: str,
                   file_rows: int, unique: list[str] | None = None,
                   scratch: str | None = None,
                   raw_text: Callable | None = None) -> Stored:
    """Read, validate and write ``infos``' files as Spark tasks: accepted rows
    as Parquet parts of ``data_folder`` (about ``file_rows`` rows each),
    rejected ones in ``quarantine_folder``, for :meth:`Lake.commit_parts`.
    ``settle(validated) -> (accepted, rejected, erased)`` drops what recorded
    erasures cover.

    ``unique``: a key no two stored rows may share, over the whole load (the
    first row read wins, as in a local load). The tasks then stage their
    accepted rows in ``scratch`` with their place in the read order; a Spark
    window ranks each key's rows, the first ones are written to
    ``data_folder`` by tasks, and the others (few) become quarantine rows
    here, their raw records by ``raw_text`` (CSV lines) or as JSON."""
    import numpy as np

    from ..lake import write_part

    empty = {"rows": 0, "erased": 0, "accepted": None, "rejected": None,
             "reasons": None, "files": None, "unsafe": False, "error": None}
    acc_schema = validator.output_schema()
    where = ["__file", "__span", "__batch", "__row"]  # the read order
    staged = pa.schema([*acc_schema, *(pa.field(c, pa.int64()) for c in where)])
    file_of = {info.path: i for i, info in enumerate(infos)}
    target = str(scratch if unique else data_folder)

    def work(unit, written: list[str]) -> Iterator[dict[str, Any]]:
        u, info, span = unit
        batch_no = 0
        held: list[pa.RecordBatch] = []
        bad: list[pa.RecordBatch] = []
        rows = erased = 0
        reasons: Counter = Counter()
        messages: Counter = Counter()
        parts: list[dict] = []

        def flush() -> None:
            part = write_part(target, pa.Table.from_batches(
                held, staged if unique else acc_schema))
            held.clear()
            if part is not None:
                written.append(f"{target}/{part['path']}")
                parts.append(part)

        for _, raw in connector.read(columns, chunk_rows=chunk_rows, only=[info],
                                     span=span):
            accepted, rejected, gone = settle(validator.validate(
                raw, source=info.path, sha256=info.sha256, load_id=load_id))
            rows += raw.num_rows
            erased += gone
            if unique:
                n = accepted.num_rows
                for c, v in zip(where[:3], (file_of[info.path],
                                            (span[0] or 0) if span else 0,
                                            batch_no), strict=True):
                    accepted = accepted.append_column(c, pa.array(np.full(n, v)))
                accepted = accepted.append_column(
                    "__row", pa.array(np.arange(n, dtype=np.int64)))
            batch_no += 1
            held.append(accepted)
            if sum(b.num_rows for b in held) >= file_rows:
                flush()
            if rejected.num_rows:
                bad.append(rejected)
                for row in rejected.column("reasons").to_pylist():
                    for r in row:
                        reasons[f"{r['column'] or '(record)'}: {r['rule']}"] += 1
                        if len(messages) < MESSAGES:
                            messages[r["message"]] += 1
        flush()
        quarantined = write_part(quarantine_folder,
                                 pa.Table.from_batches(bad, QUARANTINE_SCHEMA))
        if quarantined is not None:
            written.append(f"{quarantine_folder}/{quarantined['path']}")
        yield {**empty, "unit": u, "batch": 0, "rows": rows, "erased": erased,
               "accepted": json.dumps(parts),
               "rejected": json.dumps([quarantined] if quarantined else []),
               "reasons": json.dumps([reasons, messages]),
               "files": json.dumps(written)}

    for folder in {data_folder, quarantine_folder, target}:
        make_dirs(folder)
    done, units = run_units(engine, plan_units(engine, connector, infos),
                       guarded(work, empty), STORED)
    out = Stored()
    for r in done:
        info = units[r["unit"]][1]
        out.per_file[info.path] += r["rows"]
        out.rows_in += r["rows"]
        out.rows_erased += r["erased"]
        out.accepted += json.loads(r["accepted"])
        out.rejected += json.loads(r["rejected"])
        reasons, messages = json.loads(r["reasons"])
        out.reasons.update(reasons)
        for m, n in messages.items():  # the first messages met, as locally
            if m in out.messages or len(out.messages) < MESSAGES:
                out.messages[m] += n
    if unique:
        moved = _first_of_each_key(engine, out, unique, where, target, data_folder,
                                   quarantine_folder, acc_schema, file_rows,
                                   load_id=load_id, raw_text=raw_text)
        if moved:
            out.reasons[f"{unique[0]}: unique"] += moved
    out.rows_ok = sum(p["rows"] for p in out.accepted)
    out.rows_bad = sum(p["rows"] for p in out.rejected)
    return out


def _first_of_each_key(engine, out: Stored, unique: list[str], where: list[str],
                       scratch: str, data_folder: str, quarantine_folder: str,
                       acc_schema: pa.Schema, file_rows: int, *, load_id: str,
                       raw_text: Callable | None) -> int:
    """The staged rows (``out.accepted``, in ``scratch``, in read order)
    ranked by key: a Spark window over the key and read-order columns alone
    finds the rows that repeat an earlier one; tasks then write each staged
    part without them to ``data_folder`` (the same order, no shuffle of the
    rows) and set them apart, and they become quarantine rows here (rule
    ``unique``, their raw records by ``raw_text`` or as JSON). How many were
    moved."""
    import numpy as np
    import pyarrow.parquet as pq
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    from ..lake import write_part
    from ._spool import PLACE, moved_rows

    staged = out.accepted
    out.accepted = []
    if not staged:
        return 0
    files = [f"{scratch}/{p['path']}" for p in staged]
    narrow = engine.read_parquet(files, pa.schema([
        *acc_schema, *(pa.field(c, pa.int64()) for c in where)])).select(
        *unique, *where)
    repeats = narrow.withColumn("__rank", F.row_number().over(
        Window.partitionBy(*unique).orderBy(*where))).filter(
        F.col("__rank") > 1).select(*where).toArrow()
    gone: dict[tuple[int, int, int], np.ndarray] = {}
    if repeats.num_rows:
        cols = [repeats.column(c).to_numpy() for c in where]
        order = np.lexsort(cols[::-1])
        cols = [c[order] for c in cols]
        keys = np.stack(cols[:3], axis=1)
        cut = np.flatnonzero((np.diff(keys, axis=0) != 0).any(axis=1)) + 1
        for lo, hi in zip(np.r_[0, cut], np.r_[cut, len(order)], strict=True):
            gone[tuple(int(x) for x in keys[lo])] = cols[3][lo:hi]
    result = pa.schema([("i", pa.int64()), ("kept", pa.string()),
                        ("moved", pa.string())])

    def task(unit: tuple[int, str]) -> Iterator[dict[str, Any]]:
        i, path = unit
        fs, at = locate(path)
        t = pq.read_table(at, filesystem=fs)
        drop = np.zeros(t.num_rows, dtype=bool)
        if gone:
            f, sp, b, r = (t.column(c).to_numpy() for c in where)
            for key in set(zip(f.tolist(), sp.tolist(), b.tolist(), strict=True)):
                rows = gone.get(key)
                if rows is not None:
                    here = (f == key[0]) & (sp == key[1]) & (b == key[2])
                    drop |= here & np.isin(r, rows)
        kept = write_part(data_folder, t.filter(pa.array(~drop))
                          .select(acc_schema.names).cast(acc_schema))
        moved = None
        if drop.any():
            moved = f"{path}.moved.parquet"
            pq.write_table(t.filter(pa.array(drop)).select(acc_schema.names),
                           f"{at}.moved.parquet", filesystem=fs)
        remove(path)
        yield {"i": i, "kept": json.dumps(kept), "moved": moved}

    done = sorted(engine.map_units(list(enumerate(files)), task, result).to_pylist(),
                  key=lambda r: r["i"])
    out.accepted = [p for r in done if (p := json.loads(r["kept"]))]
    parts = [r["moved"] for r in done if r["moved"]]
    if not parts:
        return 0
    moved = pa.concat_tables([pq.read_table(w, filesystem=fs) for fs, w in map(
        locate, parts)]).cast(acc_schema)
    for p in parts:
        remove(p)
    data_cols = [c for c in acc_schema.names if not c.startswith("_")]
    table = moved_rows(moved.select(list(PLACE)), lambda: moved.select(data_cols),
                       key=unique, rule="unique",
                       message="repeats a row already loaded", load_id=load_id,
                       raw_text=raw_text, schema=QUARANTINE_SCHEMA)
    out.rejected.append(write_part(quarantine_folder, table))
    return table.num_rows
