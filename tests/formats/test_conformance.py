"""One conformance suite for every format: round trip (types included), empty
input, huge values, unicode, bad bytes."""

from __future__ import annotations

from datetime import UTC, datetime

import pyarrow as pa
import pytest

from mlsd.connectors import FileConnector
from mlsd.errors import DataError
from mlsd.etl import DataSchema, Validator, infer_schema
from mlsd.formats import FORMAT_CLASSES, FormatOptions, get_format
from mlsd.spec import ValidateSpec

EXT = {"csv": ".csv", "jsonl": ".jsonl", "json": ".json", "parquet": ".parquet",
       "avro": ".avro", "protobuf": ".pb", "pickle": ".pkl"}
FORMATS = sorted(FORMAT_CLASSES)
SCHEMA = DataSchema({"s": "string", "i": "int64", "f": "float64", "b": "bool",
                     "t": "timestamp"})
TS = pa.timestamp("us", tz="UTC")
OPTS = FormatOptions(trusted=True)


def _table(rows: list[dict]) -> pa.Table:
    return pa.Table.from_pylist(rows, schema=SCHEMA.arrow())


ROWS = [
    {"s": "plain", "i": 1, "f": 1.5, "b": True,
     "t": datetime(2024, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)},
    {"s": "unicode: é 中文 👍, \"quoted\"\nand a line break", "i": -(2**62),
     "f": -1e-300, "b": False, "t": datetime(1970, 1, 1, tzinfo=UTC)},
    {"s": "huge", "i": 2**63 - 1, "f": 1.7976931348623157e308, "b": None,
     "t": datetime(2262, 4, 11, tzinfo=UTC)},
    {"s": "nulls", "i": None, "f": None, "b": None, "t": None},
]


def _read_back(path, fmt: str, schema=SCHEMA):
    conn = FileConnector(path=path.name, root=path.parent, options=OPTS)
    v = Validator(schema=schema, rules=ValidateSpec())
    acc, rej, n = [], [], 0
    for info, raw in conn.read(list(schema.columns)):
        out = v.validate(raw, source=info.path, sha256=info.sha256, load_id="x")
        n += raw.num_rows
        acc.append(out.accepted)
        rej.append(out.rejected)
    table = pa.Table.from_batches(acc) if acc else None
    rejected = pa.Table.from_batches(rej).to_pylist() if rej else []
    return table, rejected, n


@pytest.mark.parametrize("fmt", FORMATS)
def test_round_trip_keeps_values_and_types(tmp_path, fmt):
    table = _table(ROWS)
    path = tmp_path / f"data{EXT[fmt]}"
    get_format(fmt).write(table, path, OPTS)
    back, rejected, n = _read_back(path, fmt)
    assert rejected == [] and n == len(ROWS)
    back = back.select(list(SCHEMA.columns))
    assert back.schema == table.schema
    assert back.to_pylist() == table.to_pylist()


@pytest.mark.parametrize("fmt", FORMATS)
def test_inferred_schema_matches_the_written_one(tmp_path, fmt):
    path = tmp_path / f"data{EXT[fmt]}"
    get_format(fmt).write(_table(ROWS * 3), path, OPTS)
    conn = FileConnector(path=path.name, root=tmp_path, options=OPTS)
    inferred = infer_schema(conn, null_values=[""], threshold=0.95)
    assert inferred.columns == SCHEMA.columns


@pytest.mark.parametrize("fmt", FORMATS)
def test_empty_input(tmp_path, fmt):
    path = tmp_path / f"empty{EXT[fmt]}"
    get_format(fmt).write(_table([]), path, OPTS)
    if path.stat().st_size == 0:
        # a text file with no record at all is refused with a clear error
        with pytest.raises(DataError, match="empty"):
            _read_back(path, fmt)
        return
    back, rejected, n = _read_back(path, fmt)
    assert n == 0 and rejected == []


@pytest.mark.parametrize("fmt", FORMATS)
def test_bad_bytes_are_an_error_or_a_quarantined_record(tmp_path, fmt):
    path = tmp_path / f"bad{EXT[fmt]}"
    get_format(fmt).write(_table(ROWS), path, OPTS)
    data = path.read_bytes()
    # damage the middle of the file
    mid = len(data) // 2
    path.write_bytes(data[:mid] + b"\xff\x00\xfe\xfa" * 4 + data[mid + 16:])
    try:
        back, rejected, n = _read_back(path, fmt)
    except DataError as err:
        assert path.name in str(err)  # a clear error naming the file
        return
    kept = 0 if back is None else back.num_rows
    assert kept + len(rejected) == n  # nothing lost
    assert all(r["reasons"] for r in rejected)


