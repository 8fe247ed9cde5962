"""Load one source into the lake: extract, validate, quarantine, commit."""

from __future__ import annotations

import hashlib
import json
import shutil
from collections import Counter, defaultdict, deque
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from ..connectors import (
    BlobConnector,
    FileConnector,
    FileInfo,
    RestConnector,
    SqlConnector,
    copy_blob,
)
from ..errors import DataError
from ..formats import format_for, read_csv_records
from ..lake import FILE_ROWS, Catalog, Lake, Parts
from ..lake._store import remove
from ..spec import (
    BlobSourceSpec,
    BrokerSourceSpec,
    RestSourceSpec,
    SourceSpec,
    SqlSourceSpec,
    TransformSpec,
    ValidateSpec,
)
from . import _spool
from ._schema import (
    DataSchema,
    infer_schema,
    load_schema,
    save_schema,
    schema_path,
)
from ._transform import Transformer
from ._validate import LOAD_ID, QUARANTINE_SCHEMA, SOURCE, SOURCE_SHA, Validator

LOAD_FORMAT = "1"  # bump when the stored layout changes, so loads are redone
WATERMARK = "mlsd.watermark"
VALIDATE_THREADS = 2  # the machines this runs on have 2 cores


@dataclass
class LoadResult:
    """What one load did: the counts that must reconcile, and where rows went."""

    source: str
    load_id: str
    dataset: str
    version: int | None
    quarantine_version: int | None
    rows_in: int
    rows_stored: int
    rows_quarantined: int
    reasons: dict[str, int]
    files: list[dict]
    skipped: bool = False
    schema_frozen: bool = False
    top_messages: list[str] = field(default_factory=list)
    mode: str = "overwrite"
    watermark: Any = None
    rows_erased: int = 0  # read, valid, and covered by an erasure: not stored

    def to_dict(self) -> dict:
        return asdict(self)


def connector_for(name: str, spec: SourceSpec | SqlSourceSpec | RestSourceSpec,
                  root: Path) -> FileConnector | SqlConnector | RestConnector:
    """The connector a source spec describes. File and folder sources read
    inside the project, or inside one of the spec's ``data_roots``."""
    if isinstance(spec, BlobSourceSpec | SourceSpec):
        roots = [root] + [Path(r) if Path(r).is_absolute() else root / r
                          for r in spec._data_roots]
    if isinstance(spec, BlobSourceSpec):
        return BlobConnector(folder=spec.folder, root=root, pattern=spec.pattern,
                             store=copy_blob(root / ".mlsd" / "blobs"), roots=roots)
    if isinstance(spec, RestSourceSpec):
        return RestConnector(**spec.model_dump(exclude={"key", "load", "endpoint"}),
                             url=spec.endpoint)
    if isinstance(spec, SqlSourceSpec):
        return SqlConnector(url=spec.url, table=spec.table, query=spec.query,
                            schema=spec.db_schema, watermark=spec.watermark,
                            password_env=spec.password_env)
    return FileConnector(path=spec.path, root=root, format=spec.format,
                         options=spec.format_options(root), roots=roots)


def resolve_schema(name: str, spec: SourceSpec | SqlSourceSpec,
                   rules: ValidateSpec, root: Path, *, freeze: bool = True
                   ) -> tuple[DataSchema, bool]:
    """The source's frozen schema, or one inferred now (and frozen if asked);
    and whether it was frozen now."""
    schema = load_schema(root, name)
    if schema is not None:
        return schema, False
    schema = _infer(name, spec, rules, root)
    # types voted on by no row are guesses (all text): never frozen, so the
    # first load with rows infers them from the data
    freeze = freeze and schema.origin.get("rows_sampled") != "0"
    if freeze:
        save_schema(root, name, schema)
    return schema, freeze


def _infer(name: str, spec: SourceSpec | SqlSourceSpec, rules: ValidateSpec,
           root: Path) -> DataSchema:
    return infer_schema(connector_for(name, spec, root),
                        null_values=rules.null_values,
                        threshold=rules.infer_threshold,
                        structs=getattr(spec, "nested", None) == "struct")


