"""Every format mlsd reads and writes, behind one interface."""

from __future__ import annotations

import json
import pickle
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from ..errors import DataError
from ._base import Format, FormatOptions
from ._csv import read_csv, read_csv_header
from ._jsonl import read_jsonl, read_jsonl_columns
from ._raw import DEFAULT_CHUNK_ROWS, ERROR, LINE, RAW, open_bytes
from ._records import batched_records, flatten, table_records


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value.isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return str(value)


class CsvFormat(Format):
    name, extensions = "csv", (".csv", ".tsv")

    def columns(self, path, options):
        names = read_csv_header(path, delimiter=options.delimiter,
                                encoding=options.encoding,
                                max_columns=options.max_columns,
                                max_record_bytes=options.max_record_bytes)
        return names if options.header else [f"column_{i + 1}" for i in
                                             range(len(names))]

    def read(self, path, options, *, columns, chunk_rows=DEFAULT_CHUNK_ROWS,
             strict=True, span=None):
        return (yield from read_csv(
            path, delimiter=options.delimiter, quotechar=options.quotechar,
            encoding=options.encoding, chunk_rows=chunk_rows,
            names=None if options.header else columns,
            max_columns=options.max_columns,
            max_record_bytes=options.max_record_bytes, span=span))

    def write(self, table, path, options):
        # pyarrow's writer is fast and quotes what needs quoting; timestamps come
        # out as ISO 8601, which validation reads back
        opts = pacsv.WriteOptions(include_header=options.header,
                                  delimiter=options.delimiter,
                                  quoting_style="needed")
        pacsv.write_csv(table, path, write_options=opts)


class JsonlFormat(Format):
    name, extensions = "jsonl", (".jsonl", ".ndjson")

    def columns(self, path, options):
        return read_jsonl_columns(path, encoding=options.encoding,
                                  flatten_nested=options.nested == "flatten")

    def read(self, path, options, *, columns, chunk_rows=DEFAULT_CHUNK_ROWS,
             strict=True, span=None):
        return (yield from read_jsonl(
            path, columns=columns, encoding=options.encoding, chunk_rows=chunk_rows,
            strict=strict, flatten_nested=options.nested == "flatten", span=span))

    def write(self, table, path, options):
        with path.open("w", encoding="utf-8") as fh:
            for rec in table_records(table):
                fh.write(json.dumps(rec, ensure_ascii=False, default=_json_default))
                fh.write("\n")


class JsonFormat(Format):
    """A JSON array of objects (or an object holding one such array).

    A JSON document cannot be parsed in pieces with the standard library, so the
    whole file is parsed before batches are yielded; use JSON Lines for large data.
    """

    name, extensions = "json", (".json",)

    def _records(self, path: Path, options: FormatOptions) -> list:
        with open_bytes(path) as fh:
            data = fh.read()
        if not data.strip():
            raise DataError(f"{path}: the file is empty (no JSON document)")
        try:
            doc = json.loads(data.decode(options.encoding))
        except UnicodeDecodeError as err:
            raise DataError(f"{path}: bytes not valid {options.encoding} at offset "
                            f"{err.start}") from None
        except json.JSONDecodeError as err:
            raise DataError(f"{path}, line {err.lineno}, column {err.colno}: not "
                            f"valid JSON: {err.msg}") from None
        if isinstance(doc, dict):
            arrays = [v for v in doc.values() if isinstance(v, list)]
            if len(arrays) != 1:
                raise DataError(f"{path}: expected a JSON array of objects, or an "
                                f"object holding exactly one array")
            doc = arrays[0]
        if not isinstance(doc, list):
            raise DataError(f"{path}: expected a JSON array of objects, found "
                            f"{type(doc).__name__}")
        if options.nested == "flatten":
            doc = [flatten(r) if isinstance(r, dict) else r for r in doc]
        return doc

    def columns(self, path, options):
        seen: dict[str, None] = {}
        for r in self._records(path, options):
            if isinstance(r, dict):
                seen.update(dict.fromkeys(r))
        return list(seen)

    def read(self, path, options, *, columns, chunk_rows=DEFAULT_CHUNK_ROWS,
             strict=True):
        def items():
            for i, r in enumerate(self._records(path, options), start=1):
                if isinstance(r, dict):
                    yield i, r, None
                else:
                    yield i, None, (f"broken record: expected a JSON object, found "
                                    f"{type(r).__name__}")
        yield from batched_records(items(), columns, chunk_rows=chunk_rows,
                                   typed=False, strict=strict)

    def write(self, table, path, options):
        path.write_text(json.dumps(list(table_records(table)), ensure_ascii=False,
                                   default=_json_default, indent=1),
                        encoding="utf-8")


