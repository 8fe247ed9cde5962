"""Load one source into the lake: extract, validate, quarantine, commit."""

from __future__ import annotations

import hashlib
import json
import shutil
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pyarrow.parquet as pq

from ..connectors import FileConnector
from ..lake import Catalog, Lake
from ..spec import SourceSpec, ValidateSpec
from ._schema import DataSchema, infer_schema, load_schema, save_schema
from ._validate import QUARANTINE_SCHEMA, Validator, accepted_schema

LOAD_FORMAT = "1"  # bump when the stored layout changes, so loads are redone


@dataclass
class LoadResult:
    """What one load did: the counts that must reconcile, and where rows went."""

    source: str
    load_id: str
    dataset: str
    version: int
    quarantine_version: int
    rows_in: int
    rows_stored: int
    rows_quarantined: int
    reasons: dict[str, int]
    files: list[dict]
    skipped: bool = False
    schema_frozen: bool = False
    top_messages: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def connector_for(name: str, spec: SourceSpec, root: Path) -> FileConnector:
    return FileConnector(path=spec.path, root=root, format=spec.format,
                         options=spec.format_options(root))


def resolve_schema(name: str, spec: SourceSpec, rules: ValidateSpec, root: Path,
                   *, freeze: bool = True) -> tuple[DataSchema, bool]:
    """The source's frozen schema, or one inferred now (and frozen if asked)."""
    schema = load_schema(root, name)
    if schema is not None:
        return schema, False
    schema = infer_schema(connector_for(name, spec, root),
                          null_values=rules.null_values,
                          threshold=rules.infer_threshold)
    if freeze:
        save_schema(root, name, schema)
    return schema, True


def load_source(
    name: str,
    spec: SourceSpec,
    rules: ValidateSpec,
    *,
    root: Path,
    lake: Lake,
    catalog: Catalog,
    run_id: str,
    chunk_rows: int = 50_000,
    on_rows: Callable[[int], None] | None = None,
) -> LoadResult:
    """Extract, validate and store one source as one atomic lake commit.

    The load id hashes the input files' contents, the schema and the rules: an
    unchanged input is recognised and adds no dataset version. Accepted and
    rejected rows are spooled first, then the quarantine is committed, then the
    data (whose commit marks the load as done), so a crash at any point leaves a
    state that a re-run completes.
    """
    schema, frozen = resolve_schema(name, spec, rules, root)
    validator = Validator(schema=schema, rules=rules)
    validator.check_rules(f"source {name!r} (schemas/{name}.yaml)")
    connector = connector_for(name, spec, root)
    files = connector.files()
    ident = {
        "format": LOAD_FORMAT,
        "source": name,
        "read": spec.model_dump(mode="json"),
        "files": [(f.path, f.sha256) for f in files],
        "schema": list(schema.columns.items()),
        "rules": rules.model_dump(mode="json"),
    }
    load_id = hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()
    file_docs = [{"path": f.path, "sha256": f.sha256, "size": f.size} for f in files]

    last = lake.last_write("sources", name)
    done = catalog.load(load_id)
    if last is not None and last.get("mlsd.write_id") == load_id and done:
        if on_rows:
            on_rows(done["rows_in"])
        return LoadResult(
            source=name, load_id=load_id, dataset=f"sources/{name}",
            version=done["version"], quarantine_version=done["quarantine_version"],
            rows_in=done["rows_in"], rows_stored=done["rows_stored"],
            rows_quarantined=done["rows_quarantined"], reasons=done["reasons"],
            files=file_docs, skipped=True, schema_frozen=frozen)

    spool = lake.root / "tmp" / load_id[:16]
    shutil.rmtree(spool, ignore_errors=True)
    spool.mkdir(parents=True)
    acc_schema = accepted_schema(schema)
    rows_in = rows_ok = rows_bad = 0
    per_file: Counter[str] = Counter()
    reasons: Counter[str] = Counter()
    messages: Counter[str] = Counter()
    with pq.ParquetWriter(spool / "accepted.parquet", acc_schema) as acc_w, \
            pq.ParquetWriter(spool / "rejected.parquet", QUARANTINE_SCHEMA) as rej_w:
        for info, raw in connector.read(list(schema.columns), chunk_rows=chunk_rows):
            out = validator.validate(raw, source=info.path, sha256=info.sha256,
                                     load_id=load_id)
            rows_in += raw.num_rows
            rows_ok += out.accepted.num_rows
            rows_bad += out.rejected.num_rows
            per_file[info.path] += raw.num_rows
            acc_w.write_batch(out.accepted)
            if out.rejected.num_rows:
                rej_w.write_batch(out.rejected)
                for row in out.rejected.column("reasons").to_pylist():
                    for r in row:
                        reasons[f"{r['column'] or '(record)'}: {r['rule']}"] += 1
                        if len(messages) < 10_000:
                            messages[r["message"]] += 1
            if on_rows:
                on_rows(raw.num_rows)
    assert rows_in == rows_ok + rows_bad, "validation lost rows"

    meta = {"mlsd.load_id": load_id, "mlsd.rows_in": str(rows_in)}
    q_version, _ = lake.write(
        "quarantine", name, pq.ParquetFile(spool / "rejected.parquet"
                                           ).iter_batches(),
        schema=QUARANTINE_SCHEMA, write_id=load_id, metadata=meta)
    version, _ = lake.write(
        "sources", name,
        pq.ParquetFile(spool / "accepted.parquet").iter_batches(),
        schema=acc_schema, write_id=load_id, metadata=meta)
    shutil.rmtree(spool, ignore_errors=True)

    data_node = catalog.add_dataset_version("sources", name, version,
                                            write_id=load_id, rows=rows_ok,
                                            run_id=run_id)
    q_node = catalog.add_dataset_version("quarantine", name, q_version,
                                         write_id=load_id, rows=rows_bad,
                                         run_id=run_id)
    for f, doc in zip(files, file_docs, strict=True):
        doc["rows"] = per_file[f.path]
        node = catalog.add_file(sha256=f.sha256, path=f.path, size=f.size)
        catalog.add_edge(node, data_node, "loaded_into", run_id)
        catalog.add_edge(node, q_node, "quarantined_into", run_id)
    catalog.add_load(
        load_id=load_id, source=name, dataset=f"sources/{name}", version=version,
        quarantine_version=q_version, rows_in=rows_in, rows_stored=rows_ok,
        rows_quarantined=rows_bad, reasons=dict(reasons.most_common()),
        files=file_docs, run_id=run_id)
    return LoadResult(
        source=name, load_id=load_id, dataset=f"sources/{name}", version=version,
        quarantine_version=q_version, rows_in=rows_in, rows_stored=rows_ok,
        rows_quarantined=rows_bad, reasons=dict(reasons.most_common()),
        files=file_docs, schema_frozen=frozen,
        top_messages=[m for m, _ in messages.most_common(5)])