def reinfer_schema(name: str, spec: SourceSpec | SqlSourceSpec,
                   rules: ValidateSpec, root: Path) -> dict[str, Any]:
    """Infer a source's schema again and freeze it, keeping the old one as .bak.

    Returns the path, the backup's path (or None) and the columns whose type
    changed, so the user sees what the next load will validate differently.
    """
    old = load_schema(root, name)
    path = schema_path(root, name)
    new = _infer(name, spec, rules, root)
    backup = None
    if path.is_file():
        backup = path.with_name(path.name + ".bak")
        shutil.copyfile(path, backup)
    save_schema(root, name, new)
    before = old.columns if old else {}
    changes = [{"column": c, "before": before.get(c), "after": new.columns.get(c)}
               for c in dict.fromkeys([*before, *new.columns])
               if before.get(c) != new.columns.get(c)]
    return {"source": name, "path": str(path.relative_to(root)),
            "backup": None if backup is None else str(backup.relative_to(root)),
            "columns": dict(new.columns), "changes": changes}


def encode_watermark(value: Any) -> str | None:
    """A watermark as JSON text that keeps its type (for commit metadata)."""
    if value is None:
        return None
    if isinstance(value, datetime):
        return json.dumps({"type": "datetime", "value": value.isoformat()})
    return json.dumps({"type": type(value).__name__, "value": value})


def decode_watermark(text: str | None) -> Any:
    if not text:
        return None
    doc = json.loads(text)
    if doc["type"] == "datetime":
        return datetime.fromisoformat(doc["value"])
    return doc["value"]


def _hash(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()
                          ).hexdigest()


