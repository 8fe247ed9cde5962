"""CSV to raw Arrow batches, with the line number and raw text of every record.

The record's line number and raw text must survive for the quarantine, and a
broken line must become a rejected record rather than stop the read; neither
pyarrow's nor DuckDB's reader gives line numbers for accepted rows. So the file
is read in blocks of whole lines: when no field of a block spans lines (checked
by counting quotes per line, vectorised), pyarrow's parser splits the block
(every value as text, broken lines set aside by its invalid-row handler) and the
line numbers and raw lines come from the newline positions. Blocks are parsed
on worker threads while the next ones are read. From the first block
where a quoted field may hold a line break, or bytes are not valid text, the
rest of the file goes through the standard ``csv`` module line by line, which
handles everything at a lower speed. Both paths give the same batches.
"""

from __future__ import annotations

import codecs
import csv
import io
from collections import Counter, deque
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from ..errors import DataError
from ._raw import DEFAULT_CHUNK_ROWS, LINE, RawBatchBuilder

csv.field_size_limit(64 * 1024 * 1024)
BLOCK_BYTES = 8 << 20
PARSE_THREADS = 2  # the machines this runs on have 2 cores


MAX_RECORD_BYTES = 16 << 20  # a line longer than this is not read whole
MAX_COLUMNS = 10_000
EXCERPT_CHARS = 200  # of a line too long to keep


class _Lines:
    """Feeds decoded lines to ``csv.reader`` and remembers the ones it consumed.

    A line over ``max_bytes`` is never held whole: its first bytes are kept as
    an excerpt, the rest is read past in small pieces, ``too_long`` says how
    long it was, and the reader gets an empty line in its place."""

    def __init__(self, fh, encoding: str, max_bytes: int = MAX_RECORD_BYTES):
        self._fh = fh
        self._encoding = encoding
        self._max = max_bytes
        self.taken: list[str] = []
        self.bad_bytes = False
        self.too_long = 0  # bytes of the last line over the limit, else 0
        self.likely: str | None = None  # the encoding bad bytes suggest
        self.next_line = 1  # number of the next physical line to be read

    def __iter__(self) -> _Lines:
        return self

    def __next__(self) -> str:
        raw = self._fh.readline(self._max + 1)
        if not raw:
            raise StopIteration
        self.next_line += 1
        if len(raw) > self._max and not raw.endswith(b"\n"):
            size = len(raw)
            while True:  # read past the rest of the line, 1 MiB at a time
                more = self._fh.readline(1 << 20)
                size += len(more)
                if not more or more.endswith(b"\n"):
                    break
            self.too_long = size
            excerpt = raw[:EXCERPT_CHARS * 4].decode(self._encoding, errors="replace")
            self.taken.append(excerpt[:EXCERPT_CHARS])
            return "\n"
        try:
            text = raw.decode(self._encoding)
        except UnicodeDecodeError:
            text = raw.decode(self._encoding, errors="replace")
            self.bad_bytes = True
            if self.likely is None:
                self.likely = likely_encoding(raw)
        self.taken.append(text)
        return text

    def take(self) -> tuple[str, bool]:
        text, bad = "".join(self.taken), self.bad_bytes
        self.taken, self.bad_bytes = [], False
        return text, bad

    def take_long(self) -> int:
        size, self.too_long = self.too_long, 0
        return size


def delimiter_hint(columns: list[str], delimiter: str) -> str | None:
    """When a header read with ``delimiter`` gave one column that another
    common separator would cut, the option to set (else None)."""
    if len(columns) != 1:
        return None
    counts = {d: columns[0].count(d) for d in ";\t|," if d != delimiter}
    best = max(counts, key=counts.get)
    if not counts[best]:
        return None
    shown = "\\t" if best == "\t" else best
    return (f"the header read with delimiter {delimiter!r} is one column "
            f"{columns[0][:60]!r}; set `delimiter: '{shown}'` on the source")


def likely_encoding(raw: bytes) -> str:
    """The single-byte encoding that text not valid UTF-8 most likely is:
    Windows-1252 when it decodes (it is what spreadsheets on Windows write),
    else Latin-1 (which decodes any byte)."""
    try:
        raw.decode("cp1252")
    except UnicodeDecodeError:
        return "latin-1"
    return "cp1252"


def _wide(encoding: str) -> bool:
    try:
        return codecs.lookup(encoding).name.startswith(("utf-16", "utf-32"))
    except LookupError:
        raise DataError(f"encoding: unknown encoding {encoding!r}") from None


