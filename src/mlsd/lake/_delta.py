"""Versioned tables: Delta Lake tables under ``.mlsd/lake/AREA/NAME``."""

from __future__ import annotations

import functools
import json
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, NamedTuple

import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.parquet as pq
from deltalake import CommitProperties, DeltaTable, write_deltalake
from deltalake import Schema as DeltaSchema
from deltalake.exceptions import TableNotFoundError
from deltalake.transaction import AddAction, create_table_with_add_actions
from pyarrow.fs import FileType

from ..errors import LakeError
from ._locks import hold, lock_path
from ._paths import check_name, inside, name_ok
from ._store import (
    check_store,
    check_url,
    filesystem,
    is_url,
    locate,
    make_dirs,
    relative,
)


def _data_files(table: DeltaTable) -> set[str]:
    """The data files (paths relative to the table) its version reads."""
    return set(pa.table(table.get_add_actions(flatten=True)).column("path")
               .to_pylist())


def _one_writer(method):
    """Run a writing method of :class:`Lake` holding its dataset's lock."""
    @functools.wraps(method)
    def locked(self, area: str, name: str, *args, **kwargs):
        with hold(lock_path(self.root, "dataset", area, check_name(name)),
                  f"the dataset {area}/{name}"):
            return method(self, area, name, *args, **kwargs)
    return locked

_FILE, _NOT_FOUND = FileType.File, FileType.NotFound


WRITE_ID = "mlsd.write_id"
AREAS = ("sources", "quarantine", "training", "samples", "splits", "scored",
         "labels", "predictions", "feedback")
# commits after which a table holds the same rows as before
KEEPS_DATA = ("VACUUM START", "VACUUM END", "OPTIMIZE")
WRITE_THREADS = 2  # the machines this runs on have 2 cores
FILE_ROWS = 512 * 1024  # rows per Parquet file (and row group) of a write
# A column whose dictionary outgrows this is written plain: pyarrow's 1 MiB
# default spends a third of the write on dictionaries of near-unique columns
# (ids, numbers, free text) before giving up on them; files come out no larger
DICTIONARY_BYTES = 128 * 1024


class Parts(NamedTuple):
    """Data to write as parts, each made when called (on a writer thread):
    one Parquet file a part. For data whose reading and preparing cost as
    much as writing it, so the two share the writer threads."""

    schema: pa.Schema
    parts: list[Callable[[], pa.Table]]

    def reader(self) -> pa.RecordBatchReader:
        return pa.RecordBatchReader.from_batches(
            self.schema, (b for part in self.parts for b in part().to_batches()))


def _last_data_commit(table: DeltaTable) -> dict[str, Any] | None:
    """The newest commit that is not a vacuum's or an optimize's."""
    for limit in (4, 64, None):
        history = table.history(limit)
        for commit in history:
            if commit.get("operation") not in KEEPS_DATA:
                return commit
        if limit is None or len(history) < limit:
            return None
    return None


def _quote(name: str) -> str:
    """A column name as a quoted SQL identifier (for merge predicates)."""
    return '"' + name.replace('"', '""') + '"'


