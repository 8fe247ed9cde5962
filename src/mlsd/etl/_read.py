"""Read a data file whole into a typed Arrow table, outside any project.

For commands pointed at files (``mlsd audit``): the schema is inferred by the
same vote as a source's, every value coerced the same way; a value that does
not parse becomes null and is counted, and a broken record is left out and
counted, so the caller can say how much was lost.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from ..connectors import FileConnector
from ..errors import DataError
from ..formats import ERROR
from ._coerce import coerce_any
from ._schema import DataSchema, infer_schema

NULL_VALUES = ["", "NA", "N/A", "null", "NULL", "None", "nan", "NaN"]


@dataclass
class ReadResult:
    """A file as a typed table, with what could not be read."""

    table: pa.Table
    schema: DataSchema
    path: str
    broken_records: int = 0
    bad_values: dict[str, int] = field(default_factory=dict)


def read_batches(path: str | Path, *, threshold: float = 0.95,
                 null_values: list[str] | None = None,
                 counts: dict[str, Any] | None = None
                 ) -> tuple[DataSchema, Iterator[pa.RecordBatch]]:
    """One file as typed record batches, read as they are needed (memory
    holds one batch): the schema inferred by the same vote as a source's, then
    every batch coerced. ``counts``, when given, collects what could not be
    read (``broken_records``, ``bad_values`` per column) as the batches go."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    nulls = NULL_VALUES if null_values is None else null_values
    connector = FileConnector(path=str(path.resolve()), root=Path.cwd())
    schema = infer_schema(connector, null_values=nulls, threshold=threshold)
    cols = list(schema.columns)
    types = schema.arrow()
    tally = counts if counts is not None else {}
    tally.setdefault("broken_records", 0)
    bad = tally.setdefault("bad_values", dict.fromkeys(cols, 0))

    def batches() -> Iterator[pa.RecordBatch]:
        for _, raw in connector.read(cols, strict=False):
            ok = raw.column(ERROR).is_null()
            n_ok = int(np.sum(ok.to_numpy(zero_copy_only=False)))
            if n_ok < raw.num_rows:
                tally["broken_records"] += raw.num_rows - n_ok
                raw = raw.filter(ok)
            arrays = []
            for c in cols:
                typed, wrong = coerce_any(raw.column(c), schema.columns[c], nulls)
                arrays.append(typed.cast(types.field(c).type))
                bad[c] += int(wrong.sum())
            yield pa.RecordBatch.from_arrays(arrays, schema=types)
    return schema, batches()


def read_table(path: str | Path, *, threshold: float = 0.95,
               null_values: list[str] | None = None) -> ReadResult:
    """Read one file (any format mlsd reads) into a typed table."""
    counts: dict[str, Any] = {}
    schema, batches = read_batches(path, threshold=threshold,
                                   null_values=null_values, counts=counts)
    table = pa.Table.from_batches(list(batches), schema=schema.arrow())
    if table.num_rows == 0:
        raise DataError(f"{path}: no readable rows")
    return ReadResult(table, schema, str(path), counts["broken_records"],
                      {c: n for c, n in counts["bad_values"].items() if n})