def open_text_bytes(path: Path, fh, encoding: str):
    """The file as a stream of bytes the reader can parse, and their encoding.

    A UTF-16 or UTF-32 file is recoded to UTF-8 as it is read (the reader
    splits lines on bytes); a byte order mark that contradicts ``encoding``, or
    the zero bytes of UTF-16 text without one, is an error naming the option
    to set, rather than every row quarantined as unreadable.
    """
    head = fh.peek(64)[:64]
    if _wide(encoding):
        return codecs.EncodedFile(fh, "utf-8", encoding), "utf-8"
    if head[:4] in (b"\xff\xfe\x00\x00", b"\x00\x00\xfe\xff"):
        raise DataError(f"{path}: the file is UTF-32 (it starts with a byte order "
                        f"mark); set `encoding: utf-32` on the source")
    if head[:2] in (b"\xff\xfe", b"\xfe\xff"):
        raise DataError(f"{path}: the file is UTF-16 (it starts with a byte order "
                        f"mark); set `encoding: utf-16` on the source")
    if len(head) >= 8 and head.count(0) * 3 >= len(head):
        order = "le" if head[1::2].count(0) > head[0::2].count(0) else "be"
        raise DataError(f"{path}: the file looks like UTF-16 without a byte order "
                        f"mark (every other byte is zero); set `encoding: "
                        f"utf-16-{order}` on the source")
    return fh, encoding


def _strip_eol(text: str) -> str:
    return text.rstrip("\r\n")


def read_csv_header(
    path: str | Path, *, delimiter: str = ",", encoding: str = "utf-8",
    max_columns: int = MAX_COLUMNS, max_record_bytes: int = MAX_RECORD_BYTES,
) -> list[str]:
    """Return the header row of a CSV file.

    Raises
    ------
    DataError
        If the file is missing, empty, or its header is unreadable or repeats a name.
    """
    path = Path(path)
    for batch_or_header in _iter_csv(path, delimiter, encoding, 1, header_only=True,
                                     max_columns=max_columns,
                                     max_record_bytes=max_record_bytes):
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
    fast: bool = True,
    max_columns: int = MAX_COLUMNS,
    max_record_bytes: int = MAX_RECORD_BYTES,
    span: tuple[int | None, int, int] | None = None,
) -> Iterator[pa.RecordBatch]:
    """Yield raw batches of at most ``chunk_rows`` records from a CSV file.

    The first line is the header, unless ``names`` are given (a file without a
    header). A record with the wrong number of fields, or with bytes that are not
    valid in ``encoding``, is yielded with ``_error`` set and its values null, so
    the caller can quarantine it.

    ``span``: ``(start, end, line)``, only the lines from byte ``start``
    (None: after the header) up to byte ``end``, both at line starts
    (:func:`csv_spans` cuts them), the first numbered ``line`` (ignored after
    the header: known there), for a read split across tasks; the generator
    then returns the number the next line would have. A span is read by the
    fast path alone: where a local read would switch to the ``csv`` module (a
    quoted line break, bytes not valid UTF-8, ...), :class:`CsvSpanUnsafe` is
    raised and the file must be read whole.
    """
    return (yield from _iter_csv(
        Path(path), delimiter, encoding, chunk_rows, quotechar=quotechar,
        names=names, fast=fast, max_columns=max_columns,
        max_record_bytes=max_record_bytes, span=span))


class CsvSpanUnsafe(Exception):
    """A span of a CSV file that only a read of the whole file parses as a
    local read does (see :func:`read_csv`)."""


def csv_spans(path: str | Path, n: int, *, delimiter: str = ",",
              quotechar: str = '"', encoding: str = "utf-8",
              header: bool = True) -> list[tuple[int | None, int]]:
    """Cut a CSV file into at most ``n`` spans of whole lines, about as large
    as each other, for :func:`read_csv`'s ``span``; one span (the whole file)
    where a split cannot be read as a local read would (not UTF-8, a
    delimiter or quote of several characters, no header line, a header line
    with a quoted line break)."""
    path = Path(path)
    size = path.stat().st_size
    whole: list[tuple[int | None, int]] = [(None, size)]
    if n <= 1 or not header or len(delimiter) != 1 or len(quotechar) != 1 or \
            encoding.replace("-", "").lower() not in ("utf8", "ascii"):
        return whole
    with path.open("rb") as fh:
        first = fh.readline(MAX_RECORD_BYTES)
        if not first.endswith(b"\n") or first.count(quotechar.encode()) % 2:
            return whole
        cuts = _cuts(fh, size, n, len(first))
    bounds = [None, *cuts], [*cuts, size]
    return list(zip(*bounds, strict=True))