class Lake:
    """The project's versioned tables.

    Each dataset lives in an *area* (``sources``, ``quarantine``, ``splits`` ...)
    under a safe name. Every write is one atomic Delta commit tagged with a
    ``write_id`` (a hash of what was written and how): writing the same thing twice
    adds no version, so re-runs are idempotent and a crash leaves the previous
    version readable.

    Parameters
    ----------
    root : Path
        The project's ``.mlsd`` folder (its locks; the tables too unless
        ``url`` is given).
    url : str, optional
        Object storage for the tables instead (``s3://bucket/prefix``; see
        ``._store``): each dataset at ``URL/AREA/NAME``.
    """

    def __init__(self, *, root: Path, url: str | None = None):
        self.root = Path(root)
        self.url = None if url is None else check_url(url)

    def path(self, area: str, name: str) -> Path:
        """Folder of one dataset; refuses names that would escape the lake.
        A lake on object storage has no folder: see :meth:`location`."""
        if self.url is not None:
            raise LakeError(f"the lake is on object storage ({self.url}): "
                            f"{area}/{name} has no local folder")
        if area not in AREAS:
            raise LakeError(f"unknown lake area {area!r}; expected one of {AREAS}")
        return inside(self.root, "lake", area, check_name(name))

    def location(self, area: str, name: str) -> str:
        """Where one dataset's table is: its folder, or its URL on object
        storage (what ``deltalake`` and :func:`write_part` take)."""
        if self.url is None:
            return str(self.path(area, name))
        if area not in AREAS:
            raise LakeError(f"unknown lake area {area!r}; expected one of {AREAS}")
        where = f"{self.url}/{area}/{check_name(name)}"
        self._reach()
        return where

    def scratch(self, name: str | None = None) -> str:
        """A work folder for files that Spark's tasks write and the driver
        reads (then removes): ``.mlsd/tmp/NAME``, or ``URL/tmp/NAME`` for a
        lake on object storage, so that every node that reaches the lake
        reaches it too (no name: the folder of them all). What a dead run
        left there goes at the next run."""
        if name is not None:
            check_name(name)
        if self.url is None:
            base = str(self.root / "tmp")
        else:
            self._reach()
            base = f"{self.url}/tmp"
        return base if name is None else f"{base}/{name}"

    def _reach(self) -> None:
        """Check once that the store answers and has the bucket."""
        if not self.__dict__.get("_reached"):
            check_store(self.url)
            self._reached = True

    def filesystem(self, area: str, name: str) -> tuple[Any, str]:
        """A dataset's files as pyarrow sees them: the file system (local, or
        the object store's) and the table's path on it, to which the log's
        relative file paths are joined with ``/``."""
        return locate(self.location(area, name))

    def exists(self, area: str, name: str) -> bool:
        return DeltaTable.is_deltatable(self.location(area, name))

    def _table(self, area: str, name: str, version: int | None = None) -> DeltaTable:
        try:
            return DeltaTable(self.location(area, name), version=version)
        except TableNotFoundError:
            raise LakeError(f"no dataset {area}/{name} in the lake") from None
        except Exception as err:  # deltalake raises plain errors for bad versions
            if version is not None:
                raise LakeError(
                    f"dataset {area}/{name} has no version {version}: {err}"
                ) from err
            raise

    def version(self, area: str, name: str) -> int | None:
        """The latest version of a dataset, or None if it does not exist."""
        if not self.exists(area, name):
            return None
        return self._table(area, name).version()

    def changes_since(self, area: str, name: str, version: int) -> list[str]:
        """The data-changing commits after ``version`` (``"3 (ERASE)"`` ...):
        an empty list when the data is still what ``version`` holds. A vacuum's
        commits remove files no version still needs, so they change nothing."""
        if not self.exists(area, name):
            return ["the dataset was removed"]
        out: list[tuple[int, str]] = []
        for h in self._table(area, name).history():
            v = int(h.get("version", -1))
            op = "ERASE" if h.get("mlsd.operation") == "erase" else \
                str(h.get("operation", ""))
            if v > version and op not in KEEPS_DATA:
                out.append((v, f"{v} ({op})"))
        return [text for _, text in sorted(out)]

    def last_write(self, area: str, name: str) -> dict[str, Any] | None:
        """The commit info of the latest version that wrote data (it holds the
        ``mlsd.*`` metadata); a vacuum's or an optimize's commits, which keep
        the same rows, are passed over."""
        if not self.exists(area, name):
            return None
        return _last_data_commit(self._table(area, name))

    @_one_writer
    def write(
        self,
        area: str,
        name: str,
        data: pa.Table | pa.RecordBatchReader | Iterable[pa.RecordBatch] | Parts,
        *,
        write_id: str,
        schema: pa.Schema | None = None,
        mode: str = "overwrite",
        metadata: dict[str, str] | None = None,
        key: list[str] | None = None,
    ) -> tuple[int, bool]:
        """Write ``data`` as one commit unless the last commit has ``write_id``.

        ``mode`` is ``overwrite``, ``append``, or ``upsert`` (a merge on ``key``:
        rows whose key exists replace the stored row, the others are inserted).

        Returns
        -------
        (version, written)
            The dataset's version after the call, and whether a commit was made.
        """
        existing = self._table(area, name) if self.exists(area, name) else None
        last = _last_data_commit(existing) if existing is not None else None
        if last is not None and last.get(WRITE_ID) == write_id:
            # the same rows (a vacuum since changed no row): the latest version
            return int(existing.version()), False
        parts = data if isinstance(data, Parts) else None
        if parts is not None:
            data = parts.reader()  # read lazily, only where parts cannot be
        elif not isinstance(data, pa.Table | pa.RecordBatchReader):
            if schema is None:
                raise LakeError("writing an iterable of batches needs its schema")
            data = pa.RecordBatchReader.from_batches(schema, data)
        path = self.location(area, name)
        props = {WRITE_ID: write_id, **(metadata or {})}
        if mode == "upsert":
            if not key:
                raise LakeError(f"an upsert into {area}/{name} needs a key")
            if existing is not None:
                on = " AND ".join(f"t.{_quote(k)} = s.{_quote(k)}" for k in key)
                existing.merge(
                    source=data, predicate=on, source_alias="s", target_alias="t",
                    commit_properties=CommitProperties(custom_metadata=props),
                ).when_matched_update_all().when_not_matched_insert_all().execute()
                return self._table(area, name).version(), True
            mode = "overwrite"  # the first load creates the table
        if existing is None or pa.schema(existing.schema().to_arrow()).equals(
                data.schema):
            self._write_files(path, existing, parts or data, mode=mode,
                              props=props)
        else:  # the schema changes: delta-rs rewrites the table's metadata
            write_deltalake(
                path, data, mode=mode,
                schema_mode="overwrite" if mode == "overwrite" else None,
                commit_properties=CommitProperties(custom_metadata=props))
        return self._table(area, name).version(), True

    def _write_files(self, path: str, table: DeltaTable | None,
                     data: pa.Table | pa.RecordBatchReader | Parts, *, mode: str,
                     props: dict[str, str]) -> None:
        """Write Parquet files on two threads, then commit them all at once.

        delta-rs writes a stream on one thread; this writes each chunk of
        FILE_ROWS rows as its own file with pyarrow, two at a time, and adds
        them in one transaction (the same atomic commit). Files of a crashed
        write are in no version, and vacuum removes them.
        """
        if isinstance(data, Parts):
            schema, parts = data.schema, data.parts
        else:
            reader = data.to_reader() if isinstance(data, pa.Table) else data
            schema, parts = reader.schema, _chunks(reader, FILE_ROWS)
        make_dirs(path)

        def write(part: Callable[[], pa.Table]) -> AddAction | None:
            written = write_part(path, part())
            return None if written is None else add_action(written)

        actions: list[AddAction | None] = []
        in_flight: deque = deque()
        with ThreadPoolExecutor(max_workers=WRITE_THREADS) as pool:
            for part in parts:
                while len(in_flight) >= WRITE_THREADS:  # bounds memory
                    actions.append(in_flight.popleft().result())
                in_flight.append(pool.submit(write, part))
            actions += [f.result() for f in in_flight]
        _add_files(path, table, [a for a in actions if a is not None], schema,
                   mode=mode, props=props)

    @_one_writer
    def commit_parts(self, area: str, name: str, parts: list[dict[str, Any]], *,
                     schema: pa.Schema, write_id: str, mode: str = "overwrite",
                     metadata: dict[str, str] | None = None) -> tuple[int, bool]:
        """Commit Parquet files already written in the dataset's folder by
        :func:`write_part` (e.g. by Spark tasks), in their order, as one
        transaction: :meth:`write`'s contract (``write_id``, ``overwrite`` or
        ``append``) for rows that never passed through this process."""
        existing = self._table(area, name) if self.exists(area, name) else None
        last = _last_data_commit(existing) if existing is not None else None
        if last is not None and last.get(WRITE_ID) == write_id:
            return int(existing.version()), False
        path = self.location(area, name)
        props = {WRITE_ID: write_id, **(metadata or {})}
        if existing is None or pa.schema(existing.schema().to_arrow()).equals(schema):
            _add_files(path, existing, [add_action(p) for p in parts], schema,
                       mode=mode, props=props)
        else:  # the schema changes: delta-rs rewrites the table's metadata
            fs, base = locate(path)
            files = [f"{base}/{relative(p['path'])}" for p in parts]
            write_deltalake(path, pads.dataset(files, schema=schema, filesystem=fs)
                            .scanner().to_reader(), mode=mode,
                            schema_mode="overwrite" if mode == "overwrite" else None,
                            commit_properties=CommitProperties(custom_metadata=props))
            for f in files:
                if fs.get_file_info(f).type != _NOT_FOUND:
                    fs.delete_file(f)
        return self._table(area, name).version(), True

    @_one_writer
    def append(self, area: str, name: str, table: pa.Table, *,
               metadata: dict[str, str] | None = None) -> int:
        """Append rows as one commit, for a long-running writer of its own
        dataset (the service's prediction log): the table's handle is kept
        between calls and brought up to date (others' commits) instead of
        being opened again, which halves a small commit's time. No write id
        check: every call adds its rows. The version after the commit."""
        handles = self.__dict__.setdefault("_handles", {})
        dt = handles.get((area, name))
        if dt is None:
            if not self.exists(area, name) or not pa.schema(
                    self._table(area, name).schema().to_arrow()).equals(table.schema):
                version, _ = self.write(
                    area, name, table, mode="append",
                    write_id=f"append-{uuid.uuid4().hex}", metadata=metadata)
                return version
            dt = handles[(area, name)] = self._table(area, name)
        else:
            dt.update_incremental()
        self._write_files(self.location(area, name), dt, table, mode="append", props={
            WRITE_ID: f"append-{uuid.uuid4().hex}", **(metadata or {})})
        dt.update_incremental()
        return int(dt.version())

    @_one_writer
    def delete_older(self, area: str, name: str, column: str, cutoff) -> int:
        """Delete the rows whose timestamp ``column`` is before ``cutoff`` (an
        aware datetime; a retention), as one commit; the rows deleted."""
        from datetime import UTC

        check_name(column)
        stamp = cutoff.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        res = self._table(area, name).delete(
            f"{_quote(column)} < '{stamp}'",
            commit_properties=CommitProperties(custom_metadata={
                WRITE_ID: f"retention-{uuid.uuid4().hex}",
                "mlsd.operation": "retention"}))
        return int(res.get("num_deleted_rows", 0))

    @_one_writer
    def erase(self, area: str, name: str, columns: list[str],
              identities: set[tuple]) -> dict[str, Any]:
        """Remove the rows whose ``columns`` hold one of ``identities``, as one
        commit: the current version is streamed through the filter and
        written again with pyarrow, so every column keeps its type (delta-rs's
        own delete writes strings as ``string_view``, which pyarrow's filters
        then cannot compare), and no SQL text is involved. The commit keeps
        the last write's identity (``mlsd.write_id``, the watermark): the same
        input loaded again is "nothing new" and does not bring the rows back.
        """
        import pyarrow.compute as pc

        table = self._table(area, name)
        before = int(table.version())
        if not identities:
            return {"deleted": 0, "version": before, "superseded_files": []}
        files_before = _data_files(table)
        sep = "\x1f"
        wanted = pa.array(sorted(sep.join("" if v is None else str(v) for v in i)
                                 for i in identities), pa.string())
        removed = 0

        def kept() -> Iterator[pa.RecordBatch]:
            nonlocal removed
            for batch in table.to_pyarrow_dataset().to_batches():
                parts = [pc.fill_null(pc.cast(batch.column(c), pa.string()), "")
                         for c in columns]
                key = parts[0] if len(parts) == 1 else \
                    pc.binary_join_element_wise(*parts, sep)
                hit = pc.fill_null(pc.is_in(key, value_set=wanted), False)
                removed += int(pc.sum(hit).as_py() or 0)
                yield batch.filter(pc.invert(hit)).cast(schema)

        schema = pa.schema(table.schema().to_arrow())
        last = table.history(1)
        carried = {k: str(v) for k, v in (last[0] if last else {}).items()
                   if k.startswith("mlsd.")}
        carried["mlsd.operation"] = "erase"
        reader = pa.RecordBatchReader.from_batches(schema, kept())
        self._write_files(self.location(area, name), table, reader, mode="overwrite",
                          props=carried)
        # the files the erasure replaced still hold the rows for older
        # versions: `vacuum` removes them whatever the retention
        superseded = sorted(files_before - _data_files(self._table(area, name)))
        return {"deleted": removed, "version": self.version(area, name),
                "superseded_files": superseded}

    def remove_files(self, area: str, name: str, files: list[str]) -> int:
        """Delete data files of a dataset that no current version reads (an
        erasure's superseded files); how many were still there."""
        current = _data_files(self._table(area, name))
        fs, base = self.filesystem(area, name)
        gone = 0
        for rel in files:
            if rel in current:
                continue  # read again by the latest version (a restore)
            path = f"{base}/{relative(rel)}"
            if fs.get_file_info(path).type == _FILE:
                fs.delete_file(path)
                gone += 1
        return gone

    def damage(self, area: str, name: str, version: int | None = None) -> list[str]:
        """What is wrong with a version's files (the latest by default): each
        must exist with the size the log recorded, and its Parquet schema must
        have the table's columns. Empty when the version is whole."""
        try:
            table = self._table(area, name, version)
        except Exception as err:  # noqa: BLE001 - a log that cannot be read
            return [f"the table's log cannot be read: {err}"]
        fs, base = locate(self.location(area, name))
        want = pa.schema(table.schema().to_arrow())
        actions = pa.table(table.get_add_actions(flatten=True))
        out = []
        for rel, size in zip(actions.column("path").to_pylist(),
                             actions.column("size_bytes").to_pylist(), strict=True):
            try:
                path = f"{base}/{relative(rel)}"
            except LakeError:  # an absolute path or a URL: not this table's
                out.append(f"{rel}: outside the table's folder")
                continue
            info = fs.get_file_info(path)
            if info.type != _FILE:
                out.append(f"{rel}: missing")
                continue
            if info.size != size:
                out.append(f"{rel}: {info.size} bytes, the log says {size}")
                continue
            try:
                have = pq.read_schema(path, filesystem=fs)
            except Exception:  # noqa: BLE001 - not Parquet any more
                out.append(f"{rel}: not a readable Parquet file")
                continue
            lost = [f.name for f in want if f.name not in have.names]
            if lost:
                out.append(f"{rel}: lacks column(s) {', '.join(lost)}")
        return out

    def last_intact(self, area: str, name: str) -> int | None:
        """The newest version whose files are all whole, if any."""
        latest = self.version(area, name)
        for v in range(latest or 0, -1, -1):
            if not self.damage(area, name, v):
                return v
        return None

    @_one_writer
    def clear(self, area: str, name: str) -> int:
        """Commit an empty version (no load's identity), so the next load of
        the dataset writes it whole again; the new version."""
        table = self._table(area, name)
        schema = pa.schema(table.schema().to_arrow())
        self._write_files(self.location(area, name), table,
                          pa.RecordBatchReader.from_batches(schema, iter(())),
                          mode="overwrite", props={"mlsd.operation": "clear"})
        return self.version(area, name)

    @_one_writer
    def restore(self, area: str, name: str, version: int) -> None:
        """Make ``version`` the latest again (a new commit; history is kept)."""
        meta = (self._table(area, name, version).history(1) or [{}])[0]
        kept = {k: str(v) for k, v in meta.items() if k.startswith("mlsd.")}
        self._table(area, name).restore(
            version, commit_properties=CommitProperties(custom_metadata=kept))

    @_one_writer
    def vacuum(self, area: str, name: str, *, retention_hours: int) -> list[str]:
        """Remove data files only versions older than the retention need, and
        old log entries; returns the files removed."""
        dt = self._table(area, name)
        removed = dt.vacuum(retention_hours=retention_hours, dry_run=False,
                            enforce_retention_duration=False, full=True)
        dt.create_checkpoint()
        return removed

    def stored_values(self, area: str, name: str, column: str) -> pa.Array:
        """The values of one column in every data file still on disk.

        This covers every version still readable (after a vacuum, the files
        left are those the retained versions need), not only the latest.
        """
        import pyarrow.fs as pafs

        fs, base = locate(self.location(area, name))
        found = fs.get_file_info(pafs.FileSelector(base, recursive=True,
                                                   allow_not_found=True))
        files = [f.path for f in found if f.type == _FILE
                 and f.path.endswith(".parquet")
                 and "_delta_log" not in f.path[len(base):].split("/")]
        if not files:
            return pa.array([], pa.string())
        data = pads.dataset(files, format="parquet", filesystem=fs)
        if column not in data.schema.names:
            return pa.array([], pa.string())
        return data.to_table(columns=[column]).column(column).combine_chunks()

    def read(self, area: str, name: str, version: int | None = None,
             columns: list[str] | None = None) -> pa.Table:
        """One version of a dataset (the latest by default) as an Arrow table."""
        try:
            return self._table(area, name, version).to_pyarrow_table(columns=columns)
        except Exception as err:  # delta-rs raises a plain error for a lost file
            if version is not None and ("not found" in str(err).lower()
                                        or "no such file" in str(err).lower()):
                raise LakeError(
                    f"version {version} of {area}/{name} can no longer be read: "
                    f"its files were removed (an erasure followed by `mlsd lake "
                    f"vacuum`, or a vacuum past the retention)") from None
            raise

    def files(self, area: str, name: str, version: int | None = None
              ) -> tuple[pa.Schema, list[str]]:
        """One version's schema and data files (URIs), for an engine that
        reads Parquet itself (Spark)."""
        table = self._table(area, name, version)
        return pa.schema(table.schema().to_arrow()), list(table.file_uris())

    def dataset(self, area: str, name: str, version: int | None = None
                ) -> pads.Dataset:
        """One version as a pyarrow dataset (lazy; keeps filter pushdown)."""
        return self._table(area, name, version).to_pyarrow_dataset()

    def list(self, area: str) -> list[str]:
        """Names of the datasets in an area."""
        import pyarrow.fs as pafs

        fs, base = locate(f"{self.url}/{area}" if self.url is not None
                             else str(self.root / "lake" / area))
        found = fs.get_file_info(pafs.FileSelector(base, allow_not_found=True))
        names = [f.base_name for f in found if f.type == pafs.FileType.Directory]
        return sorted(n for n in names if name_ok(n) and self.exists(area, n))


