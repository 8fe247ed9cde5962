"""The raw batch: what every reader yields before validation.

Every value is kept as text (or null), so one bad value never costs a whole block
and validation can say exactly which value of which line failed. Three extra columns
carry the record's place and health: ``_line`` (1-based line where the record
starts, or record number), ``_raw`` (the record exactly as read, for the
quarantine), ``_error`` (why the record itself could not be parsed, else null).
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa

from ..errors import DataError

LINE, RAW, ERROR = "_line", "_raw", "_error"
META_COLUMNS = (LINE, RAW, ERROR)
RESERVED = ("_source", "_source_sha256", LINE, "_load_id", RAW, ERROR, "_row",
            "_split")
"""Columns mlsd adds to rows it reads and stores (provenance, split): an input
file may not hold them, and ``mlsd export`` writes them as ``mlsd_source``, ..."""


def exported_name(column: str) -> str:
    """The name ``mlsd export`` gives a reserved column (``_line`` ->
    ``mlsd_line``), so an exported file reads back as a source."""
    return f"mlsd{column}" if column in RESERVED else column
DEFAULT_CHUNK_ROWS = 50_000


def raw_schema(columns: list[str]) -> pa.Schema:
    """The Arrow schema of a raw batch with these data columns."""
    return pa.schema(
        [pa.field(c, pa.string()) for c in columns]
        + [
            pa.field(LINE, pa.int64(), nullable=False),
            pa.field(RAW, pa.string()),
            pa.field(ERROR, pa.string()),
        ]
    )


class RawBatchBuilder:
    """Accumulates records column-wise and emits bounded raw batches."""

    def __init__(self, columns: list[str]):
        self.columns = list(columns)
        self.schema = raw_schema(self.columns)
        self._reset()

    def _reset(self) -> None:
        self._values: list[list[str | None]] = [[] for _ in self.columns]
        self._lines: list[int] = []
        self._raws: list[str] = []
        self._errors: list[str | None] = []

    def __len__(self) -> int:
        return len(self._lines)

    def add(
        self, values: list[str | None] | None, line: int, raw: str, error: str | None
    ) -> None:
        """Add one record; ``values`` aligned with ``columns`` (None when broken)."""
        if values is None:
            for col in self._values:
                col.append(None)
        else:
            for col, v in zip(self._values, values, strict=True):
                col.append(v)
        self._lines.append(line)
        self._raws.append(raw)
        self._errors.append(error)

    def flush(self) -> pa.RecordBatch:
        """Return the accumulated records as one batch and start a new one."""
        arrays = [pa.array(v, type=pa.string()) for v in self._values]
        arrays += [
            pa.array(self._lines, type=pa.int64()),
            pa.array(self._raws, type=pa.string()),
            pa.array(self._errors, type=pa.string()),
        ]
        self._reset()
        return pa.RecordBatch.from_arrays(arrays, schema=self.schema)


def open_bytes(path: Path):
    """Open a data file for binary reading, with clear errors."""
    try:
        return Path(path).open("rb")
    except FileNotFoundError:
        raise DataError(f"{path}: no such data file") from None
    except IsADirectoryError:
        raise DataError(f"{path}: is a folder, expected a file") from None