def line_spans(path: str | Path, n: int) -> list[tuple[int, int]]:
    """Cut a file of lines (JSONL: no record holds a raw line break) into at
    most ``n`` spans of whole lines, ``(start, end)`` byte offsets."""
    path = Path(path)
    size = path.stat().st_size
    with path.open("rb") as fh:
        cuts = _cuts(fh, size, max(1, n), 0)
    return list(zip([0, *cuts], [*cuts, size], strict=True))


def _cuts(fh, size: int, n: int, floor: int) -> list[int]:
    """Line starts near ``size * k / n`` (k = 1 .. n-1), past ``floor``."""
    cuts: list[int] = []
    for k in range(1, n):
        fh.seek(max(floor, size * k // n, 1) - 1)
        fh.readline()  # to the end of the line the guess falls in
        at = fh.tell()
        if at < size and (not cuts or at > cuts[-1]):
            cuts.append(at)
    return cuts


def count_lines(path: str | Path, start: int | None, end: int) -> int:
    """The line breaks between two byte offsets of a file (``start`` None:
    from the end of its first line), to number a span's lines before it is
    read (the first span's lines follow the header: line 2 on)."""
    count = 0
    with Path(path).open("rb") as fh:
        if start is None:
            fh.readline(MAX_RECORD_BYTES)
        else:
            fh.seek(start)
        left = end - fh.tell()
        while left > 0:
            chunk = fh.read(min(left, BLOCK_BYTES))
            if not chunk:
                break
            count += chunk.count(b"\n")
            left -= len(chunk)
    return count


class _Bounded(io.RawIOBase):
    """A binary file seen up to byte ``end``: reads stop there."""

    def __init__(self, fh, end: int):
        self._fh, self._end = fh, end

    def read(self, size: int = -1) -> bytes:
        left = max(0, self._end - self._fh.tell())
        return self._fh.read(left if size < 0 else min(size, left))

    def readline(self, size: int = -1) -> bytes:
        left = max(0, self._end - self._fh.tell())
        return self._fh.readline(left if size < 0 else min(size, left))

    def seek(self, pos: int, whence: int = 0) -> int:
        return self._fh.seek(pos, whence)

    def tell(self) -> int:
        return self._fh.tell()


def _iter_csv(path: Path, delimiter: str, encoding: str, chunk_rows: int,
              header_only: bool = False, quotechar: str = '"',
              names: list[str] | None = None, fast: bool = True,
              max_columns: int = MAX_COLUMNS,
              max_record_bytes: int = MAX_RECORD_BYTES,
              span: tuple[int | None, int, int] | None = None):
    try:
        fh = path.open("rb")
    except FileNotFoundError:
        raise DataError(f"{path}: no such data file") from None
    except IsADirectoryError:
        raise DataError(f"{path}: is a folder, expected a file") from None
    with fh:
        fh, encoding = open_text_bytes(path, fh, encoding)
        lines = _Lines(fh, encoding, max_record_bytes)
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
            if (size := lines.take_long()):
                raise DataError(f"{path}, line 1: the header is {size:,} bytes, over "
                                f"`max_record_bytes` ({max_record_bytes:,}); set it "
                                f"higher on the source if this is right")
        header = [h.strip() for h in header]
        if header and header[0].startswith("\ufeff"):
            header[0] = header[0][1:]
        if not any(header):
            raise DataError(f"{path}, line 1: the header is blank")
        if len(header) > max_columns:
            raise DataError(f"{path}, line 1: the header has {len(header):,} columns, "
                            f"over `max_columns` ({max_columns:,}); set it higher on "
                            f"the source if this is right")
        counts = Counter(header)  # not header.count(h) per name: quadratic
        dupes = sorted(h for h, n in counts.items() if n > 1)
        if dupes:
            shown = dupes[:10] + (["..."] if len(dupes) > 10 else [])
            raise DataError(f"{path}, line 1: header repeats column(s) {shown}")
        if header_only:
            yield header
            return
        width = len(header)
        fast = fast and encoding.replace("-", "").lower() in ("utf8", "ascii") \
            and len(delimiter) == 1 and len(quotechar) == 1
        if span is not None:
            return (yield from _span(fh, span, header, delimiter, quotechar,
                                     lines.next_line, fast, chunk_rows,
                                     max_record_bytes))
        if fast:
            for batch in _parse_blocks(fh, header, delimiter, quotechar,
                                       lines.next_line, max_record_bytes):
                if isinstance(batch, _Fallback):  # the slow path from here on
                    fh = _Chained(batch.block, fh)
                    lines = _Lines(fh, encoding, max_record_bytes)
                    lines.next_line = batch.line_no
                    reader = csv.reader(lines, delimiter=delimiter,
                                        quotechar=quotechar, strict=False)
                    break
                for start in range(0, batch.num_rows, chunk_rows):
                    yield batch.slice(start, chunk_rows)
            else:
                return
        builder = RawBatchBuilder(header)
        while True:
            if len(builder) >= chunk_rows:  # checked first: every path adds a row
                yield builder.flush()
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
            if (size := lines.take_long()):
                builder.add(None, start, raw + "...", f"record of {size:,} bytes, "
                            f"over `max_record_bytes` ({max_record_bytes:,}): kept "
                            f"as its first {EXCERPT_CHARS} characters")
                continue
            if not record or (len(record) == 1 and record[0] == "" and not raw):
                continue  # blank line
            if bad:
                hint = lines.likely or "latin-1"
                builder.add(None, start, raw, f"bytes not valid {encoding}; the "
                            f"file may be {hint}: set `encoding: {hint}` on the "
                            f"source")
            elif len(record) != width:
                builder.add(
                    None,
                    start,
                    raw,
                    f"broken line: expected {width} fields, found {len(record)}",
                )
            else:
                builder.add(record, start, raw, None)
        if len(builder):
            yield builder.flush()


def _span(fh, span: tuple[int | None, int, int], header: list[str], delimiter: str,
          quotechar: str, after_header: int, fast: bool, chunk_rows: int,
          max_record_bytes: int):
    """The batches of one span (see :func:`read_csv`); returns the number the
    line after it would have."""
    start, end, first = span
    if not fast or (start is not None and fh.tell() > start):
        raise CsvSpanUnsafe("the fast path cannot read this file in spans")
    if start is not None:
        fh.seek(start)
    line_no = after_header if start is None else first
    blocks = _parse_blocks(_Bounded(fh, end), header, delimiter, quotechar,
                           line_no, max_record_bytes)
    while True:
        try:
            batch = next(blocks)
        except StopIteration as done:
            return done.value
        if isinstance(batch, _Fallback):
            raise CsvSpanUnsafe("a line the fast path cannot parse alone")
        for at in range(0, batch.num_rows, chunk_rows):
            yield batch.slice(at, chunk_rows)


class _Fallback(NamedTuple):
    """Where the fast path gave up: this block and the file after it go
    through the ``csv`` module; the block's first line is ``line_no``."""

    block: bytes
    line_no: int


def _parse_blocks(fh, header: list[str], delimiter: str, quotechar: str,
                  line_no: int, max_record_bytes: int = MAX_RECORD_BYTES
                  ) -> Iterator[pa.RecordBatch | _Fallback]:
    """The blocks of whole lines from ``fh``'s position on, each parsed by
    :func:`_fast_block` on a worker thread (pyarrow's parser releases the GIL)
    while the next blocks are read, in file order.

    When a block cannot be parsed safely, the blocks read ahead are dropped,
    the file is set back to the end of that block, and a :class:`_Fallback`
    is the last item.
    """
    in_flight: deque = deque()
    pos = fh.tell()
    with ThreadPoolExecutor(max_workers=PARSE_THREADS) as pool:
        try:
            while True:
                while len(in_flight) <= PARSE_THREADS:  # read ahead, bounded
                    if in_flight and in_flight[-1][2] is None:
                        break  # a line over the limit: nothing after it yet
                    block = _next_block(fh, pos, max_record_bytes)
                    if block is None:  # the slow path reads it, bounded
                        in_flight.append((b"", pos, None))
                        break
                    if not block:
                        break
                    pos += len(block)
                    in_flight.append((block, pos, pool.submit(
                        _fast_block, block, header, delimiter, quotechar,
                        max_record_bytes)))
                if not in_flight:
                    return line_no  # the number the next line would have
                block, end, future = in_flight.popleft()
                if future is None:
                    fh.seek(end)
                    yield _Fallback(b"", line_no)
                    return
                batch, n_lines = future.result()
                if batch is None:
                    fh.seek(end)
                    yield _Fallback(bytes(block), line_no)
                    return
                i = batch.schema.get_field_index(LINE)  # numbered from 0 there
                yield batch.set_column(i, LINE, pc.add(batch.column(i), line_no))
                line_no += n_lines
        finally:
            for *_, future in in_flight:
                future.cancel()


def _next_block(fh, pos: int, max_record_bytes: int = MAX_RECORD_BYTES
                ) -> bytes | memoryview | None:
    """The next BLOCK_BYTES or so of whole lines from ``pos``, where ``fh`` is.

    The bytes after the last line break are read again with the next block
    (the file is set back to them): cheaper than joining them on, which copies
    the block. A line longer than a block is read to its end, unless it is
    over ``max_record_bytes``: then None, and the file is back at ``pos``.
    """
    chunk = fh.read(BLOCK_BYTES)
    if not chunk or chunk.endswith(b"\n"):
        return chunk
    cut = chunk.rfind(b"\n") + 1
    if cut == 0:  # no line break at all: one long line, or the file's last
        rest = fh.readline(max(0, max_record_bytes - len(chunk)) + 1)
        if len(chunk) + len(rest) > max_record_bytes and not rest.endswith(b"\n"):
            fh.seek(pos)
            return None
        return chunk + rest
    fh.seek(pos + cut)
    return memoryview(chunk)[:cut]


class _Chained(io.RawIOBase):
    """A block already read, then the rest of the file, as one stream of lines."""

    def __init__(self, first: bytes, rest):
        self._first = io.BytesIO(first)
        self._rest = rest

    def readline(self, size: int = -1) -> bytes:
        line = self._first.readline(size)
        if (not line or not line.endswith(b"\n")) and (size < 0 or len(line) < size):
            line += self._rest.readline(-1 if size < 0 else size - len(line))
        return line


def _fast_block(block: bytes | memoryview, header: list[str], delimiter: str,
                quotechar: str, max_record_bytes: int = MAX_RECORD_BYTES
                ) -> tuple[pa.RecordBatch | None, int]:
    """Parse a block of whole lines with pyarrow, lines numbered from 0; or
    None when it is not safe (a quoted field may span lines, or the bytes are
    not valid UTF-8). Also gives the number of lines in the block."""
    data = np.frombuffer(block, dtype=np.uint8)
    nl = np.flatnonzero(data == 10)
    n_lines = len(nl) + int(len(data) > 0 and data[-1] != 10)
    starts = np.r_[0, nl + 1]
    ends = np.r_[nl, len(data)]  # the last piece is empty when the block ends in \n
    if len(starts) and starts[-1] == len(data):
        starts, ends = starts[:-1], ends[:-1]
    n_lines = len(starts)
    if n_lines and int((ends - starts).max()) > max_record_bytes:
        return None, n_lines  # a line over the limit: the slow path quarantines it
    cr = np.flatnonzero(data == 13)
    if len(cr) and ((cr + 1 >= len(data)) | (data[np.minimum(cr + 1, len(data) - 1)]
                                              != 10)).any():
        return None, n_lines  # a lone carriage return ends a line: the slow path
    content_end = ends.copy()
    has_cr = (ends > starts) & (data[np.maximum(ends - 1, 0)] == 13)
    content_end[has_cr] -= 1
    quotes = np.flatnonzero(data == ord(quotechar))
    has_quote = len(quotes) > 0
    if has_quote and ((np.searchsorted(quotes, content_end)
                       - np.searchsorted(quotes, starts)) % 2).any():
        return None, n_lines  # odd quotes: a quoted field may hold a line break
    offsets = pa.py_buffer(np.r_[starts, len(data)].astype(np.int32).tobytes())
    all_lines = pa.StringArray.from_buffers(n_lines, offsets, pa.py_buffer(block))
    try:
        all_lines.validate(full=True)  # valid UTF-8, checked without copying
    except pa.ArrowInvalid:
        return None, n_lines  # the slow path says which line has bad bytes
    nonempty = np.flatnonzero(content_end > starts)
    invalid: list[tuple[int, str, int]] = []

    def on_invalid(row) -> str:
        invalid.append((row.number, row.text, row.actual_columns))
        return "skip"

    try:
        table = pacsv.read_csv(
            pa.BufferReader(pa.py_buffer(block)),
            read_options=pacsv.ReadOptions(column_names=header, use_threads=False,
                                           block_size=len(block) + 1),
            parse_options=pacsv.ParseOptions(
                delimiter=delimiter, quote_char=quotechar if has_quote else False,
                newlines_in_values=False, ignore_empty_lines=True,
                invalid_row_handler=on_invalid),
            convert_options=pacsv.ConvertOptions(
                column_types={h: pa.string() for h in header},
                strings_can_be_null=False, quoted_strings_can_be_null=False))
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return None, n_lines  # e.g. bytes not valid UTF-8: the slow path says where
    if any(num is None or not 1 <= num <= len(nonempty) for num, _, _ in invalid):
        return None, n_lines
    bad = np.array([nonempty[num - 1] for num, _, _ in invalid], dtype=np.int64)
    good = np.setdiff1d(nonempty, bad, assume_unique=True)
    if table.num_rows != len(good):
        return None, n_lines
    width = len(header)
    cols = [table.column(h).combine_chunks() for h in header]
    n_bad = len(bad)
    if n_bad:
        cols = [pa.concat_arrays([c, pa.nulls(n_bad, pa.string())]) for c in cols]
    rows = np.r_[good, bad]
    line_col = pa.array(rows, pa.int64())
    raw = pc.utf8_rtrim(all_lines.take(pa.array(rows, pa.int64())), characters="\r\n")
    errors = pa.array([None] * len(good) + [
        f"broken line: expected {width} fields, found {n}" for _, _, n in invalid],
        pa.string())
    batch = pa.RecordBatch.from_arrays(
        [*cols, line_col, raw, errors], names=[*header, "_line", "_raw", "_error"])
    if n_bad:
        batch = batch.take(pc.sort_indices(line_col))
    return batch, n_lines


def read_csv_records(path: str | Path, lines: list[int] | np.ndarray, *,
                     delimiter: str = ",", quotechar: str = '"',
                     encoding: str = "utf-8") -> dict[int, str]:
    """The raw text of the records that start at these line numbers, as
    :func:`read_csv` gives it in ``_raw`` (line ends stripped).

    For records the load kept at first and settled later (a repeated key): the
    quarantine keeps the line as it was in the file. One pass over the bytes
    finds where each line starts; a line without a quote is the whole record,
    else the ``csv`` module reads the record from there, as the reader does
    from a record's start (and as pyarrow does for a line of well-formed
    quoted fields).
    """
    # Written by hand: no CSV reader (pyarrow, DuckDB, csv) seeks to a line
    # number; finding line starts is one vectorised pass over the bytes.
    wanted = np.unique(np.asarray(lines, dtype=np.int64))
    if _wide(encoding):  # line starts are not byte 10s: read the text
        return _records_of_text(Path(path), wanted, quotechar, encoding)
    starts = np.full(len(wanted), -1, dtype=np.int64)
    with Path(path).open("rb") as fh:
        line_no, pos, k = 1, 0, 0  # line_no starts at byte pos
        while k < len(wanted):
            block = fh.read(BLOCK_BYTES)
            if not block:
                break
            nl = np.flatnonzero(np.frombuffer(block, dtype=np.uint8) == 10)
            last = line_no + len(nl)  # lines line_no..last start in this block
            j = int(np.searchsorted(wanted, last, side="right"))
            idx = wanted[k:j] - line_no
            starts[k:j] = pos + np.where(idx == 0, 0,
                                         nl[np.maximum(idx - 1, 0)] + 1)
            k, line_no, pos = j, last, pos + len(block)
        out: dict[int, str] = {}
        quote = quotechar.encode(encoding)
        for line, start in zip(wanted.tolist(), starts.tolist(), strict=True):
            if start < 0:
                continue  # past the end: the file changed
            fh.seek(start)
            raw = fh.readline()
            if quote not in raw:  # no quote: the line is the whole record
                out[line] = _strip_eol(raw.decode(encoding, errors="replace"))
                continue
            fh.seek(start)
            lines_in = _Lines(fh, encoding)
            try:
                next(csv.reader(lines_in, delimiter=delimiter, quotechar=quotechar,
                                strict=False))
            except (StopIteration, csv.Error):
                pass
            out[line] = _strip_eol(lines_in.take()[0])
    return out


def _records_of_text(path: Path, wanted: np.ndarray, quotechar: str,
                     encoding: str) -> dict[int, str]:
    """:func:`read_csv_records` for UTF-16/32 files, through the decoded text."""
    want = set(wanted.tolist())
    out: dict[int, str] = {}
    with path.open("r", encoding=encoding, newline="") as fh:
        line_no = 0
        for text in fh:
            line_no += 1
            if line_no not in want:
                continue
            start, record = line_no, text
            while record.count(quotechar) % 2:  # a quoted field holds a line break
                more = fh.readline()
                if not more:
                    break
                line_no += 1
                record += more
            out[start] = _strip_eol(record)
    return out
