"""Data schemas: inferred by a robust vote, frozen to ``schemas/SOURCE.yaml``."""

from __future__ import annotations

import hashlib
import json
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, get_args

import yaml

from .. import _yaml
from ..errors import SchemaError
from ..spec import ColumnType

if TYPE_CHECKING:  # connectors load SQLAlchemy, pyarrow its compute kernels:
    # reading a frozen schema needs neither (`mlsd spec check` stays quick)
    import pyarrow as pa

    from ..connectors import FileConnector, SqlConnector
    from ._coerce import TypeName

TYPES = get_args(ColumnType)
INFER_SAMPLE_ROWS = 20_000


@dataclass(frozen=True)
class DataSchema:
    """Column names and logical types of a source, in order."""

    columns: dict[str, TypeName]
    origin: dict[str, str] = field(default_factory=dict, compare=False)

    def arrow(self) -> pa.Schema:
        import pyarrow as pa

        from ._coerce import arrow_type

        return pa.schema([pa.field(c, arrow_type(t)) for c, t in
                          self.columns.items()])

    def fingerprint(self) -> str:
        return hashlib.sha256(json.dumps(list(self.columns.items())).encode()
                              ).hexdigest()

    def to_dict(self) -> dict:
        return {"columns": dict(self.columns)}

    @classmethod
    def from_dict(cls, data: object, *, where: str) -> DataSchema:
        if not isinstance(data, dict) or not isinstance(data.get("columns"), dict):
            raise SchemaError(f"{where}: expected a mapping with `columns:`")
        extra = [k for k in data if k not in ("columns", "source", "origin")]
        if extra:
            raise SchemaError(f"{where}: unknown key(s) {extra}")
        cols = {str(name): _check_type(typ, f"{where}: columns.{name}")
                for name, typ in data["columns"].items()}
        if not cols:
            raise SchemaError(f"{where}: `columns:` is empty")
        return cls(cols, dict(data.get("origin") or {}))


def _check_type(typ: object, where: str) -> TypeName:
    """A type from a schema file: a scalar name, or a mapping (a struct)."""
    if isinstance(typ, dict):
        if not typ:
            raise SchemaError(f"{where}: a struct needs at least one field")
        return {str(k): _check_type(v, f"{where}.{k}") for k, v in typ.items()}
    if typ not in TYPES:
        raise SchemaError(f"{where}: unknown type {typ!r}; expected one of "
                          f"{', '.join(TYPES)}, or a mapping of fields (a struct)")
    return typ


def schema_path(root: Path, source: str) -> Path:
    return root / "schemas" / f"{source}.yaml"


def load_schema(root: Path, source: str) -> DataSchema | None:
    """The frozen or declared schema of a source, or None if there is none yet."""
    path = schema_path(root, source)
    if not path.is_file():
        return None
    try:
        data = _yaml.load(path.read_text(encoding="utf-8"))
    except _yaml.YamlError as err:
        raise SchemaError(f"schemas/{source}.yaml: {err}") from None
    except yaml.YAMLError as err:
        raise SchemaError(f"schemas/{source}.yaml: not valid YAML: {err}") from None
    return DataSchema.from_dict(data, where=f"schemas/{source}.yaml")


def save_schema(root: Path, source: str, schema: DataSchema) -> Path:
    """Write a schema to ``schemas/SOURCE.yaml`` (the user may edit it after)."""
    path = schema_path(root, source)
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {"source": source, "origin": schema.origin, **schema.to_dict()}
    header = (
        f"# Schema of source '{source}'. mlsd inferred it once and froze it here;\n"
        "# edit the types if they are wrong. Types: " + ", ".join(TYPES) + ",\n"
        "# or a mapping of field names to types for a nested object (a struct).\n"
    )
    path.write_text(header + yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return path


def vote_types(table, columns: list[str], *, null_values: list[str],
               threshold: float, structs: bool = False) -> dict[str, Any]:
    """Each column's type by the vote over a raw table's readable rows (all
    text when there is no table)."""
    from ._coerce import infer_type_any

    if table is None:
        return dict.fromkeys(columns, "string")
    ok_rows = table.filter(table.column("_error").is_null())
    return {col: infer_type_any(ok_rows.column(col).combine_chunks(), threshold,
                                null_values, structs=structs) for col in columns}


def infer_schema(connector: FileConnector | SqlConnector, *, null_values: list[str],
                 threshold: float, sample_rows: int = INFER_SAMPLE_ROWS,
                 structs: bool = False) -> DataSchema:
    """Infer a schema by a per-column type vote over the first rows.

    With ``structs``, columns of nested objects get struct types (the fields
    seen in the sample); otherwise they are JSON text.
    """
    import pyarrow as pa

    columns = connector.columns()
    batches, n = [], 0
    reader = connector.read(columns, chunk_rows=min(sample_rows, 50_000))
    with closing(reader):  # stop reading (and close a cursor) once sampled
        for _, batch in reader:
            batches.append(batch)
            n += batch.num_rows
            if n >= sample_rows:
                break
    table = pa.Table.from_batches(batches) if batches else None
    types = vote_types(table, columns, null_values=null_values, threshold=threshold,
                       structs=structs)
    if hasattr(connector, "files"):
        where = ", ".join(f.path for f in connector.files())
    else:
        where = connector.display
    origin = {"inferred_from": where,
              "rows_sampled": str(min(n, sample_rows)),
              "threshold": str(threshold)}
    return DataSchema(types, origin)