def write_part(folder: Path | str, table: pa.Table) -> dict[str, Any] | None:
    """Write ``table`` as one new Parquet file of a dataset's folder (one row
    group, the lake's settings), or of its location on object storage (a
    URL, :meth:`Lake.location`); what :meth:`Lake.commit_parts` needs to add
    it (plain values: a Spark task returns them), or None for no rows."""
    if not table.num_rows:
        return None
    name = f"part-{uuid.uuid4().hex}.snappy.parquet"
    settings = {"compression": "snappy", "row_group_size": table.num_rows,
                "dictionary_pagesize_limit": DICTIONARY_BYTES}
    if is_url(folder):
        fs, base = filesystem(folder)
        with fs.open_output_stream(f"{base}/{name}") as out:
            pq.write_table(table, out, **settings)
        # the store's Last-Modified has whole seconds: the parts of one second
        # would tie, and `mlsd consume` reads the newest files first
        written = time.time()
        size = fs.get_file_info(f"{base}/{name}").size
        return {"path": name, "size": size, "mtime": int(written * 1000),
                "rows": table.num_rows}
    pq.write_table(table, Path(folder) / name, **settings)
    st = (Path(folder) / name).stat()
    return {"path": name, "size": st.st_size, "mtime": int(st.st_mtime * 1000),
            "rows": table.num_rows}