def load_source(
    name: str,
    spec: SourceSpec | SqlSourceSpec,
    rules: ValidateSpec,
    *,
    root: Path,
    lake: Lake,
    catalog: Catalog,
    run_id: str,
    chunk_rows: int = 50_000,
    on_rows: Callable[[int], None] | None = None,
    transform: TransformSpec | None = None,
    engine=None,
) -> LoadResult:
    """Extract, validate and store one source as one atomic lake commit.

    The load id hashes what was read (the files' contents; for a database, the
    watermark range, or the rows themselves), the schema and the rules: an
    unchanged input adds no dataset version. Accepted and rejected rows are
    spooled first, then the quarantine is committed, then the data, whose commit
    carries the load id and the new watermark in its own metadata and so marks
    the load as done: a crash at any point leaves a state that a re-run completes
    without repeating the load. With a Spark ``engine`` (a
    :class:`mlsd.engine.SparkEngine`) a file source is read, validated and
    written by Spark tasks (a file, or a large CSV file's span, a task; see
    :mod:`mlsd.etl._distributed`); what is stored is the same.
    """
    if isinstance(spec, BrokerSourceSpec):
        return consumed_source(name, spec, lake, on_rows)
    schema, frozen = resolve_schema(name, spec, rules, root)
    transformer = Transformer(spec=transform, schema=schema) if transform else None
    validator = Validator(schema=schema, rules=rules, transform=transformer,
                          unique_per_call=False)
    validator.check_rules(f"source {name!r} (schemas/{name}.yaml)")
    connector = connector_for(name, spec, root)
    # engine: spark reads and validates files as Spark tasks (the rows settle
    # here as they would locally); databases and APIs are read here
    on_spark = engine is not None and type(connector) is FileConnector
    ident: dict[str, Any] = {
        "format": LOAD_FORMAT, "source": name,
        "read": spec.model_dump(mode="json", exclude={"password_env"}),
        "schema": list(schema.columns.items()),
        "rules": rules.model_dump(mode="json"),
        "transform": transform.model_dump(mode="json") if transform else None,
    }
    last = lake.last_write("sources", name)
    window, new_watermark = None, None
    mode = spec.load or ("append" if getattr(spec, "watermark", None)
                         else "overwrite")
    key = [spec.key] if spec.key else None
    if mode == "upsert":
        # one row per key in a load: a merge cannot apply two rows to one key
        rules = rules.model_copy(update={"unique": list(dict.fromkeys(
            [*rules.unique, spec.key]))})
        validator = Validator(schema=schema, rules=rules, transform=transformer,
                              unique_per_call=False)
    if isinstance(connector, SqlConnector):
        chunk_rows = spec.chunk_rows
        if spec.watermark:
            since = decode_watermark(last.get(WATERMARK)) if last else None
            window = connector.plan(since)
            new_watermark = window.high
            if window.rows == 0:  # nothing new since the last load
                connector.close()
                if on_rows:
                    on_rows(0)
                return _nothing_new(name, lake, catalog, connector.info(window),
                                    since, frozen)
        infos = [connector.info(window)]
        batches: Iterator = connector.read(list(schema.columns), window=window,
                                           chunk_rows=chunk_rows)
    elif isinstance(connector, RestConnector):
        infos = [connector.info()]
        batches = connector.read(list(schema.columns), chunk_rows=chunk_rows)
    else:
        if on_spark:  # many files are hashed at once, one task each
            from ._distributed import file_hashes

            infos = connector.files(file_hashes(engine))
        else:
            infos = connector.files()
        if mode == "append" and last is not None:
            # append: each file (by content) is loaded once; only new ones now
            done_files = catalog.loaded_files(name)
            infos = [f for f in infos if (f.path, f.sha256) not in done_files]
            if not infos:
                if on_rows:
                    on_rows(0)
                return _nothing_new(name, lake, catalog,
                                    FileInfo(connector.display, "", 0), None,
                                    frozen)
        batches = None if on_spark else connector.read(
            list(schema.columns), chunk_rows=chunk_rows, only=infos)
    ident["inputs"] = [(f.path, f.sha256) for f in infos]
    ident["window"] = None if window is None else [str(window.low),
                                                   str(window.high)]
    # files have a hash before reading, a watermark window bounds its rows; a
    # database snapshot or an API is known only once read: its content is hashed
    content_known = isinstance(connector, FileConnector | BlobConnector) or \
        window is not None
    load_id = _hash(ident) if content_known else None
    file_docs = [{"path": f.path, "sha256": f.sha256, "size": f.size} for f in infos]

    if load_id is not None and last is not None and last.get(
            "mlsd.write_id") == load_id and (done := catalog.load(load_id)):
        if on_rows:
            on_rows(done["rows_in"])
        return _from_catalog(name, done, file_docs, frozen)

    folder = lake.root / "tmp" / f"{name}-{run_id}"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    # Spark's tasks write where every node reaches: the lake's scratch (the
    # same folder for a local lake; on the store for a lake.url)
    scratch = lake.scratch(f"{name}-{run_id}")
    acc_schema = validator.output_schema()
    rows_in = rows_ok = rows_bad = rows_erased = 0
    # erasures recorded by `mlsd lake delete` hold for every later load: a
    # re-exported file with an erased person's rows does not bring them back
    erasures = [e["predicate"] for e in catalog.erasures(name)]
    per_file: Counter[str] = Counter()
    reasons: Counter[str] = Counter()
    messages: Counter[str] = Counter()
    content = hashlib.sha256()
    # rows carry the load id, which a database snapshot only has once read: they
    # are spooled with a placeholder that is filled in when committed
    pending = load_id or "pending"
    stored = None
    if on_spark and mode != "upsert" and not (
            transformer is not None and transform.dedupe is not None):
        # the tasks write the stored files themselves (a `unique` key ranked
        # by a Spark window between the two), and the two commits below add
        # them; an upsert's merge and a dedupe settle on the driver
        from ._distributed import store_on_spark

        try:
            stored = store_on_spark(
                engine, connector, infos, list(schema.columns), validator,
                partial(unerased, erasures=erasures, name=name, spec=spec,
                        schema=schema, root=root, null_values=rules.null_values),
                chunk_rows=chunk_rows, load_id=pending,
                data_folder=lake.location("sources", name),
                quarantine_folder=lake.location("quarantine", name),
                file_rows=FILE_ROWS, unique=list(rules.unique), scratch=scratch,
                raw_text=_csv_lines(spec, root))
        finally:
            if lake.url is not None:
                remove(scratch)
        rows_in, rows_ok, rows_bad = stored.rows_in, stored.rows_ok, stored.rows_bad
        rows_erased, per_file = stored.rows_erased, stored.per_file
        reasons, messages = stored.reasons, stored.messages
        if on_rows:
            on_rows(rows_in)
    else:
        spool = _spool.Spool(folder, acc_schema, QUARANTINE_SCHEMA, narrow=[
            *rules.unique, *(transformer.narrow_columns() if transformer else [])],
            constant=[SOURCE, SOURCE_SHA, LOAD_ID],
            raw_text=_csv_lines(spec, root) if isinstance(connector, FileConnector)
            else None)

        def settle(info, n: int, out) -> None:
            nonlocal rows_in, rows_ok, rows_bad, rows_erased
            accepted, rejected, gone = unerased(
                out, erasures=erasures, name=name, spec=spec, schema=schema,
                root=root, null_values=rules.null_values)
            rows_erased += gone
            rows_in += n
            rows_ok += accepted.num_rows
            rows_bad += rejected.num_rows
            per_file[info.path] += n
            spool.add(accepted, rejected)
            if rejected.num_rows:
                for row in rejected.column("reasons").to_pylist():
                    for r in row:
                        reasons[f"{r['column'] or '(record)'}: {r['rule']}"] += 1
                        if len(messages) < 10_000:
                            messages[r["message"]] += 1
            if on_rows:
                on_rows(n)

        try:
            if on_spark:
                from ._distributed import validated_on_spark

                validated = validated_on_spark(
                    engine, connector, infos, list(schema.columns), validator,
                    chunk_rows=chunk_rows, load_id=pending, folder=scratch)
            else:
                validated = _validated_here(batches, validator, pending, None
                                            if content_known else content)
            for info, n, out in validated:
                settle(info, n, out)
        except BaseException:
            spool.close()
            raise
        finally:
            if isinstance(connector, SqlConnector):
                connector.close()
            if on_spark and lake.url is not None:
                remove(scratch)
        if rules.unique:
            # a repeated key, over the whole load at once: the first valid row
            # read wins (files in path order, lines in order)
            moved = spool.move_repeats(rules.unique, first="__batch, __row",
                                       rule="unique", load_id=pending,
                                       message="repeats a row already loaded")
            rows_ok, rows_bad = rows_ok - moved, rows_bad + moved
            if moved:
                reasons[f"{rules.unique[0]}: unique"] += moved
        if transformer is not None and transform.dedupe is not None:
            moved = transformer.dedupe(spool, pending)
            rows_ok, rows_bad = rows_ok - moved, rows_bad + moved
            if moved:
                reasons[f"{transform.dedupe.key[0]}: dedupe"] += moved
    assert rows_in == rows_ok + rows_bad + rows_erased, "validation lost rows"
    if load_id is None:
        ident["content"] = content.hexdigest()
        load_id = _hash(ident)
        if last is not None and last.get("mlsd.write_id") == load_id and (
                done := catalog.load(load_id)):
            spool.close()
            shutil.rmtree(folder, ignore_errors=True)
            return _from_catalog(name, done, file_docs, frozen)

    meta = {"mlsd.load_id": load_id, "mlsd.rows_in": str(rows_in)}
    if new_watermark is not None:
        meta[WATERMARK] = encode_watermark(new_watermark)
    if stored is not None:
        q_version, _ = lake.commit_parts(
            "quarantine", name, stored.rejected, schema=QUARANTINE_SCHEMA,
            write_id=load_id, metadata=meta,
            mode="overwrite" if mode == "overwrite" else "append")
        version, _ = lake.commit_parts(
            "sources", name, stored.accepted, schema=acc_schema, write_id=load_id,
            metadata=meta, mode=mode)
    else:
        q_version, _ = lake.write(
            "quarantine", name, _with_load_id(spool.rejected(), pending, load_id),
            schema=QUARANTINE_SCHEMA, write_id=load_id, metadata=meta,
            mode="overwrite" if mode == "overwrite" else "append")
        spool.set_constant(LOAD_ID, load_id)
        version, _ = lake.write(
            "sources", name, Parts(acc_schema, spool.accepted_parts(FILE_ROWS)),
            write_id=load_id, metadata=meta, mode=mode, key=key)
    shutil.rmtree(folder, ignore_errors=True)

    data_node = catalog.add_dataset_version("sources", name, version,
                                            write_id=load_id, rows=rows_ok,
                                            run_id=run_id)
    q_node = catalog.add_dataset_version("quarantine", name, q_version,
                                         write_id=load_id, rows=rows_bad,
                                         run_id=run_id)
    for f, doc in zip(infos, file_docs, strict=True):
        doc["rows"] = per_file[f.path]
        node = catalog.add_file(sha256=f.sha256, path=f.path, size=f.size)
        catalog.add_edge(node, data_node, "loaded_into", run_id)
        catalog.add_edge(node, q_node, "quarantined_into", run_id)
    catalog.add_load(
        load_id=load_id, source=name, dataset=f"sources/{name}", version=version,
        quarantine_version=q_version, rows_in=rows_in, rows_stored=rows_ok,
        rows_quarantined=rows_bad, reasons=dict(reasons.most_common()),
        files=file_docs, run_id=run_id,
        watermark=encode_watermark(new_watermark))
    return LoadResult(
        source=name, load_id=load_id, dataset=f"sources/{name}", version=version,
        quarantine_version=q_version, rows_in=rows_in, rows_stored=rows_ok,
        rows_quarantined=rows_bad, reasons=dict(reasons.most_common()),
        files=file_docs, schema_frozen=frozen,
        top_messages=[m for m, _ in messages.most_common(5)], mode=mode,
        watermark=None if new_watermark is None else str(new_watermark),
        rows_erased=rows_erased)


