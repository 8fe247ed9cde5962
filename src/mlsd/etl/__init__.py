"""ETL: extract from a connector, validate, and load into the lake.

A source's schema is declared or inferred by a robust vote and frozen to
``schemas/SOURCE.yaml``. :class:`Validator` coerces every value and checks the
spec's constraints; a failing row goes whole to the source's quarantine with every
reason. :func:`load_source` commits accepted rows (each with its file, sha256, line
and load id) as one Delta version, and records rows in = stored + quarantined.
The :func:`ingest` stage of ``mlsd run`` loads every source.
"""

from ._coerce import (
    ARROW_TYPES,
    TypeName,
    arrow_type,
    coerce,
    coerce_any,
    infer_type,
    infer_type_any,
    logical_type,
    nullify,
    type_label,
)
from ._export import EXTENSIONS, export_dataset, parse_dataset
from ._load import (
    LoadResult,
    connector_for,
    load_source,
    reinfer_schema,
    resolve_schema,
)
from ._quarantine import quarantine_matches, quarantine_rows, replay
from ._read import ReadResult, read_table
from ._schema import DataSchema, infer_schema, load_schema, save_schema, schema_path
from ._stage import ingest, load_sources, load_summary
from ._transform import Transformer
from ._validate import (
    LOAD_ID,
    PROVENANCE,
    QUARANTINE_SCHEMA,
    SOURCE,
    SOURCE_SHA,
    Validated,
    Validator,
    accepted_schema,
)

__all__ = [
    "ARROW_TYPES",
    "EXTENSIONS",
    "LOAD_ID",
    "PROVENANCE",
    "QUARANTINE_SCHEMA",
    "SOURCE",
    "SOURCE_SHA",
    "DataSchema",
    "LoadResult",
    "ReadResult",
    "Transformer",
    "TypeName",
    "Validated",
    "Validator",
    "accepted_schema",
    "arrow_type",
    "coerce",
    "coerce_any",
    "connector_for",
    "export_dataset",
    "infer_schema",
    "infer_type",
    "infer_type_any",
    "ingest",
    "load_schema",
    "load_source",
    "load_sources",
    "load_summary",
    "logical_type",
    "nullify",
    "parse_dataset",
    "quarantine_matches",
    "quarantine_rows",
    "read_table",
    "reinfer_schema",
    "replay",
    "resolve_schema",
    "save_schema",
    "schema_path",
    "type_label",
]
