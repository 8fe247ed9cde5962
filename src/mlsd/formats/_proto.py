"""Protobuf message types from a ``.proto`` file, and messages to and from rows.

The ``.proto`` is compiled with the real ``protoc`` that ``grpcio-tools`` ships
(no code is generated or imported: only a descriptor set, loaded into a private
descriptor pool), so any valid ``.proto`` works, imports of the well-known types
included.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.resources
import tempfile
from datetime import UTC
from pathlib import Path
from typing import Any

import pyarrow as pa

from ..errors import DataError

_SCALARS = {
    "TYPE_DOUBLE": pa.float64(), "TYPE_FLOAT": pa.float64(),
    "TYPE_INT64": pa.int64(), "TYPE_UINT64": pa.int64(), "TYPE_INT32": pa.int64(),
    "TYPE_FIXED64": pa.int64(), "TYPE_FIXED32": pa.int64(), "TYPE_UINT32":
    pa.int64(), "TYPE_SFIXED32": pa.int64(), "TYPE_SFIXED64": pa.int64(),
    "TYPE_SINT32": pa.int64(), "TYPE_SINT64": pa.int64(), "TYPE_BOOL": pa.bool_(),
    "TYPE_STRING": pa.string(), "TYPE_BYTES": pa.string(), "TYPE_ENUM": pa.string(),
}
TIMESTAMP = "google.protobuf.Timestamp"


@functools.lru_cache(maxsize=32)
def _compile(proto: Path, digest: str) -> bytes:
    from grpc_tools import protoc

    include = str(importlib.resources.files("grpc_tools") / "_proto")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "set.pb"
        rc = protoc.main(["protoc", f"-I{proto.parent}", f"-I{include}",
                          "--include_imports", f"--descriptor_set_out={out}",
                          str(proto)])
        if rc != 0 or not out.exists():
            raise DataError(f"{proto}: protoc could not compile this file (exit "
                            f"{rc}); run `python -m grpc_tools.protoc -I. "
                            f"{proto.name} --descriptor_set_out=/dev/null` to see why")
        return out.read_bytes()


def message_class(proto: Path, message: str | None):
    """The message class named ``message`` (or the file's only message)."""
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    proto = Path(proto).resolve()
    if not proto.is_file():
        raise DataError(f"{proto}: no such .proto file")
    fds = descriptor_pb2.FileDescriptorSet.FromString(
        _compile(proto, hashlib.sha256(proto.read_bytes()).hexdigest()))
    pool = descriptor_pool.DescriptorPool()
    for f in fds.file:
        pool.Add(f)
    own = next(f for f in fds.file if Path(f.name).name == proto.name)
    names = [f"{own.package}.{m.name}" if own.package else m.name
             for m in own.message_type]
    if message is None:
        if len(names) != 1:
            raise DataError(f"{proto}: holds messages {names}; name one with "
                            f"`message:`")
        message = names[0]
    full = message if message in names else next(
        (n for n in names if n.rsplit(".", 1)[-1] == message), None)
    if full is None:
        raise DataError(f"{proto}: no message {message!r}; it defines {names}")
    return message_factory.GetMessageClass(pool.FindMessageTypeByName(full))


def _repeated(field) -> bool:
    # protobuf 7 replaced `label` with `is_repeated`
    if hasattr(field, "is_repeated"):
        return bool(field.is_repeated)
    from google.protobuf.descriptor import FieldDescriptor

    return field.label == FieldDescriptor.LABEL_REPEATED


def arrow_type(field) -> pa.DataType:
    """The Arrow type of a field (repeated and nested messages become JSON text)."""
    from google.protobuf.descriptor import FieldDescriptor

    if _repeated(field):
        return pa.string()
    if field.message_type is not None:
        if field.message_type.full_name == TIMESTAMP:
            return pa.timestamp("us", tz="UTC")
        return pa.string()
    for key, t in _SCALARS.items():
        if getattr(FieldDescriptor, key) == field.type:
            return t
    return pa.string()


def to_record(msg) -> dict[str, Any]:
    """A message as a row: absent fields (with presence) are null."""
    from google.protobuf.descriptor import FieldDescriptor
    from google.protobuf.json_format import MessageToDict

    out: dict[str, Any] = {}
    for field in msg.DESCRIPTOR.fields:
        repeated = _repeated(field)
        if not repeated and field.has_presence and not msg.HasField(field.name):
            out[field.name] = None
            continue
        value = getattr(msg, field.name)
        if repeated:
            out[field.name] = [MessageToDict(v) if hasattr(v, "DESCRIPTOR") else v
                               for v in value]
        elif field.message_type is not None:
            if field.message_type.full_name == TIMESTAMP:
                out[field.name] = value.ToDatetime(tzinfo=UTC)
            else:
                out[field.name] = MessageToDict(value)
        elif field.type == FieldDescriptor.TYPE_ENUM:
            out[field.name] = field.enum_type.values_by_number[value].name
        elif field.type == FieldDescriptor.TYPE_BYTES:
            out[field.name] = value.decode("utf-8", errors="replace")
        else:
            out[field.name] = value
    return out


def from_record(cls, rec: dict[str, Any]):
    """A message from a row; null values leave the field unset."""
    msg = cls()
    for field in cls.DESCRIPTOR.fields:
        value = rec.get(field.name)
        if value is None:
            continue
        if field.message_type is not None and field.message_type.full_name == \
                TIMESTAMP:
            if value.tzinfo is None:
                value = value.replace(tzinfo=UTC)
            getattr(msg, field.name).FromDatetime(value)
        else:
            setattr(msg, field.name, value)
    return msg


def proto_for_schema(schema: pa.Schema, message: str = "Record") -> str:
    """A proto3 file with one message whose optional fields mirror ``schema``."""
    lines = ['syntax = "proto3";', ""]
    if any(pa.types.is_timestamp(f.type) for f in schema):
        lines += ['import "google/protobuf/timestamp.proto";', ""]
    lines.append(f"message {message} {{")
    for i, f in enumerate(schema, start=1):
        if pa.types.is_timestamp(f.type):
            t = TIMESTAMP
            lines.append(f"  {t} {f.name} = {i};")
            continue
        if pa.types.is_integer(f.type):
            t = "int64"
        elif pa.types.is_floating(f.type):
            t = "double"
        elif pa.types.is_boolean(f.type):
            t = "bool"
        else:
            t = "string"
        lines.append(f"  optional {t} {f.name} = {i};")
    lines.append("}")
    return "\n".join(lines) + "\n"