def _validated_here(batches, validator: Validator, load_id: str, content
                    ) -> Iterator[tuple[FileInfo, int, Any]]:
    """``(file, rows read, validated batch)`` in read order, validated on
    worker threads: validation is mostly Arrow compute, which releases the
    GIL, so a batch is validated while the next one is read. ``content``: a
    hash fed the raw batches (input known only once read)."""
    with ThreadPoolExecutor(max_workers=VALIDATE_THREADS) as pool:
        in_flight: deque = deque()
        for info, raw in batches:
            if content is not None:
                sink = pa.BufferOutputStream()
                with pa.ipc.new_stream(sink, raw.schema) as w:
                    w.write_batch(raw)
                content.update(sink.getvalue().to_pybytes())
            in_flight.append((info, raw.num_rows, pool.submit(
                validator.validate, raw, source=info.path, sha256=info.sha256,
                load_id=load_id)))
            while len(in_flight) > VALIDATE_THREADS:
                info, n, future = in_flight.popleft()
                yield info, n, future.result()
        while in_flight:
            info, n, future = in_flight.popleft()
            yield info, n, future.result()


def consumed_source(name: str, spec: BrokerSourceSpec, lake: Lake,
                    on_rows: Callable[[int], None] | None = None) -> LoadResult:
    """A broker source in a run: what `mlsd consume` has stored so far, as
    the dataset's current version (the run reads nothing from the broker)."""
    if on_rows:
        on_rows(0)
    if not lake.exists("sources", name):  # the table stage says so if it needs it
        return LoadResult(
            source=name, load_id="", dataset=f"sources/{name}", version=None,
            quarantine_version=None, rows_in=0, rows_stored=0, rows_quarantined=0,
            reasons={}, files=[], skipped=True, mode="append",
            top_messages=[f"nothing consumed yet: `mlsd consume {name}` stores "
                          f"the broker's messages"])
    last = lake.last_write("sources", name) or {}
    version = lake.version("sources", name)
    rows = lake.dataset("sources", name, version).count_rows()
    quarantined = (lake.dataset("quarantine", name).count_rows()
                   if lake.exists("quarantine", name) else 0)
    return LoadResult(
        source=name, load_id=last.get("mlsd.load_id", f"v{version}"),
        dataset=f"sources/{name}", version=version,
        quarantine_version=lake.version("quarantine", name), rows_in=0,
        rows_stored=0, rows_quarantined=0, reasons={},
        files=[{"path": last.get("mlsd.broker", spec.queue), "sha256": "",
                "size": 0, "rows": rows, "quarantined": quarantined}],
        skipped=True, mode="append")


