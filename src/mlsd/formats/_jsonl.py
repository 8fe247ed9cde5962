"""JSON Lines to raw Arrow batches: one JSON object a line.

Values are kept as text (JSON scalars in their JSON spelling, nested values as
compact JSON) so that CSV and JSONL sources go through one validation path.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa

from ..errors import DataError
from ._raw import DEFAULT_CHUNK_ROWS, RawBatchBuilder, open_bytes
from ._records import flatten, to_text


def read_jsonl_columns(
    path: str | Path, *, sample_rows: int = 10_000, encoding: str = "utf-8",
    flatten_nested: bool = False,
) -> list[str]:
    """Field names of the first ``sample_rows`` objects, in first-seen order."""
    path = Path(path)
    seen: dict[str, None] = {}
    any_line = False
    with open_bytes(path) as fh:
        for n, line in enumerate(fh):
            if n >= sample_rows:
                break
            if not line.strip():
                continue
            any_line = True
            try:
                obj = json.loads(line.decode(encoding))
            except (UnicodeDecodeError, json.JSONDecodeError):
                continue
            if isinstance(obj, dict):
                seen.update(dict.fromkeys(flatten(obj) if flatten_nested else obj))
    if not any_line:
        raise DataError(f"{path}: the file is empty (no JSON record)")
    if not seen:
        raise DataError(f"{path}: no JSON object in the first {sample_rows} lines")
    return list(seen)


def read_jsonl(
    path: str | Path,
    *,
    columns: list[str],
    encoding: str = "utf-8",
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    strict: bool = True,
    flatten_nested: bool = False,
    span: tuple[int, int, int] | None = None,
) -> Iterator[pa.RecordBatch]:
    """Yield raw batches of at most ``chunk_rows`` records from a JSONL file.

    A line that is not a JSON object, or (with ``strict``) has fields not in
    ``columns``, is yielded with ``_error`` set so the caller can quarantine it;
    missing fields are null. ``span``: ``(start, end, line)``, only the lines
    from byte ``start`` to byte ``end`` (both at line starts: a JSON line
    holds no raw line break, so any line break is a place to cut), the first
    numbered ``line``, for a read split across tasks; the generator then
    returns the number the next line would have.
    """
    path = Path(path)
    builder = RawBatchBuilder(columns)
    known = set(columns)
    any_line = span is not None  # a span of blank lines is no empty file
    number = 0
    with open_bytes(path) as fh:
        lines = enumerate(fh, start=1)
        if span is not None:
            fh.seek(span[0])
            lines = enumerate(_until(fh, span[1]), start=span[2])
        for number, line in lines:
            if not line.strip():
                continue
            any_line = True
            raw_bytes = line.rstrip(b"\r\n")
            try:
                text = raw_bytes.decode(encoding)
            except UnicodeDecodeError:
                builder.add(
                    None, number, raw_bytes.decode(encoding, errors="replace"),
                    f"bytes not valid {encoding}",
                )
            else:
                try:
                    obj = json.loads(text)
                except json.JSONDecodeError as err:
                    builder.add(None, number, text, f"broken line: invalid JSON: {err}")
                else:
                    if flatten_nested and isinstance(obj, dict):
                        obj = flatten(obj)
                    if not isinstance(obj, dict):
                        builder.add(
                            None, number, text,
                            f"broken line: expected a JSON object, found "
                            f"{type(obj).__name__}",
                        )
                    elif strict and (extra := [k for k in obj if k not in known]):
                        builder.add(
                            None, number, text,
                            f"unexpected field(s) {extra} not in the schema",
                        )
                    else:
                        builder.add([to_text(obj.get(c)) for c in columns],
                                    number, text, None)
            if len(builder) >= chunk_rows:
                yield builder.flush()
    if not any_line:
        raise DataError(f"{path}: the file is empty (no JSON record)")
    if len(builder):
        yield builder.flush()
    return number + 1 if span is None or number else span[2]


def _until(fh, end: int) -> Iterator[bytes]:
    """The lines of a binary file from where it is up to byte ``end``."""
    while fh.tell() < end:
        line = fh.readline()
        if not line:
            return
        yield line
