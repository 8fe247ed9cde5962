"""Reading and validating a file source as Spark tasks (``engine: spark``).

Spark's own readers cannot keep mlsd's promises (its CSV reader gives no line
numbers, its permissive mode keeps no reason per row), so each task runs
mlsd's reader and :class:`Validator` on one unit: a file, or a span of a large
CSV file's lines (about ``SPAN_BYTES`` each, cut at line breaks). A task
writes each validated batch, accepted and rejected rows apart, as Arrow IPC
files in the load's scratch folder (next to the lake, on storage every node
sees) and returns only their names and counts. The driver then takes the
batches in file, span and batch order, the order a local load reads them in,
numbers a span's lines from where the span before it ended, and settles them
exactly as a local load does (erasures, the spool, repeats over the whole
load, one commit each for the quarantine and the data): the same rows, the
same quarantine, the same load id on either engine.

A span is read by mlsd's fast CSV path alone. Where a local read would switch
to the ``csv`` module (a quoted line break, bytes that are not UTF-8), the
span cannot know how the lines before it were parsed: its file is read again
whole, as one task, and its spans' output is dropped.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from ..errors import DataError
from ..formats import LINE, format_for
from ..formats._csv import CsvSpanUnsafe, csv_spans
from ._validate import QUARANTINE_SCHEMA, Validated

SPAN_BYTES = 64 << 20  # a CSV file larger than this is read in spans this large

RESULT = pa.schema([("unit", pa.int64()), ("batch", pa.int64()),
                    ("rows", pa.int64()), ("accepted", pa.string()),
                    ("rejected", pa.string()), ("next_line", pa.int64()),
                    ("unsafe", pa.bool_()), ("error", pa.string())])

_jobs = itertools.count()


def _write(path: Path, batch: pa.RecordBatch) -> None:
    with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_file(sink, batch.schema) as w:
        w.write_batch(batch)


def _read(path: Path, shift: int) -> pa.RecordBatch:
    with pa.OSFile(str(path), "rb") as source:
        reader = pa.ipc.open_file(source)
        batch = reader.get_batch(0) if reader.num_record_batches else \
            pa.RecordBatch.from_pylist([], schema=reader.schema)
    path.unlink()
    if shift:
        i = batch.schema.get_field_index(LINE)
        batch = batch.set_column(i, LINE, pc.add(batch.column(i), shift))
    return batch


def _spans(connector, info) -> list[tuple[int | None, int] | None]:
    """The spans a file is read in: [None] (whole) unless a large CSV file."""
    path = Path(info.path)
    path = path if path.is_absolute() else connector.root / path
    if info.size <= SPAN_BYTES or format_for(path, connector.format) != "csv":
        return [None]
    o = connector.options
    spans = csv_spans(path, math.ceil(info.size / SPAN_BYTES), delimiter=o.delimiter,
                      quotechar=o.quotechar, encoding=o.encoding, header=o.header)
    return [None] if len(spans) == 1 else spans


def validated_on_spark(engine, connector, infos: list, columns: list[str],
                       validator, *, chunk_rows: int, load_id: str, folder: Path
                       ) -> Iterator[tuple[Any, int, Validated]]:
    """``(file, rows read, validated batch)`` for every batch of ``infos``'
    files, read and validated by Spark tasks, in read order."""
    folder = Path(folder)
    job = next(_jobs)

    def task(unit: tuple[int, Any, tuple | None]) -> Iterator[dict[str, Any]]:
        u, info, span = unit
        batch = 0
        stem = f"j{job}-u{u:06d}"
        empty = {"rows": 0, "accepted": None, "rejected": None, "next_line": None,
                 "unsafe": False, "error": None}
        try:
            reader = connector.read(columns, chunk_rows=chunk_rows, only=[info],
                                    span=span)
            while True:
                try:
                    _, raw = next(reader)
                except StopIteration as done:
                    yield {**empty, "unit": u, "batch": batch, "next_line": done.value}
                    return
                out = validator.validate(raw, source=info.path, sha256=info.sha256,
                                         load_id=load_id)
                name = f"{stem}-b{batch:06d}"
                _write(folder / f"{name}.accepted", out.accepted)
                if out.rejected.num_rows:
                    _write(folder / f"{name}.rejected", out.rejected)
                yield {**empty, "unit": u, "batch": batch, "rows": raw.num_rows,
                       "accepted": f"{name}.accepted",
                       "rejected": f"{name}.rejected" if out.rejected.num_rows
                       else None}
                batch += 1
        except CsvSpanUnsafe:
            yield {**empty, "unit": u, "batch": batch, "unsafe": True}
        except DataError as err:  # said on the driver as a local load says it
            yield {**empty, "unit": u, "batch": batch, "error": str(err)}

    units = [(i, info, span) for i, info in enumerate(infos)
             for span in _spans(connector, info)]
    units = [(u, info, span) for u, (_, info, span) in enumerate(units)]
    done = engine.map_units(units, task, RESULT).to_pylist()
    unsafe = {units[r["unit"]][1].path for r in done if r["unsafe"]}
    if unsafe:  # those files again, whole, one task each
        for r in done:
            if units[r["unit"]][1].path in unsafe:
                for name in (r["accepted"], r["rejected"]):
                    if name:
                        (folder / name).unlink(missing_ok=True)
        again = [info for info in infos if info.path in unsafe]
        extra = [(len(units) + k, info, None) for k, info in enumerate(again)]
        done = [r for r in done if units[r["unit"]][1].path not in unsafe]
        done += engine.map_units(extra, task, RESULT).to_pylist()
        units = units + extra
    failed = sorted((r for r in done if r["error"]), key=lambda r: r["unit"])
    if failed:
        raise DataError(failed[0]["error"])
    order = {info.path: i for i, info in enumerate(infos)}
    # read order: files, then spans (a whole-file redo has one), then batches
    done.sort(key=lambda r: (order[units[r["unit"]][1].path],
                             units[r["unit"]][2] is not None,
                             (units[r["unit"]][2] or (0,))[0] or 0, r["batch"]))
    after = 0  # the number of the line after the last span read
    for r in done:
        _, info, span = units[r["unit"]]
        later = span is not None and span[0] is not None  # numbered from 0
        if r["accepted"] is None:  # the unit's end
            after = after + r["next_line"] if later else (r["next_line"] or 0)
            continue
        shift = after if later else 0
        accepted = _read(folder / r["accepted"], shift)
        rejected = (_read(folder / r["rejected"], shift) if r["rejected"]
                    else pa.RecordBatch.from_pylist([], schema=QUARANTINE_SCHEMA))
        yield info, r["rows"], Validated(accepted, rejected)
