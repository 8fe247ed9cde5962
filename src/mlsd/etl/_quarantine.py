"""The quarantine: look at rejected rows, and replay them once fixed."""

from __future__ import annotations

import csv
import hashlib
import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from ..errors import LakeError
from ..formats import ERROR, LINE, RAW, format_for, read_csv_header
from ..lake import Catalog, Lake
from ..spec import RestSourceSpec, SourceSpec, SqlSourceSpec, ValidateSpec
from ._schema import DataSchema
from ._validate import QUARANTINE_SCHEMA, Validator, _fmt, accepted_schema


def quarantine_rows(lake: Lake, source: str, *, limit: int | None = None
                    ) -> list[dict[str, Any]]:
    """The rejected rows of a source (latest version), each with its reasons."""
    if not lake.exists("quarantine", source):
        raise LakeError(f"no quarantine for source {source!r}: it was never loaded")
    table = lake.read("quarantine", source)
    table = table.sort_by([("_source", "ascending"), ("_line", "ascending")])
    if limit is not None:
        table = table.slice(0, limit)
    return table.to_pylist()


def _parse(raw: str, fmt: str, header: list[str] | None, delimiter: str,
           quotechar: str) -> tuple[dict[str, Any] | None, str | None]:
    if raw is None:
        return None, "no raw record kept"
    if fmt == "csv":
        if header is None:
            return None, "the CSV file is gone: its header is unknown"
        try:
            rows = list(csv.reader(io.StringIO(raw), delimiter=delimiter,
                                   quotechar=quotechar))
        except csv.Error as err:
            return None, f"unparseable CSV: {err}"
        if len(rows) != 1 or len(rows[0]) != len(header):
            found = len(rows[0]) if rows else 0
            return None, (f"broken line: expected {len(header)} fields, found "
                          f"{found}")
        return dict(zip(header, rows[0], strict=True)), None
    try:
        doc = json.loads(raw)
    except json.JSONDecodeError as err:
        return None, f"broken line: invalid JSON: {err}"
    if not isinstance(doc, dict):
        return None, f"broken line: expected a JSON object, found {type(doc).__name__}"
    return doc, None


def _parse_all(rows: list[dict[str, Any]],
               spec: SourceSpec | SqlSourceSpec | RestSourceSpec, root: Path
               ) -> tuple[list[dict[str, Any] | None], list[str | None]]:
    """Parse every quarantined raw record again: a CSV line with its file's
    header (read once per file), anything else as JSON."""
    headers: dict[str, list[str] | None] = {}
    records, errors = [], []
    for r in rows:
        path, fmt = r["_source"], "json"
        if isinstance(spec, SourceSpec) and format_for(path, spec.format) == "csv":
            fmt = "csv"
            if path not in headers:
                full = Path(path) if Path(path).is_absolute() else root / path
                headers[path] = (read_csv_header(full, delimiter=spec.delimiter,
                                                 encoding=spec.encoding)
                                 if full.is_file() and spec.header else None)
        rec, err = _parse(r["raw"], fmt, headers.get(path),
                          getattr(spec, "delimiter", ","),
                          getattr(spec, "quotechar", '"'))
        records.append(rec)
        errors.append(err)
    return records, errors