def _add_files(path: str, table: DeltaTable | None, actions: list[AddAction],
               schema: pa.Schema, *, mode: str, props: dict[str, str]) -> None:
    """Add written files to a table (made by this commit if ``table`` is None)
    as one transaction."""
    commit = CommitProperties(custom_metadata=props)
    if table is None:
        create_table_with_add_actions(path, DeltaSchema.from_arrow(schema),
                                      actions, mode="overwrite",
                                      commit_properties=commit)
    else:
        table.create_write_transaction(actions, mode, schema,
                                       commit_properties=commit)


def add_action(part: dict[str, Any]) -> AddAction:
    return AddAction(part["path"], part["size"], {}, part["mtime"], True,
                     json.dumps({"numRecords": part["rows"]}))


def _chunks(reader: pa.RecordBatchReader, rows: int
            ) -> Iterator[Callable[[], pa.Table]]:
    """The reader's batches gathered into tables of at least ``rows`` rows
    (the last may be smaller), read here, each handed over as a part."""
    buffered, n = [], 0
    for batch in reader:
        if batch.num_rows:
            buffered.append(batch)
            n += batch.num_rows
        if n >= rows:
            table = pa.Table.from_batches(buffered, reader.schema)
            yield lambda table=table: table
            buffered, n = [], 0
    table = pa.Table.from_batches(buffered, reader.schema)
    yield lambda table=table: table
