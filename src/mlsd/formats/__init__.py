"""File formats to Arrow and back: every reader yields bounded raw batches.

A raw batch holds the data columns (as text for text formats, typed for binary
ones) plus the record's line or record number, raw text and parse error (see
:func:`raw_schema`); :mod:`mlsd.etl` validates and types it. Formats: CSV, JSON
Lines, JSON, Parquet, Avro, Protobuf (length-delimited) and Pickle (only when
trusted). :func:`format_for` picks one from a path; :func:`get_format` by name.
"""

from pathlib import Path

from ..errors import DataError
from ._base import Format, FormatOptions
from ._csv import delimiter_hint, read_csv, read_csv_header, read_csv_records
from ._formats import (
    FORMAT_CLASSES,
    AvroFormat,
    CsvFormat,
    JsonFormat,
    JsonlFormat,
    ParquetFormat,
    PickleFormat,
    ProtobufFormat,
    avro_schema,
    get_format,
)
from ._jsonl import read_jsonl, read_jsonl_columns
from ._raw import (
    DEFAULT_CHUNK_ROWS,
    ERROR,
    LINE,
    META_COLUMNS,
    RAW,
    RESERVED,
    RawBatchBuilder,
    exported_name,
    raw_schema,
)
from ._records import flatten, to_text

FORMATS = {ext: cls.name for cls in FORMAT_CLASSES.values() for ext in cls.extensions}
"""File extension -> format name."""


def format_for(path: str | Path, declared: str | None = None) -> str:
    """The format of ``path``: the declared one, or from its extension."""
    if declared:
        if declared not in FORMAT_CLASSES:
            raise DataError(f"unknown format {declared!r}; supported: "
                            f"{', '.join(FORMAT_CLASSES)}")
        return declared
    suffix = Path(path).suffix.lower()
    try:
        return FORMATS[suffix]
    except KeyError:
        raise DataError(
            f"{path}: cannot tell the format from the extension {suffix!r}; "
            f"supported: {', '.join(sorted(FORMATS))} (or set `format:` to one of "
            f"{', '.join(FORMAT_CLASSES)})"
        ) from None


__all__ = [
    "RESERVED",
    "exported_name",
    "delimiter_hint",
    "DEFAULT_CHUNK_ROWS",
    "ERROR",
    "FORMATS",
    "FORMAT_CLASSES",
    "LINE",
    "META_COLUMNS",
    "RAW",
    "AvroFormat",
    "CsvFormat",
    "Format",
    "FormatOptions",
    "JsonFormat",
    "JsonlFormat",
    "ParquetFormat",
    "PickleFormat",
    "ProtobufFormat",
    "RawBatchBuilder",
    "avro_schema",
    "flatten",
    "format_for",
    "get_format",
    "raw_schema",
    "read_csv",
    "read_csv_header",
    "read_csv_records",
    "read_jsonl",
    "read_jsonl_columns",
    "to_text",
]