def replay(name: str, spec: SourceSpec | SqlSourceSpec | RestSourceSpec,
           rules: ValidateSpec, schema: DataSchema, *, root: Path, lake: Lake,
           catalog: Catalog, run_id: str) -> dict[str, Any]:
    """Validate a source's quarantined rows again, after the schema, the rules or
    the raw record were fixed.

    Rows that pass now are added to the source's dataset (merged on the key for
    an upsert source); the quarantine keeps the others, with their current
    reasons. The replay is tagged with an id derived from the quarantine version,
    the schema and the rules, so running it twice does nothing the second time.
    """
    from ..formats._records import to_text

    qv = lake.version("quarantine", name)
    rows = quarantine_rows(lake, name)
    replay_id = hashlib.sha256(json.dumps(
        ["replay", name, qv, list(schema.columns.items()),
         rules.model_dump(mode="json")], default=str).encode()).hexdigest()
    result = {"source": name, "replayed": len(rows), "accepted": 0,
              "still_quarantined": len(rows), "version": lake.version("sources", name),
              "quarantine_version": qv, "skipped": False}
    if not rows:
        return result
    if lake.last_write("quarantine", name).get("mlsd.write_id") == replay_id:
        return {**result, "skipped": True}
    records, errors = _parse_all(rows, spec, root)
    cols = list(schema.columns)
    arrays = [pa.array([None if rec is None else to_text(rec.get(c))
                        for rec in records], pa.string()) for c in cols]
    arrays += [pa.array([r["_line"] for r in rows], pa.int64()),
               pa.array([r["raw"] for r in rows], pa.string()),
               pa.array(errors, pa.string())]
    raw = pa.RecordBatch.from_arrays(arrays, names=[*cols, LINE, RAW, ERROR])
    validator = Validator(schema=schema, rules=rules)
    accepted, rejected = [], []
    # validate per original file, so provenance stays exact
    by_source: dict[tuple[str, str], list[int]] = {}
    for i, r in enumerate(rows):
        by_source.setdefault((r["_source"], r["_source_sha256"]), []).append(i)
    for (src, sha), idx in by_source.items():
        part = raw.take(pa.array(idx, pa.int64()))
        out = validator.validate(part, source=src, sha256=sha, load_id=replay_id)
        accepted.append(out.accepted)
        rejected.append(out.rejected)
    acc = pa.Table.from_batches(accepted, schema=accepted_schema(schema))
    rej = pa.Table.from_batches(rejected, schema=QUARANTINE_SCHEMA)
    upsert = getattr(spec, "load", None) == "upsert"
    if rules.unique and not upsert and acc.num_rows and lake.exists("sources", name):
        # the validator saw only the replayed rows: a key already stored by an
        # earlier load must not come in a second time
        acc, repeated = _split_stored_keys(lake, name, acc, rules.unique)
        if repeated.num_rows:
            raw_of = {(r["_source"], r["_line"]): r["raw"] for r in rows}
            label = ", ".join(rules.unique)
            rej = pa.concat_tables([rej, pa.Table.from_pylist([{
                "_source": r["_source"], "_source_sha256": r["_source_sha256"],
                "_line": r["_line"], "_load_id": replay_id,
                "raw": raw_of[(r["_source"], r["_line"])],
                "reasons": [{"column": rules.unique[0], "rule": "unique",
                             "message": f"{label}: {_key_text(r, rules.unique)}"
                                        " repeats a row already stored"}]}
                for r in repeated.to_pylist()], schema=QUARANTINE_SCHEMA)])
    if acc.num_rows == 0 and rej.column("reasons").to_pylist() == [
            r["reasons"] for r in rows]:
        return result  # nothing passes, nothing changed: no new version
    meta = {"mlsd.replay_of": f"quarantine/{name}@{qv}"}
    version = result["version"]
    if acc.num_rows:
        mode = "upsert" if getattr(spec, "load", None) == "upsert" else "append"
        version, _ = lake.write("sources", name, acc, write_id=replay_id, mode=mode,
                                metadata=meta, key=[spec.key] if spec.key else None)
        node = catalog.add_dataset_version("sources", name, version,
                                           write_id=replay_id, rows=acc.num_rows,
                                           run_id=run_id)
        catalog.add_edge(f"dataset:quarantine/{name}@{qv}", node, "replayed_into",
                         run_id)
    q_version, _ = lake.write("quarantine", name, rej, write_id=replay_id,
                              metadata=meta)
    return {**result, "accepted": acc.num_rows, "still_quarantined": rej.num_rows,
            "version": version, "quarantine_version": q_version}


def _split_stored_keys(lake: Lake, name: str, acc: pa.Table, key: list[str]
                       ) -> tuple[pa.Table, pa.Table]:
    """``acc`` split into rows whose key is not yet in the stored dataset, and
    rows whose key is (a semi-join in DuckDB over the key columns only)."""
    import duckdb

    from ._spool import quote_identifier

    on = " AND ".join(f"s.{quote_identifier(k)} = a.{quote_identifier(k)}"
                      for k in key)
    con = duckdb.connect()
    try:
        con.register("a", acc.select(key).append_column(
            "__i", pa.array(range(acc.num_rows), pa.int64())))
        con.register("s", lake.dataset("sources", name))
        hit = con.sql(f"SELECT a.__i FROM a WHERE EXISTS (SELECT 1 FROM s WHERE {on})"
                      ).to_arrow_table().column("__i").to_numpy()
    finally:
        con.close()
    mask = np.zeros(acc.num_rows, dtype=bool)
    mask[hit] = True
    return acc.filter(pa.array(~mask)), acc.filter(pa.array(mask))


def _key_text(row: dict[str, Any], key: list[str]) -> str:
    """A key as the validator's own unique rule shows it."""
    values = tuple(row[k] for k in key)
    return _fmt(values if len(values) > 1 else values[0])




def quarantine_matches(lake: Lake, name: str,
                       spec: SourceSpec | SqlSourceSpec | RestSourceSpec,
                       schema: DataSchema, where: str, *, root: Path,
                       null_values: list[str]) -> list[tuple[str, int]]:
    """(file, line) of the quarantined records whose parsed values match a SQL
    predicate; values that do not parse are null, so only readable ones match."""
    rows = quarantine_rows(lake, name)
    if not rows:
        return []
    mask = rejected_matching(rows, spec, schema, where, root=root,
                             null_values=null_values)
    return [(r["_source"], r["_line"]) for r, m in zip(rows, mask, strict=True) if m]


def rejected_matching(rows: list[dict[str, Any]],
                      spec: SourceSpec | SqlSourceSpec | RestSourceSpec,
                      schema: DataSchema, where: str, *, root: Path,
                      null_values: list[str]) -> list[bool]:
    """For each rejected record (``_source``, ``raw``), whether its parsed
    values match a SQL predicate, evaluated in the locked DuckDB; values that
    do not parse are null, so only readable ones match."""
    import duckdb

    from ..formats._records import to_text

    records, _ = _parse_all(rows, spec, root)
    values = {c: [None if rec is None else to_text(rec.get(c)) for rec in records]
              for c in schema.columns}
    raw = pa.table({c: pa.array(v, pa.string()) for c, v in values.items()})
    typed, _ = Validator(schema=schema, rules=ValidateSpec(
        null_values=null_values)).typed(raw)
    from ..engine._sandbox import matches, why

    try:
        return matches(pa.table(typed), where).to_pylist()
    except duckdb.Error as err:
        raise LakeError(f"the predicate {where!r} fails on the quarantine: "
                        f"{why(err)}") from None