class ParquetFormat(Format):
    name, extensions, typed = "parquet", (".parquet", ".pq"), True

    def _file(self, path: Path) -> pq.ParquetFile:
        if not path.exists():
            raise DataError(f"{path}: no such data file")
        try:
            return pq.ParquetFile(path)
        except (pa.ArrowInvalid, OSError) as err:
            raise DataError(f"{path}: not a readable Parquet file: {err}") from None

    def arrow_types(self, path, options):
        return {f.name: f.type for f in self._file(path).schema_arrow}

    def columns(self, path, options):
        return list(self.arrow_types(path, options))

    def spans(self, path: Path, size: int) -> list[tuple[int, int, int]]:
        """The file's row groups in runs of about ``size`` bytes, as
        ``(first group, end group, first record's number)`` for ``read``'s
        ``span``: the footer alone says where each starts."""
        meta = self._file(path).metadata
        spans, first, record, held = [], 0, 1, 0
        for g in range(meta.num_row_groups):
            rg = meta.row_group(g)
            held += sum(rg.column(c).total_compressed_size
                        for c in range(rg.num_columns))
            if held >= size or g == meta.num_row_groups - 1:
                spans.append((first, g + 1, record))
                record += sum(meta.row_group(k).num_rows for k in range(first, g + 1))
                first, held = g + 1, 0
        return spans

    def read(self, path, options, *, columns, chunk_rows=DEFAULT_CHUNK_ROWS,
             strict=True, span=None):
        f = self._file(path)
        have = f.schema_arrow.names
        extra = [c for c in have if c not in columns]
        if strict and extra:
            raise DataError(f"{path}: unexpected column(s) {extra} not in the "
                            f"schema (edit the schema file if the data changed on "
                            f"purpose)")
        present = [c for c in columns if c in have]
        start = 1 if span is None else span[2]
        groups = None if span is None else list(range(span[0], span[1]))
        try:
            for batch in f.iter_batches(batch_size=chunk_rows, columns=present,
                                        row_groups=groups):
                n = batch.num_rows
                arrays = [batch.column(c) if c in present else pa.nulls(n, pa.string())
                          for c in columns]
                arrays += [pa.array(range(start, start + n), pa.int64()),
                           pa.nulls(n, pa.string()), pa.nulls(n, pa.string())]
                start += n
                yield pa.RecordBatch.from_arrays(arrays,
                                                 names=[*columns, LINE, RAW, ERROR])
        except (pa.ArrowInvalid, OSError) as err:
            raise DataError(f"{path}: the Parquet file is damaged after row "
                            f"{start - 1}: {err}") from None
        return start

    def write(self, table, path, options):
        pq.write_table(table, path)


_AVRO_TYPES = {pa.string(): "string", pa.int64(): "long", pa.float64(): "double",
               pa.bool_(): "boolean"}


def avro_schema(schema: pa.Schema, name: str = "Record") -> dict[str, Any]:
    """An Avro record schema for an Arrow schema (every field nullable)."""
    fields = []
    for f in schema:
        if pa.types.is_timestamp(f.type):
            t: Any = {"type": "long", "logicalType": "timestamp-micros"}
        elif pa.types.is_integer(f.type):
            t = "long"
        elif pa.types.is_floating(f.type):
            t = "double"
        else:
            t = _AVRO_TYPES.get(f.type, "string")
        fields.append({"name": f.name, "type": ["null", t], "default": None})
    return {"type": "record", "name": name, "fields": fields}


