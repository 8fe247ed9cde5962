"""The format interface and the options a source may give its reader."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import pyarrow as pa

from ._raw import DEFAULT_CHUNK_ROWS


@dataclass(frozen=True)
class FormatOptions:
    """How to read or write one file; every field has a sensible default.

    ``delimiter``, ``quotechar``, ``encoding``, ``header``: CSV. ``nested``: JSON,
    nested objects kept as JSON text (``json``, also for ``struct``, which the
    schema then types field by field) or flattened to dotted columns
    (``flatten``). ``reader_schema``: Avro, the reader schema (a ``.avsc`` file) for
    schema evolution. ``proto``, ``message``: Protobuf, the ``.proto`` file and the
    message name. ``trusted``: Pickle, refused unless set. ``max_columns``,
    ``max_record_bytes``: CSV, a header wider or a line longer is refused (the
    header) or quarantined with an excerpt (a record).
    """

    delimiter: str = ","
    quotechar: str = '"'
    encoding: str = "utf-8"
    header: bool = True
    nested: str = "json"
    reader_schema: Path | None = None
    proto: Path | None = None
    message: str | None = None
    trusted: bool = False
    max_columns: int = 10_000
    max_record_bytes: int = 16 << 20


class Format(ABC):
    """One file format: list columns, read raw batches, write a table.

    Text formats yield every value as text; binary formats yield typed columns.
    Validation (:mod:`mlsd.etl`) coerces either to the schema's types.
    """

    name: ClassVar[str]
    extensions: ClassVar[tuple[str, ...]]
    typed: ClassVar[bool] = False
    """Whether values come typed (binary formats) rather than as text."""

    def arrow_types(self, path: Path, options: FormatOptions
                    ) -> dict[str, pa.DataType] | None:
        """Declared column types, for formats that carry a schema."""
        return None

    @abstractmethod
    def columns(self, path: Path, options: FormatOptions) -> list[str]:
        """The field names of the file, in order."""

    @abstractmethod
    def read(self, path: Path, options: FormatOptions, *, columns: list[str],
             chunk_rows: int = DEFAULT_CHUNK_ROWS, strict: bool = True
             ) -> Iterator[pa.RecordBatch]:
        """Raw batches holding ``columns`` plus ``_line``, ``_raw``, ``_error``."""

    @abstractmethod
    def write(self, table: pa.Table, path: Path, options: FormatOptions) -> None:
        """Write a typed table to ``path``."""