def test_pickle_is_refused_unless_trusted(tmp_path):
    path = tmp_path / "x.pkl"
    get_format("pickle").write(_table(ROWS), path, OPTS)
    conn = FileConnector(path="x.pkl", root=tmp_path)
    with pytest.raises(DataError, match="runs code") as info:
        list(conn.read(list(SCHEMA.columns)))
    assert "trusted: true" in str(info.value)


def test_avro_reader_schema_evolves(tmp_path):
    import json

    path = tmp_path / "v1.avro"
    get_format("avro").write(_table(ROWS).select(["s", "i"]), path, OPTS)
    reader = {"type": "record", "name": "Record", "fields": [
        {"name": "s", "type": ["null", "string"], "default": None},
        {"name": "i", "type": ["null", "long"], "default": None},
        {"name": "added", "type": ["null", "string"], "default": None}]}
    (tmp_path / "v2.avsc").write_text(json.dumps(reader))
    opts = FormatOptions(reader_schema=tmp_path / "v2.avsc")
    fmt = get_format("avro")
    assert fmt.columns(path, opts) == ["s", "i", "added"]
    rows = pa.Table.from_batches(list(fmt.read(path, opts, columns=["s", "i", "added"]
                                               ))).to_pylist()
    assert rows[0]["s"] == "plain" and rows[0]["added"] is None


def test_protobuf_with_a_user_proto(tmp_path):
    proto = tmp_path / "post.proto"
    proto.write_text('syntax = "proto3";\npackage forum;\n'
                     'message Post { string post_id = 1; optional int32 likes = 2;'
                     ' repeated string tags = 3; }\n'
                     'message Other { string x = 1; }\n')
    from mlsd.formats._proto import message_class

    cls = message_class(proto, "Post")
    from mlsd.formats._formats import _varint

    path = tmp_path / "posts.pb"
    with path.open("wb") as fh:
        for m in (cls(post_id="a", likes=3, tags=["x", "y"]), cls(post_id="b")):
            data = m.SerializeToString()
            fh.write(_varint(len(data)) + data)
    opts = FormatOptions(proto=proto, message="Post")
    fmt = get_format("protobuf")
    assert fmt.columns(path, opts) == ["post_id", "likes", "tags"]
    rows = pa.Table.from_batches(list(fmt.read(path, opts, columns=[
        "post_id", "likes", "tags"]))).to_pylist()
    assert [(r["post_id"], r["likes"]) for r in rows] == [("a", 3), ("b", None)]
    assert rows[0]["tags"] == '["x","y"]'
    with pytest.raises(DataError, match="holds messages"):
        fmt.columns(path, FormatOptions(proto=proto))


def test_csv_without_header_and_other_delimiter(tmp_path):
    path = tmp_path / "x.csv"
    path.write_text("a;1\nb;2\n")
    conn = FileConnector(path="x.csv", root=tmp_path,
                         options=FormatOptions(header=False, delimiter=";"))
    assert conn.columns() == ["column_1", "column_2"]
    rows = [r for _, b in conn.read(["column_1", "column_2"]) for r in b.to_pylist()]
    assert [(r["column_1"], r["column_2"], r["_line"]) for r in rows] == [
        ("a", "1", 1), ("b", "2", 2)]


def test_json_nested_kept_or_flattened(tmp_path):
    path = tmp_path / "x.json"
    path.write_text('{"items": [{"id": 1, "user": {"name": "a", "age": 3}}, 5]}')
    fmt = get_format("json")
    flat = FormatOptions(nested="flatten")
    assert fmt.columns(path, flat) == ["id", "user.name", "user.age"]
    rows = pa.Table.from_batches(list(fmt.read(path, flat, columns=[
        "id", "user.name", "user.age"]))).to_pylist()
    assert rows[0]["user.name"] == "a" and rows[1]["_error"].startswith("broken")
    kept = pa.Table.from_batches(list(fmt.read(path, FormatOptions(), columns=[
        "id", "user"]))).to_pylist()
    assert kept[0]["user"] == '{"name":"a","age":3}'
