"""Records (dicts) to raw Arrow batches, for the formats that decode to objects."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from datetime import date, datetime
from typing import Any

import pyarrow as pa

from ._raw import DEFAULT_CHUNK_ROWS, ERROR, LINE, RAW


def to_text(value: Any) -> str | None:
    """A value as text, the way validation reads it (JSON for nested values)."""
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"),
                      default=str)


def flatten(record: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested objects as dotted columns: ``{"a": {"b": 1}}`` -> ``{"a.b": 1}``."""
    out: dict[str, Any] = {}
    for k, v in record.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


def _column(values: list[Any], typed: bool) -> pa.Array:
    if typed:
        try:
            arr = pa.array(values)
            if not pa.types.is_struct(arr.type) and not pa.types.is_list(arr.type):
                return arr
        except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
            pass  # mixed types in one field: keep them as text, validation decides
    return pa.array([to_text(v) for v in values], pa.string())


def records_to_batch(records: list[dict[str, Any]], columns: list[str],
                     lines: list[int], errors: list[str | None] | None = None,
                     typed: bool = True) -> pa.RecordBatch:
    """A raw batch from decoded records (missing fields are null)."""
    n = len(records)
    arrays = [_column([r.get(c) if r is not None else None for r in records], typed)
              for c in columns]
    arrays += [pa.array(lines, pa.int64()), pa.nulls(n, pa.string()),
               pa.array(errors or [None] * n, pa.string())]
    return pa.RecordBatch.from_arrays(arrays, names=[*columns, LINE, RAW, ERROR])


def batched_records(
    items: Iterable[tuple[int, dict[str, Any] | None, str | None]],
    columns: list[str], *, chunk_rows: int = DEFAULT_CHUNK_ROWS, typed: bool = True,
    strict: bool = True,
) -> Iterator[pa.RecordBatch]:
    """Group ``(number, record or None, error)`` items into bounded raw batches.

    With ``strict``, a record holding fields not in ``columns`` is an error.
    """
    known = set(columns)
    recs: list[dict | None] = []
    lines: list[int] = []
    errors: list[str | None] = []
    for number, rec, err in items:
        if rec is not None and strict and (extra := [k for k in rec if k not in
                                                     known]):
            rec, err = None, f"unexpected field(s) {extra} not in the schema"
        recs.append(rec)
        lines.append(number)
        errors.append(err)
        if len(recs) >= chunk_rows:
            yield records_to_batch(recs, columns, lines, errors, typed)
            recs, lines, errors = [], [], []
    if recs:
        yield records_to_batch(recs, columns, lines, errors, typed)


def table_records(table: pa.Table) -> Iterator[dict[str, Any]]:
    """Rows of an Arrow table as dicts, batch by batch."""
    for batch in table.to_batches(max_chunksize=10_000):
        yield from batch.to_pylist()
