"""File formats to Arrow: every reader yields bounded raw batches.

A raw batch holds each value as text plus the record's line number, raw text and
parse error (see :func:`raw_schema`); :mod:`mlsd.etl` validates and types it.
The spine reads CSV and JSON Lines; :func:`format_for` picks one from a path.
"""

from pathlib import Path

from ..errors import DataError
from ._csv import read_csv, read_csv_header
from ._jsonl import read_jsonl, read_jsonl_columns
from ._raw import (
    DEFAULT_CHUNK_ROWS,
    ERROR,
    LINE,
    META_COLUMNS,
    RAW,
    RawBatchBuilder,
    raw_schema,
)

FORMATS = {".csv": "csv", ".tsv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl"}


def format_for(path: str | Path, declared: str | None = None) -> str:
    """The format of ``path``: the declared one, or from its extension."""
    if declared:
        return declared
    suffix = Path(path).suffix.lower()
    try:
        return FORMATS[suffix]
    except KeyError:
        raise DataError(
            f"{path}: cannot tell the format from the extension {suffix!r}; "
            f"supported: {', '.join(sorted(FORMATS))} (or set `format:` to one of "
            f"{', '.join(sorted(set(FORMATS.values())))})"
        ) from None


__all__ = [
    "DEFAULT_CHUNK_ROWS",
    "ERROR",
    "FORMATS",
    "LINE",
    "META_COLUMNS",
    "RAW",
    "RawBatchBuilder",
    "format_for",
    "raw_schema",
    "read_csv",
    "read_csv_header",
    "read_jsonl",
    "read_jsonl_columns",
]
