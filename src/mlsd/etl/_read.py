"""Read a data file whole into a typed Arrow table, outside any project.

For commands pointed at files (``mlsd audit``): the schema is inferred by the
same vote as a source's, every value coerced the same way; a value that does
not parse becomes null and is counted, and a broken record is left out and
counted, so the caller can say how much was lost.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

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


def read_table(path: str | Path, *, threshold: float = 0.95,
               null_values: list[str] | None = None) -> ReadResult:
    """Read one file (any format mlsd reads) into a typed table."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    nulls = NULL_VALUES if null_values is None else null_values
    connector = FileConnector(path=str(path.resolve()), root=Path.cwd())
    schema = infer_schema(connector, null_values=nulls, threshold=threshold)
    cols = list(schema.columns)
    parts: dict[str, list[pa.Array]] = {c: [] for c in cols}
    bad_values = dict.fromkeys(cols, 0)
    broken = 0
    for _, raw in connector.read(cols, strict=False):
        ok = raw.column(ERROR).is_null()
        n_ok = int(np.sum(ok.to_numpy(zero_copy_only=False)))
        if n_ok < raw.num_rows:
            broken += raw.num_rows - n_ok
            raw = raw.filter(ok)
        for c in cols:
            typed, bad = coerce_any(raw.column(c), schema.columns[c], nulls)
            parts[c].append(typed)
            bad_values[c] += int(bad.sum())
    types = schema.arrow()
    arrays = [pa.chunked_array(parts[c], type=types.field(c).type) for c in cols]
    table = pa.Table.from_arrays(arrays, names=cols)
    if table.num_rows == 0:
        raise DataError(f"{path}: no readable rows")
    return ReadResult(table, schema, str(path), broken,
                      {c: n for c, n in bad_values.items() if n})
