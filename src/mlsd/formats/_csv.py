"""CSV to raw Arrow batches, with the line number and raw text of every record.

Written by hand on top of the standard ``csv`` module because the record's line
number and raw text must survive for the quarantine, and a broken line must become a
rejected record rather than stop the read; pyarrow's and DuckDB's fast readers give
neither for accepted rows.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa

from ..errors import DataError
from ._raw import DEFAULT_CHUNK_ROWS, RawBatchBuilder

csv.field_size_limit(64 * 1024 * 1024)


class _Lines:
    """Feeds decoded lines to ``csv.reader`` and remembers the ones it consumed."""

    def __init__(self, fh, encoding: str):
        self._fh = fh
        self._encoding = encoding
        self.taken: list[str] = []
        self.bad_bytes = False
        self.next_line = 1  # number of the next physical line to be read

    def __iter__(self) -> _Lines:
        return self

    def __next__(self) -> str:
        raw = self._fh.readline()
        if not raw:
            raise StopIteration
        self.next_line += 1
        try:
            text = raw.decode(self._encoding)
        except UnicodeDecodeError:
            text = raw.decode(self._encoding, errors="replace")
            self.bad_bytes = True
        self.taken.append(text)
        return text

    def take(self) -> tuple[str, bool]:
        text, bad = "".join(self.taken), self.bad_bytes
        self.taken, self.bad_bytes = [], False
        return text, bad


def _strip_eol(text: str) -> str:
    return text.rstrip("\r\n")


def read_csv_header(
    path: str | Path, *, delimiter: str = ",", encoding: str = "utf-8"
) -> list[str]:
    """Return the header row of a CSV file.

    Raises
    ------
    DataError
        If the file is missing, empty, or its header is unreadable or repeats a name.
    """
    path = Path(path)
    for batch_or_header in _iter_csv(path, delimiter, encoding, 1, header_only=True):
        return batch_or_header  # type: ignore[return-value]
    raise DataError(f"{path}: the file is empty (no header line)")


def read_csv(
    path: str | Path,
    *,
    delimiter: str = ",",
    quotechar: str = '"',
    encoding: str = "utf-8",
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    names: list[str] | None = None,
) -> Iterator[pa.RecordBatch]:
    """Yield raw batches of at most ``chunk_rows`` records from a CSV file.

    The first line is the header, unless ``names`` are given (a file without a
    header). A record with the wrong number of fields, or with bytes that are not
    valid in ``encoding``, is yielded with ``_error`` set and its values null, so
    the caller can quarantine it.
    """
    yield from _iter_csv(Path(path), delimiter, encoding, chunk_rows,
                         quotechar=quotechar, names=names)


def _iter_csv(path: Path, delimiter: str, encoding: str, chunk_rows: int,
              header_only: bool = False, quotechar: str = '"',
              names: list[str] | None = None):
    try:
        fh = path.open("rb")
    except FileNotFoundError:
        raise DataError(f"{path}: no such data file") from None
    except IsADirectoryError:
        raise DataError(f"{path}: is a folder, expected a file") from None
    with fh:
        lines = _Lines(fh, encoding)
        reader = csv.reader(lines, delimiter=delimiter, quotechar=quotechar,
                            strict=False)
        if names is not None:
            header = list(names)
        else:
            try:
                header = next(reader)
            except StopIteration:
                raise DataError(f"{path}: the file is empty (no header line)"
                                ) from None
            except csv.Error as err:
                raise DataError(f"{path}, line 1: unreadable header: {err}") from None
            lines.take()
        header = [h.strip() for h in header]
        if header and header[0].startswith("\ufeff"):
            header[0] = header[0][1:]
        if not any(header):
            raise DataError(f"{path}, line 1: the header is blank")
        dupes = sorted({h for h in header if header.count(h) > 1})
        if dupes:
            raise DataError(f"{path}, line 1: header repeats column(s) {dupes}")
        if header_only:
            yield header
            return
        builder = RawBatchBuilder(header)
        width = len(header)
        while True:
            start = lines.next_line
            try:
                record = next(reader)
            except StopIteration:
                break
            except csv.Error as err:
                text, _ = lines.take()
                builder.add(None, start, _strip_eol(text), f"unparseable CSV: {err}")
                continue
            text, bad = lines.take()
            raw = _strip_eol(text)
            if not record or (len(record) == 1 and record[0] == "" and not raw):
                continue  # blank line
            if bad:
                builder.add(None, start, raw, f"bytes not valid {encoding}")
            elif len(record) != width:
                builder.add(
                    None,
                    start,
                    raw,
                    f"broken line: expected {width} fields, found {len(record)}",
                )
            else:
                builder.add(record, start, raw, None)
            if len(builder) >= chunk_rows:
                yield builder.flush()
        if len(builder):
            yield builder.flush()