class AvroFormat(Format):
    """Avro object container files (fastavro). The writer schema comes from the
    file; a reader schema (``reader_schema``, an ``.avsc`` file) resolves schema
    evolution: renamed, added (with defaults) and removed fields."""

    name, extensions, typed = "avro", (".avro",), True

    def _reader_schema(self, options: FormatOptions) -> dict | None:
        if options.reader_schema is None:
            return None
        import fastavro

        try:
            return fastavro.parse_schema(json.loads(Path(
                options.reader_schema).read_text(encoding="utf-8")))
        except (OSError, ValueError, fastavro.schema.SchemaParseException) as err:
            raise DataError(f"{options.reader_schema}: not a usable Avro reader "
                            f"schema: {err}") from None

    def _schema(self, path: Path, options: FormatOptions) -> dict:
        import fastavro

        reader_schema = self._reader_schema(options)
        if reader_schema is not None:
            return reader_schema
        with open_bytes(path) as fh:
            try:
                return fastavro.reader(fh).writer_schema
            except Exception as err:  # fastavro raises many kinds on bad bytes
                raise DataError(f"{path}: not an Avro container file: "
                                f"{type(err).__name__}: {err}") from None

    def columns(self, path, options):
        return [f["name"] for f in self._schema(path, options)["fields"]]

    def read(self, path, options, *, columns, chunk_rows=DEFAULT_CHUNK_ROWS,
             strict=True):
        import fastavro

        reader_schema = self._reader_schema(options)

        def items():
            n = 0
            with open_bytes(path) as fh:
                try:
                    for n, rec in enumerate(fastavro.reader(
                            fh, reader_schema=reader_schema), start=1):
                        yield n, rec, None
                except Exception as err:  # fastavro raises many kinds on bad bytes
                    # a damaged block: what came before it is kept, the rest is
                    # one rejected record saying where reading stopped
                    yield n + 1, None, (f"unreadable Avro data after record {n}: "
                                        f"{type(err).__name__}: {err}")
        yield from batched_records(items(), columns, chunk_rows=chunk_rows,
                                   typed=True, strict=strict)

    def write(self, table, path, options):
        import fastavro

        schema = fastavro.parse_schema(avro_schema(table.schema))
        with path.open("wb") as fh:
            fastavro.writer(fh, schema, table_records(table), codec="deflate")


class PickleFormat(Format):
    """Python pickles: a pandas DataFrame, a list of dicts, a dict of lists or an
    Arrow table. Loading a pickle runs whatever code its author put in it, so a
    pickle source is refused unless the spec marks it ``trusted: true``."""

    name, extensions, typed = "pickle", (".pkl", ".pickle"), True

    def _load(self, path: Path, options: FormatOptions) -> pa.Table:
        if not options.trusted:
            raise DataError(
                f"{path}: refusing to load a pickle. Unpickling runs code chosen by "
                f"whoever wrote the file (it can delete files or open a shell), so "
                f"mlsd loads a pickle only when its source says `trusted: true`. "
                f"Set it only for files you or a trusted system made; better, "
                f"export the data as Parquet.")
        with open_bytes(path) as fh:
            try:
                obj = pickle.load(fh)  # noqa: S301 - the user marked it trusted
            except Exception as err:  # any exception a broken pickle can raise
                raise DataError(f"{path}: not a readable pickle: {err}") from None
        try:
            import pandas as pd

            if isinstance(obj, pd.DataFrame):
                return pa.Table.from_pandas(obj, preserve_index=False)
        except ImportError:  # pragma: no cover - pandas is a dependency
            pass
        if isinstance(obj, pa.Table):
            return obj
        if isinstance(obj, list) and all(isinstance(r, dict) for r in obj):
            return pa.Table.from_pylist(obj) if obj else pa.table({})
        if isinstance(obj, dict) and all(isinstance(v, list) for v in obj.values()):
            return pa.table(obj)
        raise DataError(f"{path}: the pickle holds a {type(obj).__name__}; expected "
                        f"a DataFrame, a list of dicts or a dict of lists")

    def arrow_types(self, path, options):
        return {f.name: f.type for f in self._load(path, options).schema}

    def columns(self, path, options):
        return list(self.arrow_types(path, options))

    def read(self, path, options, *, columns, chunk_rows=DEFAULT_CHUNK_ROWS,
             strict=True):
        table = self._load(path, options)
        extra = [c for c in table.column_names if c not in columns]
        if strict and extra:
            raise DataError(f"{path}: unexpected column(s) {extra} not in the schema")
        start = 1
        for batch in table.to_batches(max_chunksize=chunk_rows):
            n = batch.num_rows
            arrays = [batch.column(c) if c in table.column_names else
                      pa.nulls(n, pa.string()) for c in columns]
            arrays += [pa.array(range(start, start + n), pa.int64()),
                       pa.nulls(n, pa.string()), pa.nulls(n, pa.string())]
            start += n
            yield pa.RecordBatch.from_arrays(arrays, names=[*columns, LINE, RAW, ERROR])

    def write(self, table, path, options):
        with path.open("wb") as fh:
            import pandas as pd

            # Arrow-backed columns keep int64 with nulls exact (NumPy ones would
            # turn them into floats)
            frame = table.to_pandas(types_mapper=pd.ArrowDtype)
            pickle.dump(frame, fh, protocol=pickle.HIGHEST_PROTOCOL)


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _read_varint(fh) -> int | None:
    shift = result = 0
    while True:
        b = fh.read(1)
        if not b:
            if shift:
                raise EOFError("the file ends inside a length prefix")
            return None
        result |= (b[0] & 0x7F) << shift
        if not b[0] & 0x80:
            return result
        shift += 7
        if shift > 63:
            raise ValueError("a length prefix longer than 10 bytes")