def unerased(out, *, erasures: list[str], name: str, spec, schema: DataSchema,
             root: Path, null_values) -> tuple[pa.RecordBatch, pa.RecordBatch, int]:
    """A validated batch's accepted and rejected rows without those a recorded
    erasure covers (neither stored nor kept in the quarantine), and how many
    went."""
    accepted, rejected, gone = out.accepted, out.rejected, 0
    if erasures and accepted.num_rows:
        accepted, gone = without_erased(accepted, erasures, name)
    if erasures and rejected.num_rows:
        from ._quarantine import rejected_matching

        hit = rejected_matching(rejected.to_pylist(), spec, schema, " OR ".join(
            f"({p})" for p in erasures), root=root, null_values=null_values)
        if any(hit):
            rejected = rejected.filter(pa.array([not h for h in hit]))
            gone += sum(hit)
    return accepted, rejected, gone


def without_erased(table: pa.Table, predicates: list[str], source: str
                   ) -> tuple[pa.Table, int]:
    """``table`` without the rows any recorded erasure predicate matches
    (evaluated in the locked DuckDB, as when it was recorded), and how many
    went. A predicate that no longer applies stops the load: storing rows an
    erasure may cover is not an option."""
    import duckdb

    from ..engine._sandbox import matches, why

    try:
        mask = matches(table, " OR ".join(f"({p})" for p in predicates))
    except duckdb.Error as err:
        raise DataError(f"source {source!r}: an erasure recorded by `mlsd lake "
                        f"delete` no longer applies to its rows ({why(err)}); the "
                        f"load stops rather than store rows it may cover (`mlsd "
                        f"lake erasures` lists them)") from None
    gone = int(pc.sum(mask).as_py() or 0)
    return (table.filter(pc.invert(mask)), gone) if gone else (table, 0)


def _csv_lines(spec: SourceSpec, root: Path
               ) -> Callable[[pa.Table], pa.Array | None]:
    """For rows a repeat check moves out of a load: their lines as they were in
    the CSV files (what replay parses again), or None for other formats."""

    def raw_text(moved: pa.Table) -> pa.Array | None:
        places = list(zip(moved.column(SOURCE).to_pylist(),
                          moved.column("_line").to_pylist(), strict=True))
        wanted: dict[str, list[int]] = defaultdict(list)
        for path, line in places:
            wanted[path].append(line)
        if any(format_for(p, spec.format) != "csv" for p in wanted):
            return None
        found: dict[tuple[str, int], str] = {}
        for path, lines in wanted.items():
            full = Path(path) if Path(path).is_absolute() else root / path
            for line, text in read_csv_records(
                    full, lines, delimiter=spec.delimiter,
                    quotechar=spec.quotechar, encoding=spec.encoding).items():
                found[(path, line)] = text
        return pa.array([found.get(place) for place in places], pa.string())

    return raw_text


def _with_load_id(batches: Iterator[pa.RecordBatch], pending: str, load_id: str
                  ) -> Iterator[pa.RecordBatch]:
    """The spooled batches, with their ``_load_id`` set to the final id if it
    was not known when they were spooled."""
    for batch in batches:
        yield batch if pending == load_id else _spool.set_column(
            batch, "_load_id", load_id)


def _from_catalog(name: str, done: dict, file_docs: list[dict], frozen: bool
                  ) -> LoadResult:
    return LoadResult(
        source=name, load_id=done["load_id"], dataset=f"sources/{name}",
        version=done["version"], quarantine_version=done["quarantine_version"],
        rows_in=done["rows_in"], rows_stored=done["rows_stored"],
        rows_quarantined=done["rows_quarantined"], reasons=done["reasons"],
        files=done["files"] or file_docs, skipped=True, schema_frozen=frozen,
        watermark=decode_watermark(done.get("watermark")))


def _nothing_new(name: str, lake: Lake, catalog: Catalog, info: FileInfo,
                 since: Any, frozen: bool) -> LoadResult:
    last = lake.last_write("sources", name)
    return LoadResult(
        source=name, load_id=(last or {}).get("mlsd.write_id", ""),
        dataset=f"sources/{name}", version=lake.version("sources", name),
        quarantine_version=lake.version("quarantine", name), rows_in=0,
        rows_stored=0, rows_quarantined=0, reasons={},
        files=[{"path": info.path, "sha256": info.sha256, "size": 0, "rows": 0}],
        skipped=True, schema_frozen=frozen, mode="append",
        watermark=None if since is None else str(since))