class ProtobufFormat(Format):
    """Length-delimited Protobuf messages (each prefixed by its size as a varint,
    as ``writeDelimitedTo`` writes them), decoded with the message type of a
    ``.proto`` file that the spec names. Fields map to Arrow by their types;
    ``google.protobuf.Timestamp`` becomes a timestamp.

    The varint framing is written by hand: the protobuf package keeps its
    delimited-stream helpers private.
    """

    name, extensions, typed = "protobuf", (".pb", ".bin", ".protobuf"), True

    def _message(self, path: Path, options: FormatOptions):
        from ._proto import message_class

        proto = options.proto
        if proto is None:
            sidecar = path.with_suffix(".proto")
            if not sidecar.is_file():
                raise DataError(f"{path}: a Protobuf source needs `proto:` (the "
                                f".proto file) and `message:` in its spec")
            proto = sidecar
        return message_class(Path(proto), options.message)

    def columns(self, path, options):
        return [f.name for f in self._message(path, options).DESCRIPTOR.fields]

    def arrow_types(self, path, options):
        from ._proto import arrow_type

        return {f.name: arrow_type(f) for f in
                self._message(path, options).DESCRIPTOR.fields}

    def read(self, path, options, *, columns, chunk_rows=DEFAULT_CHUNK_ROWS,
             strict=True):
        from google.protobuf.message import DecodeError

        from ._proto import to_record

        cls = self._message(path, options)

        total = path.stat().st_size if path.exists() else 0

        def items():
            n = 0
            with open_bytes(path) as fh:
                while True:
                    try:
                        size = _read_varint(fh)
                    except (EOFError, ValueError) as err:
                        yield n + 1, None, f"broken record: {err}"
                        return
                    if size is None:
                        return
                    n += 1
                    left = total - fh.tell()
                    if size > left:
                        # a damaged length prefix: never trust it with memory
                        yield n, None, (f"broken record: a length of {size} bytes "
                                        f"but only {left} left in the file")
                        return
                    data = fh.read(size)
                    if len(data) != size:
                        short = size - len(data)
                        yield n, None, (f"broken record: the file ends {short} "
                                        f"bytes short of the message")
                        return
                    try:
                        msg = cls.FromString(data)
                    except DecodeError as err:
                        name = cls.DESCRIPTOR.name
                        yield n, None, f"broken record: not a {name}: {err}"
                        continue
                    yield n, to_record(msg), None
        yield from batched_records(items(), columns, chunk_rows=chunk_rows,
                                   typed=True, strict=strict)

    def write(self, table, path, options):
        from ._proto import from_record, proto_for_schema

        proto = options.proto
        message = options.message
        if proto is None:
            proto = path.with_suffix(".proto")
            message = "Record"
            proto.write_text(proto_for_schema(table.schema, message), encoding="utf-8")
        cls = self._message(path, FormatOptions(proto=proto, message=message))
        with path.open("wb") as fh:
            for rec in table_records(table):
                data = from_record(cls, rec).SerializeToString()
                fh.write(_varint(len(data)))
                fh.write(data)


FORMAT_CLASSES: dict[str, type[Format]] = {
    c.name: c for c in (CsvFormat, JsonlFormat, JsonFormat, ParquetFormat,
                        AvroFormat, ProtobufFormat, PickleFormat)}


def get_format(name: str) -> Format:
    """The format called ``name``; lists the supported ones otherwise."""
    try:
        return FORMAT_CLASSES[name]()
    except KeyError:
        raise DataError(f"unknown format {name!r}; supported: "
                        f"{', '.join(FORMAT_CLASSES)}") from None


